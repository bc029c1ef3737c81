"""The ConditionCDVAE+ model: encoder, condition fusion, property predictor, structure heads and score decoder,
with CDVAE's training losses."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from crysloop.data.tensors import CrystalTensors, lattice_params_to_matrix, matrix_to_lattice_params
from crysloop.models.cdvae.conditions import ConditionEncoder, composition_fractions
from crysloop.models.cdvae.config import CDVAEConfig
from crysloop.models.cdvae.decoder import ScoreDecoder
from crysloop.models.cdvae.encoders import build_encoder
from crysloop.models.cdvae.fusion import LowRankFusion
from crysloop.models.slab import confine

MODEL_KIND = "condition-cdvae-plus"


def geometric_levels(begin: float, end: float, num: int) -> torch.Tensor:
    """``num`` noise levels from ``begin`` down to ``end``, evenly spaced in log."""
    return torch.exp(torch.linspace(math.log(begin), math.log(end), num))


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int) -> nn.Sequential:
    """``layers`` hidden SiLU layers of width ``hidden``, then a linear output."""
    modules: list[nn.Module] = []
    for i in range(layers):
        modules += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.SiLU()]
    modules.append(nn.Linear(hidden if layers else in_dim, out_dim))
    return nn.Sequential(*modules)


def lattice_features(lattice: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
    """(B, 6): lengths / N^(1/3) and angles (degrees), CDVAE's lattice parametrisation."""
    lengths, angles = matrix_to_lattice_params(lattice)
    return torch.cat([lengths / num_atoms[:, None].to(lengths.dtype) ** (1 / 3), angles], dim=-1)


def lattice_from_features(features: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
    """Inverse of ``lattice_features`` (lengths at least 1 A, angles kept within 30-150 degrees)."""
    lengths = (features[:, :3] * num_atoms[:, None].to(features.dtype) ** (1 / 3)).clamp(min=1.0)
    angles = features[:, 3:].clamp(30.0, 150.0)
    return lattice_params_to_matrix(lengths, angles)


def minimum_image(d_frac: torch.Tensor, lattice: torch.Tensor, periodic_c: bool = True) -> torch.Tensor:
    """Shortest Cartesian vectors (N, 3) among the periodic images of fractional displacements ``d_frac``
    (N, 3) on per-atom lattices (N, 3, 3); ``periodic_c=False`` takes images in the a-b plane only (slabs)."""
    periodic = torch.tensor([True, True, periodic_c], device=d_frac.device)
    d_frac = torch.where(periodic, d_frac - d_frac.round(), d_frac)
    ranges = [torch.arange(-1, 2, device=d_frac.device)] * 2 + [
        torch.arange(-int(periodic_c), int(periodic_c) + 1, device=d_frac.device)
    ]
    shifts = torch.cartesian_prod(*ranges).to(d_frac.dtype)
    candidates = torch.einsum("nkj,nji->nki", d_frac[:, None, :] + shifts, lattice)
    best = candidates.norm(dim=-1).argmin(dim=1)
    return candidates[torch.arange(len(d_frac), device=d_frac.device), best]


class ConditionCDVAE(nn.Module):
    """CDVAE with low-rank fusion of conditions into the latent (z_c) and a property predictor reading z."""

    def __init__(self, config: CDVAEConfig, decoder_network: nn.Module | None = None):
        super().__init__()
        self.config = config
        latent, hidden, layers = config.latent_dim, config.hidden_dim, config.head_layers
        self.encoder = build_encoder(config)
        self.condition_encoder = ConditionEncoder(config) if config.conditions else None
        self.fusion = (
            LowRankFusion([latent] + [config.cond_dim] * len(config.conditions), latent, config.fusion_rank)
            if config.conditions
            else None
        )
        self.num_atoms_head = mlp(latent, hidden, config.max_atoms + 1, layers)
        self.lattice_head = mlp(latent, hidden, 6, layers)
        self.composition_head = mlp(latent, hidden, config.num_species, layers)
        self.property_head = (
            mlp(latent, hidden, len(config.scalar_conditions), layers) if config.scalar_conditions else None
        )
        self.decoder = ScoreDecoder(config, decoder_network)
        self.register_buffer("sigmas", geometric_levels(config.sigma_begin, config.sigma_end, config.num_noise_levels))
        self.register_buffer(
            "type_sigmas", geometric_levels(config.type_sigma_begin, config.type_sigma_end, config.num_noise_levels)
        )
        self.register_buffer("lattice_mean", torch.tensor(config.lattice_stats[0], dtype=torch.float32))
        self.register_buffer("lattice_std", torch.tensor(config.lattice_stats[1], dtype=torch.float32))

    @property
    def device(self) -> torch.device:
        return self.sigmas.device

    def encode(self, batch: CrystalTensors) -> tuple[torch.Tensor, torch.Tensor]:
        """mu and log-variance (B, latent) of each crystal; the log-variance is clamped to [-10, 10] so that
        exp(logvar) cannot overflow (a DimeNet++ run on MP-20 ended in NaN after 100 steps without the clamp)."""
        mu, logvar = self.encoder(batch.atom_types, batch.frac_coords, batch.lattice, batch.num_atoms)
        return mu, logvar.clamp(-10.0, 10.0)

    def conditions(
        self, properties: torch.Tensor, compositions: torch.Tensor | None, keep: torch.Tensor
    ) -> list[torch.Tensor]:
        """The condition embeddings (see ``ConditionEncoder``); empty for an unconditional model."""
        return self.condition_encoder(properties, compositions, keep) if self.condition_encoder is not None else []

    def fuse(self, z: torch.Tensor, embeddings: list[torch.Tensor]) -> torch.Tensor:
        """z_c = z + LMF(z, c_1, ..., c_K); z itself when the model has no conditions.

        The residual keeps a direct path for z: through the multiplicative fusion alone, with three conditions,
        the lattice and atom-count heads did not learn in a 48-step trial (lattice loss 1.00 vs 0.85 with it).
        """
        return z + self.fusion([z, *embeddings]) if self.fusion is not None else z

    def predict_properties(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised property predictions (B, P) from z (not z_c, which already holds the conditions)."""
        return self.property_head(z)

    def heads(self, z_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Atom-count logits (B, max_atoms + 1), standardised lattice features (B, 6), composition logits (B, S)."""
        return self.num_atoms_head(z_c), self.lattice_head(z_c), self.composition_head(z_c)

    def lattice_from_head(self, standardised: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
        """Lattice matrices (B, 3, 3) from the lattice head's standardised output; a semi-periodic model takes
        a, b and gamma from it and keeps c fixed (perpendicular to the layers, the training length)."""
        features = standardised * self.lattice_std + self.lattice_mean
        slab = self.config.slab
        if slab is not None:
            features = features.clone()
            features[:, 2] = slab.c / num_atoms.to(features.dtype) ** (1 / 3)
            features[:, 3:5] = 90.0
        return lattice_from_features(features, num_atoms)

    def lattice_columns(self) -> list[int]:
        """The lattice features the model learns: all six, or a, b and gamma for a semi-periodic model."""
        return [0, 1, 5] if self.config.semi_periodic else list(range(6))

    def score(self, z_c, type_probs, frac_coords, lattice, num_atoms):
        """Decoder outputs: type logits (N, S) and sigma x coordinate score (N, 3), Cartesian."""
        batch = torch.repeat_interleave(torch.arange(len(num_atoms), device=num_atoms.device), num_atoms)
        return self.decoder(z_c, type_probs, frac_coords, lattice, batch)

    def perturb(
        self, frac_coords: torch.Tensor, lattice_atom: torch.Tensor, sigma: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Noisy fractional coordinates (Cartesian Gaussian noise of std ``sigma`` (N, 1), wrapped into the cell,
        or for a semi-periodic model wrapped in-plane and reflected at the slab bounds along c) and the score
        target: the shortest displacement back to the clean position over sigma^2 (no images along c for slabs)."""
        cart = torch.einsum("ni,nij->nj", frac_coords, lattice_atom) + torch.randn_like(frac_coords) * sigma
        noisy = torch.einsum("ni,nij->nj", cart, torch.linalg.inv(lattice_atom))
        slab = self.config.slab
        noisy = noisy % 1.0 if slab is None else confine(noisy, slab)
        return noisy, minimum_image(frac_coords - noisy, lattice_atom, periodic_c=slab is None) / sigma**2

    def loss(self, batch: CrystalTensors, teacher_forcing: bool = False) -> dict[str, torch.Tensor]:
        """CDVAE's losses with the issue's weights; ``teacher_forcing`` decodes on the true lattice."""
        config, n = self.config, batch.num_atoms
        b, device = len(n), batch.lattice.device
        crystal = torch.repeat_interleave(torch.arange(b, device=device), n)
        mu, logvar = self.encode(batch)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        compositions = composition_fractions(batch.atom_types, n, config.num_species)
        present = torch.ones(b, len(config.conditions), dtype=torch.bool, device=device)
        keep = present & (torch.rand(b, len(config.conditions), device=device) >= config.cond_drop_prob)
        z_c = self.fuse(z, self.conditions(batch.properties, compositions, keep))
        natom_logits, lattice_std, composition_logits = self.heads(z_c)
        learned = self.lattice_columns()
        lattice_target = (lattice_features(batch.lattice, n) - self.lattice_mean) / self.lattice_std
        losses = {
            "natom": F.cross_entropy(natom_logits, n),
            "lattice": F.mse_loss(lattice_std[:, learned], lattice_target[:, learned]),
            "composition": F.cross_entropy(composition_logits[crystal], batch.atom_types - 1),
            "kl": (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)).mean(),
        }
        lattice = batch.lattice if teacher_forcing else self.lattice_from_head(lattice_std.detach(), n)
        level = torch.randint(0, config.num_noise_levels, (b,), device=device)
        sigma = self.sigmas[level][crystal][:, None]
        type_sigma = self.type_sigmas[level][crystal]
        lattice_atom = lattice[crystal]
        noisy_frac, target = self.perturb(batch.frac_coords, lattice_atom, sigma)
        probs = F.one_hot(batch.atom_types - 1, config.num_species).float() + type_sigma[:, None] * F.softmax(
            composition_logits.detach()[crystal], dim=-1
        )
        noisy_types = torch.multinomial(probs, 1).squeeze(1)
        type_logits, coord_out = self.score(
            z_c, F.one_hot(noisy_types, config.num_species).float(), noisy_frac, lattice, n
        )
        coord_loss = 0.5 * ((coord_out / sigma - target) ** 2).sum(-1) * sigma[:, 0] ** 2
        type_loss = F.cross_entropy(type_logits, batch.atom_types - 1, reduction="none") / type_sigma
        per_crystal = torch.zeros(b, 2, device=device).index_add_(0, crystal, torch.stack([coord_loss, type_loss], -1))
        per_crystal = per_crystal / n[:, None]
        losses["coord"], losses["type"] = per_crystal[:, 0].mean(), per_crystal[:, 1].mean()
        if self.property_head is not None:
            target_props = self.condition_encoder.standardise(batch.properties)
            known = ~torch.isnan(target_props)
            pred = self.predict_properties(z)
            losses["property"] = F.mse_loss(pred[known], target_props[known]) if known.any() else pred.sum() * 0.0
        weights = {
            "natom": config.cost_natom,
            "lattice": config.cost_lattice,
            "composition": config.cost_composition,
            "kl": config.cost_kl,
            "coord": config.cost_coord,
            "type": config.cost_type,
            "property": config.cost_property,
        }
        losses["loss"] = sum(weights[k] * v for k, v in losses.items())
        return losses
