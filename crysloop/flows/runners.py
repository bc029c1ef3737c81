"""Task runners: threads in the flow's process, a pool of local processes, or a Dask cluster through prefect-dask."""

from __future__ import annotations

import os

from crysloop.infra.executors import ExecutorConfig, limit_threads


def task_runner(config: ExecutorConfig):
    """The Prefect task runner an executor config asks for."""
    if config.kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner()
    if config.kind == "processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        share = max(1, (os.cpu_count() or 1) // config.workers)
        return ProcessPoolTaskRunner(max_workers=config.workers, initializer=limit_threads, initargs=(share,))
    from prefect_dask import DaskTaskRunner

    if config.address:
        return DaskTaskRunner(address=config.address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": config.workers, "threads_per_worker": 1, "processes": True})
