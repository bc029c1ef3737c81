"""Checkpoint files written so that a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def save_atomically(payload: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path`` (folders created), then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path
