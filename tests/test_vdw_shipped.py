"""The shipped Janus III-VI bilayer subset: readable offline, labelled, split 6:2:2, and made of proper bilayers."""

from __future__ import annotations

import json
from collections import Counter
from importlib.resources import files
from pathlib import Path

import pytest

from crysloop.data.datasets import read_structures
from crysloop.evaluation.layers import analyse_layers
from crysloop.vdw.monolayers import all_monolayers

SUBSET = Path(str(files("crysloop") / "assets" / "datasets" / "vdw_iii_vi_mini"))
LABELS = ("formation_energy_per_atom", "binding_energy", "interlayer_distance", "strain_lower", "strain_upper")


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((SUBSET / "manifest.json").read_text())


@pytest.fixture(scope="module")
def splits() -> dict:
    return {split: read_structures(SUBSET / f"{split}.csv.gz", progress=False) for split in ("train", "val", "test")}


def test_manifest_matches_the_splits(manifest, splits):
    assert {split: len(records) for split, records in splits.items()} == manifest["splits"]
    total = sum(manifest["splits"].values())
    assert total == manifest["bilayers"] and total > 0
    assert manifest["splits"]["train"] == round(0.6 * total)
    assert manifest["command"].startswith("crysloop data build-vdw")
    ids = [r.material_id for records in splits.values() for r in records]
    assert len(set(ids)) == len(ids)  # no bilayer in two splits


def test_every_bilayer_is_labelled_and_a_proper_bilayer(manifest, splits):
    names = {m.name for m in all_monolayers()}
    for records in splits.values():
        for record in records:
            props = record.properties
            assert props["lower"] in names and props["upper"] in names
            for key in LABELS:
                low, high = manifest["label_ranges"][key]
                assert low - 1e-4 <= props[key] <= high + 1e-4  # the manifest rounds to 4 decimals
            assert props["binding_energy"] < 0
            analysis = analyse_layers(record.structure)
            assert analysis.category == "proper_bilayer"
            assert analysis.gaps[0] == pytest.approx(props["interlayer_distance"], abs=1e-3)


def test_the_subset_spreads_over_many_pairs_families_and_stackings(manifest, splits):
    layers = {m.name: m for m in all_monolayers()}
    props = [record.properties for records in splits.values() for record in records]
    per_pair = Counter(frozenset((p["lower"], p["upper"])) for p in props)
    assert manifest["monolayer_pairs"] == len(per_pair) >= 50
    assert max(per_pair.values()) <= manifest["config"]["per_pair"]
    used = [layers[name] for name in {n for p in props for n in (p["lower"], p["upper"])}]
    assert manifest["monolayers_in_bilayers"] == len(used)
    assert {m.family for m in used} == {"MX", "MM'X2", "M2XX'", "MM'XX'"}
    assert any(m.janus for m in used) and any(not m.janus for m in used)
    assert {el for m in used for half in (m.bottom, m.top) for el in half} == {"Al", "Ga", "In", "S", "Se", "Te"}
    assert {p["registry"] for p in props} == {"AA", "AB", "BA"} and {p["rotation"] for p in props} == {0, 60}
    assert {p["lower_flipped"] for p in props} == {True, False} == {p["upper_flipped"] for p in props}
