"""Equivariant layer norm of spherical-harmonic features (EquiformerV2's separable variant)."""

from __future__ import annotations

import torch
from torch import nn

from crysloop.models.equiformer.linear import coefficient_degrees


class EquivariantLayerNorm(nn.Module):
    """l=0: ordinary layer norm over channels. l>0: divide by the root-mean-square norm over channels and degrees
    (each degree weighted equally), then a learned scale per degree and channel; no shift, which would break
    equivariance."""

    def __init__(self, lmax: int, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.scalar_norm = nn.LayerNorm(channels, eps=eps)
        self.scale = nn.Parameter(torch.ones(lmax, channels))
        degrees = coefficient_degrees(lmax)[1:]
        self.register_buffer("degrees", degrees - 1, persistent=False)
        self.register_buffer("balance", 1.0 / ((2 * degrees + 1) * lmax).double(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K, C) -> (N, K, C)."""
        scalars = self.scalar_norm(x[:, 0])
        rest = x[:, 1:]
        power = torch.einsum("nkc,k->n", rest.pow(2), self.balance.to(x.dtype)) / x.shape[-1]
        rest = rest * torch.rsqrt(power + self.eps)[:, None, None] * self.scale[self.degrees]
        return torch.cat([scalars.unsqueeze(1), rest], dim=1)
