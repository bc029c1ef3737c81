"""Issue 16, found as a new user would: silently dropped rows, conditions and devices, and silent DFT failures."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from crysloop.cli import main
from crysloop.errors import InputError

NACL = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_csv_with_only_material_id_and_cif_loads_every_row(tmp_path):
    from crysloop.data.datasets import read_csv

    path = tmp_path / "generated.csv"
    kcl = NACL.copy()
    kcl.replace_species({"Na": "K"})
    pd.DataFrame({"material_id": ["a", "b"], "cif": [NACL.to(fmt="cif"), kcl.to(fmt="cif")]}).to_csv(path, index=False)
    dataset = read_csv(path, progress=False)
    assert [r.material_id for r in dataset] == ["a", "b"]
    assert [r.structure.composition.reduced_formula for r in dataset] == ["NaCl", "KCl"]
    assert all(r.properties == {} for r in dataset)


def test_structure_problems_and_cell_warnings():
    from crysloop.data.datasets import cell_warning, structure_problem

    assert structure_problem(NACL) is None and cell_warning(NACL) is None
    overlapping = Structure(Lattice.cubic(4.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5] * 3, [0.55, 0.5, 0.5]])
    assert "sites 1 (Cl) and 2 (Cl) are 0.20 A apart" in structure_problem(overlapping)
    disordered = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5] * 3])
    assert "partial occupancy" in structure_problem(disordered)
    huge = Structure(Lattice.cubic(1e6), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3])
    assert structure_problem(huge) is None
    assert "implausible cell" in cell_warning(huge)


def test_ingest_warns_about_an_absurd_cell_and_names_rejected_rows(settings, prefect_harness, tmp_path, capsys):
    huge = Structure(Lattice.cubic(1e6), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3])
    overlapping = Structure(Lattice.cubic(4.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5] * 3, [0.55, 0.5, 0.5]])
    path = tmp_path / "mixed.csv"
    pd.DataFrame(
        {
            "material_id": ["ok", "huge", "overlap"],
            "cif": [NACL.to(fmt="cif"), huge.to(fmt="cif"), overlapping.to(fmt="cif")],
        }
    ).to_csv(path, index=False)
    code, out, err = run(["data", "ingest", str(path), "--skip-bad"], capsys)
    assert code == 0, err
    assert "read 2, skipped 1, stored 2 new" in out
    assert "warning:" in out and "row 2 (huge)" in out and "implausible cell" in out
    assert "row 3 (overlap): overlapping atoms" in out


def test_unknown_and_non_finite_conditions_are_errors_listing_known_names():
    from crysloop.campaign.config import parse_config
    from crysloop.campaign.generation import check_conditions

    known = {"stage I": ("ehull",), "stage II": ("band_gap",)}
    check_conditions({"ehull": 0.0, "band_gap": 1.0}, known)
    with pytest.raises(InputError, match="unknown condition 'foo'; the models know stage I: ehull; stage II: band_gap"):
        check_conditions({"foo": 1.0}, known)
    with pytest.raises(InputError, match="not a finite number"):
        check_conditions({"ehull": math.inf}, known)
    with pytest.raises(InputError, match=r"unknown condition 'stabel'.*fine-tuning labels: stable"):
        parse_config({"name": "x", "conditions": {"stabel": 1}})
    with pytest.raises(InputError, match="stable: nan is not a finite number"):
        parse_config({"name": "x", "conditions": {"stable": math.nan}})
    config = parse_config({"name": "x", "conditions": {"kappa": 100, "band_gap": 1.5}})
    assert config.conditions == {"band_gap": 1.5, "log10_kappa": pytest.approx(2.0)}  # the label the models learn


def test_device_setting_reaches_the_cli_and_unknown_devices_name_the_available(settings, monkeypatch, capsys):
    from crysloop.settings import available_devices, get_settings, resolve_device

    assert resolve_device("cpu") == "cpu" and "cpu" in available_devices()
    with pytest.raises(InputError, match=r"device 'tpu' is not available on this machine; available: auto, cpu"):
        resolve_device("tpu")
    if "cuda:0" not in available_devices():
        with pytest.raises(InputError, match="device 'cuda' is not available"):
            resolve_device("cuda")
    monkeypatch.setenv("CRYSLOOP_DEVICE", "tpu")  # the setting, not the command's default, must decide
    get_settings.cache_clear()
    code, _, err = run(["generate", "--n", "1"], capsys)
    assert code == 1 and err.startswith("error: device 'tpu'")


def test_vasp_setup_is_checked_before_queuing(tmp_path, monkeypatch):
    from crysloop.dft.presets import RunSettings, check_vasp_setup

    launcher = tmp_path / "bin" / "mpirun"
    launcher.parent.mkdir()
    launcher.write_text("#!/bin/sh\n")
    launcher.chmod(0o755)
    monkeypatch.setenv("PATH", f"{launcher.parent}:/usr/bin:/bin")
    monkeypatch.delenv("PMG_VASP_PSP_DIR", raising=False)
    monkeypatch.setattr("pymatgen.core.SETTINGS", {})
    with pytest.raises(InputError, match="'vasp_std' is not an executable on PATH"):
        check_vasp_setup(RunSettings(vasp_cmd="vasp_std"))
    with pytest.raises(InputError, match="'vasp_gam' is not an executable"):
        check_vasp_setup(RunSettings(vasp_cmd="mpirun -n 4 vasp_gam"))  # launcher and binary are both checked
    with pytest.raises(InputError, match="POTCARs are not configured"):
        check_vasp_setup(RunSettings(vasp_cmd="/bin/true"))
    check_vasp_setup(RunSettings(vasp_cmd="/bin/true", potcar_spec=True))
    (tmp_path / "psp").mkdir()
    monkeypatch.setenv("PMG_VASP_PSP_DIR", str(tmp_path / "psp"))
    check_vasp_setup(RunSettings(vasp_cmd="/bin/true"))


def test_dft_report_prints_each_failed_jobs_reason(db, capsys):
    from crysloop.infra.documents import Candidate, DFTJob
    from crysloop.infra.store import NewCandidate, add_candidates

    add_candidates([NewCandidate(NACL, source="user")], campaign="c1")
    candidate = Candidate.objects.get()
    reason = "attempt 0: ValueError: ENMAX of POTCAR Cl is unknown: configure PMG_VASP_PSP_DIR"
    DFTJob(candidate=candidate, campaign="c1", formula="NaCl", preset="crysvcd", state="failed", errors=[reason]).save()
    code, out, err = run(["dft", "report", "--campaign", "c1"], capsys)
    assert code == 0, err
    assert f"failed NaCl (job {DFTJob.objects.get().pk}): {reason}" in out
