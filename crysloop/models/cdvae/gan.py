"""Stage 2: a conditional WGAN-GP that learns the latent distribution of a trained, frozen ConditionCDVAE+
encoder (latents cached once), so that conditional sampling draws z from noise + condition."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from crysloop.models.cdvae.conditions import composition_fractions
from crysloop.data.tensors import CrystalTensors


@dataclass(frozen=True)
class GANConfig:
    """Sizes and optimisation of the latent WGAN-GP (defaults: the issue's)."""

    noise_dim: int = 128
    generator_hidden: tuple[int, ...] = (64, 128, 256, 512, 1024)
    critic_hidden: tuple[int, ...] = (512, 512, 512)
    dropout: float = 0.3
    gp_weight: float = 10.0
    critic_steps: int = 5
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    batch_size: int = 128
    plateau_patience: int = 10
    plateau_factor: float = 0.5
    min_lr: float = 1e-5
    property_weight: float = 0.0
    cond_drop_prob: float = 0.1

    @classmethod
    def preset(cls, name: str) -> GANConfig:
        """``paper`` (hidden layers up to 1024 units) or ``cpu-small`` (up to 256) / ``cpu-tiny``."""
        sizes = {"paper": {}, "cpu-small": {"noise_dim": 64, "generator_hidden": (64, 128, 128, 256, 256),
                                            "critic_hidden": (256, 256, 256)},
                 "cpu-tiny": {"noise_dim": 8, "generator_hidden": (8, 8, 16, 16, 16), "critic_hidden": (16, 16, 16),
                              "batch_size": 8}}  # fmt: skip
        return cls(**sizes.get(name, {}))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint."""
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GANConfig:
        """Inverse of ``to_dict``."""
        known = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Generator(nn.Module):
    """(noise, condition) -> z: five hidden layers, batch norm after all but the first, LeakyReLU."""

    def __init__(self, config: GANConfig, cond_dim: int, latent_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        width = config.noise_dim + cond_dim
        for i, hidden in enumerate(config.generator_hidden):
            layers.append(nn.Linear(width, hidden))
            if i > 0:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(nn.LeakyReLU(0.2))
            width = hidden
        layers.append(nn.Linear(width, latent_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([noise, cond], dim=-1))


class Critic(nn.Module):
    """(z, condition) -> a real number: three hidden layers with LeakyReLU and dropout (no batch norm: the
    gradient penalty is per sample)."""

    def __init__(self, config: GANConfig, cond_dim: int, latent_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        width = latent_dim + cond_dim
        for hidden in config.critic_hidden:
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.2), nn.Dropout(config.dropout)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, cond], dim=-1)).squeeze(-1)


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """WGAN-GP's E[(||grad_z D(z_hat, c)|| - 1)^2] on random interpolates of real and generated latents."""
    alpha = torch.rand(len(real), 1, device=real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed, cond).sum(), mixed, create_graph=True)
    return ((grad.norm(dim=1) - 1) ** 2).mean()


class LatentGAN(nn.Module):
    """Generator and critic; the condition input is the concatenated condition embeddings of the frozen VAE."""

    def __init__(self, config: GANConfig, cond_dim: int, latent_dim: int, with_critic: bool = True):
        super().__init__()
        self.config, self.cond_dim, self.latent_dim = config, cond_dim, latent_dim
        self.generator = Generator(config, cond_dim, latent_dim)
        self.critic = Critic(config, cond_dim, latent_dim) if with_critic else None

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latents (B, latent_dim) for condition vectors (B, cond_dim)."""
        noise = torch.randn(len(cond), self.config.noise_dim, device=cond.device, generator=generator)
        return self.generator.eval()(noise, cond)


@torch.no_grad()
def cache_latents(model, data: CrystalTensors, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """mu and log-variance of every crystal under the frozen encoder, with its properties and composition."""
    model.eval()
    mus, logvars = [], []
    for start in range(0, len(data.num_atoms), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data.num_atoms)), device=data.num_atoms.device)
        mu, logvar = model.encode(data.select(idx))
        mus.append(mu)
        logvars.append(logvar)
    return {"mu": torch.cat(mus), "logvar": torch.cat(logvars), "properties": data.properties,
            "compositions": composition_fractions(data.atom_types, data.num_atoms, model.config.num_species)}


def condition_vector(model, properties: torch.Tensor, compositions: torch.Tensor | None,
                     keep: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """The GAN's condition input: the VAE's condition embeddings side by side (B, K * cond_dim)."""
    embeddings = model.conditions(properties, compositions, keep)
    return torch.cat(embeddings, dim=-1) if embeddings else properties.new_zeros(len(properties), 0)


@torch.no_grad()
def moment_distance(gan: LatentGAN, model, cache: dict[str, torch.Tensor]) -> float:
    """Mean squared gap between the per-dimension means and standard deviations of generated and encoded latents
    over the cached crystals (their own conditions): how far the generator is from the latent distribution, a
    monitor that does not depend on the critic."""
    keep = torch.ones(len(cache["mu"]), len(model.config.conditions), dtype=torch.bool, device=cache["mu"].device)
    cond = condition_vector(model, cache["properties"], cache["compositions"], keep)
    fake = gan.sample(cond)
    real = cache["mu"] + torch.randn_like(cache["mu"]) * (0.5 * cache["logvar"]).exp()
    gan.generator.train()
    return float(((fake.mean(0) - real.mean(0)) ** 2).mean() + ((fake.std(0) - real.std(0)) ** 2).mean())


def train_latent_gan(model, data: CrystalTensors, config: GANConfig, epochs: int = 50, seed: int = 0,
                     log_path: str | Path | None = None, progress: bool = True) -> LatentGAN:  # fmt: skip
    """Train the conditional WGAN-GP on the frozen model's cached latents; both learning rates follow a plateau
    schedule on ``moment_distance``, stepped every epoch (the critic's Wasserstein estimate rises while the critic
    learns, so it would cut the rates from the first epochs)."""
    torch.manual_seed(seed)
    device = model.device
    for p in model.parameters():
        p.requires_grad_(False)
    cache = cache_latents(model, data.to(device))
    n, k = len(cache["mu"]), len(model.config.conditions)
    gan = LatentGAN(config, k * model.config.cond_dim, model.config.latent_dim).to(device)
    opt_g = torch.optim.Adam(gan.generator.parameters(), lr=config.lr, betas=config.betas)
    opt_d = torch.optim.Adam(gan.critic.parameters(), lr=config.lr, betas=config.betas)
    sched_g, sched_d = (torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=config.plateau_factor,
                                                                   patience=config.plateau_patience,
                                                                   min_lr=config.min_lr)
                        for opt in (opt_g, opt_d))  # fmt: skip
    log = open(log_path, "a") if log_path else None  # noqa: SIM115 - closed below
    gan.train()
    step = 0
    try:
        for epoch in tqdm(range(epochs), desc="training latent WGAN-GP", disable=not progress):
            distances, g_losses = [], []
            for idx in torch.randperm(n, device=device).split(config.batch_size):
                if len(idx) < 2:
                    continue
                real = cache["mu"][idx] + torch.randn_like(cache["mu"][idx]) * (0.5 * cache["logvar"][idx]).exp()
                keep = torch.rand(len(idx), k, device=device) >= config.cond_drop_prob
                props = cache["properties"][idx]
                with torch.no_grad():
                    cond = condition_vector(model, props, cache["compositions"][idx], keep)
                fake = gan.generator(torch.randn(len(idx), config.noise_dim, device=device), cond)
                d_real, d_fake = gan.critic(real, cond).mean(), gan.critic(fake.detach(), cond).mean()
                d_loss = d_fake - d_real + config.gp_weight * gradient_penalty(gan.critic, real, fake.detach(), cond)
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                distances.append(float((d_real - d_fake).detach()))
                step += 1
                if step % config.critic_steps:
                    continue
                g_loss = -gan.critic(fake, cond).mean()
                if config.property_weight > 0 and model.property_head is not None:
                    target = model.condition_encoder.standardise(props)
                    known = ~torch.isnan(target) & keep[:, [model.config.conditions.index(c)
                                                            for c in model.config.scalar_conditions]]  # fmt: skip
                    if known.any():
                        pred = model.predict_properties(fake)
                        g_loss = g_loss + config.property_weight * ((pred - target)[known] ** 2).mean()
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()
                g_losses.append(float(g_loss.detach()))
            distance = sum(distances) / max(len(distances), 1)
            gap = moment_distance(gan, model, cache)
            sched_g.step(gap)
            sched_d.step(gap)
            if log is not None:
                log.write(json.dumps({"gan_epoch": epoch + 1, "wasserstein": distance, "moment_distance": gap,
                                      "lr_g": opt_g.param_groups[0]["lr"],
                                      "g_loss": sum(g_losses) / max(len(g_losses), 1)}) + "\n")  # fmt: skip
                log.flush()
    finally:
        if log is not None:
            log.close()
        for p in model.parameters():
            p.requires_grad_(True)
    return gan.eval()
