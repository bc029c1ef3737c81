"""Structural and compositional validity of generated crystals, as defined by CDVAE's evaluation code.

Compositional validity reproduces CDVAE's ``smact_validity`` (written against smact 2.x) on smact 4:
smact 4 changed ``neutral_ratios`` (it no longer returns ``(bool, ratios)``), made the ICSD-24 list the default
``Element.oxidation_states`` (smact 2.x used the SMACT-2014 list, now ``oxidation_states_smact14``) and made
``pauling_test`` return False where an electronegativity is unknown (smact 2.x raised ``TypeError``, which CDVAE
caught and counted as a pass). The function below keeps the smact 2.x semantics exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from pymatgen.core import Composition, Element, Structure

from crysloop.data.datasets import MAX_VOLUME_PER_ATOM
from crysloop.data.graph import radius_graph_pbc

MIN_DISTANCE = 0.5  # A, CDVAE's structure_validity cutoff
MIN_VOLUME = 0.1  # A^3, CDVAE's "unrealistically small lattice"
# Beyond these a cell holds no crystal: >10x the sparsest MP-20 crystal (93 A^3/atom, the data readers' limit) and
# 5x its longest cell vector (41 A); an untrained generator emits cells of 10^9 A^3/atom, on which neighbour searches
# exhaust memory
MAX_LATTICE_LENGTH = 200.0  # A


@dataclass(frozen=True)
class Validity:
    """Validity flags of one crystal: compositional, structural and both."""

    composition: bool
    structure: bool

    @property
    def valid(self) -> bool:
        return self.composition and self.structure


def plausible_cell(structure: Structure, min_volume: float = MIN_VOLUME) -> bool:
    """True when the cell can hold a crystal: finite entries, volume between ``min_volume`` and
    ``MAX_VOLUME_PER_ATOM`` per atom, no cell vector longer than ``MAX_LATTICE_LENGTH``.

    Cheap (no neighbour search): checked before every step whose cost grows with the cell (neighbour lists,
    CrystalNN's Voronoi search, StructureMatcher), which on an exploded cell can take tens of GB.
    """
    lattice = structure.lattice
    if not np.all(np.isfinite(lattice.matrix)) or not np.all(np.isfinite(structure.frac_coords)):
        return False
    volume = lattice.volume
    return min_volume <= volume <= MAX_VOLUME_PER_ATOM * len(structure) and max(lattice.abc) <= MAX_LATTICE_LENGTH


def structure_validity(structure: Structure, cutoff: float = MIN_DISTANCE, min_volume: float = MIN_VOLUME) -> bool:
    """True when the cell is plausible (:func:`plausible_cell`) and no two atoms sit closer than ``cutoff``.

    Every pair distance counts, periodic images included (an atom and its own image too), found with a neighbour
    list. CDVAE's ``distance_matrix`` check looks only at minimum images between distinct sites; both agree on
    ordinary cells, this one is also right for very skewed cells and lattice vectors shorter than ``cutoff``.
    """
    if not plausible_cell(structure, min_volume):
        return False
    reduced = structure.lattice.get_lll_reduced_lattice()
    if min(reduced.abc) < cutoff:
        return False  # an atom and its own periodic image are closer than the cutoff
    spacings = reduced.volume / np.linalg.norm(np.cross(reduced.matrix[[1, 2, 0]], reduced.matrix[[2, 0, 1]]), axis=1)
    if np.prod(2 * np.ceil(cutoff / spacings) + 1) > 1e6:
        return False  # a pathologically flat cell (e.g. from an untrained generator): no crystal, and no memory for it
    lll = structure.get_reduced_structure("LLL")  # a well-conditioned basis keeps the neighbour search small
    # crysloop's periodic radius graph (checked against pymatgen) needs memory ~ atoms^2 x images, never the
    # cell's size, unlike pymatgen's grid search, which fails on the huge cells an untrained generator can emit
    graph = radius_graph_pbc(
        torch.tensor(lll.frac_coords), torch.tensor(lll.lattice.matrix)[None], torch.tensor([len(lll)]), cutoff
    )
    return not bool((graph.distances < cutoff).any())


def _reduced_counts(composition: Composition) -> tuple[tuple[str, ...], tuple[int, ...]] | None:
    """Element symbols ordered by atomic number with their gcd-reduced integer counts; None if fractional."""
    amounts = composition.element_composition.get_el_amt_dict()
    items = sorted(amounts.items(), key=lambda kv: Element(kv[0]).Z)
    counts = [round(n) for _, n in items]
    if any(abs(n - c) > 1e-6 or c <= 0 for (_, n), c in zip(items, counts, strict=True)):
        return None
    divisor = math.gcd(*counts)
    return tuple(e for e, _ in items), tuple(c // divisor for c in counts)


def _pauling_ok(ox_states: tuple[int, ...], enegs: tuple[float | None, ...]) -> bool:
    """smact 2.x ``pauling_test`` as CDVAE called it: every cation less electronegative than every anion.

    A cation-anion pair with an unknown electronegativity raised ``TypeError`` in smact 2.x, which CDVAE caught as a
    pass for the whole combination; pairs are visited in the same order, so the result is identical.
    """
    n = len(ox_states)
    for i in range(n):
        for j in range(i + 1, n):
            ox1, ox2, e1, e2 = ox_states[i], ox_states[j], enegs[i], enegs[j]
            opposite = (ox1 > 0 and ox2 < 0) or (ox1 < 0 and ox2 > 0)
            if not opposite:
                continue
            if e1 is None or e2 is None:
                return True
            if (ox1 > 0 and e1 >= e2) or (ox1 < 0 and e1 <= e2):
                return False
    return True


@lru_cache(maxsize=65536)
def smact_validity(elements: tuple[str, ...], counts: tuple[int, ...], use_pauling_test: bool = True) -> bool:
    """CDVAE's SMACT test: one element or all metals pass; else some charge-neutral assignment of SMACT-2014
    oxidation states (one per element) must also pass the Pauling electronegativity test."""
    import smact

    if len(set(elements)) == 1:
        return True
    if all(e in smact.metals for e in elements):
        return True
    try:
        smact_elements = [smact.Element(e) for e in elements]
    except KeyError:
        return False
    ox_lists = [e.oxidation_states_smact14 or [] for e in smact_elements]
    if any(len(o) == 0 for o in ox_lists):
        return False
    enegs = tuple(e.pauling_eneg for e in smact_elements)
    states = [np.asarray(o, dtype=np.int64) for o in ox_lists]
    if not _neutral_sum_reachable(states, counts):
        return False
    pauling = lru_cache(maxsize=None)(lambda signs: _pauling_ok(signs, enegs))
    for neutral in _neutral_combinations(states, counts):
        if not use_pauling_test:
            return True
        if any(pauling(tuple(int(x) for x in row)) for row in np.unique(np.sign(neutral), axis=0)):
            return True
    return False


def _neutral_sum_reachable(states: list[np.ndarray], counts: tuple[int, ...]) -> bool:
    """Whether some choice of one state per element sums to zero charge (a set of reachable sums, no enumeration)."""
    sums = {0}
    for options, count in zip(states, counts, strict=True):
        sums = {total + int(state) * count for total in sums for state in options}
    return 0 in sums


def _neutral_combinations(states: list[np.ndarray], counts: tuple[int, ...], chunk: int = 1 << 16):
    """Charge-neutral rows of the product of the oxidation-state lists, in chunks: memory stays bounded where the
    product is huge (15 elements with 4 states each are 10^9 combinations)."""
    shape = tuple(len(options) for options in states)
    weights = np.asarray(counts, dtype=np.int64)
    for start in range(0, math.prod(shape), chunk):
        digits = np.unravel_index(np.arange(start, min(start + chunk, math.prod(shape))), shape)
        combos = np.stack([options[d] for options, d in zip(states, digits, strict=True)], axis=1)
        neutral = combos[combos @ weights == 0]
        if len(neutral):
            yield neutral


def composition_validity(composition: Composition, use_pauling_test: bool = True) -> bool:
    """SMACT charge neutrality with the Pauling test on the reduced composition (all-metal and unary pass)."""
    reduced = _reduced_counts(composition)
    if reduced is None:
        return False
    return smact_validity(*reduced, use_pauling_test=use_pauling_test)


def validity(structure: Structure) -> Validity:
    """Compositional and structural validity of one crystal."""
    return Validity(composition=composition_validity(structure.composition), structure=structure_validity(structure))
