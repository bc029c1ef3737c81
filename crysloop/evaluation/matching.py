"""StructureMatcher metrics: reconstruction match rate and RMSE, uniqueness and novelty.

StructureMatcher only matches crystals with the same reduced composition, so comparisons are bucketed by
reduced formula first; the buckets are matched in worker processes. Uniqueness and novelty give exactly
``fit``'s all-pairs answers but reduce each crystal once (not twice per pair) and skip pairs that two necessary
conditions of ``fit`` rule out (see ``_may_fit``). Keys such as the space group or the density are not used:
with ``scale=True`` and stol 0.3, matching crystals can differ in both, so bucketing by them changes results.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from crysloop.evaluation.parallel import parallel_map


@dataclass(frozen=True)
class MatchTolerances:
    """StructureMatcher tolerances: ltol (fractional length), stol (site, in units of (V/n)^(1/3)), angle_tol (deg)."""

    ltol: float = 0.3
    stol: float = 0.5
    angle_tol: float = 10.0

    def matcher(self) -> StructureMatcher:
        return StructureMatcher(ltol=self.ltol, stol=self.stol, angle_tol=self.angle_tol)


CDVAE_TOLERANCES = MatchTolerances(0.3, 0.5, 10.0)  # reconstruction / structure prediction (CDVAE, DiffCSP)
PYMATGEN_TOLERANCES = MatchTolerances(0.2, 0.3, 5.0)  # StructureMatcher defaults, used for uniqueness and novelty


def reduced_formula(structure: Structure) -> str:
    """Bucket key: the reduced formula of the element composition (oxidation states ignored)."""
    return structure.composition.element_composition.reduced_formula


def _rms(args: tuple[Structure, Structure, MatchTolerances]) -> float | None:
    predicted, truth, tolerances = args
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = tolerances.matcher().get_rms_dist(predicted, truth)
    except Exception:  # noqa: BLE001 - CDVAE and DiffCSP count a matcher failure as no match
        return None
    return None if result is None else float(result[0])


def reconstruction(
    predicted: Sequence[Structure],
    ground_truth: Sequence[Structure],
    valid_predicted: Sequence[bool],
    valid_truth: Sequence[bool],
    tolerances: MatchTolerances = CDVAE_TOLERANCES,
    n_jobs: int | None = None,
    progress: bool = False,
) -> dict[str, float | int]:
    """Match rate and mean RMS distance of predicted vs ground-truth pairs (DiffCSP's rule: both must be valid).

    The RMS distance is StructureMatcher's, normalised by (V/n)^(1/3); it averages over matched pairs only.
    """
    if len(predicted) != len(ground_truth):
        raise ValueError("predicted and ground-truth lists differ in length")
    pairs = [i for i in range(len(predicted)) if valid_predicted[i] and valid_truth[i]]
    rms = parallel_map(
        _rms,
        [(predicted[i], ground_truth[i], tolerances) for i in pairs],
        n_jobs=n_jobs,
        progress=progress,
        description="matching pairs",
    )
    matched = np.array([r for r in rms if r is not None])
    return {
        "match_rate": float(len(matched) / len(predicted)) if len(predicted) else float("nan"),
        "rms_dist": float(matched.mean()) if len(matched) else float("nan"),
        "n_matched": int(len(matched)),
        "n_pairs": int(len(predicted)),
    }


@dataclass
class _Prepared:
    """A crystal as StructureMatcher compares it, computed once instead of once per pair.

    ``structure``: the matcher's own reduction (species processed, Niggli, primitive cell; what ``fit`` builds
    for every pair), None if that reduction fails (then every ``fit`` with it raises: it matches nothing).
    ``minima``: successive minima of its lattice, ``lengths``: its basis lengths (the matcher's target lattice),
    both sorted and divided by the cube root of the cell volume (``fit`` rescales both cells to one volume).
    """

    structure: Structure | None
    minima: np.ndarray
    lengths: np.ndarray


def _prepare(structure: Structure, matcher: StructureMatcher) -> _Prepared:
    try:
        processed = matcher._process_species([structure])[0]  # noqa: SLF001 - as pymatgen's group_structures does
        reduced = matcher._get_reduced_structure(processed, matcher._primitive_cell, niggli=True)  # noqa: SLF001
    except Exception:  # noqa: BLE001 - fit would raise on every pair: the crystal matches nothing
        return _Prepared(None, np.full(3, np.nan), np.full(3, np.nan))
    scale = reduced.volume ** (1 / 3)
    minima = np.sort(reduced.lattice.get_niggli_reduced_lattice().abc) / scale
    return _Prepared(reduced, minima, np.sort(reduced.lattice.abc) / scale)


# Successive minima from a Niggli reduction are exact up to its 1e-5 tolerance; the bound keeps a wide margin.
_MINIMA_SLACK = 1.001


def _may_fit(candidate: _Prepared, targets: list[_Prepared], ltol: float) -> np.ndarray:
    """False where ``fit(candidate, target)`` is certainly False, from two necessary conditions of pymatgen's fit.

    Equal site counts of the reduced cells (else ``_strict_match`` finds no one-to-one mapping), and a basis of the
    candidate's lattice whose k-th vector is shorter than (1 + ltol) times the target's k-th basis vector
    (``Lattice.find_all_mappings``, after both cells are scaled to one volume), so each successive minimum
    lambda_k of the candidate is below (1 + ltol) times the k-th shortest target basis length.
    """
    if candidate.structure is None or not targets:
        return np.zeros(len(targets), dtype=bool)
    sizes = np.array([len(t.structure) if t.structure is not None else -1 for t in targets])
    lengths = np.array([t.lengths for t in targets])
    bound = (1 + ltol) * _MINIMA_SLACK * lengths
    return (sizes == len(candidate.structure)) & np.all(candidate.minima[None, :] < bound, axis=1)


def _fits(matcher: StructureMatcher, candidate: _Prepared, target: _Prepared) -> bool:
    """``matcher.fit(candidate, target)`` on the prepared structures (identical result, no repeated reduction)."""
    try:
        return bool(matcher.fit(candidate.structure, target.structure, skip_structure_reduction=True))
    except Exception:  # noqa: BLE001 - an unmatched pair is not a match
        return False


def _first_of_kind(args: tuple[list[Structure], MatchTolerances]) -> list[bool]:
    """Within one composition bucket: True for each structure that matches no earlier one.

    Each structure is compared with the representatives (earlier structures that matched none before them) as
    ``fit(structure, representative)``; pairs that cannot fit are skipped without calling ``fit``, and the others
    are tried nearest first (by the successive minima of the lattices), so a duplicate is usually found by its
    first ``fit``. Whether a structure matches any representative does not depend on the order they are tried in.
    """
    structures, tolerances = args
    matcher = tolerances.matcher()
    representatives: list[_Prepared] = []
    flags = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for structure in structures:
            prepared = _prepare(structure, matcher)
            candidates = np.flatnonzero(_may_fit(prepared, representatives, tolerances.ltol))
            if len(candidates) > 1:
                gaps = [np.abs(representatives[i].minima - prepared.minima).sum() for i in candidates]
                candidates = candidates[np.argsort(gaps, kind="stable")]
            duplicate = any(_fits(matcher, prepared, representatives[i]) for i in candidates)
            flags.append(not duplicate)
            if not duplicate:
                representatives.append(prepared)
    return flags


def unique_mask(
    structures: Sequence[Structure],
    tolerances: MatchTolerances = PYMATGEN_TOLERANCES,
    n_jobs: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """True for each structure that matches no earlier structure of the list (the first of each kind is unique).

    Exactly the all-pairs result of ``StructureMatcher.fit`` in list order: comparisons are bucketed by reduced
    formula, each crystal is reduced once, and pairs that provably cannot fit are skipped.
    """
    buckets: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(structures):
        buckets[reduced_formula(s)].append(i)
    groups = [indices for indices in buckets.values()]
    flags = parallel_map(
        _first_of_kind,
        [([structures[i] for i in g], tolerances) for g in groups],
        n_jobs=n_jobs,
        progress=progress,
        description="uniqueness",
    )
    mask = np.zeros(len(structures), dtype=bool)
    for group, group_flags in zip(groups, flags, strict=True):
        mask[group] = group_flags
    return mask


def _matches_any(args: tuple[Structure, list[Structure], MatchTolerances]) -> bool:
    structure, candidates, tolerances = args
    matcher = tolerances.matcher()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = _prepare(structure, matcher)
        targets = [_prepare(candidate, matcher) for candidate in candidates]
        return any(_fits(matcher, prepared, targets[i]) for i in np.flatnonzero(_may_fit(prepared, targets, tolerances.ltol)))


def novel_mask(
    structures: Sequence[Structure],
    train: Sequence[Structure],
    tolerances: MatchTolerances = PYMATGEN_TOLERANCES,
    n_jobs: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """True for each structure that matches no training structure of the same reduced composition."""
    index: dict[str, list[Structure]] = defaultdict(list)
    for s in train:
        index[reduced_formula(s)].append(s)
    keys = [reduced_formula(s) for s in structures]
    need = [i for i, k in enumerate(keys) if k in index]
    seen = parallel_map(
        _matches_any,
        [(structures[i], index[keys[i]], tolerances) for i in need],
        n_jobs=n_jobs,
        progress=progress,
        description="novelty",
    )
    mask = np.ones(len(structures), dtype=bool)
    mask[need] = ~np.asarray(seen, dtype=bool) if need else mask[need]
    return mask
