"""Expected volumes from additive element volumes, and the Stage II rescaling step that uses them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure

from crysloop.campaign.config import StructureModelConfig
from crysloop.campaign.generation import structures_for
from crysloop.chemistry.valence import label_composition
from crysloop.chemistry.volume import (
    element_volumes,
    expected_volume_per_atom,
    fit_element_volumes,
    rescale_to_expected_volume,
)
from crysloop.data.datasets import read_structures
from crysloop.models.diffcsp import DiffCSP, DiffCSPConfig

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def test_shipped_volumes_predict_held_out_mp20_volumes():
    # the test split was not fitted on; 90 % of its crystals lie within -17 % / +20 % of the additive volume
    records = read_structures(DATA / "mp_20_sample" / "test.csv.gz", progress=False)
    ratios = np.array(
        [r.structure.volume / len(r.structure) / expected_volume_per_atom(r.structure.composition) for r in records]
    )
    assert len(ratios) == len(records) > 100
    assert 0.95 < np.median(ratios) < 1.05
    assert np.mean((ratios > 0.8) & (ratios < 1.25)) > 0.85


def test_fit_recovers_additive_volumes():
    true = {"Na": 30.0, "Cl": 20.0, "K": 40.0}
    crystals = []
    for species in (["Na", "Cl"], ["K", "Cl"], ["Na", "K", "Cl", "Cl"], ["Na", "Na", "Na", "Cl"]):
        structure = Structure(
            Lattice.cubic(3.0), species, np.random.default_rng(len(crystals)).random((len(species), 3))
        )
        structure.scale_lattice(sum(true[s] for s in species))
        crystals.append(structure)
    fitted = fit_element_volumes(crystals)
    assert set(fitted) == set(true)
    assert all(abs(fitted[k] - v) < 1e-3 for k, v in true.items())


def test_rescale_reaches_expected_volume_and_keeps_fractional_coordinates():
    blown_up = Structure(
        Lattice.from_parameters(20, 25, 30, 80, 95, 100), ["Na", "Cl"], [[0.1, 0.2, 0.3], [0.6, 0.7, 0.8]]
    )
    scaled = rescale_to_expected_volume(blown_up)
    assert abs(scaled.volume / 2 - (element_volumes()["Na"] + element_volumes()["Cl"]) / 2) < 1e-6
    assert np.allclose(scaled.frac_coords, blown_up.frac_coords)
    assert np.allclose(scaled.lattice.angles, blown_up.lattice.angles)
    assert blown_up.volume > 10 * scaled.volume  # the input is left alone


def test_rescale_leaves_cells_with_unfitted_elements_unchanged():
    missing = next(s for s in ("Po", "At", "Rn", "Fr", "Ra", "Pa") if s not in element_volumes())
    cell = Structure(Lattice.cubic(7.0), [missing, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert expected_volume_per_atom(cell.composition) is None
    assert rescale_to_expected_volume(cell).volume == cell.volume


def test_structures_for_rescales_by_default_and_records_the_sampled_volume():
    assert StructureModelConfig().rescale_volume is True
    model = DiffCSP(DiffCSPConfig.preset("cpu-tiny"))  # untrained: its cells have arbitrary volumes
    assignments = [label_composition("NaCl"), label_composition("Mg2O2")]
    kept = structures_for(assignments, model, steps=5, seed=3, rescale_volume=False)
    rescaled = structures_for(assignments, model, steps=5, seed=3)
    for plain, item in zip(kept, rescaled, strict=True):
        expected = expected_volume_per_atom(item.structure.composition)
        assert abs(item.structure.volume / len(item.structure) - expected) < 1e-6
        assert item.origin["sampled_volume_per_atom"] == round(plain.structure.volume / len(plain.structure), 3)
        assert item.origin["rescale_volume"] is True and plain.origin["rescale_volume"] is False
        assert np.allclose(item.structure.frac_coords, plain.structure.frac_coords)
