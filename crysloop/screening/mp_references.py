"""Materials Project hull references: the shipped table of MP phases and MP2020 corrections of MLIP energies.

The table (``assets/hull/mp_phases.csv.gz``: material id, formula, corrected GGA/GGA+U energy per atom) holds the
MP-20 phases (stable or within 0.08 eV/atom of the hull, up to 20 atoms) and MP's elemental references; it is built
by ``benchmarks/mp_hull_table.py``. Candidate energies from a potential trained on raw MP energies (SevenNet,
MatterSim) are put on the same footing the way Matbench Discovery does: an entry with MP's run type and Hubbard U
values, corrected by pymatgen's ``MaterialsProject2020Compatibility`` (anion and U corrections). CHGNet was trained
on MP2020-corrected energies and predicts them directly, so its energies are used as they are (correcting them
again puts rocksalt NaCl 0.28 eV/atom below MP's hull, and MgO 0.37).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable
from functools import lru_cache

from pymatgen.core import Composition, Structure
from pymatgen.entries.compatibility import MaterialsProject2020Compatibility
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from crysloop.errors import CrysloopError
from crysloop.resources import asset_path
from crysloop.screening.hull import chemical_subsystems

TABLE = "mp_phases.csv.gz"
TABLE_COLUMNS = ("material_id", "formula", "energy_per_atom")
SOURCE_TABLE = "mp-table"  # reference-source names recorded with every e_above_hull
SOURCE_API = "mp-api"
SOURCE_MLIP = "mlip"
PREDICTS_CORRECTED = frozenset({"chgnet"})  # potentials trained on MP2020-corrected energies


@lru_cache(maxsize=1)
def _compatibility() -> MaterialsProject2020Compatibility:
    return MaterialsProject2020Compatibility(check_potcar=False)


def mp_hubbards(composition: Composition) -> dict[str, float]:
    """MP's Hubbard U values (eV) for ``composition``: set for Co, Cr, Fe, Mn, Mo, Ni, V, W in oxides and fluorides."""
    elements = {str(e) for e in composition.elements}
    settings = _compatibility().u_settings
    for anion in ("O", "F"):  # MP's input sets look for oxygen first
        if anion in elements:
            return {el: u for el, u in settings[anion].items() if el in elements}
    return {}


def mp2020_entry(structure: Structure, energy: float, entry_id: str | None = None) -> ComputedStructureEntry:
    """The MP2020-corrected entry of an MLIP ``energy`` (eV, whole cell) of ``structure``.

    Run type and U values are MP's for that chemistry, so the compatibility scheme applies the corrections a DFT
    calculation of the same compound would get; an entry the scheme rejects is an error.
    """
    hubbards = mp_hubbards(structure.composition)
    parameters = {"run_type": "GGA+U" if hubbards else "GGA", "is_hubbard": bool(hubbards), "hubbards": hubbards}
    entry = ComputedStructureEntry(structure, energy, parameters=parameters, entry_id=entry_id)
    processed = _compatibility().process_entry(entry, clean=True)
    if processed is None:
        raise CrysloopError(f"MP2020 compatibility rejected {structure.composition.reduced_formula}")
    return processed


def corrected_energy(structure: Structure, energy: float, mlip: str) -> float:
    """MLIP ``energy`` (eV, whole cell) of potential ``mlip`` on MP's corrected scale (MP2020 correction added
    unless the potential predicts corrected energies itself)."""
    if mlip.removesuffix("+d3") in PREDICTS_CORRECTED:
        return energy
    return mp2020_entry(structure, energy).energy


def table_entry(material_id: str, formula: str, energy_per_atom: float) -> ComputedEntry:
    """A hull entry of one table row (energy already corrected)."""
    composition = Composition(formula)
    return ComputedEntry(
        composition, energy_per_atom * composition.num_atoms, entry_id=material_id, data={"source": SOURCE_TABLE}
    )


@lru_cache(maxsize=1)
def _table() -> dict[str, list[ComputedEntry]]:
    """The shipped table as entries grouped by exact chemical system."""
    raw = asset_path("hull", TABLE).read_bytes()
    with io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(raw)), encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    grouped: dict[str, list[ComputedEntry]] = {}
    for row in rows:
        entry = table_entry(row["material_id"], row["formula"], float(row["energy_per_atom"]))
        grouped.setdefault("-".join(sorted(str(e) for e in entry.composition.elements)), []).append(entry)
    return grouped


def table_entries(chemsys: str, exclude_ids: Iterable[str] = ()) -> list[ComputedEntry]:
    """Shipped MP phases whose elements lie within ``chemsys`` (all its sub-systems), minus ``exclude_ids``."""
    excluded = set(exclude_ids)
    table = _table()
    return [e for sub in chemical_subsystems(chemsys) for e in table.get(sub, []) if e.entry_id not in excluded]


def api_entries(chemsys: str, api_key: str | None = None) -> list[ComputedEntry]:
    """All MP GGA/GGA+U entries of ``chemsys`` and its sub-systems through mp-api, MP2020-corrected by MP.

    Needs the ``mp-api`` client, network access and ``MP_API_KEY`` (or ``api_key``); offline, the tests answer the
    query with a stand-in MPRester.
    """
    try:
        from mp_api.client import MPRester
    except ImportError as exc:
        raise CrysloopError("Materials Project references need the mp-api package (pip install mp-api)") from exc
    try:
        with MPRester(api_key) as mpr:
            entries = mpr.get_entries_in_chemsys(
                chemsys.split("-"), compatible_only=True, additional_criteria={"thermo_types": ["GGA_GGA+U"]}
            )
    except Exception as exc:
        raise CrysloopError(f"Materials Project query for {chemsys} failed: {exc}") from exc
    return [
        ComputedEntry(e.composition, e.energy, entry_id=str(e.entry_id), data={"source": SOURCE_API}) for e in entries
    ]
