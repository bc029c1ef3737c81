"""Prefect tasks that write to the results database."""

from __future__ import annotations

from prefect import task

from crysloop.infra.store import InsertReport, NewCandidate, add_candidates


@task(name="store-candidates", retries=2, retry_delay_seconds=5, tags=["db"])
def store_candidates_task(items: list[NewCandidate], campaign: str | None = None,
                          round_index: int | None = None) -> InsertReport:  # fmt: skip
    """Insert candidates idempotently (known structure hashes are skipped)."""
    return add_candidates(items, campaign=campaign, round_index=round_index)
