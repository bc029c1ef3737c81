"""StructureMatcher metrics: reconstruction match rate and RMSE, uniqueness and novelty.

StructureMatcher only matches crystals with the same reduced composition, so comparisons are bucketed by
reduced formula first; the buckets are matched in worker processes.
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


def _first_of_kind(args: tuple[list[Structure], MatchTolerances]) -> list[bool]:
    """Within one composition bucket: True for each structure that matches no earlier one."""
    structures, tolerances = args
    matcher = tolerances.matcher()
    representatives: list[Structure] = []
    flags = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for structure in structures:
            duplicate = False
            for rep in representatives:
                try:
                    duplicate = matcher.fit(structure, rep)
                except Exception:  # noqa: BLE001 - an unmatched pair is not a duplicate
                    duplicate = False
                if duplicate:
                    break
            flags.append(not duplicate)
            if not duplicate:
                representatives.append(structure)
    return flags


def unique_mask(
    structures: Sequence[Structure],
    tolerances: MatchTolerances = PYMATGEN_TOLERANCES,
    n_jobs: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """True for each structure that matches no earlier structure of the list (the first of each kind is unique)."""
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
        for candidate in candidates:
            try:
                if matcher.fit(structure, candidate):
                    return True
            except Exception:  # noqa: BLE001 - an unmatched pair is not a match
                continue
    return False


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
