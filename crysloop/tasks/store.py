"""Prefect tasks that write to the results database."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task

from crysloop.infra.store import InsertReport, NewCandidate, add_candidates, record_round_samples


@task(name="store-candidates", retries=2, retry_delay_seconds=5, tags=["db"])
def store_candidates_task(
    items: list[NewCandidate], campaign: str | None = None, round_index: int | None = None
) -> InsertReport:
    """Insert candidates idempotently (crystals already stored are skipped)."""
    return add_candidates(items, campaign=campaign, round_index=round_index)


@task(name="store-sampled", retries=2, retry_delay_seconds=5, tags=["db"])
def store_sampled_task(
    sampled: list[NewCandidate], valid: Sequence[bool], campaign: str | None = None, round_index: int | None = None
) -> InsertReport:
    """Store the valid crystals of a generation and, for a campaign round, link every sample to the round."""
    report = add_candidates(
        [item for item, ok in zip(sampled, valid, strict=True) if ok], campaign=campaign, round_index=round_index
    )
    if campaign is not None and round_index is not None:
        stored = iter(report.hashes)
        record_round_samples(campaign, round_index, sampled, valid, [next(stored) if ok else None for ok in valid])
    return report
