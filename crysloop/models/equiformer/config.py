"""Typed configuration of the EquiformerV2-style network and its named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from crysloop.errors import InputError


@dataclass(frozen=True)
class EquiformerConfig:
    """Size and graph settings of an EquiformerV2-style network (Liao et al., ICLR 2024).

    ``lmax``/``mmax``: highest degree of the spherical-harmonic features and highest order kept in the edge frames.
    ``avg_degree`` divides the summed edge-degree embedding; set it from the training data (``average_degree``).
    ``neighbor_tolerance`` (Angstrom) keeps every neighbour tied with the ``max_neighbors``-th one.
    """

    num_layers: int = 8
    channels: int = 128
    lmax: int = 4
    mmax: int = 2
    num_heads: int = 8
    attn_hidden_channels: int = 64
    attn_alpha_channels: int = 64
    attn_value_channels: int = 16
    ffn_hidden_channels: int = 128
    edge_channels: int = 128
    num_rbf: int = 128
    grid_resolution: int = 18
    cutoff: float = 7.0
    max_neighbors: int = 20
    neighbor_tolerance: float = 1e-3
    avg_degree: float = 20.0
    drop_path_rate: float = 0.05

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> EquiformerConfig:
        """``paper`` (8 blocks, 128 channels, lmax 4, mmax 2, 8 heads; for a GPU), ``cpu-small`` (trains a CDVAE on
        two CPU cores in minutes) and ``tiny`` (for tests)."""
        presets: dict[str, dict[str, Any]] = {
            "paper": {},
            "cpu-small": {
                "num_layers": 2,
                "channels": 32,
                "lmax": 2,
                "mmax": 1,
                "num_heads": 2,
                "attn_hidden_channels": 16,
                "attn_alpha_channels": 8,
                "attn_value_channels": 8,
                "ffn_hidden_channels": 32,
                "edge_channels": 32,
                "num_rbf": 32,
                "grid_resolution": 8,
                "drop_path_rate": 0.0,
            },
            "tiny": {
                "num_layers": 2,
                "channels": 8,
                "lmax": 2,
                "mmax": 1,
                "num_heads": 2,
                "attn_hidden_channels": 8,
                "attn_alpha_channels": 4,
                "attn_value_channels": 4,
                "ffn_hidden_channels": 8,
                "edge_channels": 8,
                "num_rbf": 8,
                "grid_resolution": 10,
                "drop_path_rate": 0.0,
            },
        }
        if name not in presets:
            raise InputError(f"unknown EquiformerV2 preset {name!r}; choose one of {', '.join(presets)}")
        return replace(cls(**presets[name]), **overrides)

    def __post_init__(self) -> None:
        if not 0 <= self.mmax <= self.lmax:
            raise InputError(f"EquiformerV2 needs 0 <= mmax <= lmax, got lmax {self.lmax}, mmax {self.mmax}")
        if self.lmax < 1:
            raise InputError("EquiformerV2 needs lmax >= 1 to output l=1 vectors")
        if self.grid_resolution % 2 or self.grid_resolution < 2 * (self.lmax + 1):
            raise InputError(f"EquiformerV2 grid_resolution must be even and >= 2 (lmax + 1) = {2 * (self.lmax + 1)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for checkpoints loaded with ``weights_only=True``."""
        return asdict(self)
