"""Database side of the van der Waals dataset builder: relaxation records keyed by build, kind and name."""

from __future__ import annotations

from crysloop.infra.documents import VdwRecord
from crysloop.infra.work import Ledger

RECORD_FIELDS = (
    "name",
    "formula",
    "status",
    "error",
    "converged",
    "steps",
    "energy",
    "structure",
    "extra",
    "stacking",
    "wall_time_s",
)


def vdw_ledger(build: str, kind: str) -> Ledger:
    """Relaxation records of one build (its key) and kind (reference, monolayer or bilayer), one per name."""
    return Ledger(VdwRecord, "name", {"build": build, "kind": kind})


def stored_records(build: str, kind: str) -> dict[str, dict]:
    """Records of one build and kind, by name, as plain dicts (``id`` and ``created_at`` left out)."""
    return {doc.name: {f: getattr(doc, f) for f in RECORD_FIELDS} for doc in vdw_ledger(build, kind).query()}


def save_record(build: str, kind: str, name: str, **fields) -> None:
    """Store (or replace) the record of ``name``: a killed build resumes from the records already saved."""
    vdw_ledger(build, kind).save(name, **fields)
