"""Prefect flows of the DFT stage: screened candidates -> VASP relaxation -> database, and resuming failed jobs."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_table_artifact

from crysloop.dft import jobs
from crysloop.dft.metrics import DFTMetrics, dft_metrics
from crysloop.dft.presets import PRESETS, RunSettings, check_vasp_setup
from crysloop.errors import InputError
from crysloop.infra.db import database
from crysloop.settings import get_settings
from crysloop.tasks.dft import queue_dft_jobs, recover_dead_jobs, relax_dft_job, requeue_failed_jobs


def _run_settings(run: RunSettings | None) -> RunSettings:
    return run if run is not None else RunSettings(vasp_cmd=get_settings().vasp_cmd, vasp_version=get_settings().vasp_version)


def _report(campaign: str | None, key: str) -> DFTMetrics:
    metrics = dft_metrics(jobs.find_jobs(campaign))
    rows = [{"metric": name, "value": value} for name, value in metrics.as_dict().items() if name != "states"]
    rows += [{"metric": f"jobs {state}", "value": count} for state, count in metrics.states.items()]
    create_table_artifact(rows, key=key, description=f"DFT metrics, campaign {campaign or 'all'}")
    return metrics


@flow(name="dft", validate_parameters=False)
def dft_flow(
    campaign: str | None = None,
    preset: str = "crysvcd",
    top_n: int = 10,
    run: RunSettings | None = None,
) -> dict:
    """Relax the ``top_n`` best screened candidates with VASP under ``preset`` and return the DFT metrics.

    Jobs a killed process left ``running`` (its pid gone from this host) are run again first.
    """
    if preset not in PRESETS:
        raise InputError(f"unknown DFT preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if top_n < 1:
        raise InputError(f"top_n must be at least 1, got {top_n}")
    run = _run_settings(run)
    check_vasp_setup(run)  # before queuing: jobs that cannot start would only fail at once
    with database():
        runs_dir = get_settings().runs_dir / "dft"
        recovered = recover_dead_jobs(campaign)
        for job_id in dict.fromkeys(recovered + queue_dft_jobs(campaign, preset, top_n)):
            relax_dft_job(job_id, run, runs_dir)
        return _report(campaign, "dft-metrics").as_dict()


@flow(name="dft-resume", validate_parameters=False)
def dft_resume_flow(
    campaign: str | None = None,
    max_attempts: int = 3,
    run: RunSettings | None = None,
    stale_hours: float | None = None,
) -> dict:
    """Restart failed jobs (fewer than ``max_attempts`` attempts) from their last CONTCAR with custodian's fixes.

    Jobs left ``running`` by a process that is gone from this host are restarted too, and with ``stale_hours`` those
    left ``running`` longer than that (a process on another host).
    """
    if max_attempts < 1:
        raise InputError(f"max_attempts must be at least 1, got {max_attempts}")
    run = _run_settings(run)
    with database():
        runs_dir = get_settings().runs_dir / "dft"
        recovered = recover_dead_jobs(campaign)
        for job_id in dict.fromkeys(recovered + requeue_failed_jobs(campaign, max_attempts, stale_hours)):
            relax_dft_job(job_id, run, runs_dir)
        return _report(campaign, "dft-metrics").as_dict()
