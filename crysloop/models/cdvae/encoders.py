"""Crystal encoders to the mean and log-variance of the latent z: the EquiformerV2-style equivariant network or
DimeNet++ (CDVAE's invariant encoder), both on crysloop's periodic radius graph and both mean-pooled, so the
latent does not change with rotation, atom order, translation or the choice of unit cell."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import scatter

from crysloop.data.graph import radius_graph_pbc
from crysloop.models.cdvae.backbone import equiformer_config, output_sizes
from crysloop.models.cdvae.config import CDVAEConfig


class EquiformerEncoder(nn.Module):
    """EquiformerV2 (no condition) -> invariant per-atom scalars -> mean over atoms -> mu, log-variance."""

    def __init__(self, config: CDVAEConfig):
        super().__init__()
        from crysloop.models.equiformer import EquiformerV2

        self.num_species = config.num_species
        self.network = EquiformerV2(equiformer_config(config), num_species=config.num_species, cond_dim=0)
        scalar_dim, _ = output_sizes(self.network, config.num_species, 0)
        self.fc_mu = nn.Linear(scalar_dim, config.latent_dim)
        self.fc_logvar = nn.Linear(scalar_dim, config.latent_dim)

    def forward(self, atom_types, frac_coords, lattice, num_atoms):
        from crysloop.models.equiformer import graph_readout

        batch = torch.repeat_interleave(torch.arange(len(num_atoms), device=num_atoms.device), num_atoms)
        feats = F.one_hot(atom_types - 1, self.num_species).float()
        scalars, _ = self.network(feats, frac_coords, lattice, batch, None)
        pooled = graph_readout(scalars, batch, len(num_atoms))
        return self.fc_mu(pooled), self.fc_logvar(pooled)


def periodic_triplets(edge_index: torch.Tensor, cell_offsets: torch.Tensor, num_nodes: int):
    """All angle triplets k -> j -> i of a periodic graph whose edges (centre, neighbour) are directed
    neighbour -> centre; returns (idx_kj, idx_ji) edge indices. A triplet is dropped only when k is the very
    same periodic image as i (same atom, offsets cancelling), not merely the same atom index."""
    centre, neighbour = edge_index
    order = torch.argsort(centre, stable=True)
    degree = torch.bincount(centre, minlength=num_nodes)
    ptr = torch.cumsum(degree, 0) - degree
    # for each edge ji (centre i, neighbour j), every edge kj with centre j
    counts = degree[neighbour]
    idx_ji = torch.repeat_interleave(torch.arange(len(centre), device=centre.device), counts)
    local = torch.arange(int(counts.sum()), device=centre.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    idx_kj = order[ptr[neighbour[idx_ji]] + local]
    same_image = (neighbour[idx_kj] == centre[idx_ji]) & ((cell_offsets[idx_kj] + cell_offsets[idx_ji]) == 0).all(dim=1)
    return idx_kj[~same_image], idx_ji[~same_image]


class DimeNetPPEncoder(nn.Module):
    """torch_geometric's DimeNet++ blocks run on the periodic graph (all images within the cut-off)."""

    def __init__(self, config: CDVAEConfig):
        super().__init__()
        from torch_geometric.nn.models import DimeNetPlusPlus

        self.cutoff, self.max_neighbors = config.cutoff, config.max_neighbors
        self.net = DimeNetPlusPlus(
            hidden_channels=config.dimenet_hidden,
            out_channels=config.hidden_dim,
            num_blocks=config.dimenet_blocks,
            int_emb_size=config.dimenet_int_emb,
            basis_emb_size=config.dimenet_basis_emb,
            out_emb_channels=config.dimenet_out_emb,
            num_spherical=config.dimenet_spherical,
            num_radial=config.dimenet_radial,
            cutoff=config.cutoff,
            max_num_neighbors=config.max_neighbors,
            output_initializer="glorot_orthogonal",
        )
        self.net.emb.emb = nn.Embedding(config.num_species + 1, config.dimenet_hidden)  # PyG's stops at Z = 94
        self.fc_mu = nn.Linear(config.hidden_dim, config.latent_dim)
        self.fc_logvar = nn.Linear(config.hidden_dim, config.latent_dim)

    def forward(self, atom_types, frac_coords, lattice, num_atoms):
        graph = radius_graph_pbc(frac_coords, lattice, num_atoms, self.cutoff, self.max_neighbors)
        centre, neighbour = graph.edge_index
        idx_kj, idx_ji = periodic_triplets(graph.edge_index, graph.cell_offsets, len(atom_types))
        # DimeNet's edge vector points from the neighbour to the centre: -r_ij
        v_ji, v_kj = -graph.vectors[idx_ji], -graph.vectors[idx_kj]
        angle = torch.atan2(torch.linalg.cross(v_ji, v_kj).norm(dim=-1), (v_ji * v_kj).sum(-1))
        net = self.net
        rbf = net.rbf(graph.distances)
        sbf = net.sbf(graph.distances, angle, idx_kj)
        x = net.emb(atom_types, rbf, centre, neighbour)
        per_atom = net.output_blocks[0](x, rbf, centre, num_nodes=len(atom_types))
        for interaction, output in zip(net.interaction_blocks, net.output_blocks[1:], strict=True):
            x = interaction(x, rbf, sbf, idx_kj, idx_ji)
            per_atom = per_atom + output(x, rbf, centre, num_nodes=len(atom_types))
        batch = torch.repeat_interleave(torch.arange(len(num_atoms), device=num_atoms.device), num_atoms)
        pooled = scatter(per_atom, batch, dim=0, dim_size=len(num_atoms), reduce="mean")
        return self.fc_mu(pooled), self.fc_logvar(pooled)


def build_encoder(config: CDVAEConfig) -> nn.Module:
    """The encoder named by ``config.encoder``."""
    return EquiformerEncoder(config) if config.encoder == "equiformer" else DimeNetPPEncoder(config)
