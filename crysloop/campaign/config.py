"""The campaign configuration: one YAML file, validated by pydantic, stored with the campaign in the database."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from crysloop.dft.config import DFTStageConfig
from crysloop.errors import InputError
from crysloop.infra.executors import ExecutorConfig
from crysloop.kappa.config import KappaStageConfig
from crysloop.screening.config import ScreeningConfig
from crysloop.strict import StrictConfig, problems

FINETUNE_LABELS = ("stable", "phonon_stable", "log10_kappa")  # conditions a round's fine-tuning teaches the models
GENERATION_FIELDS = ("generator", "composition_model", "structure_model", "cdvae_model")  # once top-level fields


class CompositionModelConfig(StrictConfig):
    """Stage I: the valence-constrained language model."""

    checkpoint: str = Field("shipped", description="Stage I checkpoint: 'shipped' or a path.")
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0)
    max_atoms: int = Field(20, ge=1, le=100, description="Compositions with more atoms per cell are resampled away.")
    finetune_epochs: int = Field(10, ge=0)


class StructureModelConfig(StrictConfig):
    """Stage II: DiffCSP structure diffusion."""

    checkpoint: str = Field("shipped", description="Stage II (DiffCSP) checkpoint: 'shipped' or a path.")
    steps: int | None = Field(None, ge=1, description="Sampling steps; None = the model's training timesteps.")
    guidance: float = Field(2.0, ge=0, description="Classifier-free guidance weight w (CrysVCD uses 2).")
    rescale_volume: bool = Field(
        True,
        description="Scale each sampled cell isotropically to its composition's expected volume (additive "
        "per-element volumes, crysloop.chemistry.volume) before filtering and screening; DiffCSP does not.",
    )
    batch_size: int = Field(64, ge=1)
    finetune_epochs: int = Field(5, ge=0)
    finetune_scope: Literal["conditions", "all"] = Field(
        "conditions",
        description="What a round's fine-tuning trains: the condition embeddings only (the denoiser "
        "stays as trained) or every weight, as CrysVCD does on larger label sets (docs/defaults.md).",
    )


class CDVAEModelConfig(StrictConfig):
    """Stage II alternative (``generator: condition-cdvae-plus``): ConditionCDVAE+ decodes a structure for each
    Stage I composition, steered toward the conditions it knows."""

    checkpoint: str = Field("shipped", description="ConditionCDVAE+ checkpoint: 'shipped' or a path.")
    candidates: int = Field(100, ge=1, description="Latents per sample; the property predictor keeps the best.")
    steps_per_level: int | None = Field(None, ge=1, description="Langevin steps per noise level; None = 100.")
    batch_size: int = Field(64, ge=1)
    finetune_epochs: int = Field(5, ge=0)
    gan_epochs: int = Field(20, ge=0, description="Latent WGAN-GP epochs after each fine-tuning (0: the prior).")


class LabelConfig(StrictConfig):
    """How screening results become the labels the models are fine-tuned on."""

    ehull_stable: float = Field(0.1, ge=0, description="stable = energy above hull <= this (eV/atom).")
    require_phonon_stable: bool = Field(False, description="Count only phonon-stable candidates as stable.")


class GenerationConfig(StrictConfig):
    """The generate stage: Stage I compositions, then Stage II structures from DiffCSP or ConditionCDVAE+."""

    generator: Literal["crysvcd", "condition-cdvae-plus"] = Field(
        "crysvcd", description="Stage II: DiffCSP (crysvcd) or ConditionCDVAE+ on the Stage I compositions."
    )
    composition_model: CompositionModelConfig = Field(default_factory=CompositionModelConfig)
    structure_model: StructureModelConfig = Field(default_factory=StructureModelConfig)
    cdvae_model: CDVAEModelConfig = Field(default_factory=CDVAEModelConfig)

    @property
    def stage2(self) -> StructureModelConfig | CDVAEModelConfig:
        """The model settings of the configured Stage II generator."""
        return self.cdvae_model if self.generator == "condition-cdvae-plus" else self.structure_model

    def with_checkpoints(self, composition: str, structure: str) -> GenerationConfig:
        """The same generation from other checkpoints (``structure`` for the configured Stage II generator)."""
        stage2 = "cdvae_model" if self.generator == "condition-cdvae-plus" else "structure_model"
        return self.model_copy(
            update={
                "composition_model": self.composition_model.model_copy(update={"checkpoint": composition}),
                stage2: self.stage2.model_copy(update={"checkpoint": structure}),
            }
        )


class DFTStage(DFTStageConfig):
    enabled: bool = Field(False, description="Relax the best candidates of each round with VASP.")


class KappaStage(KappaStageConfig):
    enabled: bool = Field(
        False, description="Compute kappa of the best candidates of each round (a log10_kappa label the models learn)."
    )


class CampaignConfig(StrictConfig):
    """Everything a campaign needs: targets, sizes, thresholds, models, device and the stage configs."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=True)  # the conditions validator names a non-finite one

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
    device: str = "auto"
    seed: int = 0
    reference_dataset: str = Field(
        "embedded:mp_20_mini", description="Known structures for novelty and hull references: a path or a name."
    )
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    screening: ScreeningConfig = Field(default_factory=ScreeningConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    finetune: bool = True
    evaluate: bool = True
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    dft: DFTStage = Field(default_factory=DFTStage)
    kappa: KappaStage = Field(default_factory=KappaStage)

    @model_validator(mode="before")
    @classmethod
    def _moved_fields(cls, raw):
        """Accept the places fields had before the stage configs: top-level ``mlip`` (now ``screening.mlip``) and
        ``generator``, ``composition_model``, ``structure_model``, ``cdvae_model`` (now under ``generation``)."""
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        moves = [("mlip", "screening", "mlip")] + [(name, "generation", name) for name in GENERATION_FIELDS]
        for old, section, new in moves:
            if old not in raw:
                continue
            value = raw.pop(old)
            block = raw.get(section)
            block = dict(block) if isinstance(block, dict) else {}
            if new in block and block[new] != value:
                raise ValueError(f"{old} is given twice, here and as {section}.{new}, with different values")
            raw[section] = {**block, new: value}
        return raw

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", value):
            raise ValueError("use lowercase letters, digits and dashes (it names Prefect runs and folders)")
        return value

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
        if "kappa" in value:  # the models learn log10(kappa / W/m/K), see crysloop.kappa.targets
            value = {**{k: v for k, v in value.items() if k != "kappa"}, "log10_kappa": math.log10(value["kappa"])}
        return value

    @model_validator(mode="after")
    def _known_conditions(self) -> CampaignConfig:
        from crysloop.campaign.generation import check_conditions, model_condition_names

        if set(self.conditions) <= set(FINETUNE_LABELS):
            return self
        try:
            known = model_condition_names(
                self.generation.composition_model.checkpoint, self.generation.structure_model.checkpoint
            )
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
    """Validate a campaign configuration (a parsed YAML file or a stored one); problems name their fields."""
    try:
        return CampaignConfig.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"{source}: {problems(exc)}") from None
