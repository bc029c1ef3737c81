"""Database access of the van der Waals dataset builder: relaxation records keyed by build, kind and name."""

from __future__ import annotations

from crysloop.infra.documents import VdwRecord


def stored_records(build: str, kind: str) -> dict[str, dict]:
    """Records of one build and kind, by name, as plain dicts (``id`` and ``created_at`` left out)."""
    fields = ("name", "formula", "status", "error", "converged", "steps", "energy", "structure", "extra", "stacking",
              "wall_time_s")  # fmt: skip
    return {doc.name: {f: getattr(doc, f) for f in fields} for doc in VdwRecord.objects(build=build, kind=kind)}


def save_record(build: str, kind: str, name: str, **fields) -> None:
    """Store (or replace) the record of ``name``: a killed build resumes from the records already saved."""
    VdwRecord.objects(build=build, kind=kind, name=name).update_one(upsert=True, **{f"set__{k}": v for k, v in fields.items()})

