"""Inputs of the network: radial basis of edge lengths, per-edge scalar features, radial MLPs, and the
edge-degree embedding that seeds the higher-degree node features from the neighbour directions."""

from __future__ import annotations

import torch
from torch import nn


class GaussianBasis(nn.Module):
    """Gaussians with centres evenly spaced on [0, cutoff] and width equal to the spacing."""

    def __init__(self, num: int, cutoff: float) -> None:
        super().__init__()
        self.register_buffer("centers", torch.linspace(0.0, cutoff, num), persistent=False)
        self.width = cutoff / (num - 1)

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        """(E,) -> (E, num)."""
        return torch.exp(-0.5 * ((distances[:, None] - self.centers.to(distances.dtype)) / self.width) ** 2)


class RadialMLP(nn.Module):
    """Linear-LayerNorm-SiLU twice, then a linear output: the edge-wise weights of an SO(2) convolution."""

    def __init__(self, in_features: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.LayerNorm(hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.LayerNorm(hidden),
            nn.SiLU(),
            nn.Linear(hidden, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class EdgeFeatures(nn.Module):
    """Invariant edge inputs of a radial MLP: the distance basis (with the condition, if any) concatenated with
    embeddings of the centre's and the neighbour's species distributions."""

    def __init__(self, num_species: int, edge_channels: int) -> None:
        super().__init__()
        self.source = nn.Linear(num_species, edge_channels, bias=False)
        self.target = nn.Linear(num_species, edge_channels, bias=False)

    def forward(self, edge_scalars: torch.Tensor, atom_feats: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        centre, neighbour = edge_index
        return torch.cat([edge_scalars, self.source(atom_feats)[neighbour], self.target(atom_feats)[centre]], dim=1)


class EdgeDegreeEmbedding(nn.Module):
    """Sum over neighbours of radial features placed on the m=0 coefficients of the edge frame and rotated back
    to the global frame, divided by the average degree: gives every atom direction-aware l>0 features."""

    def __init__(
        self, num_species: int, scalar_dim: int, edge_channels: int, channels: int, lmax: int, avg_degree: float
    ) -> None:
        super().__init__()
        self.lmax, self.channels, self.avg_degree = lmax, channels, avg_degree
        self.edge_features = EdgeFeatures(num_species, edge_channels)
        self.radial = RadialMLP(scalar_dim + 2 * edge_channels, edge_channels, (lmax + 1) * channels)

    def forward(
        self, edge_scalars: torch.Tensor, atom_feats: torch.Tensor, edge_index: torch.Tensor, rotation: torch.Tensor
    ) -> torch.Tensor:
        """(N, K, C) features to add to the node embedding; ``rotation`` is (E, K', K) from ``EdgeRotation``."""
        radial = self.radial(self.edge_features(edge_scalars, atom_feats, edge_index))
        local = radial.reshape(-1, self.lmax + 1, self.channels)  # the m=0 rows come first in the edge frame
        messages = rotation[:, : self.lmax + 1].transpose(1, 2) @ local  # (E, K, C)
        out = messages.new_zeros(atom_feats.shape[0], *messages.shape[1:])
        return out.index_add_(0, edge_index[0], messages) / self.avg_degree
