"""One checkpoint format for every crysloop model, written atomically.

A checkpoint is a dictionary of plain data, loaded with ``torch.load(weights_only=True)``::

    {"format": "crysloop-checkpoint", "version": 2, "kind": "diffcsp" | "cdvae" | "composition_lm",
     "config": {...}, "state_dict": {...}, "metadata": {...},
     "training_state": {...},  # only where the run can be resumed from the file
     ...}                      # the kind's own entries: "gan" (ConditionCDVAE+), "species" (composition model)

Version-1 files (one format per model, the shipped checkpoints among them) are read as version 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch

from crysloop.errors import InputError

FORMAT = "crysloop-checkpoint"
VERSION = 2
Kind = Literal["diffcsp", "cdvae", "composition_lm"]
KIND_NAMES = {"diffcsp": "DiffCSP", "cdvae": "ConditionCDVAE+", "composition_lm": "composition-model"}
_VERSION_1 = {"crysloop-diffcsp": "diffcsp", "crysloop-cdvae": "cdvae", "crysloop.composition_lm/1": "composition_lm"}
_FIELDS = ("format", "version", "kind", "config", "state_dict", "metadata", "training_state")


def save_atomically(payload: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path`` (folders created), flushed to disk, then renamed over
    ``path``: a crash at any moment leaves the old file or the new one, never part of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself reaches the disk
    finally:
        os.close(folder)
    return path


def write_checkpoint(
    path: str | Path,
    kind: Kind,
    config: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    metadata: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """Write a ``kind`` checkpoint to ``path`` atomically; ``extra`` holds the kind's own entries."""
    clash = set(extra) & set(_FIELDS)
    if clash:
        raise ValueError(f"checkpoint entries {sorted(clash)} are reserved")
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "metadata": metadata or {},
        **extra,
    }
    if training_state is not None:
        payload["training_state"] = training_state
    return save_atomically(payload, path)


def read_checkpoint(path: str | Path, kind: Kind) -> dict[str, Any]:
    """The ``kind`` checkpoint at ``path`` as a version-2 dictionary; a missing, unreadable or foreign file, or
    another model's checkpoint, is an InputError that says which."""
    path = Path(path)
    name = KIND_NAMES[kind]
    if not path.is_file():
        raise InputError(f"no {name} checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    found = _kind_of(payload)
    if found is None:
        raise InputError(f"{path} is not a crysloop checkpoint")
    if found != kind:
        raise InputError(f"{path} is a crysloop-{found} checkpoint, not a {name} one")
    if payload["format"] != FORMAT:
        payload = {**payload, "format": FORMAT, "version": 1, "kind": found}
    elif payload.get("version") != VERSION:
        raise InputError(
            f"{path}: {name} checkpoint of format version {payload.get('version')}; this crysloop "
            f"reads versions 1 and {VERSION}"
        )
    return payload


def resume_from(path: str | Path | None, kind: Kind) -> dict[str, Any] | None:
    """The ``kind`` checkpoint a run continues from: None when there is no file yet (a first run); a file without a
    training state (saved slim) is an InputError."""
    if path is None or not Path(path).is_file():
        return None
    payload = read_checkpoint(path, kind)
    if "training_state" not in payload:
        raise InputError(f"{path} holds no training state (saved slim); cannot resume")
    return payload


def _kind_of(payload: Any) -> str | None:
    """The model kind a loaded file declares (version 2 or 1), or None for anything else."""
    if not isinstance(payload, dict):
        return None
    if payload.get("format") == FORMAT:
        return payload.get("kind") if isinstance(payload.get("kind"), str) else None
    return _VERSION_1.get(payload.get("format"))
