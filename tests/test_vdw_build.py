"""The vdW dataset builder: D3 binds bilayers, keeps monolayer lattices; a small build is labelled, split, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crysloop.cli import main
from crysloop.data.datasets import read_structures
from crysloop.flows.vdw import build_dataset
from crysloop.infra.executors import ExecutorConfig
from crysloop.screening.potentials import get_calculator, predict_batch
from crysloop.screening.relax import relax_structures
from crysloop.vdw.bilayers import Stacking, make_bilayer
from crysloop.vdw.build import potential
from crysloop.vdw.config import BuildConfig
from crysloop.vdw.descriptors import binding_energy_per_area, in_plane_area, layer_parts
from crysloop.vdw.monolayers import Monolayer

GASE = Monolayer(("Ga", "Se"), ("Ga", "Se"))


def test_d3_keeps_the_monolayer_lattice_and_binds_the_bilayer_more(single_thread):
    config = BuildConfig(mlip="chgnet", device="cpu")
    plain, dispersion = get_calculator("chgnet", "cpu"), potential("chgnet", "zero", "cpu")
    start = GASE.structure()
    relaxed = {
        name: relax_structures([start], calc, batch_size=1, config=config.relax_config(in_plane=True))[0]
        for name, calc in (("plain", plain), ("d3", dispersion))
    }
    for result in relaxed.values():
        assert result.ok and result.converged
        assert result.structure.lattice.c == pytest.approx(start.lattice.c, abs=1e-6)  # c fixed
        assert result.structure.lattice.gamma == pytest.approx(120.0, abs=0.1)  # still hexagonal
    a_plain, a_d3 = relaxed["plain"].structure.lattice.a, relaxed["d3"].structure.lattice.a
    assert a_plain != a_d3 and abs(a_d3 / a_plain - 1) < 0.03

    layer = relaxed["d3"].structure
    bilayer = make_bilayer(layer, layer, Stacking(GASE.name, GASE.name, False, False, 60, "AB"), gap=3.2)
    lower, upper = layer_parts(bilayer, bilayer.site_properties["layer"])
    binding = {}
    for name, calc in (("plain", plain), ("d3", dispersion)):
        e_bi, e_low, e_up = (p.energy for p in predict_batch([bilayer, lower, upper], calc, 1))
        binding[name] = binding_energy_per_area(e_bi, e_low, e_up, in_plane_area(bilayer.lattice))
    assert binding["d3"] < binding["plain"] and binding["d3"] < -5.0  # meV/A^2: D3 adds the vdW attraction


def test_small_build_is_labelled_split_and_resumes(db, tmp_path, single_thread, prefect_harness):
    config = BuildConfig(
        mlip="chgnet",
        device="cpu",
        elements=("Ga", "Se"),
        fmax=0.1,
        steps=80,
        max_bilayers=3,
        executor=ExecutorConfig(kind="processes", workers=1),
    )  # bilayers relax in a worker process
    summary = build_dataset(config, tmp_path / "out", progress=False)
    assert summary.bilayers == 3 and summary.failed == 0 and summary.relaxed_now == 3
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sum(manifest["splits"].values()) == 3 and manifest["monolayers"] == 1
    records = [
        r
        for split in ("train", "val", "test")
        if manifest["splits"][split]
        for r in read_structures(tmp_path / "out" / f"{split}.csv.gz")
    ]
    assert len(records) == 3 and len({r.material_id for r in records}) == 3
    for record in records:
        props = record.properties
        assert record.structure.composition.reduced_formula == "GaSe" and len(record.structure) == 8
        assert props["binding_energy"] < 0  # bound
        assert 2.5 < props["interlayer_distance"] < 4.5
        assert -2.0 < props["formation_energy_per_atom"] < 0
        assert props["registry"] in ("AA", "AB", "BA") and props["rotation"] in (0, 60)
        z = np.sort(record.structure.cart_coords[:, 2])
        assert record.structure.lattice.c - (z[-1] - z[0]) >= 15.0 - 0.5  # vacuum kept, c fixed
    low, high = manifest["label_ranges"]["binding_energy"]
    assert low <= high < 0

    in_process = BuildConfig(**{**config.__dict__, "executor": ExecutorConfig(kind="threads")})
    assert in_process.key == config.key
    again = build_dataset(in_process, tmp_path / "again", progress=False)  # everything already in the database
    assert again.relaxed_now == 0 and again.bilayers == 3
    assert again.label_ranges == summary.label_ranges


def test_builder_rejects_an_element_outside_iii_vi(settings, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "build-vdw", "--elements", "Ga,Mo,Se"])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 1
    assert "Mo" in err and "III-VI" in err and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1
