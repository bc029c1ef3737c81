"""DFTJob bookkeeping without VASP: candidate selection, the state machine and stale running jobs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from pymatgen.core import Structure

from crysloop.dft import jobs
from crysloop.infra.dft import queue_top_candidates, unfinished_jobs
from crysloop.infra.documents import Candidate, DFTJob, ScreeningResult, utcnow


@pytest.fixture
def si_candidate(db, shared_data):
    si = Structure.from_file(shared_data / "vasp" / "Si.cif")
    candidate = Candidate(structure_hash="si", structure=si.as_dict(), formula="Si", chemsys="Si", campaign="c1").save()
    relaxed = si.copy()
    relaxed.scale_lattice(si.volume * 1.02)
    ScreeningResult(
        candidate=candidate,
        mlip="chgnet",
        campaign="c1",
        status="ok",
        e_above_hull=0.0,
        energy_per_atom=-5.3,
        relaxed_structure=relaxed.as_dict(),
    ).save()
    return candidate, relaxed


def test_uncovered_candidates_are_not_queued_however_low_their_energy_above_hull(si_candidate):
    candidate, relaxed = si_candidate
    other = Candidate(structure_hash="x", structure=relaxed.as_dict(), formula="Si", chemsys="Si", campaign="c1").save()
    ScreeningResult(
        candidate=other,
        mlip="chgnet",
        campaign="c1",
        status="ok",
        e_above_hull=-1.5,
        hull_covered=False,
        relaxed_structure=relaxed.as_dict(),
    ).save()
    assert [job.candidate.id for job in queue_top_candidates("c1", "crysvcd", top_n=5)] == [candidate.id]


def test_first_attempt_starts_from_the_mlip_relaxed_structure(si_candidate, tmp_path):
    candidate, relaxed = si_candidate
    [job] = queue_top_candidates("c1", "crysvcd", top_n=5)
    assert job.candidate.id == candidate.id and job.initial_energy_per_atom == -5.3
    structure, overrides, restarted_from = jobs.restart_point(job)
    assert structure.volume == pytest.approx(relaxed.volume) and overrides == {} and restarted_from is None
    assert queue_top_candidates("c1", "crysvcd", top_n=5)[0].pk == job.pk  # no duplicate job
    with pytest.raises(ValueError, match="illegal transition"):
        job.transition("completed")  # pending jobs must run first


def test_stale_running_job_is_failed_and_requeued(si_candidate, tmp_path):
    candidate, relaxed = si_candidate
    [job] = queue_top_candidates("c1", "crysvcd", top_n=1)
    jobs.start_attempt(job, relaxed, {"ALGO": "All"}, tmp_path / "attempt-0", None)
    assert jobs.fail_stale_jobs("c1", stale_hours=1.0) == []  # just started: left alone
    job.attempts[0].started_at = utcnow() - timedelta(hours=3)
    job.save()
    [stale] = jobs.fail_stale_jobs("c1", stale_hours=1.0)
    assert stale.state == "failed" and stale.attempts[0].state == "failed"
    assert "presumably killed" in stale.errors[0]
    [again] = jobs.resumable_jobs("c1", max_attempts=2)
    assert again.state == "pending" and len(again.attempts) == 1
    structure, overrides, restarted_from = jobs.restart_point(again)  # no CONTCAR: the attempt's own start
    assert structure.volume == pytest.approx(relaxed.volume)
    assert overrides == {"ALGO": "All"} and restarted_from == str(tmp_path / "attempt-0")
    assert DFTJob.objects.get().state == "pending"


def test_a_job_is_claimed_by_one_process_only(si_candidate, tmp_path):
    _, relaxed = si_candidate
    [job] = queue_top_candidates("c1", "crysvcd", top_n=1)
    other = DFTJob.objects.get(pk=job.pk)  # a second resume read the same pending job
    assert jobs.start_attempt(job, relaxed, {}, tmp_path / "a", None) is True
    assert jobs.start_attempt(other, relaxed, {}, tmp_path / "b", None) is False
    stored = DFTJob.objects.get(pk=job.pk)
    assert stored.state == "running" and [a.run_dir for a in stored.attempts] == [str(tmp_path / "a")]
    assert stored.attempts[0].pid == os.getpid() and stored.attempts[0].host == socket.gethostname()


def test_running_jobs_of_a_dead_process_are_recovered_and_live_ones_left(si_candidate, tmp_path):
    _, relaxed = si_candidate
    [job] = queue_top_candidates("c1", "crysvcd", top_n=1)
    jobs.start_attempt(job, relaxed, {}, tmp_path / "attempt-0", None)
    assert jobs.recover_dead_jobs("c1") == []  # this process owns it and is alive
    job.attempts[0].host = "some-other-host"
    job.save()
    assert jobs.recover_dead_jobs("c1") == []  # cannot tell on another host: left to --stale-hours
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job.attempts[0].host, job.attempts[0].pid = socket.gethostname(), dead.pid
    job.save()
    [recovered] = jobs.recover_dead_jobs("c1")
    assert recovered.state == "pending" and recovered.attempts[0].state == "failed"
    assert f"pid {dead.pid}" in recovered.attempts[0].error and "is gone" in recovered.errors[0]
    assert unfinished_jobs("c1")[0].state == "pending"
