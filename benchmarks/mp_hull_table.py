"""Build the shipped Materials Project hull table (crysloop/assets/hull/mp_phases.csv.gz) from ../shared/data.

Rows: every distinct MP-20 phase in mp_20_sample (train/val/test) and mp_20_biternary (val/test), with its corrected
total energy per atom rebuilt as formation energy per atom + the composition-weighted energies per atom of MP's
elemental reference entries (hull_refs, MP2020-corrected), plus those 89 elemental references themselves.
MP-20's formation energies come from the same corrected MP energies the elemental references belong to.
Usage: python benchmarks/mp_hull_table.py [--out crysloop/assets/hull/mp_phases.csv.gz]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from pathlib import Path

from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry

from crysloop.screening.mp_references import TABLE_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SOURCES = [DATA / "mp_20_sample" / f"{s}.csv.gz" for s in ("train", "val", "test")]
SOURCES += [DATA / "mp_20_biternary" / f"{s}.csv.gz" for s in ("val", "test")]
ELEMENTAL = DATA / "hull_refs" / "mp_elemental_reference_entries.json.gz"


def elemental_references() -> dict[str, ComputedEntry]:
    """Element symbol -> MP's elemental reference entry (corrected energy)."""
    with gzip.open(ELEMENTAL, "rt") as handle:
        return {symbol: ComputedEntry.from_dict(d) for symbol, d in json.load(handle).items()}


def table_rows() -> list[dict]:
    """One row per distinct MP phase: material id, reduced formula, corrected energy per atom (eV)."""
    references = elemental_references()
    rows: dict[str, dict] = {}
    for symbol, entry in references.items():
        material_id = entry.data.get("material_id") or entry.entry_id
        rows[material_id] = {
            "material_id": material_id,
            "formula": symbol,
            "energy_per_atom": round(entry.energy_per_atom, 6),
        }
    for path in SOURCES:
        with gzip.open(path, "rt") as handle:
            for record in csv.DictReader(handle):
                if record["material_id"] in rows:
                    continue
                composition = Composition(record["pretty_formula"])
                reference = sum(
                    composition.get_atomic_fraction(el) * references[str(el)].energy_per_atom
                    for el in composition.elements
                )
                energy = float(record["formation_energy_per_atom"]) + reference
                rows[record["material_id"]] = {
                    "material_id": record["material_id"],
                    "formula": composition.reduced_formula,
                    "energy_per_atom": round(energy, 6),
                }
    return sorted(rows.values(), key=lambda r: r["material_id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "crysloop" / "assets" / "hull" / "mp_phases.csv.gz")
    args = parser.parse_args()
    rows = table_rows()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.out, "wt", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    systems = {"-".join(sorted(str(e) for e in Composition(r["formula"]).elements)) for r in rows}
    print(
        json.dumps(
            {
                "benchmark": "mp_hull_table",
                "rows": len(rows),
                "chemical_systems": len(systems),
                "bytes": args.out.stat().st_size,
                "out": str(args.out.relative_to(ROOT)),
            }
        )
    )


if __name__ == "__main__":
    main()
