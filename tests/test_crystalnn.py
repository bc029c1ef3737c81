"""The vectorised CrystalNN "ops" fingerprints against matminer's own featurizer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from matminer.featurizers.site.fingerprint import CrystalNNFingerprint
from pymatgen.core import Lattice, Structure

from crysloop.data.datasets import read_structures
from crysloop.evaluation.crystalnn import site_fingerprints


@pytest.fixture(scope="module")
def matminer_fp():
    return CrystalNNFingerprint.from_preset("ops")


def reference(featurizer, structure: Structure) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array([featurizer.featurize(structure, i) for i in range(len(structure))])


def ours(structure: Structure) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return site_fingerprints(structure)


def test_hand_built_cells_match_matminer(matminer_fp):
    rng = np.random.default_rng(3)
    cells = [
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]),
        Structure.from_spacegroup("Im-3m", Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]]),
        Structure.from_spacegroup("P6_3/mmc", Lattice.hexagonal(3.21, 5.21), ["Mg"], [[1 / 3, 2 / 3, 0.25]]),
        # a low-symmetry cell with random positions: no ties, every order parameter in general position
        Structure(
            Lattice.from_parameters(4.1, 5.3, 6.2, 81, 97, 104), ["Li", "Co", "O", "O", "O", "P"], rng.random((6, 3))
        ),
    ]
    for cell in cells:
        np.testing.assert_allclose(ours(cell), reference(matminer_fp, cell), atol=1e-9, err_msg=cell.formula)


def test_mp20_crystals_match_matminer(matminer_fp, shared_data):
    structures = read_structures(shared_data / "mp_20_sample" / "test.csv.gz", progress=False).structures[:25]
    diffs = np.concatenate([np.abs(ours(s) - reference(matminer_fp, s)).ravel() for s in structures])
    # Rounding differs (vectorised sums); it only matters where pymatgen branches on an exact tie, such as the
    # sign switch of the bcc parameter at a bond angle of exactly 90 degrees.
    assert np.quantile(diffs, 0.999) < 1e-7
    assert diffs.max() < 1e-3
