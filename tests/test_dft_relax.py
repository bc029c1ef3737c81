"""VASP relaxations through atomate2: recorded outputs via atomate2's mock, and custodian driving a fake VASP."""

from __future__ import annotations

import gzip
import re

import pytest
from custodian.vasp.validators import VasprunXMLValidator
from dft_fakes import RELAX_1, RELAX_2, fake_vasp_calls, write_fake_vasp
from monty.os.path import zpath
from pymatgen.core import Structure
from pymatgen.io.vasp import Incar, Vasprun

from crysloop.dft.parse import incar_overrides
from crysloop.dft.presets import RunSettings
from crysloop.dft.run import relax, relax_in_subprocess

JOB_NAME = "crysvcd relax"


@pytest.fixture
def vasp_dir(shared_data):
    return shared_data / "vasp"


@pytest.fixture
def mock_vasp(monkeypatch, vasp_dir):
    """atomate2's recorded-output VASP: copies ``vasp_dir/<ref>/outputs`` after checking the written inputs."""
    from atomate2.utils.testing.vasp import monkeypatch_vasp

    yield from monkeypatch_vasp(monkeypatch, vasp_dir)


@pytest.fixture
def run_settings(vasp_dir):
    text = gzip.open(vasp_dir / RELAX_1 / "outputs/OUTCAR.gz", "rt").read()
    enmax = float(re.search(r"ENMAX\s*=\s*([\d.]+)", text).group(1))  # the Si POTCAR the recording used
    # the recorded outputs hold no OSZICAR, so custodian's files validator would reject them
    return RunSettings(
        potcar_spec=True, enmax={"Si": enmax}, validators=(VasprunXMLValidator(),), polling_time_step=0.05
    )


@pytest.fixture
def si(vasp_dir) -> Structure:
    return Structure.from_file(vasp_dir / "Si.cif")


def _recorded(vasp_dir, ref) -> Vasprun:
    return Vasprun(str(vasp_dir / ref / "outputs/vasprun.xml.gz"), parse_dos=False, parse_eigen=False)


def test_recorded_double_relaxation(mock_vasp, tmp_path, si, vasp_dir, run_settings):
    checks = {"check_inputs": ["incar", "poscar", "potcar"], "incar_settings": ["ISIF", "IBRION", "NSW"]}
    mock_vasp({JOB_NAME: RELAX_1}, {JOB_NAME: checks})
    first = relax(si, "crysvcd", tmp_path / "relax_1", run_settings)
    recorded = _recorded(vasp_dir, RELAX_1)
    assert first.completed and first.error is None
    assert first.converged is True
    assert first.ionic_steps == len(recorded.ionic_steps)
    assert first.final_energy == pytest.approx(recorded.final_energy)
    assert first.final_energy_per_atom == pytest.approx(recorded.final_energy / len(si))
    assert first.final_structure.lattice.volume == pytest.approx(recorded.final_structure.volume)
    assert first.corrections == []

    # restart from the CONTCAR: relax_2's recorded POSCAR is relax_1's CONTCAR, which the mock checks
    mock_vasp({JOB_NAME: RELAX_2}, {JOB_NAME: checks})
    second = relax(first.last_structure, "crysvcd", tmp_path / "relax_2", run_settings)
    assert second.completed
    assert second.final_energy == pytest.approx(_recorded(vasp_dir, RELAX_2).final_energy)


def test_recorded_inputs_are_checked(mock_vasp, tmp_path, si, run_settings):
    """The mock compares the written INCAR with the recording: the PBE preset's ENCUT is not the recording's."""
    mock_vasp({JOB_NAME: RELAX_1}, {JOB_NAME: {"check_inputs": ["incar"], "incar_settings": ["ENCUT"]}})
    outcome = relax(si, "crysvcd", tmp_path / "run", run_settings)
    assert not outcome.completed
    assert "ENCUT is inconsistent" in outcome.error


def test_custodian_corrects_vasp_errors(tmp_path, si, vasp_dir, run_settings):
    fake = write_fake_vasp(tmp_path, vasp_dir / RELAX_1, failures=1, message="Error EDDDAV: Call to ZHEGV failed")
    run = RunSettings(**{**run_settings.__dict__, "vasp_cmd": str(fake), "max_errors": 3})
    outcome = relax_in_subprocess(si, "crysvcd", tmp_path / "run", run)
    assert fake_vasp_calls(fake) == 2
    assert outcome.completed and outcome.converged
    assert [c["handler"] for c in outcome.corrections] == ["VaspErrorHandler"]
    assert outcome.corrections[0]["errors"] == ["edddav"]
    # custodian's fix for EDDDAV switches the electronic algorithm in the INCAR that VASP re-reads
    assert incar_overrides(outcome.corrections)["ALGO"] == "All"
    assert Incar.from_file(zpath(str(tmp_path / "run" / "INCAR")))["ALGO"] == "All"
    assert Incar.from_file(zpath(str(tmp_path / "run" / "INCAR.orig")))["ALGO"] != "All"


def test_uncorrectable_errors_fail_the_attempt(tmp_path, si, vasp_dir, run_settings):
    fake = write_fake_vasp(tmp_path, vasp_dir / RELAX_1, failures=10, message="ZBRENT: fatal error in bracketing")
    run = RunSettings(**{**run_settings.__dict__, "vasp_cmd": str(fake), "max_errors": 2})
    outcome = relax_in_subprocess(si, "crysvcd", tmp_path / "run", run)
    assert fake_vasp_calls(fake) == run.max_errors  # custodian stops once max_errors corrections are spent
    assert not outcome.completed
    assert "Max errors" in outcome.error
    assert outcome.final_energy is None
    assert [c["errors"] for c in outcome.corrections] == [["zbrent"], ["zbrent"]]
    overrides = incar_overrides(outcome.corrections)
    assert overrides["NELMIN"] == 8 and overrides["IBRION"] == 1  # custodian's second ZBRENT fix: IBRION = 1
    assert outcome.last_structure is not None
