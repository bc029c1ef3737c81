"""Prefect tasks for thermal conductivity: pick screened candidates, compute kappa, store ``KappaResult`` documents.

The science is in :mod:`crysloop.kappa`, the database side in :mod:`crysloop.infra.kappa`.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from crysloop.infra.kappa import KappaCandidate, save_kappa_result, select_kappa_candidates
from crysloop.kappa.conductivity import KappaConfig, KappaOutcome, compute_kappa, kappa_fields, relax_for_kappa
from crysloop.screening.potentials import get_calculator
from crysloop.settings import get_settings


@task(name="select-kappa-candidates", tags=["db"], cache_policy=NO_CACHE)
def select_kappa_candidates_task(
    screening_mlip: str, campaign: str | None, max_e_above_hull: float, method: str, recompute: bool, kappa_mlip: str
) -> list[KappaCandidate]:
    """Prefect wrapper of :func:`crysloop.infra.kappa.select_kappa_candidates`."""
    return select_kappa_candidates(screening_mlip, campaign, max_e_above_hull, method, recompute, kappa_mlip)


@task(name="compute-kappa", retries=1, retry_delay_seconds=5, tags=["mlip"], cache_policy=NO_CACHE)
def compute_kappa_task(item: KappaCandidate, mlip: str, config: KappaConfig, progress: bool = False) -> KappaOutcome:
    """phono3py kappa of one candidate after a tight relaxation with ``mlip`` (:func:`relax_for_kappa`); force sets
    are cached under ``cache_dir/kappa``, so a retry resumes."""
    calculator = get_calculator(mlip)
    structure = relax_for_kappa(item.structure, calculator)
    return compute_kappa(
        structure,
        calculator,
        config,
        calculator_name=mlip,
        cache_dir=get_settings().cache_dir / "kappa",
        progress=progress,
    )


@task(name="save-kappa-result", retries=2, retry_delay_seconds=5, tags=["db"], cache_policy=NO_CACHE)
def save_kappa_result_task(
    item: KappaCandidate,
    calculator: str,
    config: KappaConfig,
    outcome: KappaOutcome | None = None,
    status: str = "ok",
    error: str | None = None,
) -> str:
    """Store the outcome, skip or failure of one candidate (:func:`kappa_fields`); returns the document id."""
    fields = kappa_fields(config, outcome)
    return save_kappa_result(item, calculator, config.method, {**fields, "status": status, "error": error})
