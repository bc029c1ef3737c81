"""Trained models and what they generate, in the results database: every entry point that trains records its
checkpoint here, and ``crysloop sample composition`` stores its compositions."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from crysloop.chemistry.valence import ValenceAssignment
from crysloop.infra.campaign import plain
from crysloop.infra.db import database
from crysloop.infra.documents import GeneratedComposition, ModelCheckpoint, OxidationState


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def register_checkpoint(
    name: str,
    kind: str,
    path: Path,
    campaign: str | None = None,
    round_index: int | None = None,
    parent: str | None = None,
    conditions: list[str] | None = None,
    metrics: dict | None = None,
) -> ModelCheckpoint:
    """Record a saved model (idempotent by name)."""
    ModelCheckpoint.objects(name=name).update_one(
        upsert=True,
        set__kind=kind,
        set__path=str(path),
        set__sha256=sha256_file(path),
        set__campaign=campaign,
        set__round=round_index,
        set__parent=parent,
        set__conditions=conditions or [],
        set__metrics=plain(metrics or {}),
    )
    return ModelCheckpoint.objects.get(name=name)


def find_checkpoint(name: str) -> ModelCheckpoint | None:
    return ModelCheckpoint.objects(name=name).first()


def register_model(
    name: str, kind: str, path: str | Path, conditions: Sequence[str] = (), metrics: dict | None = None
) -> ModelCheckpoint:
    """``register_checkpoint`` in its own database connection, for the entry points that train outside a flow."""
    with database():
        return register_checkpoint(name, kind, Path(path), conditions=list(conditions), metrics=metrics)


def store_generated_compositions(
    samples: Sequence[ValenceAssignment],
    conditions: dict[str, float],
    checkpoint: str,
    campaign: str | None = None,
    round_index: int | None = None,
) -> int:
    """Store sampled compositions with the conditions and checkpoint they came from; returns how many."""
    documents = [
        GeneratedComposition(
            formula=s.formula,
            composition={e: float(c) for e, c in s.composition.get_el_amt_dict().items()},
            oxidation_states=[OxidationState(**r) for r in s.as_records()],
            ionic=s.ionic,
            conditions=conditions,
            checkpoint=checkpoint,
            campaign=campaign,
            round=round_index,
        )
        for s in samples
    ]
    with database():
        if documents:
            GeneratedComposition.objects.insert(documents, load_bulk=False)
    return len(documents)
