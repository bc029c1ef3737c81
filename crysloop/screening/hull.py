"""Energy above the convex hull of a candidate's chemical system, with its provenance and coverage.

Two kinds of references: Materials Project phases (the shipped table or mp-api, see
:mod:`crysloop.screening.mp_references`; candidate energies MP2020-corrected, as CrysVCD and Matbench Discovery do)
or structures of every sub-system relaxed with the same potential as the candidates (the MLIP-consistent hull,
free of the potential's systematic error but limited to the references one can relax). Every result records
its source and how many compounds its system and sub-systems hold: with none (elements only) the hull says
nothing about stability, and the label is ``unknown``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ase.build import bulk
from ase.data import atomic_numbers, covalent_radii, reference_states, vdw_radii
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition, Element, Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry
from pymatgen.io.ase import AseAtomsAdaptor

from crysloop.errors import CrysloopError, InputError

DIATOMIC = frozenset({"H", "N", "O", "F", "Cl", "Br", "I"})  # molecular crystals of dimers
NOBLE_GASES = frozenset({"He", "Ne", "Ar", "Kr", "Xe", "Rn"})
MOLECULE_SPACING = 3.0  # A between dimers in the starting molecular crystal


def chemsys_of(elements: Iterable[str | Element] | Composition | Structure) -> str:
    """``"Cl-Na"``: the element symbols sorted and joined, the key of references and candidates alike."""
    if isinstance(elements, Structure):
        elements = elements.composition
    if isinstance(elements, Composition):
        elements = elements.elements
    return "-".join(sorted({str(e) for e in elements}))


def chemical_subsystems(chemsys: str) -> list[str]:
    """Every non-empty sub-system of ``chemsys`` (``"Cl-Na"`` -> ``["Cl", "Na", "Cl-Na"]``)."""
    elements = sorted(chemsys.split("-"))
    return ["-".join(c) for n in range(1, len(elements) + 1) for c in itertools.combinations(elements, n)]


def _dimer_crystal(element: str) -> Structure:
    bond = 2 * covalent_radii[atomic_numbers[element]]
    a = bond + MOLECULE_SPACING
    return Structure(Lattice.cubic(a), [element, element], [[0, 0, 0], [bond / a, 0, 0]])


def _ase_reference_crystal(element: str) -> Structure | None:
    if reference_states[atomic_numbers[element]] is None:
        return None
    try:
        return AseAtomsAdaptor.get_structure(bulk(element))
    except (ValueError, RuntimeError, KeyError):  # ASE lacks the basis or lattice data for this state
        return None


def elemental_reference_structures(element: str) -> list[Structure]:
    """Starting structures for the elemental reference of ``element``, built offline.

    ASE's reference crystal where it can build one; dimers in a cubic box for H, N, O, F, Cl, Br, I; otherwise
    fcc, bcc, hcp, simple cubic and diamond prototypes scaled to covalent radii (fcc from van der Waals radii for
    noble gases), the lowest of which after relaxation serves. Dataset or Materials Project structures of the
    element, when supplied as references, take part too and win when lower.
    """
    if element not in atomic_numbers:
        raise InputError(f"unknown element {element!r}")
    if element in DIATOMIC:
        return [_dimer_crystal(element)]
    z = atomic_numbers[element]
    ase_reference = _ase_reference_crystal(element)
    if ase_reference is not None:
        return [ase_reference]
    if element in NOBLE_GASES:
        nn = 2 * float(vdw_radii[z]) if math.isfinite(vdw_radii[z]) else 3.5
        return [AseAtomsAdaptor.get_structure(bulk(element, "fcc", a=nn * math.sqrt(2)))]
    nn = 2 * float(covalent_radii[z])
    prototypes = [
        bulk(element, "fcc", a=nn * math.sqrt(2)),
        bulk(element, "bcc", a=nn * 2 / math.sqrt(3)),
        bulk(element, "hcp", a=nn, c=nn * math.sqrt(8 / 3)),
        bulk(element, "sc", a=nn),
        bulk(element, "diamond", a=nn * 4 / math.sqrt(3)),
    ]
    return [AseAtomsAdaptor.get_structure(atoms) for atoms in prototypes]


def reference_entry(structure: Structure, energy: float, entry_id: str, mlip: str) -> ComputedStructureEntry:
    """A hull entry for a relaxed reference (``energy`` in eV for the whole cell)."""
    return ComputedStructureEntry(structure, energy, entry_id=entry_id, data={"mlip": mlip})


@dataclass
class HullResult:
    """Where an energy lies relative to the hull of its chemical system (eV/atom), against which references."""

    e_above_hull: float  # negative when below the hull of the references (a new ground state)
    formation_energy_per_atom: float
    decomposition: dict[str, float] = field(default_factory=dict)  # reduced formula -> fraction
    source: str = "mlip"  # mp-table | mp-api | mlip
    n_compounds: int = 0  # known compounds (not elements) in the system and its sub-systems
    covered: bool = True  # False: no compound known in any binary or higher sub-system, stability unknown


def count_compounds(entries: Sequence[ComputedEntry]) -> int:
    """Distinct compounds (reduced formulas with two or more elements) among ``entries``."""
    return len({e.composition.reduced_formula for e in entries if len(e.composition.elements) > 1})


def build_phase_diagram(references: Sequence[ComputedEntry], chemsys: str) -> PhaseDiagram:
    """The phase diagram of ``chemsys`` from the references inside it; every element needs a reference."""
    elements = chemsys.split("-")
    entries = [e for e in references if set(map(str, e.composition.elements)) <= set(elements)]
    missing = [
        el
        for el in elements
        if not any(e.composition.is_element and str(e.composition.elements[0]) == el for e in entries)
    ]
    if missing:
        raise CrysloopError(f"no elemental reference for {', '.join(missing)} in {chemsys}")
    return PhaseDiagram(entries, elements=[Element(el) for el in elements])


def energy_above_hull(
    composition: Composition | Structure,
    energy: float,
    references: Sequence[ComputedEntry] | PhaseDiagram,
    source: str = "mlip",
) -> HullResult:
    """Energy above hull and formation energy per atom of ``energy`` (eV, whole cell) at ``composition``.

    ``references`` are entries on the same energy scale as ``energy`` (or a ready phase diagram); the candidate
    itself is not added to the hull, so a new ground state gets a negative distance. ``source`` names them.
    """
    if isinstance(composition, Structure):
        composition = composition.composition
    chemsys = chemsys_of(composition)
    diagram = references if isinstance(references, PhaseDiagram) else build_phase_diagram(references, chemsys)
    entry = ComputedEntry(composition, energy)
    decomposition, e_hull = diagram.get_decomp_and_e_above_hull(entry, allow_negative=True)
    n_compounds = count_compounds(diagram.all_entries)
    return HullResult(
        e_above_hull=float(e_hull),
        formation_energy_per_atom=float(diagram.get_form_energy_per_atom(entry)),
        decomposition={d.composition.reduced_formula: float(f) for d, f in decomposition.items()},
        source=source,
        n_compounds=n_compounds,
        covered=n_compounds > 0 or len(composition.elements) == 1,
    )


def materials_project_structures(
    chemsys: str, api_key: str | None = None, max_e_above_hull: float = 0.05
) -> list[Structure]:
    """Structures of all Materials Project phases within ``max_e_above_hull`` of the hull in every sub-system.

    Needs the ``mp-api`` client, network access and an API key (argument or ``MP_API_KEY``).
    """
    try:
        from mp_api.client import MPRester
    except ImportError as exc:
        raise CrysloopError("Materials Project references need the mp-api package (pip install mp-api)") from exc
    try:
        with MPRester(api_key) as mpr:
            docs = mpr.materials.summary.search(
                chemsys=chemical_subsystems(chemsys), energy_above_hull=(0, max_e_above_hull), fields=["structure"]
            )
    except Exception as exc:
        raise CrysloopError(f"Materials Project query for {chemsys} failed: {exc}") from exc
    return [doc.structure for doc in docs]
