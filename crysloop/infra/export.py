"""Exporting candidates from the results database as CIF files, extxyz, CSV or JSON."""

from __future__ import annotations

import json
from pathlib import Path

from crysloop.data.datasets import CrystalRecord, write_records_csv
from crysloop.errors import InputError
from crysloop.infra.queries import best_structure, candidate_rows

FORMATS = ("cif", "extxyz", "csv", "json")


def export_candidates(candidates, out: Path, fmt: str, mlip: str | None = None) -> Path:
    """Write candidates (their most refined structures plus results) to ``out``; returns what was written."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    candidates = list(candidates)
    rows = {row.structure_hash: row.as_dict() for row in candidate_rows(candidates, mlip=mlip)}
    structures = [(c, best_structure(c, mlip)) for c in candidates]
    out = Path(out)
    if fmt == "cif":
        out.mkdir(parents=True, exist_ok=True)
        for candidate, structure in structures:
            structure.to(filename=str(out / f"{candidate.formula}_{candidate.structure_hash[:10]}.cif"))
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        records = [
            CrystalRecord(c.material_id or c.structure_hash, s, _scalars(rows[c.structure_hash])) for c, s in structures
        ]
        write_records_csv(records, out)
    elif fmt == "extxyz":
        from ase.io import write
        from pymatgen.io.ase import AseAtomsAdaptor

        frames = []
        for candidate, structure in structures:
            atoms = AseAtomsAdaptor.get_atoms(structure)
            atoms.info.update({k: v for k, v in _scalars(rows[candidate.structure_hash]).items() if v is not None})
            frames.append(atoms)
        write(out, frames, format="extxyz")
    else:
        payload = [{**rows[c.structure_hash], "structure": s.as_dict()} for c, s in structures]
        out.write_text(json.dumps(payload, indent=1, default=str))
    return out


def _scalars(row: dict) -> dict:
    return {k: v for k, v in row.items() if isinstance(v, (int, float, str, bool)) or v is None}
