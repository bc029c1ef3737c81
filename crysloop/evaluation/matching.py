"""StructureMatcher metrics: reconstruction match rate and RMSE, uniqueness and novelty.

Uniqueness and novelty give exactly ``fit``'s all-pairs answers at a fraction of the cost. Each crystal is reduced
once (not twice per pair), crystals are bucketed by two keys that any two matching crystals share under the
matcher's settings (the reduced composition and the number of sites of the reduced, primitive cell), and within a
bucket ``fit`` runs only on pairs that pass two necessary conditions of it (``_may_fit``: successive minima, and
``_lattice_may_map``: a basis of the candidate's lattice within ltol / angle_tol of the target's, the first step
of ``fit``). Keys such as the space group or the density are not used: with ``scale=True`` and stol 0.3,
matching crystals can differ in both, so bucketing by them would change results. The cost is linear in the
number of buckets and near-linear for crystals of distinct lattices; crystals of one composition and site count
whose lattices all map onto each other (random P1 cells of one shape family) still need a ``fit`` per pair.
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
    except Exception:
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
        "n_matched": len(matched),
        "n_pairs": len(predicted),
    }


@dataclass
class _Prepared:
    """A crystal as StructureMatcher compares it, computed once instead of once per pair.

    ``structure``: the matcher's own reduction (species processed, Niggli, primitive cell; what ``fit`` builds
    for every pair), None if that reduction fails (then every ``fit`` with it raises: it matches nothing).
    ``minima``: successive minima of its lattice, ``lengths``: its basis lengths (the matcher's target lattice),
    both sorted and divided by the cube root of the cell volume (``fit`` rescales both cells to one volume);
    ``basis``: the basis lengths in a, b, c order, so divided, and ``angles``: alpha, beta, gamma in degrees.
    """

    structure: Structure | None
    minima: np.ndarray
    lengths: np.ndarray
    basis: np.ndarray
    angles: np.ndarray

    @property
    def key(self) -> int:
        """Sites of the reduced cell: ``fit`` needs equal counts (-1 where the reduction failed)."""
        return -1 if self.structure is None else len(self.structure)


def _prepare(structure: Structure, matcher: StructureMatcher) -> _Prepared:
    try:
        processed = matcher._process_species([structure])[0]
        reduced = matcher._get_reduced_structure(processed, matcher._primitive_cell, niggli=True)
    except Exception:
        return _Prepared(None, *(np.full(3, np.nan) for _ in range(4)))
    scale = reduced.volume ** (1 / 3)
    minima = np.sort(reduced.lattice.get_niggli_reduced_lattice().abc) / scale
    basis = np.asarray(reduced.lattice.abc) / scale
    return _Prepared(reduced, minima, np.sort(basis), basis, np.asarray(reduced.lattice.angles))


def _prepare_all(args: tuple[list[Structure], MatchTolerances]) -> list[_Prepared]:
    structures, tolerances = args
    matcher = tolerances.matcher()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [_prepare(s, matcher) for s in structures]


def _prepared(
    structures: Sequence[Structure], tolerances: MatchTolerances, n_jobs: int | None, progress: bool
) -> list[_Prepared]:
    """``_prepare`` of every structure, in worker processes (chunks of 16 keep the transfers few)."""
    chunks = [list(structures[i : i + 16]) for i in range(0, len(structures), 16)]
    done = parallel_map(
        _prepare_all,
        [(chunk, tolerances) for chunk in chunks],
        n_jobs=n_jobs,
        progress=progress,
        description="reducing cells",
    )
    return [p for chunk in done for p in chunk]


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


# Slack on the vectorised lattice test (relative on lengths, degrees on angles): it only ever lets more pairs through.
_LATTICE_SLACK = 1e-6
_LATTICE_CHUNK = 4_000_000  # (targets x points x points) booleans per step
_LATTICE_POINTS = 400  # nearest lattice points of the candidate tested at most
_LATTICE_REACH = 6.0  # longest lattice vector searched, in units of the cube root of the cell volume


def _lattice_may_map(candidate: _Prepared, targets: list[_Prepared], tolerances: MatchTolerances) -> np.ndarray:
    """False where ``fit(candidate, target)`` certainly finds no lattice mapping, for many targets at once.

    ``fit`` (``Lattice.find_all_mappings`` after both cells are scaled to one volume) needs lattice vectors u, v, w
    of the candidate with |u|, |v|, |w| within a factor (1 + ltol) of the target's a, b, c and the angles (v, w),
    (u, w), (u, v) within angle_tol of alpha, beta, gamma. Checked here for all targets at once on the candidate's
    lattice points (computed once), with a small slack and without fit's unimodularity test: a necessary
    condition, never stricter than fit.
    """
    if candidate.structure is None or not targets:
        return np.zeros(len(targets), dtype=bool)
    ltol, atol = tolerances.ltol, tolerances.angle_tol
    lattice = candidate.structure.lattice
    scale = lattice.volume ** (1 / 3)
    basis = np.array([t.basis for t in targets])  # [T, 3], each divided by its own cube root of volume
    angles = np.array([t.angles for t in targets])  # [T, 3]
    reach = min((1 + ltol) * (1 + _LATTICE_SLACK) * float(np.nanmax(basis)), _LATTICE_REACH)
    frac, dist, _, _ = lattice.get_points_in_sphere([[0, 0, 0]], [0, 0, 0], reach * scale, zip_results=False)
    keep = np.flatnonzero(dist > 1e-8 * scale)
    keep = keep[np.argsort(dist[keep], kind="stable")[:_LATTICE_POINTS]]
    cart, length = lattice.get_cartesian_coords(frac[keep]), dist[keep] / scale
    unit = cart / dist[keep][:, None]
    between = np.rad2deg(np.arccos(np.clip(unit @ unit.T, -1.0, 1.0)))  # [P, P]
    lo, hi = basis / ((1 + ltol) * (1 + _LATTICE_SLACK)), basis * (1 + ltol) * (1 + _LATTICE_SLACK)
    window = (length[None, None, :] > lo[:, :, None]) & (length[None, None, :] < hi[:, :, None])  # [T, 3, P]
    # only lattice points shorter than ``complete`` are all present; targets whose windows reach further (very
    # long cells) are left to fit
    complete = length[-1] if len(length) == _LATTICE_POINTS else reach
    untested = hi.max(axis=1) > complete
    ok = window.any(axis=2).all(axis=1) & ~untested
    step = max(1, _LATTICE_CHUNK // max(1, len(length) ** 2))
    for s in range(0, len(targets), step):
        rows = np.flatnonzero(ok[s : s + step]) + s
        if not len(rows):
            continue
        pairs = {}
        for first, second, angle in ((0, 1, 2), (0, 2, 1), (1, 2, 0)):  # gamma: (a, b), beta: (a, c), alpha: (b, c)
            close = np.abs(between[None, :, :] - angles[rows, angle, None, None]) <= atol + _LATTICE_SLACK
            pairs[angle] = close & window[rows, first, :, None] & window[rows, second, None, :]  # [rows, P, P]
        # a triple (u, v, w) with all three angles right: sum over w of beta(u, w) alpha(v, w), where gamma(u, v)
        closing = np.matmul(pairs[1].astype(np.float32), pairs[0].astype(np.float32).transpose(0, 2, 1))
        ok[rows] = (pairs[2] & (closing > 0.5)).any(axis=(1, 2))
    return ok | untested


def _fits(matcher: StructureMatcher, candidate: _Prepared, target: _Prepared) -> bool:
    """``matcher.fit(candidate, target)`` on the prepared structures (identical result, no repeated reduction)."""
    try:
        return bool(matcher.fit(candidate.structure, target.structure, skip_structure_reduction=True))
    except Exception:
        return False


def _candidates(candidate: _Prepared, targets: list[_Prepared], tolerances: MatchTolerances) -> np.ndarray:
    """Indices of the targets that ``candidate`` may fit (both necessary conditions), nearest lattice first."""
    found = np.flatnonzero(_may_fit(candidate, targets, tolerances.ltol))
    if len(found):
        found = found[_lattice_may_map(candidate, [targets[i] for i in found], tolerances)]
    if len(found) > 1:
        gaps = [np.abs(targets[i].minima - candidate.minima).sum() for i in found]
        found = found[np.argsort(gaps, kind="stable")]
    return found


def _first_of_kind(args: tuple[list[_Prepared], MatchTolerances]) -> list[bool]:
    """Within one bucket: True for each crystal that matches no earlier one.

    Each crystal is compared with the representatives (earlier crystals that matched none before them) as
    ``fit(crystal, representative)``; pairs that cannot fit are skipped without calling ``fit``, and the others
    are tried nearest first (by the successive minima of the lattices), so a duplicate is usually found by its
    first ``fit``. Whether a crystal matches any representative does not depend on the order they are tried in.
    """
    prepared, tolerances = args
    matcher = tolerances.matcher()
    representatives: list[_Prepared] = []
    flags = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for candidate in prepared:
            duplicate = any(
                _fits(matcher, candidate, representatives[i])
                for i in _candidates(candidate, representatives, tolerances)
            )
            flags.append(not duplicate)
            if not duplicate:
                representatives.append(candidate)
    return flags


def _buckets(structures: Sequence[Structure], prepared: list[_Prepared]) -> dict[tuple[str, int], list[int]]:
    """Indices per (reduced formula, sites of the reduced cell): only crystals of one bucket can match."""
    buckets: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, (s, p) in enumerate(zip(structures, prepared, strict=True)):
        buckets[(reduced_formula(s), p.key)].append(i)
    return buckets


def unique_mask(
    structures: Sequence[Structure],
    tolerances: MatchTolerances = PYMATGEN_TOLERANCES,
    n_jobs: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """True for each structure that matches no earlier structure of the list (the first of each kind is unique).

    Exactly the all-pairs result of ``StructureMatcher.fit`` in list order: each crystal is reduced once,
    comparisons are bucketed by reduced formula and reduced site count, and pairs that provably cannot fit are
    skipped.
    """
    structures = list(structures)
    prepared = _prepared(structures, tolerances, n_jobs, progress)
    groups = list(_buckets(structures, prepared).values())
    flags = parallel_map(
        _first_of_kind,
        [([prepared[i] for i in g], tolerances) for g in groups],
        n_jobs=n_jobs,
        progress=progress,
        description="uniqueness",
    )
    mask = np.zeros(len(structures), dtype=bool)
    for group, group_flags in zip(groups, flags, strict=True):
        mask[group] = group_flags
    return mask


def _matches_any(args: tuple[_Prepared, list[_Prepared], MatchTolerances]) -> bool:
    candidate, targets, tolerances = args
    matcher = tolerances.matcher()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return any(_fits(matcher, candidate, targets[i]) for i in _candidates(candidate, targets, tolerances))


def novel_mask(
    structures: Sequence[Structure],
    train: Sequence[Structure],
    tolerances: MatchTolerances = PYMATGEN_TOLERANCES,
    n_jobs: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """True for each structure that matches no training structure (``fit(structure, training structure)``), with
    the buckets and necessary conditions of :func:`unique_mask` (identical to comparing every pair)."""
    structures, train = list(structures), list(train)
    prepared = _prepared(structures, tolerances, n_jobs, progress)
    train_prepared = _prepared(train, tolerances, n_jobs, progress)
    index = _buckets(train, train_prepared)
    keys = [(reduced_formula(s), p.key) for s, p in zip(structures, prepared, strict=True)]
    need = [i for i, k in enumerate(keys) if k in index and k[1] > 0]
    seen = parallel_map(
        _matches_any,
        [(prepared[i], [train_prepared[j] for j in index[keys[i]]], tolerances) for i in need],
        n_jobs=n_jobs,
        progress=progress,
        description="novelty",
    )
    mask = np.ones(len(structures), dtype=bool)
    mask[need] = ~np.asarray(seen, dtype=bool) if need else mask[need]
    return mask
