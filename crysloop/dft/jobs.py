"""DFTJob bookkeeping: which candidates go to DFT, and how each attempt moves a job through its states.

This is the database edge of the DFT stage; the science (inputs, running, parsing) lives in the other modules.
Every attempt is appended to ``DFTJob.attempts`` and never rewritten after it ends. State changes are conditional
updates (a job is claimed pending -> running by exactly one process), and each attempt records the host and process
that own it, so the running jobs of a killed process are found and resumed.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta, timezone
from pathlib import Path

from mongoengine.errors import NotUniqueError, SaveConditionError

from pymatgen.core import Structure

from crysloop.dft.parse import RelaxOutcome, incar_overrides, read_contcar, read_corrections
from crysloop.dft.presets import RunSettings
from crysloop.dft.run import relax_in_subprocess
from crysloop.infra.documents import DFT_TRANSITIONS, Candidate, DFTAttempt, DFTJob, ScreeningResult, utcnow


def queue_top_candidates(campaign: str | None, preset: str, top_n: int) -> list[DFTJob]:
    """Pending DFT jobs for the ``top_n`` screened candidates (status ok, hull covered) with the lowest energy above hull.

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
            try:
                job.save()
            except NotUniqueError:  # another process queued it meanwhile
                job = DFTJob.objects.get(candidate=candidate_id, preset=preset)
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


def _process_start(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks after boot (Linux), to tell it from a later one with its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def owner() -> dict:
    """Host, pid and process start time of this process, recorded on the attempts it runs."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": _process_start(os.getpid())}


def _pid_exists(pid: int) -> bool:
    """Whether a process with this pid runs on this host (one of another user counts: signal 0 is refused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_alive(attempt: DFTAttempt) -> bool | None:
    """Whether the process that owns ``attempt`` still runs; ``None`` when it ran on another host (cannot tell)."""
    if attempt.pid is None or attempt.host != socket.gethostname():
        return None
    if not _pid_exists(attempt.pid):
        return False
    started = _process_start(attempt.pid)
    return attempt.pid_started is None or started is None or started == attempt.pid_started


def start_attempt(
    job: DFTJob, structure: Structure, overrides: dict, run_dir: Path, restarted_from: str | None
) -> bool:
    """Claim ``job`` (pending -> running, a new attempt owned by this process) in one conditional update.

    Returns ``False``, changing nothing, when another process claimed or changed the job first.
    """
    if "running" not in DFT_TRANSITIONS[job.state]:
        raise ValueError(f"DFT job {job.pk}: illegal transition {job.state} -> running")
    attempt = DFTAttempt(index=len(job.attempts), run_dir=str(run_dir), structure=structure.as_dict(),
                         incar_overrides=overrides, restarted_from=restarted_from, **owner())  # fmt: skip
    claimed = DFTJob.objects(id=job.pk, state="pending", attempts__size=len(job.attempts)).update_one(
        set__state="running", set__updated_at=utcnow(), push__attempts=attempt
    )
    job.reload()
    return bool(claimed)


def _save_if(job: DFTJob, state: str) -> bool:
    """Save ``job`` only if the stored one is still in ``state`` with the same attempts (no lost update)."""
    try:
        job.save(save_condition={"state": state, "attempts__size": len(job.attempts)})
    except SaveConditionError:
        job.reload()
        return False
    return True


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
    _save_if(job, "running")


def _fail_attempt(job: DFTJob, message: str) -> bool:
    """running -> failed with the last attempt closed by ``message`` (and custodian's corrections so far)."""
    attempt = job.attempts[-1] if job.attempts else None
    if attempt is not None:
        attempt.state, attempt.finished_at, attempt.error = "failed", utcnow(), message
        attempt.corrections = read_corrections(Path(attempt.run_dir)) if attempt.run_dir else []
    job.transition("failed", error=f"attempt {attempt.index if attempt else '-'}: {message}")
    return _save_if(job, "running")


def _running(campaign: str | None):
    query = DFTJob.objects(state="running")
    return query.filter(campaign=campaign) if campaign is not None else query


def fail_stale_jobs(campaign: str | None, stale_hours: float) -> list[DFTJob]:
    """Mark ``running`` jobs whose last attempt started more than ``stale_hours`` ago as failed (a killed run)."""
    cutoff = utcnow() - timedelta(hours=stale_hours)
    stale = []
    for job in _running(campaign):
        attempt = job.attempts[-1] if job.attempts else None
        started = attempt.started_at if attempt is not None else job.updated_at
        if started.tzinfo is None:
            started = started.replace(tzinfo=timezone.utc)
        if started >= cutoff:
            continue
        if _fail_attempt(job, f"no result {stale_hours:g} h after the attempt started; the run was presumably killed"):
            stale.append(job)
    return stale


def recover_dead_jobs(campaign: str | None) -> list[DFTJob]:
    """``running`` jobs whose owning process on this host is gone: the attempt failed, the job pending again.

    A killed run is not the job's fault, so it goes back to pending whatever its number of attempts.
    """
    recovered = []
    for job in _running(campaign):
        attempt = job.attempts[-1] if job.attempts else None
        if attempt is None or owner_alive(attempt) is not False:
            continue
        if _fail_attempt(job, f"the process that ran it (pid {attempt.pid} on {attempt.host}) is gone"):
            job.transition("pending")
            if _save_if(job, "failed"):
                recovered.append(job)
    return recovered


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
        if _save_if(job, "failed"):
            jobs.append(job)
    return jobs


def unfinished_jobs(campaign: str | None) -> list[DFTJob]:
    """Jobs still pending or running (of one campaign or of all)."""
    query = DFTJob.objects(state__in=("pending", "running"))
    return list(query.filter(campaign=campaign) if campaign is not None else query)


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
    if not start_attempt(job, structure, overrides, run_dir, restarted_from):
        return job.state  # another process claimed it: never two VASP runs in one folder
    try:
        outcome = relax_in_subprocess(structure, job.preset, run_dir, run, overrides)
    except Exception as exc:  # noqa: BLE001 - the job must leave ``running`` whatever happened
        outcome = RelaxOutcome(run_dir=str(run_dir), completed=False, error=f"{type(exc).__name__}: {exc}")
    record_outcome(job, outcome)
    return job.state
