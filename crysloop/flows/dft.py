"""Prefect flows of the DFT stage: screened candidates -> VASP relaxation -> database, and resuming failed jobs."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_table_artifact

from crysloop.dft.config import DFTStageConfig
from crysloop.dft.metrics import DFTMetrics, dft_metrics
from crysloop.dft.presets import RunSettings, check_vasp_setup
from crysloop.infra.db import database
from crysloop.infra.dft import find_jobs
from crysloop.settings import get_settings
from crysloop.tasks.dft import queue_dft_jobs, recover_dead_jobs, relax_dft_job, requeue_failed_jobs


def _report(campaign: str | None, key: str) -> DFTMetrics:
    metrics = dft_metrics(find_jobs(campaign))
    rows = [{"metric": name, "value": value} for name, value in metrics.as_dict().items() if name != "states"]
    rows += [{"metric": f"jobs {state}", "value": count} for state, count in metrics.states.items()]
    create_table_artifact(rows, key=key, description=f"DFT metrics, campaign {campaign or 'all'}")
    return metrics


@flow(name="dft", validate_parameters=False)
def dft_flow(config: DFTStageConfig | None = None, campaign: str | None = None, run: RunSettings | None = None) -> dict:
    """Relax the ``config.top_n`` best screened candidates with VASP under ``config.preset``; returns the DFT metrics.

    ``run`` (default: :meth:`RunSettings.of` the config) says how VASP starts. Jobs a killed process left
    ``running`` (its pid gone from this host) are run again first.
    """
    config = config or DFTStageConfig()
    run = run or RunSettings.of(config)
    check_vasp_setup(run)  # before queuing: jobs that cannot start would only fail at once
    with database():
        runs_dir = get_settings().runs_dir / "dft"
        recovered = recover_dead_jobs(campaign)
        for job_id in dict.fromkeys(recovered + queue_dft_jobs(campaign, config.preset, config.top_n)):
            relax_dft_job(job_id, run, runs_dir)
        return _report(campaign, "dft-metrics").as_dict()


@flow(name="dft-resume", validate_parameters=False)
def dft_resume_flow(
    config: DFTStageConfig | None = None,
    campaign: str | None = None,
    run: RunSettings | None = None,
    stale_hours: float | None = None,
) -> dict:
    """Restart failed jobs (fewer than ``config.max_attempts`` attempts) from their last CONTCAR with custodian's fixes.

    Jobs left ``running`` by a process that is gone from this host are restarted too, and with ``stale_hours`` those
    left ``running`` longer than that (a process on another host).
    """
    config = config or DFTStageConfig()
    run = run or RunSettings.of(config)
    with database():
        runs_dir = get_settings().runs_dir / "dft"
        recovered = recover_dead_jobs(campaign)
        for job_id in dict.fromkeys(recovered + requeue_failed_jobs(campaign, config.max_attempts, stale_hours)):
            relax_dft_job(job_id, run, runs_dir)
        return _report(campaign, "dft-metrics").as_dict()
