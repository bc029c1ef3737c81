"""The EquiformerV2 backbone as ConditionCDVAE+'s encoder and decoder set it up: its config and output sizes."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from crysloop.models.cdvae.config import CDVAEConfig


def equiformer_config(config: CDVAEConfig):
    """The EquiformerV2 preset named by ``config`` with the cut-off, neighbour cap and the dataset statistics
    (mean degree, mean atom count) of the data in use wherever the network's config has such fields."""
    from crysloop.models.equiformer import EquiformerConfig

    net = EquiformerConfig.preset(config.equiformer_preset)
    names = {f.name for f in dataclasses.fields(net)}
    wanted = {"cutoff": config.cutoff, "max_neighbors": config.max_neighbors}
    if config.mean_degree > 0:
        wanted.update(avg_degree=config.mean_degree, avg_num_neighbors=config.mean_degree)
    if config.mean_num_atoms > 0:
        wanted.update(avg_num_nodes=config.mean_num_atoms, avg_num_atoms=config.mean_num_atoms)
    return dataclasses.replace(net, **{k: v for k, v in wanted.items() if k in names})


@torch.no_grad()
def output_sizes(network: nn.Module, num_species: int, cond_dim: int) -> tuple[int, int]:
    """Scalar and l=1 channel counts of an EquiformerV2-interface network, read off one tiny forward pass."""
    feats = torch.zeros(2, num_species)
    feats[:, 0] = 1.0
    frac = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    cond = torch.zeros(1, cond_dim) if cond_dim else None
    scalars, vectors = network(feats, frac, 3.0 * torch.eye(3)[None], torch.zeros(2, dtype=torch.long), cond)
    return scalars.shape[-1], vectors.shape[1]
