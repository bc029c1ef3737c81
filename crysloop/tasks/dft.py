"""Prefect tasks of the DFT stage: queue the best screened candidates, relax one job, re-queue failed jobs."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from crysloop.dft import jobs
from crysloop.dft.presets import RunSettings
from crysloop.infra.dft import get_job, queue_top_candidates


@task(name="dft-queue", cache_policy=NO_CACHE)
def queue_dft_jobs(campaign: str | None, preset: str, top_n: int) -> list[str]:
    """Ids of the pending DFT jobs of the ``top_n`` lowest-e_above_hull screened candidates."""
    return [str(job.pk) for job in queue_top_candidates(campaign, preset, top_n)]


@task(name="dft-relax", cache_policy=NO_CACHE, tags=["vasp"])
def relax_dft_job(job_id: str, run: RunSettings, runs_dir: Path) -> str:
    """Run the next VASP attempt of one pending job; returns its new state (completed or failed)."""
    return jobs.run_dft_job(get_job(job_id), run, runs_dir)


@task(name="dft-recover", cache_policy=NO_CACHE)
def recover_dead_jobs(campaign: str | None) -> list[str]:
    """Ids of running jobs whose owning process (on this host) is gone, moved back to pending."""
    return [str(job.pk) for job in jobs.recover_dead_jobs(campaign)]


@task(name="dft-requeue", cache_policy=NO_CACHE)
def requeue_failed_jobs(campaign: str | None, max_attempts: int, stale_hours: float | None = None) -> list[str]:
    """Ids of failed jobs with attempts left, moved back to pending; with ``stale_hours`` stuck runs count as failed."""
    if stale_hours is not None:
        jobs.fail_stale_jobs(campaign, stale_hours)
    return [str(job.pk) for job in jobs.resumable_jobs(campaign, max_attempts)]
