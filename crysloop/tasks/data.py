"""Prefect tasks for datasets: load (with download retries) and summarise."""

from __future__ import annotations

from prefect import task

from crysloop.data.datasets import CrystalDataset, load_dataset


@task(name="load-dataset", retries=2, retry_delay_seconds=10, tags=["io"])
def load_dataset_task(source: str, split: str = "train", skip_bad: bool = False, limit: int | None = None) -> CrystalDataset:
    """Read a dataset by name or path; downloads are retried (network hiccups)."""
    dataset = load_dataset(source, split=split, skip_bad=skip_bad, progress=False)
    if limit is not None:
        dataset = CrystalDataset(dataset[:limit], dataset.skipped, dataset.name)
    return dataset
