"""Task runners: threads in the flow's process, or a Dask cluster through prefect-dask."""

from __future__ import annotations

from crysloop.campaign.config import ExecutorConfig


def task_runner(config: ExecutorConfig):
    """The Prefect task runner an executor config asks for."""
    if config.kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner()
    from prefect_dask import DaskTaskRunner

    if config.address:
        return DaskTaskRunner(address=config.address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": config.workers, "threads_per_worker": 1, "processes": True})
