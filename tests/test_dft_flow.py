"""The ``dft`` and ``dft-resume`` flows against the results database, with custodian driving a fake VASP."""

from __future__ import annotations

import json

import pytest
from custodian.vasp.validators import VasprunXMLValidator
from dft_fakes import RELAX_1, fake_vasp_calls, write_fake_vasp
from monty.os.path import zpath
from pymatgen.core import Structure
from pymatgen.io.vasp import Incar, Vasprun

from crysloop.dft.config import DFTStageConfig
from crysloop.dft.presets import RunSettings
from crysloop.infra.documents import Candidate, DFTJob, ScreeningResult

MLIP_ENERGY = -5.3  # eV/atom, the screening energy stored for the Si candidate


def _candidate(structure: Structure, key: str, campaign: str) -> Candidate:
    composition = structure.composition
    return Candidate(
        structure_hash=key,
        structure=structure.as_dict(),
        formula=composition.reduced_formula,
        composition={el.symbol: amt for el, amt in composition.element_composition.items()},
        elements=sorted(el.symbol for el in composition.elements),
        chemsys="-".join(sorted(el.symbol for el in composition.elements)),
        nsites=len(structure),
        campaign=campaign,
    ).save()


@pytest.fixture
def screened(db, shared_data):
    """Three screened candidates of campaign ``c1``: Si (best, ok), a failed screening, and a worse GaAs."""
    si = Structure.from_file(shared_data / "vasp" / "Si.cif")
    best = _candidate(si, "si", "c1")
    ScreeningResult(
        candidate=best,
        mlip="chgnet",
        campaign="c1",
        formula="Si",
        status="ok",
        e_above_hull=0.01,
        energy_per_atom=MLIP_ENERGY,
        relaxed_structure=si.as_dict(),
    ).save()
    broken = _candidate(si.copy().scale_lattice(60.0), "si-broken", "c1")
    ScreeningResult(candidate=broken, mlip="chgnet", campaign="c1", status="failed", e_above_hull=-1.0).save()
    gaas = Structure(si.lattice, ["Ga", "As"], si.frac_coords)
    worse = _candidate(gaas, "gaas", "c1")
    ScreeningResult(
        candidate=worse, mlip="chgnet", campaign="c1", status="ok", e_above_hull=0.4, energy_per_atom=-4.0
    ).save()
    return best


def _run_settings(fake, shared_data) -> RunSettings:
    return RunSettings(
        vasp_cmd=str(fake),
        max_errors=2,
        potcar_spec=True,
        enmax={"Si": 245.345, "Ga": 282.7, "As": 208.7},
        validators=(VasprunXMLValidator(),),
        polling_time_step=0.05,
    )


def test_dft_flow_fails_then_resumes_to_completion(prefect_harness, screened, tmp_path, shared_data, settings):
    from crysloop.flows.dft import dft_flow, dft_resume_flow

    recorded = shared_data / "vasp" / RELAX_1
    fake = write_fake_vasp(tmp_path, recorded, failures=2, message="ZBRENT: fatal error in bracketing")
    run = _run_settings(fake, shared_data)

    metrics = dft_flow(DFTStageConfig(preset="crysvcd", top_n=1), campaign="c1", run=run)
    job = DFTJob.objects.get()
    assert job.candidate.id == screened.id and job.preset == "crysvcd"
    assert job.state == "failed" and len(job.attempts) == 1 and len(job.errors) == 1
    first = job.attempts[0]
    assert first.state == "failed" and "Max errors" in first.error
    assert [c["errors"] for c in first.corrections] == [["zbrent"], ["zbrent"]]
    assert metrics["n_finished"] == 1 and metrics["convergence_rate"] == 0.0

    metrics = dft_resume_flow(DFTStageConfig(max_attempts=2), campaign="c1", run=run)
    job.reload()
    assert fake_vasp_calls(fake) == 3
    assert job.state == "completed" and len(job.attempts) == 2
    assert job.attempts[0].state == "failed" and job.attempts[0].error == first.error  # kept as it was
    second = job.attempts[1]
    assert second.restarted_from == first.run_dir
    assert second.incar_overrides["IBRION"] == 1 and second.incar_overrides["NELMIN"] == 8
    incar = Incar.from_file(zpath(f"{second.run_dir}/INCAR"))
    assert incar["IBRION"] == 1 and incar["NELMIN"] == 8  # custodian's fixes reached VASP's input

    vasprun = Vasprun(str(recorded / "outputs/vasprun.xml.gz"), parse_dos=False, parse_eigen=False)
    e_dft = vasprun.final_energy / len(vasprun.final_structure)
    assert job.converged is True and job.ionic_steps == len(vasprun.ionic_steps)
    assert job.final_energy_per_atom == pytest.approx(e_dft)
    assert job.initial_energy_per_atom == MLIP_ENERGY
    assert job.energy_diff_per_atom == pytest.approx(abs(e_dft - MLIP_ENERGY))
    assert Structure.from_dict(job.final_structure).volume == pytest.approx(vasprun.final_structure.volume)
    assert metrics["convergence_rate"] == 1.0
    assert metrics["mean_ionic_steps"] == len(vasprun.ionic_steps)
    assert metrics["mean_energy_diff_per_atom"] == pytest.approx(abs(e_dft - MLIP_ENERGY))

    # a second run neither duplicates nor re-runs the completed job; nothing is left to resume
    dft_flow(DFTStageConfig(preset="crysvcd", top_n=1), campaign="c1", run=run)
    dft_resume_flow(DFTStageConfig(max_attempts=5), campaign="c1", run=run)
    assert DFTJob.objects.count() == 1 and fake_vasp_calls(fake) == 3
    assert DFTJob.objects.get().state == "completed"


def test_cli_resume_and_report(prefect_harness, screened, tmp_path, shared_data, settings, monkeypatch, capsys):
    from crysloop.cli import main
    from crysloop.flows.dft import dft_flow
    from crysloop.settings import get_settings

    recorded = shared_data / "vasp" / RELAX_1
    fake = write_fake_vasp(tmp_path, recorded, failures=99, message="ZBRENT: fatal error in bracketing")
    dft_flow(DFTStageConfig(preset="crysvcd", top_n=2), campaign="c1", run=_run_settings(fake, shared_data))
    assert DFTJob.objects(state="failed").count() == 2

    monkeypatch.setenv("CRYSLOOP_VASP_CMD", str(fake))
    get_settings.cache_clear()
    args = ["dft", "resume", "--campaign", "c1", "--max-attempts", "2", "--max-errors", "1", "--poll-seconds", "0.05"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    jobs = list(DFTJob.objects)
    assert all(job.state == "failed" and len(job.attempts) == 2 and len(job.errors) == 2 for job in jobs)
    with pytest.raises(SystemExit):
        main(args)  # --max-attempts 2 reached: nothing restarts
    assert all(len(job.attempts) == 2 for job in DFTJob.objects)

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["dft", "report", "--campaign", "c1", "--json"])
    assert exit_info.value.code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["n_jobs"] == 2 and report["states"] == {"failed": 2} and report["convergence_rate"] == 0.0

    with pytest.raises(SystemExit) as exit_info:
        main(["dft", "run", "--preset", "pbesol-quick"])
    assert exit_info.value.code == 1
    assert "unknown DFT preset" in capsys.readouterr().err


def test_dft_flow_reruns_a_job_its_killed_predecessor_left_running(
    prefect_harness, screened, tmp_path, shared_data, settings
):
    import subprocess
    import sys

    from crysloop.dft import jobs
    from crysloop.flows.dft import dft_flow
    from crysloop.infra.dft import queue_top_candidates, unfinished_jobs

    fake = write_fake_vasp(tmp_path, shared_data / "vasp" / RELAX_1, failures=0, message="")
    [job] = queue_top_candidates("c1", "crysvcd", top_n=1)
    jobs.start_attempt(job, Structure.from_dict(screened.structure), {}, tmp_path / "killed" / "attempt-0", None)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job.attempts[0].pid = dead.pid  # the campaign that started it was killed -9
    job.save()
    metrics = dft_flow(DFTStageConfig(preset="crysvcd", top_n=1), campaign="c1", run=_run_settings(fake, shared_data))
    job.reload()
    assert job.state == "completed" and [a.state for a in job.attempts] == ["failed", "completed"]
    assert fake_vasp_calls(fake) == 1 and metrics["convergence_rate"] == 1.0
    assert unfinished_jobs("c1") == []
