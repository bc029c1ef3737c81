"""Memory of MLIP inference is bounded by the atoms per forward pass, not by the number of structures (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.stress import full_3x3_to_voigt_6_stress
from pymatgen.core import Lattice, Structure

from crysloop.errors import InputError
from crysloop.screening import potentials
from crysloop.screening.phonons import phonon_stability
from crysloop.screening.potentials import atom_batches, batch_forces, get_calculator, predict_batch

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def calc():
    return get_calculator("chgnet", "cpu")


@pytest.fixture
def passes(monkeypatch) -> list[int]:
    """Atoms in each CHGNet forward pass, recorded around the real evaluation."""
    sizes: list[int] = []
    real = potentials._predict_chgnet

    def recording(model, structures, *args):
        sizes.append(sum(len(s) for s in structures))
        return real(model, structures, *args)

    monkeypatch.setattr(potentials, "_predict_chgnet", recording)
    return sizes


def test_atom_batches_respect_count_and_atom_budget():
    rng = np.random.default_rng(0)
    sizes = [*rng.integers(1, 60, size=200).tolist(), 500, 3, 500]
    batches = atom_batches(sizes, batch_size=8, max_atoms=100)
    assert [i for b in batches for i in b] == list(range(len(sizes)))  # every structure once, in order
    for batch in batches:
        atoms = sum(sizes[i] for i in batch)
        assert len(batch) <= 8
        assert atoms <= 100 or len(batch) == 1  # only a structure larger than the budget goes alone
    assert [list(b) for b in batches[-3:]] == [[200], [201], [202]]
    with pytest.raises(InputError):
        atom_batches([4], batch_size=0)


def test_phonon_supercells_never_exceed_the_atom_budget(calc, passes):
    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]).get_primitive_structure()
    result = phonon_stability(si, calc, min_length=6.0, max_batch_atoms=24, batch_size=64)
    atoms = 2 * int(np.prod(np.diag(result.supercell_matrix)))
    assert atoms <= 24 < 2 * atoms  # the budget holds one supercell per pass, not two
    assert len(passes) == result.n_displacements + 1
    assert max(passes) == atoms
    assert result.stable


def test_batched_forces_and_stress_match_chgnet_reference(calc, passes):
    """The first-order gradients give CHGNet's own energies, forces and stresses, whatever the batching."""
    rng = np.random.default_rng(1)
    structures = []
    for a, species in ((5.64, ["Na", "Cl"]), (4.20, ["Mg", "O"]), (5.43, ["Si", "Si"])):
        coords = np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0, 0, 0.5]]) + rng.normal(0, 0.01, (4, 3))
        structures.append(Structure(Lattice.cubic(a), species * 2, coords))
    ours = predict_batch(structures, calc, batch_size=8, max_atoms=8)
    assert passes == [8, 4]
    reference = calc.model.predict_structure(structures, task="efs", batch_size=8)
    for structure, mine, ref in zip(structures, ours, reference, strict=True):
        assert mine.energy == pytest.approx(float(ref["e"]) * len(structure), abs=1e-4)
        np.testing.assert_allclose(mine.forces, ref["f"], rtol=1e-3, atol=5e-4)  # float32 sums
        np.testing.assert_allclose(mine.stress, full_3x3_to_voigt_6_stress(ref["s"] * units.GPa), atol=2e-5)
        assert np.abs(mine.forces).max() > 1e-3  # displaced: the comparison is not between zeros
    forces = batch_forces(structures, calc, max_atoms=4)
    for mine, ref in zip(forces, reference, strict=True):
        np.testing.assert_allclose(mine, ref["f"], rtol=1e-3, atol=5e-4)
