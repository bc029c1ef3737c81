"""Saving and loading composition-model checkpoints as plain types (config, vocabulary, state dict, metadata)."""

from __future__ import annotations

from pathlib import Path

import torch

from crysloop.errors import InputError
from crysloop.models.composition.model import CompositionLM, CompositionLMConfig
from crysloop.models.composition.vocab import CompositionVocabulary
from crysloop.resources import asset_path

FORMAT = "crysloop.composition_lm/1"
SHIPPED_CHECKPOINT = "composition_lm.pt"


def shipped_checkpoint_path() -> Path:
    """Path of the checkpoint shipped with crysloop (trained on MP-20 compositions, see training.py)."""
    return asset_path("checkpoints", SHIPPED_CHECKPOINT)


def save_checkpoint(model: CompositionLM, path: str | Path) -> Path:
    """Write the model to ``path`` (parent folders created); loadable with ``torch.load(weights_only=True)``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": model.config.as_dict(),
        "species": [[element, state] for element, state in model.vocabulary.species],
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": model.metadata,
    }
    torch.save(payload, path)
    return path


def load_checkpoint(path: str | Path | None = None, device: str = "cpu") -> CompositionLM:
    """Load a checkpoint (default: the shipped one) in eval mode on ``device``."""
    path = Path(path) if path is not None else shipped_checkpoint_path()
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors of foreign or corrupt files
        raise InputError(f"{path}: not a composition-model checkpoint ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"{path}: not a composition-model checkpoint (format {FORMAT} expected)")
    vocabulary = CompositionVocabulary([tuple(sp) for sp in payload["species"]])
    config = {"vocabulary": "full", **payload["config"]}  # checkpoints from before the choice used the full one
    model = CompositionLM(CompositionLMConfig.from_dict(config), vocabulary)
    model.load_state_dict(payload["state_dict"])
    model.metadata = payload.get("metadata", {})
    return model.to(device).eval()
