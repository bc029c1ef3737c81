"""Database side of the DFT stage: which candidates get a job, claiming and saving jobs without lost updates."""

from __future__ import annotations

from mongoengine.errors import SaveConditionError

from crysloop.infra.documents import Candidate, DFTAttempt, DFTJob, ScreeningResult, utcnow
from crysloop.infra.work import Ledger


def dft_ledger(preset: str) -> Ledger:
    """DFT jobs under one input preset, one per candidate."""
    return Ledger(DFTJob, "candidate", {"preset": preset})


def queue_top_candidates(campaign: str | None, preset: str, top_n: int) -> list[DFTJob]:
    """Pending DFT jobs of the ``top_n`` screened candidates (status ok, hull covered) lowest above the hull.

    A candidate screened with several potentials counts once, with its lowest value; candidates that already
    have a job under ``preset`` keep it (it is returned only while pending).
    """
    query = ScreeningResult.objects(status="ok", e_above_hull__ne=None, hull_covered__ne=False)  # uncovered: unknown
    if campaign is not None:
        query = query.filter(campaign=campaign)
    chosen: dict = {}
    for result in query.order_by("e_above_hull").no_dereference():
        key = result.candidate.id
        if key not in chosen:
            chosen[key] = result
        if len(chosen) == top_n:
            break
    ledger, jobs = dft_ledger(preset), []
    for candidate_id, result in chosen.items():
        job = ledger.get(candidate_id)
        if job is None:
            candidate = Candidate.objects.get(id=candidate_id)
            job = ledger.claim(
                candidate,
                campaign=campaign if campaign is not None else candidate.campaign,
                formula=candidate.formula,
                initial_energy_per_atom=result.energy_per_atom,
            )
        if job.state == "pending":
            jobs.append(job)
    return jobs


def best_relaxed_structure(candidate_id) -> dict | None:
    """The MLIP-relaxed structure (as a dict) of the candidate's lowest-E_hull ok screening result, if one was kept."""
    result = (
        ScreeningResult.objects(candidate=candidate_id, status="ok", e_above_hull__ne=None)
        .order_by("e_above_hull")
        .first()
    )
    return result.relaxed_structure if result is not None and result.relaxed_structure else None


def get_job(job_id: str) -> DFTJob:
    return DFTJob.objects.get(pk=job_id)


def claim_attempt(job: DFTJob, **attempt) -> bool:
    """Claim ``job`` (pending -> running, with a new attempt of the given fields) in one conditional update.

    Returns ``False``, changing nothing, when another process claimed or changed the job first; ``job`` is reloaded.
    """
    claimed = DFTJob.objects(id=job.pk, state="pending", attempts__size=len(job.attempts)).update_one(
        set__state="running", set__updated_at=utcnow(), push__attempts=DFTAttempt(index=len(job.attempts), **attempt)
    )
    job.reload()
    return bool(claimed)


def save_if(job: DFTJob, state: str) -> bool:
    """Save ``job`` only if the stored one is still in ``state`` with the same attempts (no lost update)."""
    try:
        job.save(save_condition={"state": state, "attempts__size": len(job.attempts)})
    except SaveConditionError:
        job.reload()
        return False
    return True


def _jobs(campaign: str | None, **where):
    query = DFTJob.objects(**where)
    return query.filter(campaign=campaign) if campaign is not None else query


def running_jobs(campaign: str | None) -> list[DFTJob]:
    """Jobs in the ``running`` state (of one campaign or of all)."""
    return list(_jobs(campaign, state="running"))


def failed_jobs(campaign: str | None) -> list[DFTJob]:
    """Jobs in the ``failed`` state (of one campaign or of all)."""
    return list(_jobs(campaign, state="failed"))


def unfinished_jobs(campaign: str | None) -> list[DFTJob]:
    """Jobs still pending or running (of one campaign or of all)."""
    return list(_jobs(campaign, state__in=("pending", "running")))


def find_jobs(campaign: str | None = None) -> list[DFTJob]:
    """All DFT jobs, of one campaign or of all, oldest first."""
    return list(_jobs(campaign).order_by("created_at"))
