"""VASP inputs of the two DFT presets: INCAR, KPOINTS and POTCAR.spec as atomate2 writes them."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.vasp import Incar, Kpoints

from crysloop.dft.presets import PRESETS, RunSettings, potcar_enmax, vacuum_directions, write_preset_inputs
from crysloop.errors import InputError


@pytest.fixture
def si(shared_data) -> Structure:
    return Structure.from_file(shared_data / "vasp" / "Si.cif")


@pytest.fixture
def si_enmax(shared_data) -> float:
    """ENMAX of the PBE Si POTCAR, as the recorded VASP run printed it in its OUTCAR."""
    text = gzip.open(shared_data / "vasp/Si_double_relax/relax_1/outputs/OUTCAR.gz", "rt").read()
    return float(re.search(r"ENMAX\s*=\s*([\d.]+)", text).group(1))


def _inputs(tmp_path, preset, structure, enmax):
    directory = write_preset_inputs(preset, structure, tmp_path / preset, RunSettings(potcar_spec=True, enmax=enmax))
    incar = Incar.from_file(directory / "INCAR")
    kpoints = Kpoints.from_file(directory / "KPOINTS")
    spec = (directory / "POTCAR.spec").read_text().split()
    return incar, kpoints, spec


def test_condition_cdvae_plus_inputs(tmp_path, si):
    incar, kpoints, spec = _inputs(tmp_path, "condition-cdvae-plus", si, {})
    assert str(incar["GGA"]).upper() == "PE"  # PBE, not atomate2's default PBEsol
    assert "METAGGA" not in incar
    assert incar["ENCUT"] == 550
    assert incar["EDIFF"] == pytest.approx(1e-6)
    assert incar["EDIFFG"] == pytest.approx(-0.05)
    assert incar["IVDW"] == 11
    assert incar["ISIF"] == 3 and incar["IBRION"] == 2 and incar["NSW"] > 0
    assert kpoints.style == Kpoints.supported_modes.Gamma
    assert spec == ["Si"]


def test_crysvcd_inputs(tmp_path, si, si_enmax):
    incar, kpoints, spec = _inputs(tmp_path, "crysvcd", si, {"Si": si_enmax})
    assert str(incar["GGA"]).upper() == "PE"
    assert incar["ENCUT"] == pytest.approx(1.2 * si_enmax, abs=1e-3)
    assert incar["ISIF"] == 3
    assert "IVDW" not in incar
    assert kpoints.style == Kpoints.supported_modes.Gamma
    reciprocal = np.linalg.norm(si.lattice.reciprocal_lattice.matrix, axis=1)  # with the 2 pi
    for length, n in zip(reciprocal, kpoints.kpts[0], strict=True):
        assert length / n <= 0.03 * 2 * np.pi + 1e-9  # spacing met
        assert n == 1 or length / (n - 1) > 0.03 * 2 * np.pi  # and not finer than needed
    assert spec == ["Si"]


@pytest.mark.parametrize("preset", PRESETS)
def test_one_kpoint_along_vacuum(tmp_path, preset, si_enmax):
    slab = Structure(
        Lattice.from_parameters(3.87, 3.87, 25.0, 90, 90, 120),
        ["Si", "Si", "Si", "Si"],
        [[0, 0, 0.0], [1 / 3, 2 / 3, 0.04], [0, 0, 0.12], [1 / 3, 2 / 3, 0.16]],
    )
    assert vacuum_directions(slab) == [2]
    _, kpoints, _ = _inputs(tmp_path, preset, slab, {"Si": si_enmax})
    nx, ny, nz = kpoints.kpts[0]
    assert nz == 1 and nx > 1 and ny > 1


def test_bulk_has_no_vacuum(si):
    assert vacuum_directions(si) == []
    assert vacuum_directions(si.make_supercell([1, 1, 4], in_place=False)) == []


def test_crysvcd_without_potcars_asks_for_enmax(monkeypatch, si):
    from pymatgen.core import SETTINGS

    monkeypatch.setitem(SETTINGS, "PMG_VASP_PSP_DIR", None)
    with pytest.raises(InputError, match="ENMAX of POTCAR Si"):
        potcar_enmax(["Si"])


def test_unknown_preset(tmp_path, si):
    with pytest.raises(InputError, match="unknown DFT preset"):
        write_preset_inputs("pbe-quick", si, tmp_path, RunSettings(potcar_spec=True))
