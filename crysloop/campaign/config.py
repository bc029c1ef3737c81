"""The campaign configuration: one YAML file, validated by pydantic, stored with the campaign in the database."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crysloop.errors import InputError
from crysloop.infra.executors import ExecutorConfig
from crysloop.kappa.cost import DEFAULT_MAX_DISPLACEMENTS
from crysloop.screening.potentials import DEFAULT_KAPPA_MLIP

FINETUNE_LABELS = ("stable", "phonon_stable", "log10_kappa")  # conditions a round's fine-tuning teaches the models


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CompositionModelConfig(_Strict):
    """Stage I: the valence-constrained language model."""

    checkpoint: str = Field("shipped", description="'shipped' or a checkpoint path.")
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0)
    max_atoms: int = Field(20, ge=1, le=100, description="Compositions with more atoms per cell are resampled away.")
    finetune_epochs: int = Field(10, ge=0)


class StructureModelConfig(_Strict):
    """Stage II: DiffCSP structure diffusion."""

    checkpoint: str = Field("shipped", description="'shipped' or a checkpoint path.")
    steps: int | None = Field(None, ge=1, description="Sampling steps; None = the model's training timesteps.")
    guidance: float = Field(2.0, ge=0, description="Classifier-free guidance weight w (CrysVCD uses 2).")
    rescale_volume: bool = Field(
        True, description="Scale each sampled cell isotropically to its composition's expected volume (additive "
        "per-element volumes, crysloop.chemistry.volume) before filtering and screening; DiffCSP does not.")
    batch_size: int = Field(64, ge=1)
    finetune_epochs: int = Field(5, ge=0)
    finetune_scope: Literal["conditions", "all"] = Field(
        "conditions", description="What a round's fine-tuning trains: the condition embeddings only (the denoiser "
        "stays as trained) or every weight, as CrysVCD does on larger label sets. 5 steps of all weights at lr 1e-3 on "
        "8 labels (the demo's round 1) moved the shipped model's sampled cells from a median 1.01x to 1.45x their "
        "expected volume (4 of 24 beyond 2x); the embeddings only: 1.03x (none).")


class CDVAEModelConfig(_Strict):
    """Stage II alternative (``generator: condition-cdvae-plus``): ConditionCDVAE+ decodes a structure for each
    Stage I composition, steered toward the conditions it knows."""

    checkpoint: str = Field("shipped", description="'shipped' or a checkpoint path.")
    candidates: int = Field(100, ge=1, description="Latents per sample; the property predictor keeps the best.")
    steps_per_level: int | None = Field(None, ge=1, description="Langevin steps per noise level; None = 100.")
    batch_size: int = Field(64, ge=1)
    finetune_epochs: int = Field(5, ge=0)
    gan_epochs: int = Field(20, ge=0, description="Latent WGAN-GP epochs after each fine-tuning (0: the prior).")


class ScreeningConfig(_Strict):
    """MLIP screening of each round's candidates."""

    fmax: float = Field(0.05, gt=0)
    steps: int = Field(300, ge=1)
    phonons: bool = True
    phonon_min_length: float = Field(10.0, gt=0, description="Minimum plane spacing (A) of the phonon supercell: at 10 A "
                                     "and 0.5 THz 14 % of known MP-20 compounds were flagged, at 6 A 21 % (benchmarks/phonons.py).")
    phonon_tolerance_thz: float = Field(0.5, ge=0, description="A mode below -this (THz) flags a candidate "
                                        "phonon-unstable (crysloop.screening.phonons.DEFAULT_TOLERANCE_THZ).")
    batch_size: int = Field(16, ge=1)
    hull: Literal["mp", "mlip"] = Field(
        "mp", description="Hull references: Materials Project phases (MP2020-corrected energies) or MLIP-relaxed ones."
    )


class LabelConfig(_Strict):
    """How screening results become the labels the models are fine-tuned on."""

    ehull_stable: float = Field(0.1, ge=0, description="stable = energy above hull <= this (eV/atom).")
    require_phonon_stable: bool = Field(False, description="Count only phonon-stable candidates as stable.")


class DFTStageConfig(_Strict):
    enabled: bool = False
    preset: Literal["crysvcd", "condition-cdvae-plus"] = "crysvcd"
    top_n: int = Field(5, ge=1)


def _checked_mlip(value: str) -> str:
    """A potential name in canonical form, or the ValueError pydantic reports for an unknown one."""
    from crysloop.screening.potentials import check_mlip_name

    try:
        return check_mlip_name(value)
    except InputError as exc:
        raise ValueError(str(exc)) from None


class KappaStageConfig(_Strict):
    enabled: bool = False
    mlip: str = Field(DEFAULT_KAPPA_MLIP, description="Potential that relaxes the best candidates again and gives "
                      "the phono3py forces (SevenNet-0: the offline potential that passes benchmarks/kappa.py).")
    top_n: int = Field(3, ge=1)
    temperatures: list[float] = Field(default_factory=lambda: [300.0])
    max_displacements: int = Field(DEFAULT_MAX_DISPLACEMENTS, ge=1, description="Skip candidates whose phono3py "
                                   "setup needs more displaced supercells (low-symmetry cells cost hours on CPU).")

    @field_validator("mlip")
    @classmethod
    def _mlip(cls, value: str) -> str:
        return _checked_mlip(value)


class CampaignConfig(_Strict):
    """Everything a campaign needs: targets, sizes, thresholds, potential, models, device and stages."""

    name: str
    description: str = ""
    rounds: int = Field(3, ge=1, le=1000)
    candidates_per_round: int = Field(64, ge=1, le=100_000)
    conditions: dict[str, float] = Field(
        default_factory=lambda: {"stable": 1.0},
        description="Targets for generation, e.g. stable: 1, phonon_stable: 1, kappa: 100 (W/m/K, learned as "
        "log10_kappa). Labels a model has not learned yet are ignored until a round's fine-tuning adds them; "
        "other names must be known to the configured checkpoints.",
    )
    mlip: str = "sevenn-l3i5"
    device: str = "auto"
    seed: int = 0
    reference_dataset: str = Field(
        "embedded:mp_20_mini", description="Known structures for novelty and hull references: a path or a name."
    )
    composition_model: CompositionModelConfig = Field(default_factory=CompositionModelConfig)
    structure_model: StructureModelConfig = Field(default_factory=StructureModelConfig)
    generator: Literal["crysvcd", "condition-cdvae-plus"] = Field(
        "crysvcd", description="Stage II: DiffCSP (crysvcd) or ConditionCDVAE+ on the Stage I compositions.")
    cdvae_model: CDVAEModelConfig = Field(default_factory=CDVAEModelConfig)
    screening: ScreeningConfig = Field(default_factory=ScreeningConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    finetune: bool = True
    evaluate: bool = True
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    dft: DFTStageConfig = Field(default_factory=DFTStageConfig)
    kappa: KappaStageConfig = Field(default_factory=KappaStageConfig)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", value):
            raise ValueError("use lowercase letters, digits and dashes (it names Prefect runs and folders)")
        return value

    @field_validator("mlip")
    @classmethod
    def _mlip(cls, value: str) -> str:
        return _checked_mlip(value)

    @field_validator("conditions")
    @classmethod
    def _conditions(cls, value: dict[str, float]) -> dict[str, float]:
        for name, target in value.items():
            if not math.isfinite(target):
                raise ValueError(f"{name}: {target} is not a finite number")
        for name in ("stable", "phonon_stable"):
            if name in value and value[name] not in (0.0, 1.0):
                raise ValueError(f"{name} is a yes/no label: give 0 or 1, not {value[name]}")
        if "kappa" in value and value["kappa"] <= 0:
            raise ValueError("a thermal-conductivity target must be positive (W/m/K)")
        if "kappa" in value:  # the models learn log10(kappa / W/m/K), see crysloop.kappa.labels
            value = {**{k: v for k, v in value.items() if k != "kappa"}, "log10_kappa": math.log10(value["kappa"])}
        return value

    @model_validator(mode="after")
    def _known_conditions(self) -> CampaignConfig:
        from crysloop.campaign.generation import check_conditions, model_condition_names

        if set(self.conditions) <= set(FINETUNE_LABELS):
            return self
        try:
            known = model_condition_names(self.composition_model.checkpoint, self.structure_model.checkpoint)
            check_conditions(self.conditions, {"fine-tuning labels": FINETUNE_LABELS, **known})
        except InputError as exc:
            raise ValueError(f"conditions: {exc}") from None
        return self


def load_config(path: str | Path) -> CampaignConfig:
    """Read and validate a campaign YAML file; every problem is reported with its field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such campaign file") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of settings")
    return parse_config(raw, source=str(path))


def parse_config(raw: dict, source: str = "config") -> CampaignConfig:
    try:
        return CampaignConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise InputError(f"{source}: {problems}") from None
