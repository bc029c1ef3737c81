"""Prefect tasks for datasets: load (with download retries) and summarise."""

from __future__ import annotations

from prefect import task

from crysloop.data.datasets import CrystalDataset, load_dataset
from crysloop.errors import InputError


def _retry_unless_input_error(task, task_run, state) -> bool:
    """Retry downloads and I/O hiccups, never a file or option the user has to fix."""
    try:
        state.result()
    except InputError:
        return False
    except Exception:
        return True
    return False


@task(name="load-dataset", retries=2, retry_delay_seconds=10, retry_condition_fn=_retry_unless_input_error, tags=["io"])
def load_dataset_task(
    source: str, split: str = "train", skip_bad: bool = False, limit: int | None = None
) -> CrystalDataset:
    """Read a dataset by name or path; downloads are retried (network hiccups)."""
    dataset = load_dataset(source, split=split, skip_bad=skip_bad, progress=False)
    if limit is not None:
        dataset = CrystalDataset(dataset[:limit], dataset.skipped, dataset.name, dataset.warnings)
    return dataset
