"""D3 dispersion through torch-dftd: attractive, decaying with distance, and summed onto a potential."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT

from crysloop.errors import InputError
from crysloop.screening.dispersion import d3_calculator, with_d3


def _dimer_energy(distance: float) -> float:
    atoms = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, distance]], cell=[30, 30, 30], pbc=True)
    atoms.calc = d3_calculator(device="cpu")
    return atoms.get_potential_energy()


def test_d3_is_attractive_and_decays():
    near, far = _dimer_energy(3.8), _dimer_energy(8.0)
    assert near < far < 0


def test_with_d3_adds_dispersion_to_the_potential():
    atoms = Atoms(
        "Cu4", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], cell=np.eye(3) * 3.7, pbc=True
    )
    base = atoms.copy()
    base.calc = EMT()
    dispersion = atoms.copy()
    dispersion.calc = d3_calculator(device="cpu")
    atoms.calc = with_d3(EMT(), device="cpu")
    expected = base.get_potential_energy() + dispersion.get_potential_energy()
    assert atoms.get_potential_energy() == pytest.approx(expected, abs=1e-6)
    assert dispersion.get_potential_energy() < 0


@pytest.mark.parametrize("kwargs", [{"damping": "none"}, {"xc": "nonsense"}])
def test_bad_d3_settings_are_input_errors(kwargs):
    with pytest.raises(InputError):
        d3_calculator(device="cpu", **kwargs)
