"""Saving and loading DiffCSP checkpoints (config + weights, optionally the training state for resuming)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from crysloop.errors import InputError
from crysloop.settings import resolve_device
from crysloop.models.checkpoint_io import save_atomically
from crysloop.models.diffcsp.config import DiffCSPConfig
from crysloop.models.diffcsp.model import DiffCSP
from crysloop.resources import asset_path

FORMAT_VERSION = 1
SHIPPED_CHECKPOINT = "diffcsp_mp20_small.pt"


def shipped_checkpoint_path() -> Path:
    """Path of the small DiffCSP model shipped inside the package (ab initio + CSP, band gap and formation energy)."""
    return asset_path("checkpoints", SHIPPED_CHECKPOINT)


def save_checkpoint(model: DiffCSP, path: str | Path, training_state: dict[str, Any] | None = None,
                    metadata: dict[str, Any] | None = None) -> Path:
    """Write the model's config and weights (and, for resuming, ``training_state``) to ``path`` atomically."""
    payload = {
        "format": "crysloop-diffcsp",
        "version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": metadata or {},
    }
    if training_state is not None:
        payload["training_state"] = training_state
    return save_atomically(payload, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dictionary (weights-only unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no DiffCSP checkpoint at {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != "crysloop-diffcsp":
        raise InputError(f"{path} is not a crysloop DiffCSP checkpoint")
    return payload


def load_checkpoint(path: str | Path | None = None, device: str | None = None) -> DiffCSP:
    """The DiffCSP model stored at ``path`` (default: the shipped checkpoint), in eval mode on ``device``."""
    payload = read_checkpoint(path or shipped_checkpoint_path())
    model = DiffCSP(DiffCSPConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(resolve_device(device)).eval()
