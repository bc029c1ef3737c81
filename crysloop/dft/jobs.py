"""DFTJob bookkeeping: which candidates go to DFT, and how each attempt moves a job through its states.

This is the database edge of the DFT stage; the science (inputs, running, parsing) lives in the other modules.
Every attempt is appended to ``DFTJob.attempts`` and never rewritten after it ends.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from pathlib import Path

from pymatgen.core import Structure

from crysloop.dft.parse import RelaxOutcome, incar_overrides, read_contcar, read_corrections
from crysloop.dft.presets import RunSettings
from crysloop.dft.run import relax_in_subprocess
from crysloop.infra.documents import Candidate, DFTAttempt, DFTJob, ScreeningResult, utcnow


def queue_top_candidates(campaign: str | None, preset: str, top_n: int) -> list[DFTJob]:
    """Pending DFT jobs for the ``top_n`` screened candidates (status ok) with the lowest energy above hull.

    A candidate screened with several potentials counts once, with its lowest value; candidates that already
    have a job under ``preset`` keep it (it is returned only while pending).
    """
    query = ScreeningResult.objects(status="ok", e_above_hull__ne=None)
    if campaign is not None:
        query = query.filter(campaign=campaign)
    chosen: dict = {}
    for result in query.order_by("e_above_hull").no_dereference():
        key = result.candidate.id
        if key not in chosen:
            chosen[key] = result
        if len(chosen) == top_n:
            break
    jobs = []
    for candidate_id, result in chosen.items():
        job = DFTJob.objects(candidate=candidate_id, preset=preset).first()
        if job is None:
            candidate = Candidate.objects.get(id=candidate_id)
            job = DFTJob(
                candidate=candidate,
                campaign=campaign if campaign is not None else candidate.campaign,
                formula=candidate.formula,
                preset=preset,
                initial_energy_per_atom=result.energy_per_atom,
            )
            job.save()
        if job.state == "pending":
            jobs.append(job)
    return jobs


def input_structure(job: DFTJob) -> Structure:
    """The structure a first attempt starts from: the MLIP-relaxed one when screening kept it, else the candidate."""
    result = ScreeningResult.objects(candidate=job.candidate.id, status="ok", e_above_hull__ne=None).order_by(
        "e_above_hull"
    ).first()
    if result is not None and result.relaxed_structure:
        return Structure.from_dict(result.relaxed_structure)
    return Structure.from_dict(job.candidate.structure)


def restart_point(job: DFTJob) -> tuple[Structure, dict, str | None]:
    """Structure, INCAR overrides and previous folder the next attempt of ``job`` starts from.

    After a failed attempt: its last CONTCAR (else the structure it started from), and the INCAR changes of all
    earlier attempts plus the corrections custodian recorded in the last one.
    """
    if not job.attempts:
        return input_structure(job), {}, None
    last = job.attempts[-1]
    structure = read_contcar(Path(last.run_dir)) if last.run_dir else None
    if structure is None:
        structure = Structure.from_dict(last.structure) if last.structure else input_structure(job)
    overrides = dict(last.incar_overrides or {})
    overrides.update(incar_overrides(last.corrections))
    return structure, overrides, last.run_dir


def start_attempt(
    job: DFTJob, structure: Structure, overrides: dict, run_dir: Path, restarted_from: str | None
) -> None:
    """pending -> running, with a new attempt appended and saved before VASP starts."""
    job.transition("running")
    job.attempts.append(
        DFTAttempt(
            index=len(job.attempts),
            run_dir=str(run_dir),
            structure=structure.as_dict(),
            incar_overrides=overrides,
            restarted_from=restarted_from,
        )
    )
    job.save()


def record_outcome(job: DFTJob, outcome: RelaxOutcome) -> None:
    """running -> completed | failed, with the attempt closed and the job's results filled in."""
    attempt = job.attempts[-1]
    attempt.finished_at = utcnow()
    attempt.state = "completed" if outcome.completed else "failed"
    attempt.error = outcome.error
    attempt.corrections = outcome.corrections
    job.converged = outcome.converged
    job.ionic_steps = outcome.ionic_steps
    if outcome.completed:
        job.final_energy = outcome.final_energy
        job.final_energy_per_atom = outcome.final_energy_per_atom
        job.final_structure = outcome.final_structure.as_dict()
        if job.initial_energy_per_atom is not None:
            job.energy_diff_per_atom = abs(outcome.final_energy_per_atom - job.initial_energy_per_atom)
        job.transition("completed")
    else:
        job.transition("failed", error=f"attempt {attempt.index}: {outcome.error}")
    job.save()


def fail_stale_jobs(campaign: str | None, stale_hours: float) -> list[DFTJob]:
    """Mark ``running`` jobs whose last attempt started more than ``stale_hours`` ago as failed (a killed run)."""
    query = DFTJob.objects(state="running")
    if campaign is not None:
        query = query.filter(campaign=campaign)
    cutoff = utcnow() - timedelta(hours=stale_hours)
    stale = []
    for job in query:
        attempt = job.attempts[-1] if job.attempts else None
        started = attempt.started_at if attempt is not None else job.updated_at
        if started.tzinfo is None:
            started = started.replace(tzinfo=timezone.utc)
        if started >= cutoff:
            continue
        message = f"no result {stale_hours:g} h after the attempt started; the run was presumably killed"
        if attempt is not None:
            attempt.state, attempt.finished_at, attempt.error = "failed", utcnow(), message
            attempt.corrections = read_corrections(Path(attempt.run_dir)) if attempt.run_dir else []
        job.transition("failed", error=f"attempt {attempt.index if attempt else '-'}: {message}")
        job.save()
        stale.append(job)
    return stale


def resumable_jobs(campaign: str | None, max_attempts: int) -> list[DFTJob]:
    """Failed jobs with fewer than ``max_attempts`` attempts, moved back to pending (failed -> pending)."""
    query = DFTJob.objects(state="failed")
    if campaign is not None:
        query = query.filter(campaign=campaign)
    jobs = []
    for job in query:
        if len(job.attempts) >= max_attempts:
            continue
        job.transition("pending")
        job.save()
        jobs.append(job)
    return jobs


def find_jobs(campaign: str | None = None) -> list[DFTJob]:
    """All DFT jobs, of one campaign or of all."""
    query = DFTJob.objects if campaign is None else DFTJob.objects(campaign=campaign)
    return list(query.order_by("created_at"))


def job_generators(jobs: list[DFTJob]) -> list[str]:
    """The generator of each job's candidate (see :func:`crysloop.dft.metrics.generator_of`)."""
    from crysloop.dft.metrics import generator_of

    return [generator_of(job.candidate.origin or {}, job.candidate.source) for job in jobs]


def run_dft_job(job: DFTJob, run: RunSettings, runs_dir: Path) -> str:
    """Run the next attempt of a pending ``job`` in ``runs_dir/<job id>/attempt-<n>``; returns the new state.

    Anything that ends the attempt, including a crash of the VASP process tree, marks the job failed, never lost.
    """
    structure, overrides, restarted_from = restart_point(job)
    run_dir = Path(runs_dir) / str(job.pk) / f"attempt-{len(job.attempts)}"
    start_attempt(job, structure, overrides, run_dir, restarted_from)
    try:
        outcome = relax_in_subprocess(structure, job.preset, run_dir, run, overrides)
    except Exception as exc:  # noqa: BLE001 - the job must leave ``running`` whatever happened
        outcome = RelaxOutcome(run_dir=str(run_dir), completed=False, error=f"{type(exc).__name__}: {exc}")
    record_outcome(job, outcome)
    return job.state
