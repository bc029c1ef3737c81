"""The DiffCSP model: denoiser, noise schedules and property conditioning, with its training loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from crysloop.data.tensors import CrystalTensors
from crysloop.models.diffcsp.config import DiffCSPConfig
from crysloop.models.diffcsp.corruption import NoiseSchedule, noise_frac_coords, noise_lattice, noise_types
from crysloop.models.diffcsp.denoiser import CSPNet, sinusoidal_embedding
from crysloop.models.slab import in_plane_mask

MAX_ATOMS = 256


def condition_mask(
    properties: torch.Tensor, drop_prob: float, mode: str = "joint", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Which conditions (B, P) the model sees during training: known values, minus the dropped ones.

    ``joint`` drops every condition of a crystal on one coin, so the unconditional branch that classifier-free
    guidance needs is trained on ``drop_prob`` of the crystals; ``independent`` drops each condition on its own
    coin (with P conditions only drop_prob^P of the crystals are then unconditional).
    """
    known = ~torch.isnan(properties)
    if mode == "joint":
        coin = torch.rand(properties.shape[0], 1, device=properties.device, generator=generator)
        return known & (coin >= drop_prob)
    coins = torch.rand(properties.shape, device=properties.device, generator=generator)
    return known & (coins >= drop_prob)


class DiffCSP(nn.Module):
    """DiffCSP with classifier-free property guidance; ``config.mode`` picks CSP or ab initio generation."""

    def __init__(self, config: DiffCSPConfig):
        super().__init__()
        self.config = config
        self.schedule = NoiseSchedule(config.timesteps, config.sigma_begin, config.sigma_end)
        self.property_embeddings = nn.ModuleList(self._property_mlp() for _ in config.properties)
        self.types_given_embedding = nn.Embedding(2, config.time_dim) if config.mode == "abinitio" else None
        self.denoiser = CSPNet(
            hidden_dim=config.hidden_dim,
            num_layers=config.num_layers,
            latent_dim=2 * config.time_dim,
            num_freqs=config.num_freqs,
            type_dim=config.max_atomic_number,
            predict_types=config.mode == "abinitio",
            self_edges=config.self_edges,
        )
        self.register_buffer("num_atoms_counts", torch.zeros(MAX_ATOMS + 1))

    def _property_mlp(self) -> nn.Module:
        dim = self.config.time_dim
        return nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim))

    @property
    def device(self) -> torch.device:
        return self.num_atoms_counts.device

    def normalise_properties(self, values: torch.Tensor) -> torch.Tensor:
        """Raw property values (B, P) -> zero-mean, unit-std values using the training statistics."""
        stats = torch.tensor(
            [self.config.property_stats[name] for name in self.config.properties],
            dtype=values.dtype,
            device=values.device,
        ).reshape(-1, 2)
        return (values - stats[:, 0]) / stats[:, 1]

    def latent(
        self, t: torch.Tensor, properties: torch.Tensor, keep: torch.Tensor, types_given: torch.Tensor | None
    ) -> torch.Tensor:
        """Per-crystal latent: time embedding next to the sum of kept property embeddings (and the types flag)."""
        cond = torch.zeros(len(t), self.config.time_dim, device=t.device)
        values = torch.nan_to_num(self.normalise_properties(properties), nan=0.0) if self.config.properties else None
        for i, mlp in enumerate(self.property_embeddings):
            cond = cond + keep[:, i : i + 1] * mlp(values[:, i : i + 1])
        if self.types_given_embedding is not None:
            cond = cond + self.types_given_embedding(types_given.long())
        return torch.cat([sinusoidal_embedding(t, self.config.time_dim), cond], dim=-1)

    def type_features(self, atom_types: torch.Tensor) -> torch.Tensor:
        """One-hot rows (N, max Z) of atomic numbers."""
        return F.one_hot(atom_types - 1, self.config.max_atomic_number).float()

    def forward(self, type_features, frac_coords, lattice, num_atoms, latent):
        """Denoiser outputs for noisy inputs; the timestep and conditions enter through ``latent``."""
        atom_crystal = torch.repeat_interleave(torch.arange(len(num_atoms), device=num_atoms.device), num_atoms)
        return self.denoiser(type_features, frac_coords, lattice, latent, num_atoms, atom_crystal)

    def loss(self, batch: CrystalTensors) -> dict[str, torch.Tensor]:
        """Denoising losses on one batch: lattice noise MSE, coordinate score MSE and (ab initio) type noise MSE."""
        config, schedule = self.config, self.schedule
        n = len(batch.num_atoms)
        t = schedule.sample_t(n, batch.lattice.device)
        t_atom = torch.repeat_interleave(t, batch.num_atoms)
        noisy_lattice, eps_lattice = noise_lattice(batch.lattice, t, schedule, config.slab)
        noisy_coords, score_target = noise_frac_coords(batch.frac_coords, t_atom, schedule, config.slab)
        keep = condition_mask(batch.properties, config.property_drop_prob, config.property_drop_mode)
        types = self.type_features(batch.atom_types)
        types_given = None
        if config.mode == "abinitio":
            types_given = torch.rand(n, device=t.device) < config.csp_fraction
            noisy_types, eps_types = noise_types(types, t_atom, schedule)
            given_atom = torch.repeat_interleave(types_given, batch.num_atoms)
            types = torch.where(given_atom[:, None], types, noisy_types)
        latent = self.latent(t, batch.properties, keep.float(), types_given)
        pred_lattice, pred_score, pred_types = self(types, noisy_coords, noisy_lattice, batch.num_atoms, latent)
        lattice_error = (pred_lattice.float() - eps_lattice) ** 2
        losses = {  # a semi-periodic model learns the in-plane block only (c is fixed)
            "lattice": lattice_error.mean()
            if config.slab is None
            else lattice_error[:, in_plane_mask(t.device)].mean(),
            "coord": F.mse_loss(pred_score.float(), score_target),
        }
        total = config.cost_lattice * losses["lattice"] + config.cost_coord * losses["coord"]
        if pred_types is not None:
            free = ~given_atom
            losses["type"] = (
                F.mse_loss(pred_types[free].float(), eps_types[free]) if free.any() else pred_types.sum() * 0.0
            )
            total = total + config.cost_type * losses["type"]
        losses["loss"] = total
        return losses
