"""Property-distribution metrics: Wasserstein distances between generated and reference crystals (CDVAE)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure
from scipy.stats import wasserstein_distance


def densities(structures: Sequence[Structure]) -> np.ndarray:
    """Mass densities in g/cm^3."""
    return np.array([float(s.density) for s in structures])


def element_counts(structures: Sequence[Structure]) -> np.ndarray:
    """Number of distinct elements of each crystal."""
    return np.array([len(s.composition.element_composition.elements) for s in structures])


def sample_indices(valid: np.ndarray, n_samples: int, seed: int) -> np.ndarray:
    """Indices of up to ``n_samples`` valid crystals drawn without replacement (CDVAE draws 1,000)."""
    candidates = np.flatnonzero(valid)
    if len(candidates) <= n_samples:
        return candidates
    return np.sort(np.random.default_rng(seed).choice(candidates, n_samples, replace=False))


def wasserstein(generated: Sequence[float], reference: Sequence[float]) -> float:
    """1-D Wasserstein (earth mover's) distance between two samples; NaN when either is empty."""
    generated, reference = np.asarray(generated, dtype=float), np.asarray(reference, dtype=float)
    generated, reference = generated[np.isfinite(generated)], reference[np.isfinite(reference)]
    if len(generated) == 0 or len(reference) == 0:
        return float("nan")
    return float(wasserstein_distance(generated, reference))
