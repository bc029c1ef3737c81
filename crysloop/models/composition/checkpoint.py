"""Saving and loading composition-model checkpoints: config, vocabulary (its species), weights, metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crysloop.models.checkpoint import read_checkpoint as read_kind
from crysloop.models.checkpoint import write_checkpoint
from crysloop.models.composition.model import CompositionLM, CompositionLMConfig
from crysloop.models.composition.vocab import CompositionVocabulary
from crysloop.resources import asset_path, resolve_checkpoint

KIND = "composition_lm"
SHIPPED_CHECKPOINT = "composition_lm.pt"


def shipped_checkpoint_path() -> Path:
    """Path of the checkpoint shipped with crysloop (trained on MP-20 compositions, see training.py)."""
    return asset_path("checkpoints", SHIPPED_CHECKPOINT)


def save_checkpoint(model: CompositionLM, path: str | Path, training_state: dict[str, Any] | None = None) -> Path:
    """Write the model (and, for resuming, ``training_state``) to ``path`` atomically."""
    species = [[element, state] for element, state in model.vocabulary.species]
    return write_checkpoint(
        path, KIND, model.config.as_dict(), model.state_dict(), model.metadata, training_state, species=species
    )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dictionary (``crysloop.models.checkpoint``); another file is an InputError."""
    return read_kind(path, KIND)


def load_checkpoint(path: str | Path | None = None, device: str = "cpu") -> CompositionLM:
    """Load a checkpoint (default: the shipped one) in eval mode on ``device``."""
    payload = read_checkpoint(resolve_checkpoint(path, SHIPPED_CHECKPOINT))
    vocabulary = CompositionVocabulary([tuple(sp) for sp in payload["species"]])
    config = {"vocabulary": "full", **payload["config"]}  # checkpoints from before the choice used the full one
    model = CompositionLM(CompositionLMConfig.from_dict(config), vocabulary)
    model.load_state_dict(payload["state_dict"])
    model.metadata = payload.get("metadata", {})
    return model.to(device).eval()
