"""Compositions and their properties from tables: CDVAE-style CSVs (plain or .gz) or any structure file.

A CSV needs either a ``formula``/``composition`` column or a ``cif`` column; for CIFs the cell composition is
read from ``_chemical_formula_sum`` without building the Structure (fast for tens of thousands of rows). Other
inputs (extxyz, CIF/POSCAR folders) go through :func:`crysloop.data.datasets.read_structures`.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pymatgen.core import Composition

from crysloop.errors import InputError

_FORMULA_SUM = re.compile(r"^_chemical_formula_sum\s+['\"]?([^'\"\n]+)['\"]?\s*$", re.MULTILINE)
_FORMULA_COLUMNS = ("formula", "composition")


@dataclass
class CompositionRecord:
    """One composition of a dataset with its tabulated properties (numbers only)."""

    composition: Composition
    properties: dict = field(default_factory=dict)
    material_id: str = ""


def composition_from_cif(cif: str) -> Composition:
    """Cell composition from a CIF's ``_chemical_formula_sum`` line (falls back to parsing the structure)."""
    match = _FORMULA_SUM.search(cif)
    if match:
        return Composition(match.group(1))
    from pymatgen.core import Structure

    return Structure.from_str(cif, fmt="cif").composition


def _numeric(value) -> float | None:
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def read_compositions(path: str | Path) -> list[CompositionRecord]:
    """Compositions and numeric properties of every row of a CSV, or of every structure of a structure file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file() and (path.suffix == ".csv" or path.name.endswith(".csv.gz")):
        try:
            table = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise InputError(f"{path}: empty file (a CSV with a formula or cif column is expected)") from None
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, EOFError) as exc:
            raise InputError(f"{path}: not a readable CSV file ({exc})") from None
        column = next((c for c in _FORMULA_COLUMNS if c in table.columns), None)
        if column is None and "cif" not in table.columns:
            raise InputError(f"{path}: needs a 'formula', 'composition' or 'cif' column")
        property_columns = [c for c in table.columns if c not in (*_FORMULA_COLUMNS, "cif", "material_id")]
        texts = table[column].astype(str) if column else table["cif"].str.extract(_FORMULA_SUM, expand=False)
        parsed: dict[str, Composition] = {}
        records = []
        ids = table["material_id"].astype(str) if "material_id" in table.columns else table.index.astype(str)
        rows = table[property_columns].to_dict("records")
        for index, (text, material_id, row) in enumerate(zip(texts, ids, rows, strict=True)):
            try:
                if isinstance(text, str):
                    composition = parsed.get(text) or parsed.setdefault(text, Composition(text))
                else:
                    composition = composition_from_cif(table["cif"].iloc[index])
            except Exception as exc:  # pymatgen raises several types on bad formulas
                raise InputError(f"{path}: row {index}: cannot read the composition ({exc})") from None
            properties = {c: v for c, value in row.items() if (v := _numeric(value)) is not None}
            records.append(CompositionRecord(composition, properties, material_id))
        return records
    from crysloop.data.datasets import read_structures

    return [
        CompositionRecord(
            r.structure.composition,
            {k: v for k, p in r.properties.items() if (v := _numeric(p)) is not None},
            r.material_id,
        )
        for r in read_structures(path)
    ]


def write_assignments_csv(path: Path, assignments, extra: dict | None = None) -> None:
    """One row per valence assignment (formula, composition, ionic flag, oxidation states, ``extra`` columns); an
    unlabelled input (None) is an empty row, so rows stay aligned with the inputs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["formula", "composition", "ionic", "oxidation_states", *(extra or {})])
        for assignment in assignments:
            if assignment is None:
                writer.writerow(["", "", "", "", *(extra or {}).values()])
                continue
            composition = {e: int(c) for e, c in assignment.composition.get_el_amt_dict().items()}
            writer.writerow(
                [
                    assignment.formula,
                    json.dumps(composition),
                    assignment.ionic,
                    json.dumps(assignment.as_records()),
                    *(extra or {}).values(),
                ]
            )
