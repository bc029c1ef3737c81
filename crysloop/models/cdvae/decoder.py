"""CDVAE's noise-conditioned score decoder on an EquiformerV2-style backbone: z_c enters the atom embeddings and
the radial networks of every block; atom-type logits come from the invariant channels and the coordinate score
from a linear map of the l=1 channels (so it rotates with the crystal)."""

from __future__ import annotations

import torch
from torch import nn

from crysloop.models.cdvae.backbone import equiformer_config, output_sizes
from crysloop.models.cdvae.config import CDVAEConfig


class ScoreDecoder(nn.Module):
    """(z_c, noisy types, noisy fractional coordinates, lattice) -> (type logits (N, S), Cartesian score (N, 3)).

    The coordinate output is sigma times the score (NCSN-style): the caller divides by the noise level, which is
    how CDVAE conditions its decoder on sigma without an explicit input.
    """

    def __init__(self, config: CDVAEConfig, network: nn.Module | None = None):
        super().__init__()
        if network is None:
            from crysloop.models.equiformer import EquiformerV2

            network = EquiformerV2(
                equiformer_config(config), num_species=config.num_species, cond_dim=config.latent_dim
            )
        self.network = network
        scalar_dim, vector_dim = output_sizes(network, config.num_species, config.latent_dim)
        self.type_head = nn.Linear(scalar_dim, config.num_species)
        self.coord_head = nn.Linear(vector_dim, 1, bias=False)  # mixes the l=1 channels; no bias keeps equivariance

    def forward(
        self,
        z_c: torch.Tensor,
        type_probs: torch.Tensor,
        frac_coords: torch.Tensor,
        lattice: torch.Tensor,
        batch: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scalars, vectors = self.network(type_probs, frac_coords, lattice, batch, z_c)
        return self.type_head(scalars), self.coord_head(vectors.transpose(1, 2)).squeeze(-1)
