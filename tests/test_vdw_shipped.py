"""The shipped Janus III-VI bilayer subset: readable offline, labelled, split 6:2:2, and made of proper bilayers."""

from __future__ import annotations

import json
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
