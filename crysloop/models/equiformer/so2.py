"""Edge-aligned frames and SO(2) convolutions (EquiformerV2's eSCN trick).

Each edge direction is rotated onto e3nn's polar (y) axis with Wigner-D matrices; there a rotation-equivariant
convolution only has to be equivariant to rotations about the axis, so it mixes degrees l within each order m
(the +m/-m pair as one complex number) and orders above ``mmax`` are dropped.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import nn

from crysloop.models.equiformer.linear import edge_frame_index, wigner_d_float64

# A fixed generic rotation applied before measuring edge angles, so that the polar singularity of (alpha, beta)
# sits on an irrational direction instead of a lattice axis; the frame's roll about the edge is free anyway.
_GENERIC_ANGLES = (0.4142, 1.3723, 2.7183)


def _axis_rotation(l: int, angle: torch.Tensor) -> torch.Tensor:
    """Wigner-D (..., 2l+1, 2l+1) of a rotation by ``angle`` about the y axis: cos/sin pairs of m and -m."""
    freq = torch.arange(l, -l - 1, -1, dtype=angle.dtype, device=angle.device)
    idx = torch.arange(2 * l + 1, device=angle.device)
    mat = angle.new_zeros(*angle.shape, 2 * l + 1, 2 * l + 1)
    mat[..., idx, idx.flip(0)] = torch.sin(freq * angle[..., None])
    mat[..., idx, idx] = torch.cos(freq * angle[..., None])  # after the sines: m=0 sits on both diagonals
    return mat


class EdgeRotation(nn.Module):
    """Per-edge Wigner-D matrices taking global coefficients into the edge frame, truncated at ``mmax``."""

    def __init__(self, lmax: int, mmax: int) -> None:
        super().__init__()
        self.lmax = lmax
        generic = torch.tensor(_GENERIC_ANGLES, dtype=torch.float64)
        self.register_buffer("generic_matrix", o3.angles_to_matrix(*generic), persistent=False)
        # D(rotation about x by b) = P D(rotation about y by b) P^T with P the D of the rotation sending y to x.
        y_to_x = o3.matrix_to_angles(
            torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
        )
        for l in range(lmax + 1):
            swap, generic_d = wigner_d_float64(l, *y_to_x), wigner_d_float64(l, *generic)
            self.register_buffer(f"swap_{l}", swap, persistent=False)
            self.register_buffer(f"generic_{l}", generic_d, persistent=False)
        self.register_buffer("index", edge_frame_index(lmax, mmax), persistent=False)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        """(E, 3) edge vectors -> (E, K', K): rows are the kept edge-frame coefficients, columns global ones."""
        dtype = vectors.dtype
        alpha, beta = o3.xyz_to_angles(vectors @ self.generic_matrix.to(dtype).T)
        size = (self.lmax + 1) ** 2
        full = vectors.new_zeros(len(vectors), size, size)
        for l in range(self.lmax + 1):
            swap = getattr(self, f"swap_{l}").to(dtype)
            frame = _axis_rotation(l, alpha) @ swap @ _axis_rotation(l, beta) @ swap.T  # D(alpha, beta, 0)
            block = slice(l * l, (l + 1) ** 2)
            full[:, block, block] = frame.transpose(-1, -2) @ getattr(self, f"generic_{l}").to(dtype)
        return full[:, self.index]


class SO2Convolution(nn.Module):
    """Linear map in the edge frame, per order m: full mixing of (l, channel) at m=0, a complex-valued one for
    each +m/-m pair. Optional per-edge radial weights scale the inputs; ``extra_scalars`` extra invariant outputs
    come from the m=0 block."""

    def __init__(self, in_channels: int, out_channels: int, lmax: int, mmax: int, extra_scalars: int = 0) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.lmax, self.mmax, self.extra_scalars = lmax, mmax, extra_scalars
        self.m0 = nn.Linear((lmax + 1) * in_channels, (lmax + 1) * out_channels + extra_scalars)
        self.mixers = nn.ModuleList(
            nn.Linear((lmax - m + 1) * in_channels, 2 * (lmax - m + 1) * out_channels, bias=False)
            for m in range(1, mmax + 1)
        )
        for mixer in self.mixers:
            mixer.weight.data.mul_(1.0 / math.sqrt(2.0))

    @property
    def radial_size(self) -> int:
        """Number of per-edge radial weights this convolution consumes."""
        return sum(self.lmax - m + 1 for m in range(self.mmax + 1)) * self.in_channels

    def forward(self, x: torch.Tensor, radial: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(E, K', C_in) edge-frame features -> (E, K', C_out) and (E, extra_scalars)."""
        num_edges = x.shape[0]
        n0 = self.lmax + 1
        weights = (
            radial.split([(self.lmax - m + 1) * self.in_channels for m in range(self.mmax + 1)], dim=1)
            if radial is not None
            else [None] * (self.mmax + 1)
        )
        x0 = x[:, :n0].reshape(num_edges, -1)
        if weights[0] is not None:
            x0 = x0 * weights[0]
        y0 = self.m0(x0)
        extra, y0 = y0[:, : self.extra_scalars], y0[:, self.extra_scalars :]
        blocks = [y0.reshape(num_edges, n0, self.out_channels)]
        start = n0
        for m, mixer in enumerate(self.mixers, start=1):
            nm = self.lmax - m + 1
            plus = x[:, start : start + nm].reshape(num_edges, -1)
            minus = x[:, start + nm : start + 2 * nm].reshape(num_edges, -1)
            pair = torch.stack([plus, minus])  # (2, E, nm * C_in)
            if weights[m] is not None:
                pair = pair * weights[m]
            (real_p, imag_p), (real_n, imag_n) = (half.chunk(2, dim=1) for half in mixer(pair))
            blocks += [(real_p - imag_n).reshape(num_edges, nm, -1), (imag_p + real_n).reshape(num_edges, nm, -1)]
            start += 2 * nm
        return torch.cat(blocks, dim=1), extra
