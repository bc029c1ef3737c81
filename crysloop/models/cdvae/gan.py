"""Stage 2: a conditional WGAN-GP that learns the latent distribution of a trained, frozen ConditionCDVAE+
encoder (latents cached once), so that conditional sampling draws z from noise + condition."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from crysloop.data.tensors import CrystalTensors
from crysloop.models.cdvae.conditions import composition_fractions
from crysloop.models.training import OptimizerConfig, RunConfig, Trainer, seed_everything


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
        sizes = {
            "paper": {},
            "cpu-small": {
                "noise_dim": 64,
                "generator_hidden": (64, 128, 128, 256, 256),
                "critic_hidden": (256, 256, 256),
            },
            "cpu-tiny": {
                "noise_dim": 8,
                "generator_hidden": (8, 8, 16, 16, 16),
                "critic_hidden": (16, 16, 16),
                "batch_size": 8,
            },
        }
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
    return {
        "mu": torch.cat(mus),
        "logvar": torch.cat(logvars),
        "properties": data.properties,
        "compositions": composition_fractions(data.atom_types, data.num_atoms, model.config.num_species),
    }


def condition_vector(
    model, properties: torch.Tensor, compositions: torch.Tensor | None, keep: torch.Tensor
) -> torch.Tensor:
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


def optimizer_config(config: GANConfig) -> OptimizerConfig:
    """The optimisation of the generator and of the critic: Adam with the WGAN-GP betas, the rate cut on plateau."""
    return OptimizerConfig(
        "adam",
        lr=config.lr,
        betas=config.betas,
        schedule="plateau",
        plateau_factor=config.plateau_factor,
        plateau_patience=config.plateau_patience,
        min_lr=config.min_lr,
    )


class _LatentWGAN:
    """The latent WGAN-GP in the training loop: a critic step ("d") on every batch, a generator step ("g") on every
    ``critic_steps``-th; both rates follow ``moment_distance``."""

    monitor = "moment_distance"

    def __init__(self, model, gan: LatentGAN, cache: dict[str, torch.Tensor]):
        self.model, self.gan, self.cache, self.config = model, gan, cache, gan.config
        n, size = len(cache["mu"]), self.config.batch_size
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
        self.steps_per_epoch = sum(s >= 2 for s in sizes)  # a batch of one is skipped (batch norm needs two)
        self.generators: dict = {}  # torch's global generator only

    def batches(self) -> list[torch.Tensor]:
        order = torch.randperm(len(self.cache["mu"]), device=self.cache["mu"].device)
        return [idx for idx in order.split(self.config.batch_size) if len(idx) >= 2]

    def step(self, idx: torch.Tensor, trainer: Trainer) -> dict[str, float]:
        model, gan, cache, config = self.model, self.gan, self.cache, self.config
        real = cache["mu"][idx] + torch.randn_like(cache["mu"][idx]) * (0.5 * cache["logvar"][idx]).exp()
        keep = torch.rand(len(idx), len(model.config.conditions), device=idx.device) >= config.cond_drop_prob
        props = cache["properties"][idx]
        with torch.no_grad():
            cond = condition_vector(model, props, cache["compositions"][idx], keep)
        fake = gan.generator(torch.randn(len(idx), config.noise_dim, device=idx.device), cond)
        d_real, d_fake = gan.critic(real, cond).mean(), gan.critic(fake.detach(), cond).mean()
        d_loss = d_fake - d_real + config.gp_weight * gradient_penalty(gan.critic, real, fake.detach(), cond)
        trainer.optimise("d", d_loss)
        metrics = {"wasserstein": float((d_real - d_fake).detach())}
        if (trainer.step + 1) % config.critic_steps:
            return metrics
        g_loss = -gan.critic(fake, cond).mean()
        if config.property_weight > 0 and model.property_head is not None:
            target = model.condition_encoder.standardise(props)
            known = (
                ~torch.isnan(target)
                & keep[:, [model.config.conditions.index(c) for c in model.config.scalar_conditions]]
            )
            if known.any():
                pred = model.predict_properties(fake)
                g_loss = g_loss + config.property_weight * ((pred - target)[known] ** 2).mean()
        trainer.optimise("g", g_loss)
        return {**metrics, "g_loss": float(g_loss.detach())}

    def end_epoch(self, trainer: Trainer, metrics: dict[str, float]) -> dict[str, float]:
        gap = moment_distance(self.gan, self.model, self.cache)
        return {"moment_distance": gap, "g_loss": metrics.get("g_loss", 0.0)}


def train_latent_gan(
    model,
    data: CrystalTensors,
    config: GANConfig,
    epochs: int = 50,
    seed: int = 0,
    log_path: str | Path | None = None,
    progress: bool = True,
    on_checkpoint: Callable[[LatentGAN, Trainer], None] | None = None,
    checkpoint_every: int = 0,
    resume_state: dict[str, Any] | None = None,
) -> LatentGAN:
    """Train the conditional WGAN-GP on the frozen model's cached latents; both learning rates follow a plateau
    schedule on ``moment_distance``, stepped every epoch (the critic's Wasserstein estimate rises while the critic
    learns, so it would cut the rates from the first epochs). ``on_checkpoint(gan, trainer)`` is called every
    ``checkpoint_every`` epochs and at the end; ``resume_state`` (a trainer state) continues a run."""
    seed_everything(seed)
    device = model.device
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        cache = cache_latents(model, data.to(device))
        cond_dim = len(model.config.conditions) * model.config.cond_dim
        gan = LatentGAN(config, cond_dim, model.config.latent_dim).to(device)
        run = RunConfig(
            epochs=epochs,
            checkpoint_every=checkpoint_every,
            log_path=log_path,
            log_prefix="gan_",
            progress=progress,
            name="training latent WGAN-GP",
        )
        save = (lambda trainer: on_checkpoint(gan, trainer)) if on_checkpoint is not None else None
        trainer = Trainer(
            {"g": (gan.generator, optimizer_config(config)), "d": (gan.critic, optimizer_config(config))},
            _LatentWGAN(model, gan, cache),
            run,
            save,
        )
        if resume_state is not None:
            trainer.load_state_dict(resume_state)
        gan.train()
        trainer.fit()
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return gan.eval()
