"""The ``ingest`` flow: a dataset (by name or path) into the results database as candidates of source "dataset"."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import flow

from crysloop.errors import InputError
from crysloop.infra.db import database
from crysloop.infra.store import NewCandidate
from crysloop.tasks.ingest import load_dataset_task
from crysloop.tasks.store import store_candidates_task


@dataclass
class IngestSummary:
    """What an ingest run read, stored and skipped."""

    dataset: str
    read: int
    skipped: int
    inserted: int
    existing: int
    skipped_rows: list[tuple[str, str]] = field(default_factory=list)  # (where, why) of rows left out
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (where, what) of rows stored but implausible


@flow(name="ingest", flow_run_name="ingest-{source}-{split}")  # the load task retries downloads; bad input is final
def ingest_flow(source: str, split: str = "train", limit: int | None = None, skip_bad: bool = False) -> IngestSummary:
    """Load a dataset and store every structure, idempotently, with its tabulated properties."""
    if limit is not None and limit < 1:
        raise InputError(f"limit must be at least 1, got {limit}")
    dataset = load_dataset_task(source, split=split, skip_bad=skip_bad, limit=limit)
    name = dataset.name or str(source)
    if not dataset:
        raise InputError(f"{source}: no readable structures ({len(dataset.skipped)} rows skipped)")
    items = [
        NewCandidate(
            record.structure,
            source="dataset",
            dataset=name,
            material_id=record.material_id,
            properties=record.properties,
        )
        for record in dataset
    ]
    with database():
        report = store_candidates_task(items)
    return IngestSummary(
        name,
        len(dataset),
        len(dataset.skipped),
        report.inserted,
        report.existing,
        list(dataset.skipped),
        list(dataset.warnings),
    )
