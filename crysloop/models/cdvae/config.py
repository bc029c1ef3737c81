"""Typed configuration of a ConditionCDVAE+ model: encoder choice, latent size, noise schedules, loss weights,
conditions and the training-set statistics (scalers) the model needs to decode."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from crysloop.errors import InputError
from crysloop.models.slab import SlabGeometry

EncoderKind = Literal["equiformer", "dimenet"]
FORMULA = "formula"  # the condition name of a chemical formula (learned embedding of its composition)


@dataclass(frozen=True)
class CDVAEConfig:
    """Everything that defines a ConditionCDVAE+ model; defaults follow CDVAE (Xie et al. 2022) and the issue.

    ``conditions`` names the conditions: numeric property columns and/or ``formula``. The statistics fields
    (``lattice_stats``, ``property_stats``, ``max_atoms``, ``elements``, ``mean_num_atoms``, ``mean_degree``, and
    for ``semi_periodic`` models the slab geometry ``slab_c``, ``slab_half_width``) are computed from the training
    data by ``training.dataset_statistics`` and travel in the checkpoint.
    """

    encoder: EncoderKind = "equiformer"
    equiformer_preset: str = "paper"
    latent_dim: int = 256
    hidden_dim: int = 256
    head_layers: int = 2
    # DimeNet++ (CDVAE's invariant encoder)
    dimenet_hidden: int = 128
    dimenet_blocks: int = 4
    dimenet_int_emb: int = 64
    dimenet_basis_emb: int = 8
    dimenet_out_emb: int = 256
    dimenet_spherical: int = 7
    dimenet_radial: int = 6
    # graph
    cutoff: float = 7.0
    max_neighbors: int = 20
    num_species: int = 100
    # noise schedules (geometric)
    sigma_begin: float = 10.0
    sigma_end: float = 0.01
    num_noise_levels: int = 50
    type_sigma_begin: float = 5.0
    type_sigma_end: float = 0.01
    # loss weights
    cost_natom: float = 1.0
    cost_lattice: float = 10.0
    cost_composition: float = 1.0
    cost_coord: float = 10.0
    cost_type: float = 1.0
    cost_kl: float = 0.01
    cost_property: float = 1.0
    teacher_forcing_fraction: float = 0.1
    # conditions
    conditions: tuple[str, ...] = ()
    cond_dim: int = 64
    num_gaussians: int = 32
    fusion_rank: int = 4
    cond_drop_prob: float = 0.1
    # semi-periodic (slab) generation on layered data: c fixed, atoms kept inside the slab region (models/slab.py)
    semi_periodic: bool = False
    # Langevin decoding
    langevin_steps_per_level: int = 100
    langevin_step_lr: float = 1e-4
    # training
    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-4
    plateau_patience: int = 10
    plateau_factor: float = 0.6
    grad_clip: float = 1.0
    # data statistics (scalers), filled from the training set
    property_stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    lattice_stats: tuple[tuple[float, ...], tuple[float, ...]] = ((0.0,) * 6, (1.0,) * 6)
    max_atoms: int = 20
    elements: tuple[int, ...] = ()
    mean_num_atoms: float = 0.0
    mean_degree: float = 0.0
    slab_c: float = 0.0
    slab_half_width: float = 0.0

    @property
    def slab(self) -> SlabGeometry | None:
        """The fixed slab geometry of a semi-periodic model (None if 3D-periodic or not yet fitted to data)."""
        if not self.semi_periodic or self.slab_c <= 0:
            return None
        return SlabGeometry(self.slab_c, self.slab_half_width)

    @property
    def scalar_conditions(self) -> tuple[str, ...]:
        """The numeric property conditions, in the column order of the property tensors."""
        return tuple(name for name in self.conditions if name != FORMULA)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> CDVAEConfig:
        """Named sizes: ``paper`` (EquiformerV2 paper preset, 256-d latent, for a GPU), ``cpu-small`` (trains a
        useful model in ~10 min on 2 CPU cores), ``cpu-tiny`` (tests)."""
        presets: dict[str, dict[str, Any]] = {
            "paper": {},
            "cpu-small": {
                "equiformer_preset": "cpu-small",
                "hidden_dim": 128,
                "dimenet_hidden": 64,
                "dimenet_blocks": 2,
                "dimenet_int_emb": 32,
                "dimenet_out_emb": 64,
                "dimenet_spherical": 4,
                "cond_dim": 32,
                "batch_size": 32,
            },
            "cpu-tiny": {
                "equiformer_preset": "tiny",
                "latent_dim": 16,
                "hidden_dim": 16,
                "head_layers": 1,
                "dimenet_hidden": 16,
                "dimenet_blocks": 1,
                "dimenet_int_emb": 8,
                "dimenet_basis_emb": 4,
                "dimenet_out_emb": 16,
                "dimenet_spherical": 3,
                "dimenet_radial": 4,
                "cond_dim": 8,
                "num_gaussians": 8,
                "num_noise_levels": 5,
                "langevin_steps_per_level": 2,
                "cutoff": 5.0,
                "max_neighbors": 12,
                "batch_size": 8,
            },
        }
        if name not in presets:
            raise InputError(f"unknown ConditionCDVAE+ preset {name!r}; choose one of {', '.join(presets)}")
        return cls(**{**presets[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint."""
        data = asdict(self)
        data["conditions"] = list(self.conditions)
        data["elements"] = list(self.elements)
        data["property_stats"] = {k: list(v) for k, v in self.property_stats.items()}
        data["lattice_stats"] = [list(self.lattice_stats[0]), list(self.lattice_stats[1])]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CDVAEConfig:
        """Inverse of ``to_dict``; ignores keys this version does not know."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["conditions"] = tuple(known.get("conditions", ()))
        known["elements"] = tuple(known.get("elements", ()))
        known["property_stats"] = {k: tuple(v) for k, v in known.get("property_stats", {}).items()}
        if "lattice_stats" in known:
            known["lattice_stats"] = tuple(tuple(float(x) for x in row) for row in known["lattice_stats"])
        return cls(**known)
