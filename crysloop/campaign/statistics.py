"""Per-round statistics of a campaign: validity, uniqueness, novelty, stability and phonon stability."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure

from crysloop.evaluation.matching import novel_mask, unique_mask
from crysloop.evaluation.validity import validity


def _fraction(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def round_statistics(
    generated: Sequence[Structure],
    reference: Sequence[Structure],
    e_above_hull: Sequence[float | None],
    phonon_stable: Sequence[bool | None],
    stable: Sequence[bool | None],
    n_jobs: int | None = 1,
) -> dict[str, float | int | None]:
    """Counts and fractions for one round (as generated structures; stability from the MLIP-relaxed ones).

    S.U.N. = stable, unique and novel. ``stable`` is None where the stability is unknown (a screened candidate
    whose system has no known compound): such candidates are counted as ``unknown``, and the stable fraction
    and hull statistics are over the screened candidates of known stability.
    """
    n = len(generated)
    if n == 0:
        return {"generated": 0}
    valid = np.array([validity(s).valid for s in generated])
    unique = unique_mask(generated, n_jobs=n_jobs)
    novel = novel_mask(generated, reference, n_jobs=n_jobs)
    screened = np.array([e is not None for e in e_above_hull])
    stable_flags = np.array([bool(s) for s in stable])
    known = screened & np.array([s is not None for s in stable])
    phonon_known = np.array([p is not None for p in phonon_stable])
    phonon_ok = np.array([p is True for p in phonon_stable])
    ehull = np.array([e for e, k in zip(e_above_hull, known, strict=True) if k], dtype=float)
    return {
        "generated": n,
        "valid": int(valid.sum()),
        "unique": int(unique.sum()),
        "novel": int(novel.sum()),
        "screened": int(screened.sum()),
        "stable": int(stable_flags.sum()),
        "unknown": int((screened & ~known).sum()),
        "stable_fraction": _fraction(int(stable_flags.sum()), int(known.sum())),
        "phonon_checked": int(phonon_known.sum()),
        "phonon_stable": int(phonon_ok.sum()),
        "phonon_stable_fraction": _fraction(int(phonon_ok.sum()), int(phonon_known.sum())),
        "sun": int((stable_flags & unique & novel).sum()),
        "ehull_median": float(np.median(ehull)) if ehull.size else None,
        "ehull_min": float(ehull.min()) if ehull.size else None,
    }
