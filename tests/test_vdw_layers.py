"""Layer-aware evaluation on hand-built bilayers: proper, drifted apart, bonded across, no vacuum; false novelty."""

from __future__ import annotations

import json

import pytest
from pymatgen.core import Lattice, Structure

from crysloop.cli import main
from crysloop.errors import InputError
from crysloop.evaluation.layers import analyse_layers, layered_metrics, require_layered
from crysloop.vdw.bilayers import Stacking, make_bilayer
from crysloop.vdw.monolayers import Monolayer

JANUS = Monolayer(("Ga", "S"), ("Ga", "Se"))
GASE = Monolayer(("Ga", "Se"), ("Ga", "Se"))
INSE = Monolayer(("In", "Se"), ("In", "Se"))
SILICON = Structure(
    Lattice.from_parameters(3.84, 3.84, 3.84, 60, 60, 60), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]]
)


def bilayer(lower=JANUS, upper=JANUS, gap=3.2, registry="AB", rotation=0, flip_upper=True, vacuum=15.0):
    stacking = Stacking(lower.name, upper.name, False, flip_upper, rotation, registry)
    return make_bilayer(lower.structure(), upper.structure(), stacking, gap=gap, vacuum=vacuum)


def test_proper_bilayer_even_when_wrapped_across_the_cell():
    structure = bilayer()
    structure.translate_sites(range(len(structure)), [0.3, 0.1, 0.45])  # the slab now straddles the boundary
    analysis = analyse_layers(structure)
    assert analysis.category == "proper_bilayer" and analysis.n_layers == 2
    assert analysis.gaps[0] == pytest.approx(3.2, abs=1e-6)
    assert analysis.vacuum == pytest.approx(15.0, abs=1e-6)
    assert analysis.layers == ["S|Ga|Ga|Se", "Se|Ga|Ga|S"]  # flips: the upper layer is upside down


def test_separated_bonded_across_and_bulk_are_told_apart():
    assert analyse_layers(bilayer(gap=8.0)).category == "drifted_apart"
    fused = analyse_layers(bilayer(gap=1.0, registry="AA"))  # chalcogens 1 A apart: bonded across the gap
    assert fused.category == "bonded_across" and fused.n_layers == 1
    assert analyse_layers(bilayer(gap=1.9, registry="AB")).category in ("too_close", "bonded_across")
    bulk = analyse_layers(SILICON)
    assert bulk.periodic_along_c and bulk.category == "vacuum_lost" and not bulk.layered
    with pytest.raises(InputError, match="not layered"):
        require_layered([bilayer(), SILICON], "reference")


def test_heavy_actinides_outside_cordero_do_not_stop_the_analysis():
    # ab initio samples may hold any Z <= 100; Cordero's radii end at Cm
    structure = bilayer()
    structure.replace(0, "Cf")
    assert analyse_layers(structure).category == "proper_bilayer"


def test_a_collapsed_cell_is_other_not_an_error():
    structure = bilayer()
    flat = Structure(
        Lattice([structure.lattice.matrix[0], structure.lattice.matrix[1], structure.lattice.matrix[0]]),
        structure.species,
        structure.frac_coords,
    )  # c along a: zero volume
    analysis = analyse_layers(flat)
    assert analysis.category == "other" and not analysis.layered


def test_stacking_descriptor_sees_registry_rotation_and_flip():
    base = analyse_layers(bilayer()).stacking
    assert base is not None
    assert analyse_layers(bilayer(registry="AA")).stacking != base
    assert analyse_layers(bilayer(rotation=60)).stacking != base
    assert analyse_layers(bilayer(flip_upper=False)).stacking != base
    # the same bilayer turned upside down and shifted in-plane is the same stacking
    turned = bilayer()
    turned = Structure(turned.lattice, turned.species, [[x + 0.2, y + 0.5, 1 - z] for x, y, z in turned.frac_coords])
    assert analyse_layers(turned).stacking == base


def test_layer_aware_novelty_reports_false_novelty():
    known = [bilayer(GASE, GASE, registry="AB", flip_upper=False)]
    # more vacuum: StructureMatcher calls all of these novel, yet only the last is a new bilayer
    generated = [
        bilayer(GASE, GASE, registry="AB", flip_upper=False, vacuum=30.0),  # a known stacking
        bilayer(GASE, GASE, registry="AA", flip_upper=False, vacuum=30.0),  # a known pair, re-stacked
        bilayer(GASE, INSE, registry="AB", flip_upper=False, vacuum=30.0),  # a new pair of layers
        bilayer(GASE, GASE, gap=9.0),  # drifted apart
    ]
    metrics = layered_metrics(generated, known)
    assert metrics["layered/proper_bilayer"] == pytest.approx(0.75)
    assert metrics["layered/drifted_apart"] == pytest.approx(0.25)
    assert metrics["layered/structure_matcher_novel"] == pytest.approx(1.0)
    for key in ("same_stacking", "restacked", "new_pair"):
        assert metrics[f"layered/novel_{key}"] == pytest.approx(1 / 3)
    assert metrics["layered/false_novelty"] == pytest.approx(2 / 3)
    assert metrics["layered/novel_stacking"] == pytest.approx(2 / 3)
    assert metrics["layered/structure_matcher_missed"] == 0
    # StructureMatcher's default tolerances equate the AA and AB stackings of a vacuum-padded GaSe bilayer
    missed = layered_metrics([bilayer(GASE, GASE, registry="AA", flip_upper=False)], known)
    assert missed["layered/structure_matcher_novel"] == 0
    assert missed["layered/novel_stacking"] == 1 and missed["layered/structure_matcher_missed"] == 1
    with pytest.raises(InputError, match="none of the generated"):
        layered_metrics([SILICON], known)


def test_evaluate_layered_cli(settings, tmp_path, capsys):
    generated, reference = tmp_path / "generated", tmp_path / "reference"
    generated.mkdir(), reference.mkdir()
    for k, structure in enumerate([bilayer(), bilayer(gap=8.0)]):
        structure.to(filename=str(generated / f"g{k}.cif"))
    bilayer(registry="AA").to(filename=str(reference / "r0.cif"))
    SILICON.to(filename=str(tmp_path / "si.cif"))
    common = ["--dataset", "mp20", "--n-samples", "2", "--jobs", "1", "--no-cache", "--layered"]
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "evaluate",
                "--generated",
                str(generated),
                "--reference",
                str(tmp_path / "si.cif"),
                *common,
                "--out",
                str(tmp_path / "bad"),
            ]
        )
    _, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if "error:" in line]  # progress bars share stderr
    assert exit_info.value.code == 1 and len(errors) == 1 and "not layered" in errors[0] and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "evaluate",
                "--generated",
                str(generated),
                "--reference",
                str(reference),
                *common,
                "--out",
                str(tmp_path / "ok"),
            ]
        )
    assert exit_info.value.code == 0
    metrics = json.loads((tmp_path / "ok" / "report.json").read_text())["metrics"]
    assert metrics["layered/proper_bilayer"] == pytest.approx(0.5)
    assert metrics["layered/drifted_apart"] == pytest.approx(0.5)
