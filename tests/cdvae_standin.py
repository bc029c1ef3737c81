"""A tiny equivariant network with EquiformerV2's interface, used by the ConditionCDVAE+ tests that must not
depend on the EquiformerV2 implementation (one radial message-passing step; l=1 output from edge directions)."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.utils import scatter

from crysloop.data.graph import radius_graph_pbc


class TinyEquivariantNet(nn.Module):
    def __init__(self, num_species: int = 100, cond_dim: int = 0, channels: int = 8, cutoff: float = 5.0):
        super().__init__()
        self.cutoff = cutoff
        self.embed = nn.Linear(num_species, channels)
        self.cond = nn.Linear(cond_dim, channels) if cond_dim else None
        self.radial = nn.Sequential(nn.Linear(8, channels), nn.SiLU(), nn.Linear(channels, channels))
        self.register_buffer("centers", torch.linspace(0.0, cutoff, 8))

    def forward(self, atom_feats, frac_coords, lattice, batch, cond=None):
        num_atoms = torch.bincount(batch, minlength=len(lattice))
        graph = radius_graph_pbc(frac_coords, lattice, num_atoms, self.cutoff, 12)
        h = self.embed(atom_feats)
        if self.cond is not None:
            h = h + self.cond(cond)[batch]
        centre, neighbour = graph.edge_index
        rbf = torch.exp(-((graph.distances[:, None] - self.centers) ** 2))
        messages = self.radial(rbf) * h[neighbour]
        scalars = h + scatter(messages, centre, dim=0, dim_size=len(h), reduce="sum")
        unit = graph.vectors / graph.distances[:, None]
        vectors = scatter(messages[:, :, None] * unit[:, None, :], centre, dim=0, dim_size=len(h), reduce="sum")
        return scalars, vectors
