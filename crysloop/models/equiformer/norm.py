"""Equivariant layer norm of spherical-harmonic features (EquiformerV2's default RMS variant over all degrees)."""

from __future__ import annotations

import torch
from torch import nn

from crysloop.models.equiformer.linear import coefficient_degrees


class EquivariantLayerNorm(nn.Module):
    """Centre the l=0 channels, divide every coefficient by one root-mean-square norm over channels and degrees
    (each degree weighted equally, l=0 included, so that vanishing l>0 features are not blown up), then a learned
    scale per degree and channel and a bias on l=0 only (a shift of l>0 would break equivariance)."""

    def __init__(self, lmax: int, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(lmax + 1, channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        degrees = coefficient_degrees(lmax)
        self.register_buffer("degrees", degrees, persistent=False)
        self.register_buffer("balance", 1.0 / ((2 * degrees + 1) * (lmax + 1)).double(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K, C) -> (N, K, C)."""
        x = torch.cat([x[:, :1] - x[:, :1].mean(dim=-1, keepdim=True), x[:, 1:]], dim=1)
        power = torch.einsum("nkc,k->n", x.pow(2), self.balance.to(x.dtype)) / x.shape[-1]
        x = x * torch.rsqrt(power + self.eps)[:, None, None] * self.scale[self.degrees]
        return torch.cat([x[:, :1] + self.bias, x[:, 1:]], dim=1)
