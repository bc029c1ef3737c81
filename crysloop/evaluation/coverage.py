"""COV-R / COV-P coverage and fingerprint diversity, as CDVAE's ``compute_cov`` and ``get_fp_pdist`` define them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist, pdist

from crysloop.errors import InputError
from crysloop.evaluation.fingerprints import Fingerprints
from crysloop.evaluation.magpie_scaler import scale_magpie


@dataclass(frozen=True)
class CoverageCutoffs:
    """Distance thresholds on CrystalNN (structure) and scaled Magpie (composition) fingerprints."""

    structure: float
    composition: float


COVERAGE_CUTOFFS: dict[str, CoverageCutoffs] = {
    "mp20": CoverageCutoffs(0.4, 10.0),
    "perov5": CoverageCutoffs(0.2, 4.0),
    "carbon24": CoverageCutoffs(0.2, 4.0),
}
_ALIASES = {"mp_20": "mp20", "perov_5": "perov5", "perovskite": "perov5", "carbon": "carbon24", "carbon_24": "carbon24"}


def coverage_cutoffs(dataset: str, override: CoverageCutoffs | tuple[float, float] | None = None) -> CoverageCutoffs:
    """The published thresholds for ``dataset`` (mp20, perov5, carbon24), or ``override`` for any other dataset."""
    if override is not None:
        return override if isinstance(override, CoverageCutoffs) else CoverageCutoffs(*map(float, override))
    key = _ALIASES.get(dataset.lower().replace("-", "_"), dataset.lower().replace("-", "_"))
    if key not in COVERAGE_CUTOFFS:
        raise InputError(
            f"no coverage thresholds for dataset {dataset!r} (known: {', '.join(COVERAGE_CUTOFFS)}); "
            "pass them explicitly"
        )
    return COVERAGE_CUTOFFS[key]


def _min_distances(a: np.ndarray, b: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour Euclidean distances a->b (per row of a) and b->a (per row of b), in memory-bounded chunks."""
    a_min = np.empty(len(a))
    b_min = np.full(len(b), np.inf)
    for start in range(0, len(a), chunk):
        d = cdist(a[start : start + chunk], b)
        a_min[start : start + chunk] = d.min(axis=1)
        np.minimum(b_min, d.min(axis=0), out=b_min)
    return a_min, b_min


def coverage(generated: Fingerprints, reference: Fingerprints, cutoffs: CoverageCutoffs) -> dict[str, float]:
    """COV-R (share of reference crystals with a generated crystal near in both fingerprints), COV-P (share of
    generated crystals near a reference crystal, over all generated, failed fingerprints counting as misses) and
    the mean nearest distances AMSD/AMCD, exactly as CDVAE's ``compute_cov``."""
    if not generated.ok.any() or not reference.ok.any():
        raise InputError("coverage needs at least one generated and one reference crystal with a fingerprint")
    gen_s, gen_c = generated.structure[generated.ok], scale_magpie(generated.composition[generated.ok])
    ref_s, ref_c = reference.structure[reference.ok], scale_magpie(reference.composition[reference.ok])
    struc_precision, struc_recall = _min_distances(gen_s, ref_s)
    comp_precision, comp_recall = _min_distances(gen_c, ref_c)
    recall_hits = (struc_recall <= cutoffs.structure) & (comp_recall <= cutoffs.composition)
    precision_hits = (struc_precision <= cutoffs.structure) & (comp_precision <= cutoffs.composition)
    return {
        "cov_recall": float(recall_hits.mean()),
        "cov_precision": float(precision_hits.sum() / len(generated)),
        "amsd_recall": float(struc_recall.mean()),
        "amsd_precision": float(struc_precision.mean()),
        "amcd_recall": float(comp_recall.mean()),
        "amcd_precision": float(comp_precision.mean()),
    }


def diversity(fingerprints: Fingerprints) -> dict[str, float]:
    """Mean pairwise fingerprint distance (CDVAE's struct_div and comp_div) over crystals with fingerprints."""
    ok = fingerprints.ok
    if ok.sum() < 2:
        return {"struct_div": float("nan"), "comp_div": float("nan")}
    return {
        "struct_div": float(pdist(fingerprints.structure[ok]).mean()),
        "comp_div": float(pdist(scale_magpie(fingerprints.composition[ok])).mean()),
    }
