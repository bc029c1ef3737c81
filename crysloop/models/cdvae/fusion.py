"""Low-rank Multimodal Fusion (Liu et al., ACL 2018) of the latent z with the condition embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class LowRankFusion(nn.Module):
    """z_c = sum_r w_r prod_m ([h_m; 1] W_m^(r)) + b: the full tensor-product fusion of M modalities with its
    weight tensor factorised into ``rank`` modality-specific factors (appending 1 keeps the unimodal terms)."""

    def __init__(self, dims: Sequence[int], out_dim: int, rank: int = 4):
        super().__init__()
        self.factors = nn.ParameterList(
            nn.Parameter(nn.init.xavier_normal_(torch.empty(rank, dim + 1, out_dim))) for dim in dims
        )
        self.rank_weights = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, rank)))
        self.bias = nn.Parameter(torch.zeros(out_dim))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """``inputs`` (B, d_m) in the order of ``dims`` -> fused (B, out_dim)."""
        if len(inputs) != len(self.factors):
            raise ValueError(f"LowRankFusion expects {len(self.factors)} modalities, got {len(inputs)}")
        fused = None
        for h, factor in zip(inputs, self.factors, strict=True):
            h1 = torch.cat([h, h.new_ones(len(h), 1)], dim=-1)
            projected = torch.einsum("bd,rdo->rbo", h1, factor)
            fused = projected if fused is None else fused * projected
        return torch.einsum("r,rbo->bo", self.rank_weights[0], fused) + self.bias
