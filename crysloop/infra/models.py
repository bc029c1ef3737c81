"""Trained models and what they generate, in the results database: every entry point that trains records its
checkpoint here, and ``crysloop compositions sample`` stores its compositions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from crysloop.chemistry.valence import ValenceAssignment
from crysloop.infra.campaign import register_checkpoint
from crysloop.infra.db import database
from crysloop.infra.documents import GeneratedComposition, ModelCheckpoint, OxidationState


def register_model(name: str, kind: str, path: str | Path, conditions: Sequence[str] = (),
                   metrics: dict | None = None) -> ModelCheckpoint:  # fmt: skip
    """Record the checkpoint at ``path`` as ``name`` (``kind``: composition, structure or cdvae; idempotent)."""
    with database():
        return register_checkpoint(name, kind, Path(path), conditions=list(conditions), metrics=metrics)


def store_generated_compositions(samples: Sequence[ValenceAssignment], conditions: dict[str, float], checkpoint: str,
                                 campaign: str | None = None, round_index: int | None = None) -> int:  # fmt: skip
    """Store sampled compositions with the conditions and checkpoint they came from; returns how many."""
    documents = [
        GeneratedComposition(
            formula=s.formula, composition={e: float(c) for e, c in s.composition.get_el_amt_dict().items()},
            oxidation_states=[OxidationState(**r) for r in s.as_records()], ionic=s.ionic, conditions=conditions,
            checkpoint=checkpoint, campaign=campaign, round=round_index,
        )
        for s in samples
    ]  # fmt: skip
    with database():
        if documents:
            GeneratedComposition.objects.insert(documents, load_bulk=False)
    return len(documents)
