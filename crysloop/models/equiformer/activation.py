"""Separable S2 activation: SiLU on the scalar channel, and SiLU applied point-wise to the features sampled on a
spherical grid (e3nn's ToS2Grid/FromS2Grid) for the higher degrees. Equivariant up to the grid's quadrature error."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from e3nn import o3
from torch import nn


class SmoothLeakyReLU(nn.Module):
    """EquiformerV2's smooth leaky ReLU, x (1+a)/2 + x (1-a)/2 (2 sigmoid(x) - 1), for attention logits."""

    def __init__(self, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.alpha = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (1 + self.alpha) * x + 0.5 * (1 - self.alpha) * x * (2 * torch.sigmoid(x) - 1)


class _GridSiLU(torch.autograd.Function):
    """``silu(x^T @ to_grid) @ from_grid``, transposed back, keeping only ``x`` for the backward pass and recomputing
    the grid values: the grid tensors (edges x channels x grid points) would otherwise dominate training memory.
    Channels lead the grid axis so that both products are single matrix multiplications."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, to_grid: torch.Tensor, from_grid: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, to_grid, from_grid)
        grid = x.transpose(-1, -2).contiguous() @ to_grid  # (..., C, G)
        return (F.silu(grid) @ from_grid).transpose(-1, -2)  # (..., K', C)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        x, to_grid, from_grid = ctx.saved_tensors
        grid = x.transpose(-1, -2).contiguous() @ to_grid
        grad_grid = torch.ops.aten.silu_backward(grad.transpose(-1, -2).contiguous() @ from_grid.T, grid)
        return (grad_grid @ to_grid.T).transpose(-1, -2), None, None


class SeparableS2Activation(nn.Module):
    """Point-wise SiLU on a (resolution x resolution+1) spherical grid for the given coefficient subset."""

    def __init__(self, lmax: int, resolution: int, index: torch.Tensor | None = None) -> None:
        super().__init__()
        size = (lmax + 1) ** 2
        index = torch.arange(size) if index is None else index
        grid = (resolution, resolution + 1)
        f64 = torch.float64  # float64 constants, passed explicitly: the default dtype is process-wide
        to_grid = o3.ToS2Grid(lmax, grid, normalization="integral", dtype=f64)
        from_grid = o3.FromS2Grid(grid, lmax, normalization="integral", dtype=f64)
        to_matrix = to_grid(torch.eye(size, dtype=f64)).reshape(size, -1)  # (K, G)
        points = to_matrix.shape[1]
        from_matrix = from_grid(torch.eye(points, dtype=f64).reshape(points, *grid))  # (G, K)
        self.register_buffer("to_grid", to_matrix[index].contiguous(), persistent=False)  # (K', G)
        self.register_buffer("from_grid", from_matrix[:, index].contiguous(), persistent=False)  # (G, K')

    def forward(self, scalars: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``scalars`` (..., C) and ``x`` (..., K', C) -> (..., K', C); coefficient 0 must be l=0."""
        out = _GridSiLU.apply(x, self.to_grid.to(x.dtype), self.from_grid.to(x.dtype))
        return torch.cat([F.silu(scalars).unsqueeze(-2), out[..., 1:, :]], dim=-2)
