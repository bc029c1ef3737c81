"""Hull references relaxed with the screening potential: which structures of a system still need relaxing."""

from __future__ import annotations

from collections.abc import Sequence

from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry

from crysloop.data.canonical import structure_hash
from crysloop.screening.hull import elemental_reference_structures, reference_entry
from crysloop.screening.relax import RelaxConfig, relax_structures


def new_reference_entries(
    chemsys: str, known: set[str], structures: Sequence[Structure], mlip: str, config: RelaxConfig, batch_size: int
) -> list[ComputedStructureEntry]:
    """Entries of the references of exactly ``chemsys`` not among ``known`` (entry ids = canonical structure hashes),
    relaxed with potential ``mlip``.

    Sources: ``structures`` (known compounds, Materials Project or user structures) and, for an element, its
    offline elemental structures. Each is relaxed once per potential; only converged relaxations become references.
    """
    candidates = list(structures)
    if "-" not in chemsys:
        candidates = elemental_reference_structures(chemsys) + candidates
    todo: dict[str, Structure] = {}
    for structure in candidates:
        key = structure_hash(structure)
        if key not in known and key not in todo:
            todo[key] = structure
    if not todo:
        return []
    relaxed = relax_structures(list(todo.values()), mlip, batch_size=batch_size, config=config)
    return [reference_entry(r.structure, r.energy, key, mlip) for key, r in zip(todo, relaxed, strict=True) if r.ok]
