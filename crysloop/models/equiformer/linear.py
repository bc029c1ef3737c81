"""Coefficient layouts of spherical-harmonic features and the per-degree linear map between channel counts.

Node features are (N, (lmax+1)^2, C) in e3nn's order (index l^2 + l + m); the l=1 block is Cartesian (x, y, z).
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import nn


def so3_generators_float64(l: int) -> torch.Tensor:
    """Real so(3) generators (3, 2l+1, 2l+1) of degree ``l`` in float64, as e3nn's ``so3_generators``.

    e3nn builds them in the default dtype; float32 constants leave ~1e-7 noise where symmetry demands exact zeros,
    which the layer norms then amplify, and changing torch's process-wide default dtype is not thread-safe.
    """
    m = torch.arange(-l, l, dtype=torch.float64)
    raising = torch.diag(-torch.sqrt(l * (l + 1) - m * (m + 1)), diagonal=-1)
    m = torch.arange(-l + 1, l + 1, dtype=torch.float64)
    lowering = torch.diag(torch.sqrt(l * (l + 1) - m * (m - 1)), diagonal=1)
    m = torch.arange(-l, l + 1, dtype=torch.float64)
    su2 = torch.stack([0.5 * (raising + lowering) + 0j, torch.diag(1j * m), -0.5j * (raising - lowering)])
    basis = o3.change_basis_real_to_complex(l, dtype=torch.float64)
    return torch.real(torch.conj(basis.T) @ su2 @ basis)


def wigner_d_float64(l: int, alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """e3nn's ``wigner_D`` (Y-X-Y Euler angles) computed in float64 whatever the default dtype."""
    x = so3_generators_float64(l)
    alpha, beta, gamma = (a.to(torch.float64)[..., None, None] % (2 * math.pi) for a in (alpha, beta, gamma))
    return torch.matrix_exp(alpha * x[1]) @ torch.matrix_exp(beta * x[0]) @ torch.matrix_exp(gamma * x[1])


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
