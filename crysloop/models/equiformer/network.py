"""EquiformerV2-style equivariant network on crystals: per-atom invariant scalars and Cartesian l=1 vectors from
soft atom types, fractional coordinates and lattices, optionally conditioned on a graph-level vector."""

from __future__ import annotations

import torch
from torch import nn

from crysloop.models.equiformer.activation import SeparableS2Activation
from crysloop.models.equiformer.attention import GraphAttention
from crysloop.models.equiformer.config import EquiformerConfig
from crysloop.models.equiformer.embedding import EdgeDegreeEmbedding, GaussianBasis
from crysloop.models.equiformer.graph import capped_radius_graph
from crysloop.models.equiformer.linear import SO3Linear
from crysloop.models.equiformer.norm import EquivariantLayerNorm
from crysloop.models.equiformer.so2 import EdgeRotation

__all__ = ["EquiformerConfig", "EquiformerV2", "graph_readout"]


class DropPath(nn.Module):
    """Stochastic depth: in training, drop a residual branch for a whole crystal with probability ``rate``."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = torch.rand(num_graphs, device=x.device) >= self.rate
        return x * (keep.to(x.dtype) / (1.0 - self.rate))[batch][:, None, None]


class FeedForward(nn.Module):
    """Per-atom feed-forward: per-degree linear, separable S2 activation, per-degree linear."""

    def __init__(self, config: EquiformerConfig) -> None:
        super().__init__()
        c = config
        self.gate = nn.Linear(c.channels, c.ffn_hidden_channels)
        self.inner = SO3Linear(c.channels, c.ffn_hidden_channels, c.lmax)
        self.activation = SeparableS2Activation(c.lmax, c.grid_resolution)
        self.outer = SO3Linear(c.ffn_hidden_channels, c.channels, c.lmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(self.activation(self.gate(x[:, 0]), self.inner(x)))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attention(norm(x)), then x + feed-forward(norm(x)), each branch with drop path."""

    def __init__(self, config: EquiformerConfig, num_species: int, scalar_dim: int) -> None:
        super().__init__()
        self.norm_attention = EquivariantLayerNorm(config.lmax, config.channels)
        self.attention = GraphAttention(config, num_species, scalar_dim)
        self.norm_ffn = EquivariantLayerNorm(config.lmax, config.channels)
        self.ffn = FeedForward(config)
        self.drop_path = DropPath(config.drop_path_rate)

    def forward(
        self,
        x: torch.Tensor,
        atom_feats: torch.Tensor,
        edge_index: torch.Tensor,
        edge_scalars: torch.Tensor,
        rotation: torch.Tensor,
        batch: torch.Tensor,
        num_graphs: int,
    ) -> torch.Tensor:
        update = self.attention(self.norm_attention(x), atom_feats, edge_index, edge_scalars, rotation)
        x = x + self.drop_path(update, batch, num_graphs)
        return x + self.drop_path(self.ffn(self.norm_ffn(x)), batch, num_graphs)


class EquiformerV2(nn.Module):
    """The encoder/decoder network of ConditionCDVAE+: atom embedding (+ condition) and edge-degree embedding,
    ``num_layers`` transformer blocks whose radial networks also see the condition, a final equivariant norm, and
    l=1 outputs rescaled per channel by a linear function of the atom's scalars."""

    def __init__(self, config: EquiformerConfig, num_species: int = 100, cond_dim: int = 0) -> None:
        super().__init__()
        c = config
        self.config, self.num_species, self.cond_dim = config, num_species, cond_dim
        self.atom_embedding = nn.Linear(num_species, c.channels)
        self.cond_atom = nn.Linear(cond_dim, c.channels) if cond_dim else None
        self.cond_edge = nn.Linear(cond_dim, c.edge_channels) if cond_dim else None
        scalar_dim = c.num_rbf + (c.edge_channels if cond_dim else 0)
        self.rbf = GaussianBasis(c.num_rbf, c.cutoff)
        self.rotation = EdgeRotation(c.lmax, c.mmax)
        self.edge_degree = EdgeDegreeEmbedding(
            num_species, scalar_dim, c.edge_channels, c.channels, c.lmax, c.avg_degree
        )
        self.blocks = nn.ModuleList(TransformerBlock(c, num_species, scalar_dim) for _ in range(c.num_layers))
        self.norm = EquivariantLayerNorm(c.lmax, c.channels)
        self.vector_gate = nn.Linear(c.channels, c.channels)

    def forward(
        self,
        atom_feats: torch.Tensor,
        frac_coords: torch.Tensor,
        lattice: torch.Tensor,
        batch: torch.Tensor,
        cond: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (scalars (N, C) invariant per-atom features, vectors (N, C, 3) equivariant l=1 features,
        Cartesian). ``atom_feats`` (N, num_species) one-hot or soft types; ``lattice`` (B, 3, 3) row vectors;
        ``cond`` (B, cond_dim) is required exactly when the network was built with ``cond_dim`` > 0."""
        c = self.config
        if (cond is None) != (self.cond_dim == 0):
            raise ValueError(f"EquiformerV2 built with cond_dim={self.cond_dim} got cond={cond is not None}")
        if bool((batch[1:] < batch[:-1]).any()):
            raise ValueError("EquiformerV2 needs the atoms grouped by crystal (batch sorted)")
        dtype = self.atom_embedding.weight.dtype
        atom_feats, frac_coords, lattice = atom_feats.to(dtype), frac_coords.to(dtype), lattice.to(dtype)
        num_graphs = lattice.shape[0]
        num_atoms = torch.bincount(batch, minlength=num_graphs)
        graph = capped_radius_graph(frac_coords, lattice, num_atoms, c.cutoff, c.max_neighbors, c.neighbor_tolerance)
        edge_index = graph.edge_index
        rotation = self.rotation(graph.vectors)
        edge_scalars = self.rbf(graph.distances)
        x = atom_feats.new_zeros(len(atom_feats), (c.lmax + 1) ** 2, c.channels)
        scalars = self.atom_embedding(atom_feats)
        if cond is not None:
            cond = cond.to(dtype)
            scalars = scalars + self.cond_atom(cond)[batch]
            edge_scalars = torch.cat([edge_scalars, self.cond_edge(cond)[batch[edge_index[0]]]], dim=1)
        x[:, 0] = scalars
        x = x + self.edge_degree(edge_scalars, atom_feats, edge_index, rotation)
        for block in self.blocks:
            x = block(x, atom_feats, edge_index, edge_scalars, rotation, batch, num_graphs)
        x = self.norm(x)
        vectors = x[:, 1:4] * self.vector_gate(x[:, 0])[:, None]  # the norm fixes their size; scalars rescale it
        return x[:, 0], vectors.transpose(1, 2)


def graph_readout(scalars: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """Mean of per-atom features over each crystal, (N, C) -> (B, C)."""
    total = scalars.new_zeros(num_graphs, scalars.shape[1]).index_add_(0, batch, scalars)
    count = torch.bincount(batch, minlength=num_graphs).clamp(min=1).to(scalars.dtype)
    return total / count[:, None]
