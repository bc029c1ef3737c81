"""The DFT verification path: an atomate2 VASP static per displaced supercell, then the kappa job (built, not run)."""

from __future__ import annotations

import numpy as np
import pytest
from jobflow import Flow
from monty.serialization import loadfn
from pymatgen.core import Lattice, Structure

from crysloop.cli import main
from crysloop.kappa.conductivity import KappaConfig, build_phono3py, displaced_supercells
from crysloop.kappa.vasp import dft_kappa_flow, force_static_maker


def diamond_si() -> Structure:
    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]])


def test_flow_has_one_static_per_displacement_then_the_kappa_job():
    config = KappaConfig(fc3_min_length=6.0, fc2_min_length=12.0, temperatures=(300.0, 600.0))
    flow = dft_kappa_flow(diamond_si(), config)
    statics, last = flow.jobs[:-1], flow.jobs[-1]
    assert len(statics) == 57 + 1  # fc3 (2x2x2) displacements + the one fc2 (4x4x4) displacement
    assert [j.name for j in statics].count("kappa static fc2 1/1") == 1
    assert last.name == "kappa from dft forces"
    # the kappa job consumes every static's forces, fc3 ones in displacement order
    refs = last.function_args[2]
    assert [r.uuid for r in refs] == [j.uuid for j in statics[:57]]
    assert last.function_args[3][0].uuid == statics[57].uuid

    ph3 = build_phono3py(diamond_si(), config)
    fc3, fc2 = displaced_supercells(ph3)
    for job, atoms in zip(statics, fc3 + fc2, strict=True):
        structure = job.function_args[0]
        assert len(structure) == len(atoms)
        np.testing.assert_allclose(structure.cart_coords, atoms.positions, atol=1e-8)


def test_static_inputs_are_for_accurate_forces_and_keep_site_order():
    maker = force_static_maker()
    ph3 = build_phono3py(diamond_si(), KappaConfig(fc3_min_length=6.0, fc2_min_length=6.0))
    fc3, _ = displaced_supercells(ph3)
    from pymatgen.io.ase import AseAtomsAdaptor

    displaced = AseAtomsAdaptor.get_structure(fc3[0])
    inputs = maker.input_set_generator.get_input_set(displaced, potcar_spec=True)
    incar = inputs.incar
    assert incar["ISYM"] == 0 and incar["EDIFF"] == pytest.approx(1e-8) and incar["PREC"] == "Accurate"
    assert incar["IBRION"] == -1 and incar["NSW"] == 0 and incar["LREAL"] is False and incar["ADDGRID"] is True
    # VASP forces map back onto phono3py's atoms only if the POSCAR keeps the supercell's site order
    np.testing.assert_allclose(inputs.poscar.structure.cart_coords, displaced.cart_coords, atol=1e-8)
    custom = force_static_maker({"ENCUT": 520, "ISPIN": 1})
    incar = custom.input_set_generator.get_input_set(displaced, potcar_spec=True).incar
    assert incar["ENCUT"] == 520 and incar["ISPIN"] == 1 and incar["ISYM"] == 0


def test_cli_writes_a_loadable_flow(tmp_path, settings, capsys):
    poscar = tmp_path / "POSCAR"
    diamond_si().to(filename=str(poscar))
    output = tmp_path / "flow.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["kappa", "dft", str(poscar), "--output", str(output), "--fc3-min-length", "6", "--fc2-min-length", "6"])
    assert exit_info.value.code == 0
    flow = loadfn(output)
    assert isinstance(flow, Flow) and len(flow.jobs) == 57 + 1
    assert "57 VASP statics" in " ".join(capsys.readouterr().out.split())  # rich wraps lines
