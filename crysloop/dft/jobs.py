"""The DFT job state machine: where each attempt starts, which process owns it, and how it ends.

Every attempt is appended to ``DFTJob.attempts`` and never rewritten after it ends. State changes are conditional
updates (a job is claimed pending -> running by exactly one process; :mod:`crysloop.infra.dft` holds the queries),
and each attempt records the host and process that own it, so the running jobs of a killed process are found and
resumed.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, timedelta
from pathlib import Path

from pymatgen.core import Structure

from crysloop.dft.parse import RelaxOutcome, incar_overrides, read_contcar, read_corrections
from crysloop.dft.presets import RunSettings
from crysloop.dft.run import relax_in_subprocess
from crysloop.infra.dft import best_relaxed_structure, claim_attempt, failed_jobs, running_jobs, save_if
from crysloop.infra.documents import DFT_TRANSITIONS, DFTAttempt, DFTJob, utcnow


def input_structure(job: DFTJob) -> Structure:
    """The structure a first attempt starts from: the MLIP-relaxed one when screening kept it, else the candidate."""
    relaxed = best_relaxed_structure(job.candidate.id)
    return Structure.from_dict(relaxed if relaxed is not None else job.candidate.structure)


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
    return claim_attempt(
        job,
        run_dir=str(run_dir),
        structure=structure.as_dict(),
        incar_overrides=overrides,
        restarted_from=restarted_from,
        **owner(),
    )


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
    save_if(job, "running")


def _fail_attempt(job: DFTJob, message: str) -> bool:
    """running -> failed with the last attempt closed by ``message`` (and custodian's corrections so far)."""
    attempt = job.attempts[-1] if job.attempts else None
    if attempt is not None:
        attempt.state, attempt.finished_at, attempt.error = "failed", utcnow(), message
        attempt.corrections = read_corrections(Path(attempt.run_dir)) if attempt.run_dir else []
    job.transition("failed", error=f"attempt {attempt.index if attempt else '-'}: {message}")
    return save_if(job, "running")


def fail_stale_jobs(campaign: str | None, stale_hours: float) -> list[DFTJob]:
    """Mark ``running`` jobs whose last attempt started more than ``stale_hours`` ago as failed (a killed run)."""
    cutoff = utcnow() - timedelta(hours=stale_hours)
    stale = []
    for job in running_jobs(campaign):
        attempt = job.attempts[-1] if job.attempts else None
        started = attempt.started_at if attempt is not None else job.updated_at
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
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
    for job in running_jobs(campaign):
        attempt = job.attempts[-1] if job.attempts else None
        if attempt is None or owner_alive(attempt) is not False:
            continue
        if _fail_attempt(job, f"the process that ran it (pid {attempt.pid} on {attempt.host}) is gone"):
            job.transition("pending")
            if save_if(job, "failed"):
                recovered.append(job)
    return recovered


def resumable_jobs(campaign: str | None, max_attempts: int) -> list[DFTJob]:
    """Failed jobs with fewer than ``max_attempts`` attempts, moved back to pending (failed -> pending)."""
    jobs = []
    for job in failed_jobs(campaign):
        if len(job.attempts) >= max_attempts:
            continue
        job.transition("pending")
        if save_if(job, "failed"):
            jobs.append(job)
    return jobs


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
    except Exception as exc:
        outcome = RelaxOutcome(run_dir=str(run_dir), completed=False, error=f"{type(exc).__name__}: {exc}")
    record_outcome(job, outcome)
    return job.state
