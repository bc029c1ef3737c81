"""The ``ingest`` flow: a dataset (by name or path) into the results database as candidates of source "dataset"."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow

from crysloop.infra.db import database
from crysloop.infra.store import NewCandidate
from crysloop.tasks.data import load_dataset_task
from crysloop.tasks.store import store_candidates_task


@dataclass
class IngestSummary:
    """What an ingest run read, stored and skipped."""

    dataset: str
    read: int
    skipped: int
    inserted: int
    existing: int


@flow(name="ingest", flow_run_name="ingest-{source}-{split}", retries=1, retry_delay_seconds=5)
def ingest_flow(source: str, split: str = "train", limit: int | None = None, skip_bad: bool = False) -> IngestSummary:
    """Load a dataset and store every structure, idempotently, with its tabulated properties."""
    dataset = load_dataset_task(source, split=split, skip_bad=skip_bad, limit=limit)
    name = dataset.name or str(source)
    items = [
        NewCandidate(record.structure, source="dataset", dataset=name, material_id=record.material_id,
                     properties=record.properties)
        for record in dataset
    ]  # fmt: skip
    with database():
        report = store_candidates_task(items)
    return IngestSummary(name, len(dataset), len(dataset.skipped), report.inserted, report.existing)
