"""Layer-aware evaluation of generated van der Waals bilayers: layers, gaps, vacuum and layer-aware novelty.

Layers are the connected components of the covalent bond graph (bond = distance below ``bond_scale`` x the sum of
Cordero covalent radii), merged when their heights overlap; heights are measured along the normal of the ab plane.
A sample is a proper bilayer when it has two layers, a gap in a physical range and the vacuum kept; the failures of
3D-periodic generation are layers that drift apart, come too close, bond across the gap or lose the vacuum.
Layer-aware novelty compares each layer (its atomic planes bottom to top, hence composition and flip) and the
stacking (which in-plane site A/B/C every plane sits on: rotation and registry), so a sample StructureMatcher calls
novel that only re-stacks a known pair of layers, or repeats a known stacking, is reported as false novelty.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pymatgen.analysis.local_env import CovalentRadius
from pymatgen.core import Structure
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from crysloop.errors import InputError
from crysloop.evaluation.matching import PYMATGEN_TOLERANCES, MatchTolerances

CATEGORIES = ("proper_bilayer", "drifted_apart", "too_close", "bonded_across", "vacuum_lost", "other")
_SITES = {(0, 0): "A", (1, 2): "B", (2, 1): "C"}  # in-plane positions of a hexagonal 1x1 cell, in thirds
MIN_VOLUME_PER_ATOM = 1.0  # A^3; the densest solids hold about 5 (diamond 5.7)


@dataclass(frozen=True)
class LayerCriteria:
    """What counts as bonded, as a physical vdW gap and as vacuum (A)."""

    # On the shipped MLIP-relaxed bilayers, bonds within a layer reach 1.06 x the radii sum and the closest contact
    # across a vdW gap is 1.23 x (Te-Te at 3.39 A); 1.15 separates the two.
    bond_scale: float = 1.15
    gap_min: float = 2.0
    gap_max: float = 4.5
    min_vacuum: float = 8.0
    plane_tol: float = 0.6  # atoms within this height of each other form one atomic plane
    site_tol: float = 0.08  # fractional in-plane distance to an A/B/C site


@dataclass
class LayerAnalysis:
    """Layers of one structure along c: count, interlayer gaps, vacuum, category and layer-aware descriptors."""

    n_layers: int
    gaps: list[float]  # between consecutive layers, bottom to top (A)
    vacuum: float  # the widest empty slab along c (A); 0 when bonds run through it
    periodic_along_c: bool  # the bond network crosses the cell boundary along c: no vacuum at all
    category: str
    layers: list[str] = field(default_factory=list)  # per layer: atomic planes bottom to top, e.g. "Se|Ga|Ga|S"
    stacking: str | None = None  # canonical plane/site sequence of a 1x1 hexagonal bilayer, None otherwise

    @property
    def layered(self) -> bool:
        return not self.periodic_along_c and self.vacuum > 0

    @property
    def pair(self) -> tuple[str, ...]:
        """The unordered pair of layer identities (each layer up to a flip)."""
        return tuple(sorted(min(layer, "|".join(reversed(layer.split("|")))) for layer in self.layers))


def covalent_radius(symbol: str) -> float:
    """Cordero covalent radius (A); Cordero's table ends at Cm, so Bk-Fm (which ab initio generators over Z <= 100
    can emit) take Cm's."""
    return CovalentRadius.radius.get(symbol, CovalentRadius.radius["Cm"])


def _bonds(structure: Structure, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, image) of every bonded pair under the covalent-radius criterion."""
    radii = np.array([covalent_radius(site.specie.symbol) for site in structure])
    r_max = 2 * scale * radii.max()
    i, j, images, distances = structure.get_neighbor_list(r_max)
    bonded = distances < scale * (radii[i] + radii[j])
    return i[bonded], j[bonded], images[bonded]


def _components(structure: Structure, scale: float) -> tuple[list[np.ndarray], bool, np.ndarray]:
    """Bonded components (site indices), whether one is bonded to its own image along c, and unwrapped fractional c."""
    n = len(structure)
    i, j, images = _bonds(structure, scale)
    count, labels = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)
    # unwrap fractional c within each component; a bond closing a loop with a net c shift makes it periodic along c
    unwrapped = np.full(n, np.nan)
    periodic = False
    neighbours: dict[int, list[tuple[int, int]]] = {}
    for a, b, image in zip(i, j, images[:, 2] if len(i) else [], strict=True):
        neighbours.setdefault(int(a), []).append((int(b), int(image)))
    fc = structure.frac_coords[:, 2]
    for start in range(n):
        if not np.isnan(unwrapped[start]):
            continue
        unwrapped[start] = fc[start]
        stack = [start]
        while stack:
            a = stack.pop()
            for b, image in neighbours.get(a, []):
                target = unwrapped[a] + fc[b] + image - fc[a]
                if np.isnan(unwrapped[b]):
                    unwrapped[b] = target
                    stack.append(b)
                elif abs(unwrapped[b] - target) > 0.5:
                    periodic = True
    components = [np.flatnonzero(labels == k) for k in range(count)]
    for members in components:  # each component's centre back into the cell
        unwrapped[members] -= np.floor(unwrapped[members].mean())
    return components, periodic, unwrapped


def _site_label(frac: np.ndarray, origin: np.ndarray, tol: float) -> str | None:
    thirds = np.mod(frac - origin, 1.0) * 3
    nearest = np.round(thirds).astype(int) % 3
    if np.max(np.abs(thirds - np.round(thirds))) > 3 * tol:
        return None
    return _SITES.get(tuple(nearest))


def _planes(structure: Structure, members: np.ndarray, heights: np.ndarray, tol: float) -> list[list[int]]:
    order = members[np.argsort(heights[members], kind="stable")]
    planes: list[list[int]] = [[int(order[0])]]
    for index in order[1:]:
        if heights[index] - heights[planes[-1][-1]] > tol:
            planes.append([])
        planes[-1].append(int(index))
    return planes


def _stacking(structure: Structure, planes: list[list[list[int]]], tol: float) -> str | None:
    """Canonical (species, site) sequence of a 1x1 hexagonal bilayer with one atom per plane, else None."""
    lattice = structure.lattice
    hexagonal = abs(lattice.gamma - 120) < 1.0 or abs(lattice.gamma - 60) < 1.0
    if not (hexagonal and abs(lattice.a - lattice.b) < 0.02 * lattice.a):
        return None
    flat = [p for layer in planes for p in layer]
    if any(len(p) != 1 for p in flat):
        return None
    frac = structure.frac_coords[:, :2]
    species = [structure[p[0]].specie.symbol for p in flat]
    variants = []
    for sequence in (flat, flat[::-1]):  # the bilayer and the same bilayer turned upside down
        for mirror in (False, True):  # B <-> C: the in-plane inversion through the origin site
            origin = frac[sequence[0][0]]
            labels = [_site_label(frac[p[0]], origin, tol) for p in sequence]
            if None in labels:
                return None
            if mirror:
                labels = [{"B": "C", "C": "B"}.get(label, label) for label in labels]
            names = species if sequence is flat else species[::-1]
            variants.append(" ".join(f"{s}:{label}" for s, label in zip(names, labels, strict=True)))
    return min(variants)


def analyse_layers(structure: Structure, criteria: LayerCriteria = LayerCriteria()) -> LayerAnalysis:
    """Find the layers of ``structure`` along c, its gaps and vacuum, and classify it as a bilayer.

    A collapsed cell (below ``MIN_VOLUME_PER_ATOM``, as generators sometimes emit) has no layers: ``other``."""
    if structure.volume < MIN_VOLUME_PER_ATOM * len(structure):
        return LayerAnalysis(0, [], 0.0, False, "other")
    components, periodic, unwrapped = _components(structure, criteria.bond_scale)
    normal = np.cross(structure.lattice.matrix[0], structure.lattice.matrix[1])
    normal /= np.linalg.norm(normal)
    height = abs(float(np.dot(structure.lattice.matrix[2], normal)))  # cell height along the normal
    if periodic:
        return LayerAnalysis(1, [], 0.0, True, "vacuum_lost")
    # heights (A) along the normal, continuous within each component
    frac = structure.frac_coords.copy()
    frac[:, 2] = unwrapped
    z = frac @ structure.lattice.matrix @ normal
    extents = sorted((float(z[m].min()), float(z[m].max()), m) for m in components)
    # merge components whose heights overlap (fragments of one layer), cyclically along c
    layers: list[list] = []
    for low, high, members in extents:
        if layers and low <= layers[-1][1] + 1e-6:
            layers[-1][1] = max(layers[-1][1], high)
            layers[-1][2] = np.concatenate([layers[-1][2], members])
        else:
            layers.append([low, high, members])
    spans = [(low, high) for low, high, _ in layers]
    gaps_cyclic = [
        spans[(k + 1) % len(spans)][0] - spans[k][1] + (height if k == len(spans) - 1 else 0.0)
        for k in range(len(spans))
    ]
    widest = int(np.argmax(gaps_cyclic))
    vacuum = float(gaps_cyclic[widest])
    # list layers from just above the vacuum upward
    order = [(widest + 1 + k) % len(layers) for k in range(len(layers))]
    gaps = [float(gaps_cyclic[k]) for k in order[:-1]]
    planes = [_planes(structure, layers[k][2], z, criteria.plane_tol) for k in order]
    names = [
        "|".join("".join(sorted(structure[i].specie.symbol for i in plane)) for plane in layer) for layer in planes
    ]
    stacking = _stacking(structure, planes, criteria.site_tol) if len(layers) == 2 else None
    return LayerAnalysis(
        len(layers), gaps, vacuum, False, _category(len(layers), gaps, vacuum, criteria), names, stacking
    )


def _category(n_layers: int, gaps: list[float], vacuum: float, criteria: LayerCriteria) -> str:
    if vacuum < criteria.min_vacuum:
        return "vacuum_lost"
    if n_layers == 1:
        return "bonded_across"
    if n_layers != 2:
        return "other"
    if gaps[0] > criteria.gap_max:
        return "drifted_apart"
    if gaps[0] < criteria.gap_min:
        return "too_close"
    return "proper_bilayer"


def require_layered(
    structures: Sequence[Structure], what: str, criteria: LayerCriteria = LayerCriteria()
) -> list[LayerAnalysis]:
    """Analyses of ``structures``; a structure without a vacuum gap along c is an ``InputError`` naming it."""
    analyses = []
    for index, structure in enumerate(structures):
        analysis = analyse_layers(structure, criteria)
        if not analysis.layered or analysis.vacuum < criteria.min_vacuum:
            raise InputError(
                f"{what}: structure {index} ({structure.composition.reduced_formula}) is not layered "
                f"(no vacuum of {criteria.min_vacuum:g} A along c); --layered needs slab structures"
            )
        analyses.append(analysis)
    return analyses


def layered_metrics(
    generated: Sequence[Structure],
    known: Sequence[Structure],
    criteria: LayerCriteria = LayerCriteria(),
    tolerances: MatchTolerances = PYMATGEN_TOLERANCES,
) -> dict:
    """Fractions of each bilayer category and layer-aware novelty of ``generated`` against ``known`` bilayers.

    Among the proper bilayers that StructureMatcher finds in no known structure: ``same_stacking`` repeat a known
    stacking (same layers, flips, rotation, registry), ``restacked`` only re-stack a known pair of layers, and
    ``new_pair`` combine layers never paired before; the first two are false novelty. ``novel_stacking`` is the
    layer-aware novelty (a stacking, or for non-1x1 cells a pair of layers, absent from ``known``), and
    ``structure_matcher_missed`` the new stackings StructureMatcher matched to a known bilayer anyway (its
    tolerances, scaled by the vacuum-inflated volume per atom, can equate AA with AB).
    """
    if not generated:
        raise InputError("--layered: no generated structures")
    analyses = [analyse_layers(s, criteria) for s in generated]
    if not any(a.layered for a in analyses):
        raise InputError("--layered: none of the generated structures is layered (no vacuum along c)")
    known_analyses = require_layered(known, "reference/training set", criteria)
    counts = Counter(a.category for a in analyses)
    metrics = {f"layered/{c}": counts.get(c, 0) / len(analyses) for c in CATEGORIES}
    proper = [k for k, a in enumerate(analyses) if a.category == "proper_bilayer"]
    gaps = [analyses[k].gaps[0] for k in proper]
    metrics["layered/mean_gap"] = float(np.mean(gaps)) if gaps else None
    matcher = tolerances.matcher()
    known_by_formula: dict[str, list[Structure]] = {}
    for structure in known:
        known_by_formula.setdefault(structure.composition.reduced_formula, []).append(structure)
    known_stackings = {a.stacking for a in known_analyses if a.stacking}
    known_pairs = {a.pair for a in known_analyses if a.n_layers == 2}
    novel = {"same_stacking": 0, "restacked": 0, "new_pair": 0}
    sm_novel = new_stacking = sm_missed = 0
    for k in proper:
        structure, analysis = generated[k], analyses[k]
        known_stacking = analysis.stacking in known_stackings if analysis.stacking else analysis.pair in known_pairs
        new_stacking += not known_stacking
        candidates = known_by_formula.get(structure.composition.reduced_formula, [])
        if any(matcher.fit(structure, other) for other in candidates):
            sm_missed += not known_stacking
            continue
        sm_novel += 1
        if analysis.stacking is not None and analysis.stacking in known_stackings:
            novel["same_stacking"] += 1
        elif analysis.pair in known_pairs:
            novel["restacked"] += 1
        else:
            novel["new_pair"] += 1

    def share(count: int) -> float | None:
        return count / len(proper) if proper else None

    metrics["layered/structure_matcher_novel"] = share(sm_novel)
    for key, value in novel.items():
        metrics[f"layered/novel_{key}"] = share(value)
    metrics["layered/false_novelty"] = (novel["same_stacking"] + novel["restacked"]) / sm_novel if sm_novel else None
    metrics["layered/novel_stacking"] = share(new_stacking)
    metrics["layered/structure_matcher_missed"] = share(sm_missed)
    return metrics
