"""Typed configuration of a DiffCSP model: network size, noise schedules, conditioning and training settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from crysloop.errors import InputError
from crysloop.models.slab import SlabGeometry

Mode = Literal["csp", "abinitio"]
DropMode = Literal["joint", "independent"]
ClipMode = Literal["value", "norm"]


# crysloop's settings before the fidelity fixes (issue 17); DiffCSPConfig(**EARLIER_SETTINGS) trains as it did then
EARLIER_SETTINGS = {
    "self_edges": False,
    "cost_type": 1.0,
    "grad_clip_mode": "norm",
    "property_drop_mode": "independent",
}


@dataclass(frozen=True)
class DiffCSPConfig:
    """Everything that defines a DiffCSP model and how it trains; the defaults are DiffCSP's (Jiao et al. 2023).

    ``mode="csp"`` predicts structures for given compositions; ``mode="abinitio"`` also diffuses atom types and,
    with ``csp_fraction`` > 0, learns both tasks in one network (a flag tells it whether types are given).
    ``properties`` name the scalar conditions; ``property_stats`` holds their (mean, std) for normalisation.
    Classifier-free guidance: ``property_drop_mode="joint"`` (CrysVCD) drops all conditions of a crystal together
    with probability ``property_drop_prob``, so the unconditional branch is trained on that share of crystals;
    ``"independent"`` drops each condition on its own coin (crysloop's earlier behaviour).
    ``semi_periodic`` (layered data): c stays fixed at ``slab_c`` and the atoms inside the slab region
    (``slab_half_width``, both taken from the training data), see ``crysloop.models.slab``.
    ``cost_type`` 20 and ``grad_clip`` 0.5 per gradient value (``grad_clip_mode="value"``) are DiffCSP's ab initio
    settings; ``cost_type=1`` and ``grad_clip_mode="norm"`` (clip the global norm) are the earlier ones.
    ``self_edges`` keeps DiffCSP's i -> i messages in the denoiser's graph (False: the earlier graph without them).
    ``EARLIER_SETTINGS`` holds all of crysloop's earlier choices, for before/after benchmarks.
    """

    mode: Mode = "csp"
    hidden_dim: int = 512
    num_layers: int = 6
    time_dim: int = 256
    num_freqs: int = 128
    max_atomic_number: int = 100
    timesteps: int = 1000
    sigma_begin: float = 0.005
    sigma_end: float = 0.5
    self_edges: bool = True
    cost_lattice: float = 1.0
    cost_coord: float = 1.0
    cost_type: float = 20.0
    csp_fraction: float = 0.5
    properties: tuple[str, ...] = ()
    property_stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    property_drop_prob: float = 0.25
    property_drop_mode: DropMode = "joint"
    semi_periodic: bool = False
    slab_c: float = 0.0
    slab_half_width: float = 0.0
    # training
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 0.5
    grad_clip_mode: ClipMode = "value"
    ema_decay: float = 0.999
    plateau_patience: int = 30
    plateau_factor: float = 0.6
    min_lr: float = 1e-4

    @property
    def slab(self) -> SlabGeometry | None:
        """The fixed slab geometry of a semi-periodic model (None if 3D-periodic or not yet fitted to data)."""
        if not self.semi_periodic or self.slab_c <= 0:
            return None
        return SlabGeometry(self.slab_c, self.slab_half_width)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DiffCSPConfig:
        """Named sizes: ``diffcsp`` (the paper's network, ~12M parameters), ``gpu-medium`` (~3M), ``cpu-small``
        (~0.5M, a few MB, trains on a laptop CPU), ``cpu-tiny`` (for tests)."""
        presets: dict[str, dict[str, Any]] = {
            "diffcsp": {},
            "gpu-medium": {"hidden_dim": 256, "num_layers": 6, "time_dim": 128, "num_freqs": 64, "batch_size": 512},
            "cpu-small": {"hidden_dim": 128, "num_layers": 4, "time_dim": 64, "num_freqs": 32, "batch_size": 128},
            "cpu-tiny": {
                "hidden_dim": 32,
                "num_layers": 2,
                "time_dim": 16,
                "num_freqs": 8,
                "batch_size": 32,
                "timesteps": 100,
            },
        }
        if name not in presets:
            raise InputError(f"unknown DiffCSP preset {name!r}; choose one of {', '.join(presets)}")
        return cls(**{**presets[name], **overrides})

    def with_properties(self, names: tuple[str, ...], stats: dict[str, tuple[float, float]]) -> DiffCSPConfig:
        """This config with extra condition names appended (existing ones keep their statistics)."""
        added = tuple(name for name in names if name not in self.properties)
        merged = {**{k: tuple(v) for k, v in stats.items() if k in added}, **self.property_stats}
        return replace(self, properties=self.properties + added, property_stats=merged)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint."""
        data = asdict(self)
        data["properties"] = list(self.properties)
        data["property_stats"] = {k: list(v) for k, v in self.property_stats.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiffCSPConfig:
        """Inverse of ``to_dict``; ignores keys this version does not know."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["properties"] = tuple(known.get("properties", ()))
        known["property_stats"] = {k: tuple(v) for k, v in known.get("property_stats", {}).items()}
        return cls(**known)
