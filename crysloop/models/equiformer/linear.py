"""Coefficient layouts of spherical-harmonic features and the per-degree linear map between channel counts.

Node features are (N, (lmax+1)^2, C) in e3nn's order (index l^2 + l + m); the l=1 block is Cartesian (x, y, z).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def float64_defaults() -> Iterator[None]:
    """Build e3nn constants (generators, grids) in float64: they follow the default dtype, and float32 constants
    leave ~1e-7 noise where symmetry demands exact zeros, which the layer norms then amplify."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def coefficient_degrees(lmax: int) -> torch.Tensor:
    """Degree l of every coefficient in e3nn's order, length (lmax+1)^2."""
    return torch.cat([torch.full((2 * l + 1,), l, dtype=torch.long) for l in range(lmax + 1)])


def edge_frame_index(lmax: int, mmax: int) -> torch.Tensor:
    """e3nn indices of the coefficients kept in an edge frame (|m| <= mmax), ordered by m: first m=0 for
    l = 0..lmax, then for each m >= 1 the +m block and the -m block (l = m..lmax each)."""
    index = [l * l + l for l in range(lmax + 1)]
    for m in range(1, mmax + 1):
        index += [l * l + l + m for l in range(m, lmax + 1)]
        index += [l * l + l - m for l in range(m, lmax + 1)]
    return torch.tensor(index, dtype=torch.long)


class SO3Linear(nn.Module):
    """Equivariant linear map: one weight matrix per degree l, a bias on l=0 only."""

    def __init__(self, in_channels: int, out_channels: int, lmax: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_channels)
        self.weight = nn.Parameter(torch.empty(lmax + 1, in_channels, out_channels).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("degrees", coefficient_degrees(lmax), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K, C_in) -> (N, K, C_out)."""
        out = torch.einsum("nki,kio->nko", x, self.weight[self.degrees])
        return torch.cat([out[:, :1] + self.bias, out[:, 1:]], dim=1)
