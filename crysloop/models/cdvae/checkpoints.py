"""Saving and loading ConditionCDVAE+ checkpoints: config with its scalers, weights, and the latent generator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from crysloop.errors import InputError
from crysloop.settings import resolve_device
from crysloop.models.cdvae.config import CDVAEConfig
from crysloop.models.cdvae.gan import GANConfig, LatentGAN
from crysloop.models.cdvae.model import ConditionCDVAE
from crysloop.models.checkpoint_io import save_atomically
from crysloop.resources import asset_path
from crysloop.resources import resolve_checkpoint as resolve_shipped

FORMAT = "crysloop-cdvae"
FORMAT_VERSION = 1
SHIPPED_CHECKPOINT = "cdvae_mp20_small.pt"


def shipped_checkpoint_path() -> Path:
    """Path of the small ConditionCDVAE+ model shipped inside the package."""
    return asset_path("checkpoints", SHIPPED_CHECKPOINT)


def resolve_checkpoint(path: str | Path | None) -> Path:
    """The file a ConditionCDVAE+ checkpoint setting names (``crysloop.resources.resolve_checkpoint``)."""
    return resolve_shipped(path, SHIPPED_CHECKPOINT)


def save_checkpoint(model: ConditionCDVAE, path: str | Path, gan: LatentGAN | None = None,
                    metadata: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """Write config (with the training-set scalers), weights and the GAN's generator to ``path`` atomically."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": metadata or {},
        "gan": None,
    }
    if gan is not None:
        payload["gan"] = {"config": gan.config.to_dict(), "cond_dim": gan.cond_dim,
                          "generator": {k: v.detach().cpu() for k, v in gan.generator.state_dict().items()}}
    return save_atomically(payload, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dictionary (weights-only unpickling); another model's checkpoint is an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no ConditionCDVAE+ checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file fails in many ways
        raise InputError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    kind = payload.get("format") if isinstance(payload, dict) else None
    if kind != FORMAT:
        found = f"a {kind} checkpoint" if isinstance(kind, str) else "not a crysloop checkpoint"
        raise InputError(f"{path} is {found}, not a ConditionCDVAE+ ({FORMAT}) checkpoint")
    return payload


def load_checkpoint(path: str | Path | None = None, device: str | None = None) -> tuple[ConditionCDVAE, LatentGAN | None]:
    """The model (eval mode) and its latent generator (None if no GAN was trained) stored at ``path``
    (default: the shipped checkpoint; see ``resolve_checkpoint``)."""

    payload = read_checkpoint(resolve_checkpoint(path))
    model = ConditionCDVAE(CDVAEConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    device = resolve_device(device)
    gan = None
    if payload.get("gan"):
        saved = payload["gan"]
        gan = LatentGAN(GANConfig.from_dict(saved["config"]), saved["cond_dim"], model.config.latent_dim,
                        with_critic=False)  # fmt: skip
        gan.generator.load_state_dict(saved["generator"])
        gan = gan.to(device).eval()
    return model.to(device).eval(), gan
