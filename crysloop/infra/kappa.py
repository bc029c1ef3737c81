"""Database side of the kappa stage: screened candidates to compute, stored results keyed by calculator and method."""

from __future__ import annotations

from dataclasses import dataclass

from pymatgen.core import Structure

from crysloop.infra.documents import KappaResult, ScreeningResult, utcnow
from crysloop.infra.work import Ledger


@dataclass
class KappaCandidate:
    """A screened candidate queued for kappa: its relaxed structure and what cost control needs to know."""

    candidate_id: str
    formula: str
    structure: Structure
    structure_hash: str
    campaign: str | None = None
    band_gap: float | None = None
    e_above_hull: float | None = None


def kappa_ledger(calculator: str, method: str) -> Ledger:
    """Kappa results of one calculator (a potential, or vasp) and method (RTA or LBTE), one per candidate."""
    return Ledger(KappaResult, "candidate", {"calculator": calculator, "method": method})


def select_kappa_candidates(
    screening_mlip: str,
    campaign: str | None = None,
    max_e_above_hull: float = 0.1,
    method: str = "RTA",
    recompute: bool = False,
    kappa_mlip: str | None = None,
) -> list[KappaCandidate]:
    """Screened candidates (status ok, phonon-stable, e_above_hull <= limit under ``screening_mlip``), lowest first.

    Candidates that already have a kappa result for ``kappa_mlip`` (default: the screening potential) and ``method``
    are left out unless ``recompute``.
    """
    query = ScreeningResult.objects(
        status="ok", phonon_stable=True, mlip=screening_mlip, e_above_hull__lte=max_e_above_hull, hull_covered__ne=False
    ).order_by("e_above_hull")  # an uncovered system's stability is unknown, whatever its energy above hull
    if campaign:
        query = query.filter(campaign=campaign)
    done = set() if recompute else kappa_ledger(kappa_mlip or screening_mlip, method).done()
    selected = []
    for screening in query:
        candidate_id = screening.to_mongo()["candidate"]
        if candidate_id in done:
            continue
        candidate = screening.candidate
        band_gap = (candidate.properties or {}).get("band_gap")
        selected.append(
            KappaCandidate(
                candidate_id=str(candidate_id),
                formula=candidate.formula,
                structure=Structure.from_dict(screening.relaxed_structure or candidate.structure),
                structure_hash=candidate.structure_hash,
                campaign=screening.campaign or candidate.campaign,
                band_gap=float(band_gap) if band_gap is not None else None,
                e_above_hull=screening.e_above_hull,
            )
        )
    return selected


def save_kappa_result(item: KappaCandidate, calculator: str, method: str, fields: dict) -> str:
    """Insert or replace the ``KappaResult`` of (candidate, calculator, method); returns its id."""
    ledger = kappa_ledger(calculator, method)
    ledger.save(item.candidate_id, campaign=item.campaign, formula=item.formula, created_at=utcnow(), **fields)
    return str(ledger.get(item.candidate_id).pk)


def kappa_results(campaign: str | None = None, calculator: str | None = None) -> list[KappaResult]:
    """Stored kappa results, of one campaign and calculator when given."""
    return list(KappaResult.objects(**{k: v for k, v in (("campaign", campaign), ("calculator", calculator)) if v}))
