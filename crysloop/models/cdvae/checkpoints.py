"""Saving and loading ConditionCDVAE+ checkpoints: config with its scalers, weights, and the latent generator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crysloop.models.cdvae.config import CDVAEConfig
from crysloop.models.cdvae.gan import GANConfig, LatentGAN
from crysloop.models.cdvae.model import ConditionCDVAE
from crysloop.models.checkpoint import read_checkpoint as read_kind
from crysloop.models.checkpoint import write_checkpoint
from crysloop.resources import asset_path
from crysloop.resources import resolve_checkpoint as resolve_shipped
from crysloop.settings import resolve_device

KIND = "cdvae"
SHIPPED_CHECKPOINT = "cdvae_mp20_small.pt"


def shipped_checkpoint_path() -> Path:
    """Path of the small ConditionCDVAE+ model shipped inside the package."""
    return asset_path("checkpoints", SHIPPED_CHECKPOINT)


def resolve_checkpoint(path: str | Path | None) -> Path:
    """The file a ConditionCDVAE+ checkpoint setting names (``crysloop.resources.resolve_checkpoint``)."""
    return resolve_shipped(path, SHIPPED_CHECKPOINT)


def save_checkpoint(
    model: ConditionCDVAE,
    path: str | Path,
    gan: LatentGAN | None = None,
    metadata: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write config (with the training-set scalers), weights and the GAN's generator (and, for resuming,
    ``training_state``) to ``path`` atomically."""
    saved_gan = None
    if gan is not None:
        saved_gan = {
            "config": gan.config.to_dict(),
            "cond_dim": gan.cond_dim,
            "generator": {k: v.detach().cpu() for k, v in gan.generator.state_dict().items()},
        }
    return write_checkpoint(
        path, KIND, model.config.to_dict(), model.state_dict(), metadata, training_state, gan=saved_gan
    )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dictionary (``crysloop.models.checkpoint``); another model's checkpoint is an InputError."""
    return read_kind(path, KIND)


def load_checkpoint(
    path: str | Path | None = None, device: str | None = None
) -> tuple[ConditionCDVAE, LatentGAN | None]:
    """The model (eval mode) and its latent generator (None if no GAN was trained) stored at ``path``
    (default: the shipped checkpoint; see ``resolve_checkpoint``)."""

    payload = read_checkpoint(resolve_checkpoint(path))
    model = ConditionCDVAE(CDVAEConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    device = resolve_device(device)
    gan = None
    if payload.get("gan"):
        saved = payload["gan"]
        gan = LatentGAN(
            GANConfig.from_dict(saved["config"]), saved["cond_dim"], model.config.latent_dim, with_critic=False
        )
        gan.generator.load_state_dict(saved["generator"])
        gan = gan.to(device).eval()
    return model.to(device).eval(), gan
