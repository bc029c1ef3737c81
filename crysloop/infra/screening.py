"""Database side of MLIP screening: candidates still to screen, cached hull references, storing results."""

from __future__ import annotations

from dataclasses import dataclass

from pymatgen.core import Structure

from crysloop.infra.campaign import campaign_candidate_ids
from crysloop.infra.documents import Candidate, HullReference, ScreeningResult, utcnow
from crysloop.infra.work import Ledger

SCREENED_SOURCES = ("generated", "user")  # dataset records are the known compounds: references, not candidates


@dataclass
class ScreenItem:
    """A candidate queued for screening: its id, formula, chemical system and starting structure."""

    candidate_id: str
    formula: str
    chemsys: str
    structure: Structure
    campaign: str | None = None


def screening_ledger(mlip: str) -> Ledger:
    """Screening results under potential ``mlip``, one per candidate."""
    return Ledger(ScreeningResult, "candidate", {"mlip": mlip})


def pending_candidates(
    campaign: str | None, mlip: str, max_candidates: int | None = None, retry_failed: bool = False
) -> list[ScreenItem]:
    """Generated and user candidates (of ``campaign`` if given) without a screening result under ``mlip``.

    With ``retry_failed`` only ``ok`` results count as done, so failed and unconverged candidates are screened again.
    """
    done = screening_ledger(mlip).done(**({"status": "ok"} if retry_failed else {}))
    query = Candidate.objects(source__in=SCREENED_SOURCES).order_by("created_at")
    if campaign:
        query = query.filter(id__in=campaign_candidate_ids(campaign))  # its own and those its rounds sampled again
    items = []
    for candidate in query:
        if candidate.pk in done:
            continue
        items.append(
            ScreenItem(
                str(candidate.pk),
                candidate.formula,
                candidate.chemsys,
                Structure.from_dict(candidate.structure),
                campaign or candidate.campaign,
            )
        )
        if max_candidates is not None and len(items) >= max_candidates:
            break
    return items


def save_screening_result(candidate_id: str, mlip: str, fields: dict) -> None:
    """Store (or replace) the screening result of one candidate under ``mlip``."""
    screening_ledger(mlip).save(candidate_id, **fields, created_at=utcnow())


def dataset_reference_structures(chemsys: str) -> list[Structure]:
    """Structures of known compounds (dataset records) whose chemical system is exactly ``chemsys``."""
    known = Candidate.objects(source="dataset", chemsys=chemsys).only("structure")
    return [Structure.from_dict(c.structure) for c in known]


def _references(source: str) -> Ledger:
    return Ledger(HullReference, "chemsys", {"mlip": source})


def hull_reference_entries(source: str, chemsys: str) -> list[dict] | None:
    """The cached reference entries (``ComputedEntry.as_dict()``) of ``chemsys`` under ``source``; None if none."""
    document = _references(source).get(chemsys)
    return None if document is None else list(document.entries)


def save_hull_reference_entries(source: str, chemsys: str, entries: list[dict]) -> None:
    """Cache the reference entries of ``chemsys`` under ``source`` (a potential name or ``mp-api``)."""
    _references(source).save(chemsys, entries=entries, created_at=utcnow())
