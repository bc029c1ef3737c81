"""DFT inputs for slabs: c fixed (LATTICE_CONSTRAINTS or ions only), dipole correction for Janus stacks, 1 k-point
on c."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.vasp import Incar, Kpoints

from crysloop.dft.presets import RunSettings, is_polar_slab, slab_centre, write_preset_inputs
from crysloop.vdw.bilayers import Stacking, make_bilayer
from crysloop.vdw.monolayers import Monolayer

JANUS = Monolayer(("Ga", "S"), ("In", "Se"))
GASE = Monolayer(("Ga", "Se"), ("Ga", "Se"))


def _bilayer(layer: Monolayer, flip_upper: bool = False) -> Structure:
    stacking = Stacking(layer.name, layer.name, False, flip_upper, 0, "AB")
    return make_bilayer(layer.structure(), layer.structure(), stacking)


def _write(tmp_path, structure, version="6.4"):
    directory = write_preset_inputs(
        "condition-cdvae-plus", structure, tmp_path / version, RunSettings(potcar_spec=True, vasp_version=version)
    )
    return Incar.from_file(directory / "INCAR"), Kpoints.from_file(directory / "KPOINTS")


def test_janus_bilayer_relaxes_in_plane_with_dipole_correction(tmp_path):
    bilayer = _bilayer(JANUS)
    incar, kpoints = _write(tmp_path, bilayer)
    assert incar["ISIF"] == 3 and list(incar["LATTICE_CONSTRAINTS"]) == [True, True, False]
    assert incar["IVDW"] == 11 and incar["IDIPOL"] == 3 and incar["LDIPOL"] is True
    z = bilayer.frac_coords[:, 2]
    assert incar["DIPOL"][2] == pytest.approx(0.5 * (z.min() + z.max()), abs=1e-5)
    nx, ny, nz = kpoints.kpts[0]
    assert nz == 1 and nx > 1 and ny > 1


def test_symmetric_stack_has_no_dipole_correction(tmp_path):
    incar, _ = _write(tmp_path, _bilayer(GASE))
    assert list(incar["LATTICE_CONSTRAINTS"]) == [True, True, False]
    assert "IDIPOL" not in incar and "LDIPOL" not in incar
    # a Janus layer on its flipped twin is mirror-symmetric too: S-Ga-In-Se / Se-In-Ga-S
    assert not is_polar_slab(_bilayer(JANUS, flip_upper=True), 2)


def test_old_vasp_relaxes_ions_only_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="LATTICE_CONSTRAINTS"):
        incar, _ = _write(tmp_path, _bilayer(JANUS), version="5.4.4")
    assert incar["ISIF"] == 2 and "LATTICE_CONSTRAINTS" not in incar and incar["IDIPOL"] == 3


def test_slab_centre_across_the_cell_boundary():
    bilayer = _bilayer(JANUS)
    centre = slab_centre(bilayer, 2)
    shifted = bilayer.copy()
    shifted.translate_sites(range(len(shifted)), [0, 0, 0.5])  # the slab now wraps around c = 0
    assert slab_centre(shifted, 2) == pytest.approx(np.mod(centre + 0.5, 1.0), abs=1e-9)
    assert is_polar_slab(shifted, 2)


def test_bulk_keeps_full_cell_relaxation(tmp_path):
    silicon = Structure(
        Lattice.from_parameters(3.87, 3.87, 3.87, 60, 60, 60), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]]
    )
    incar, _ = _write(tmp_path, silicon)
    assert incar["ISIF"] == 3 and "LATTICE_CONSTRAINTS" not in incar and "IDIPOL" not in incar


def test_dft_report_per_generator(db, capsys):
    import json

    from crysloop.cli import main
    from crysloop.infra.documents import Candidate, DFTJob
    from crysloop.infra.store import NewCandidate, add_candidates

    origins = [
        {"generator": "condition-cdvae-plus"},
        {"generator": "condition-cdvae-plus"},
        {"structure_checkpoint": "shipped"},
    ]
    structures = [_bilayer(GASE), _bilayer(JANUS), _bilayer(JANUS, flip_upper=True)]
    report = add_candidates([NewCandidate(s, origin=o) for s, o in zip(structures, origins)])
    outcomes = [("completed", True, 10, 0.02), ("failed", False, 30, None), ("completed", True, 20, 0.04)]
    for key, (state, converged, steps, diff) in zip(report.hashes, outcomes):
        DFTJob(
            candidate=Candidate.objects.get(structure_hash=key),
            preset="condition-cdvae-plus",
            state=state,
            converged=converged,
            ionic_steps=steps,
            energy_diff_per_atom=diff,
        ).save()
    with pytest.raises(SystemExit) as exit_info:
        main(["dft", "report", "--by-generator", "--json"])
    assert exit_info.value.code == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(figures) == {"condition-cdvae-plus", "diffcsp"}
    assert figures["condition-cdvae-plus"]["convergence_rate"] == pytest.approx(0.5)
    assert figures["condition-cdvae-plus"]["mean_ionic_steps"] == pytest.approx(10)
    assert figures["diffcsp"]["convergence_rate"] == pytest.approx(1.0)
    assert figures["diffcsp"]["mean_energy_diff_per_atom"] == pytest.approx(0.04)
