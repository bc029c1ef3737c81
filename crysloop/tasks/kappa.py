"""Prefect tasks for thermal conductivity: pick screened candidates, compute kappa, store ``KappaResult`` documents."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE
from pymatgen.core import Structure

from crysloop.infra.documents import Candidate, KappaResult, ScreeningResult, utcnow
from crysloop.settings import get_settings
from crysloop.kappa.conductivity import KappaConfig, KappaOutcome, compute_kappa, relax_for_kappa
from crysloop.kappa.cost import displacement_skip_reason, skip_reason
from crysloop.screening.potentials import get_calculator


@dataclass
class KappaCandidate:
    """A screened candidate queued for kappa: its relaxed structure and what cost control needs to know."""

    candidate_id: str
    formula: str
    structure: Structure
    structure_hash: str
    campaign: str | None = None
    band_gap: float | None = None
    e_above_hull: float | None = None


def select_kappa_candidates(
    screening_mlip: str,
    campaign: str | None = None,
    max_e_above_hull: float = 0.1,
    method: str = "RTA",
    recompute: bool = False,
    kappa_mlip: str | None = None,
) -> list[KappaCandidate]:
    """Screened candidates (status ok, phonon-stable, e_above_hull <= limit under ``screening_mlip``), lowest first.

    Candidates that already have a kappa result for ``kappa_mlip`` (default: the screening potential) and ``method``
    are left out unless ``recompute``.
    """
    query = ScreeningResult.objects(
        status="ok", phonon_stable=True, mlip=screening_mlip, e_above_hull__lte=max_e_above_hull, hull_covered__ne=False
    ).order_by("e_above_hull")  # an uncovered system's stability is unknown, whatever its energy above hull
    if campaign:
        query = query.filter(campaign=campaign)
    done = set()
    if not recompute:
        calculator = kappa_mlip or screening_mlip
        done = {r.to_mongo()["candidate"] for r in KappaResult.objects(calculator=calculator, method=method).only("candidate")}
    selected = []
    for screening in query:
        candidate_id = screening.to_mongo()["candidate"]
        if candidate_id in done:
            continue
        candidate: Candidate = screening.candidate
        band_gap = (candidate.properties or {}).get("band_gap")
        selected.append(
            KappaCandidate(
                candidate_id=str(candidate_id),
                formula=candidate.formula,
                structure=Structure.from_dict(screening.relaxed_structure or candidate.structure),
                structure_hash=candidate.structure_hash,
                campaign=screening.campaign or candidate.campaign,
                band_gap=float(band_gap) if band_gap is not None else None,
                e_above_hull=screening.e_above_hull,
            )
        )
    return selected


def metal_label(item: KappaCandidate, labels: dict[str, bool] | None) -> bool | None:
    """The user's metal label for a candidate, looked up by candidate id, structure hash, then reduced formula."""
    labels = labels or {}
    for key in (item.candidate_id, item.structure_hash, item.formula):
        if key in labels:
            return bool(labels[key])
    return None


def save_kappa_result(
    item: KappaCandidate,
    calculator: str,
    config: KappaConfig,
    outcome: KappaOutcome | None = None,
    status: str = "ok",
    error: str | None = None,
) -> KappaResult:
    """Insert or replace the ``KappaResult`` of (candidate, calculator, method) with an outcome, a skip or a failure."""
    result = KappaResult.objects(candidate=item.candidate_id, calculator=calculator, method=config.method).first()
    result = result or KappaResult(candidate=item.candidate_id, calculator=calculator, method=config.method)
    result.campaign = item.campaign
    result.formula = item.formula
    result.status = status
    result.error = error
    result.created_at = utcnow()
    if outcome is None:
        result.temperatures = [float(t) for t in config.temperatures]
        result.kappa, result.kappa_average, result.mesh = [], [], []
        result.fc3_supercell, result.fc2_supercell = [], []
        result.min_frequency_thz = result.wall_time_s = None
    else:
        result.temperatures = outcome.temperatures
        result.kappa = outcome.kappa
        result.kappa_average = outcome.kappa_average
        result.mesh = outcome.mesh
        result.fc3_supercell = outcome.fc3_supercell
        result.fc2_supercell = outcome.fc2_supercell
        result.min_frequency_thz = outcome.min_frequency_thz
        result.wall_time_s = outcome.wall_time_s
    result.save()
    return result


def kappa_skip_reason(
    item: KappaCandidate,
    max_atoms: int,
    labels: dict[str, bool] | None = None,
    config: KappaConfig | None = None,
    max_displacements: int | None = None,
) -> str | None:
    """Cost control for one queued candidate (cell size, metal by label, band gap or composition, then the
    displaced-supercell count under ``config``)."""
    reason = skip_reason(item.structure, max_atoms=max_atoms, band_gap=item.band_gap, is_metal=metal_label(item, labels))
    return reason or displacement_skip_reason(item.structure, config or KappaConfig(), max_displacements)


@task(name="select-kappa-candidates", tags=["db"], cache_policy=NO_CACHE)
def select_kappa_candidates_task(screening_mlip: str, campaign: str | None, max_e_above_hull: float, method: str,
                                 recompute: bool, kappa_mlip: str) -> list[KappaCandidate]:  # fmt: skip
    """Prefect wrapper of :func:`select_kappa_candidates`."""
    return select_kappa_candidates(screening_mlip, campaign, max_e_above_hull, method, recompute, kappa_mlip)


@task(name="compute-kappa", retries=1, retry_delay_seconds=5, tags=["mlip"], cache_policy=NO_CACHE)
def compute_kappa_task(item: KappaCandidate, mlip: str, config: KappaConfig, progress: bool = False) -> KappaOutcome:
    """phono3py kappa of one candidate after a tight relaxation with ``mlip`` (:func:`relax_for_kappa`); force sets
    are cached under ``cache_dir/kappa``, so a retry resumes."""
    cache_dir = get_settings().cache_dir / "kappa"
    calculator = get_calculator(mlip)
    structure = relax_for_kappa(item.structure, calculator)
    return compute_kappa(structure, calculator, config, calculator_name=mlip, cache_dir=cache_dir, progress=progress)


@task(name="save-kappa-result", retries=2, retry_delay_seconds=5, tags=["db"], cache_policy=NO_CACHE)
def save_kappa_result_task(item: KappaCandidate, calculator: str, config: KappaConfig, outcome: KappaOutcome | None = None,
                           status: str = "ok", error: str | None = None) -> str:  # fmt: skip
    """Prefect wrapper of :func:`save_kappa_result`; returns the document id."""
    return str(save_kappa_result(item, calculator, config, outcome, status, error).pk)
