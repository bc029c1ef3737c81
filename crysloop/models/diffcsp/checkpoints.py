"""Saving and loading DiffCSP checkpoints (config + EMA weights, optionally the training state for resuming)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crysloop.models.checkpoint import read_checkpoint as read_kind
from crysloop.models.checkpoint import write_checkpoint
from crysloop.models.diffcsp.config import DiffCSPConfig
from crysloop.models.diffcsp.model import DiffCSP
from crysloop.resources import asset_path, resolve_checkpoint
from crysloop.settings import resolve_device

KIND = "diffcsp"
SHIPPED_CHECKPOINT = "diffcsp_mp20_small.pt"


def shipped_checkpoint_path() -> Path:
    """Path of the small DiffCSP model shipped inside the package (ab initio + CSP, band gap and formation energy)."""
    return asset_path("checkpoints", SHIPPED_CHECKPOINT)


def save_checkpoint(
    model: DiffCSP,
    path: str | Path,
    training_state: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write the model's config and weights (and, for resuming, ``training_state``) to ``path`` atomically."""
    return write_checkpoint(path, KIND, model.config.to_dict(), model.state_dict(), metadata, training_state)


def read_checkpoint(path: str | Path | None) -> dict[str, Any]:
    """The checkpoint dictionary (``crysloop.models.checkpoint``) a setting names (``None``/``shipped``, a packaged
    file name or a path; ``crysloop.resources.resolve_checkpoint``); another file is an InputError."""
    return read_kind(resolve_checkpoint(path, SHIPPED_CHECKPOINT), KIND)


def load_checkpoint(path: str | Path | None = None, device: str | None = None) -> DiffCSP:
    """The DiffCSP model a checkpoint setting names (default: the shipped checkpoint), in eval mode on ``device``."""
    payload = read_checkpoint(path)
    model = DiffCSP(DiffCSPConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(resolve_device(device)).eval()
