"""MLIP screening science with CHGNet on CPU: relaxation, hull distances, phonon stability, MatterSim adapter."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crysloop.errors import InputError
from crysloop.screening.hull import (
    chemical_subsystems,
    elemental_reference_structures,
    energy_above_hull,
    reference_entry,
)
from crysloop.screening.phonons import phonon_stability, supercell_matrix_for
from crysloop.screening.potentials import get_calculator, predict_batch
from crysloop.screening.relax import RelaxConfig, relax_structures

SI_A, NACL_A = 5.431, 5.640  # experimental cubic lattice constants (A, room temperature)

pytestmark = pytest.mark.usefixtures("single_thread")


def rocksalt_nacl(a: float) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ).get_primitive_structure()


def diamond_si(a: float) -> Structure:
    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(a), ["Si"], [[0, 0, 0]]).get_primitive_structure()


@pytest.fixture(scope="module")
def calc():
    return get_calculator("chgnet", "cpu")


@pytest.fixture(scope="module")
def relaxed(calc):
    """One batched relaxation of everything the tests below need, plus a broken structure in the same batch."""
    structures = {
        "Si": diamond_si(5.55),
        "NaCl": rocksalt_nacl(5.50),
        "NaCl_strained": rocksalt_nacl(5.85),
        "NaCl_B2": Structure(Lattice.cubic(3.40), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "Na": elemental_reference_structures("Na")[0],
        "Cl": elemental_reference_structures("Cl")[0],
        "broken": Structure(Lattice.cubic(4.0), ["Na", "Na"], [[0, 0, 0], [0.02, 0, 0]]),
    }
    results = relax_structures(list(structures.values()), calc, fmax=0.01, steps=300, batch_size=8)
    return dict(zip(structures, results, strict=True))


def test_si_and_nacl_relax_to_experimental_lattice_constants(relaxed):
    for name, a_exp in (("Si", SI_A), ("NaCl", NACL_A)):
        result = relaxed[name]
        assert result.ok and result.converged and result.steps > 0
        a_conventional = (result.structure.volume * 4) ** (1 / 3)  # primitive fcc cell holds a quarter of the cube
        assert abs(a_conventional - a_exp) / a_exp < 0.02, (name, a_conventional)
        assert np.isfinite(result.energy) and result.energy_per_atom < 0


def test_broken_structure_fails_with_reason_and_batch_goes_on(relaxed):
    broken = relaxed["broken"]
    assert broken.status == "failed" and broken.energy is None
    assert "closer than" in broken.error
    assert all(r.ok for name, r in relaxed.items() if name != "broken")


def test_batched_and_one_at_a_time_relaxations_agree(calc):
    structures = [diamond_si(5.50), diamond_si(5.36)]
    one = relax_structures(structures, calc, batch_size=1)
    many = relax_structures(structures, calc, batch_size=2)
    for a, b in zip(one, many, strict=True):
        assert a.steps == b.steps
        assert a.energy == pytest.approx(b.energy, abs=1e-4)


def test_step_limit_reports_unconverged(calc):
    result = relax_structures([rocksalt_nacl(6.2)], calc, config=RelaxConfig(fmax=1e-4, steps=3))[0]
    assert result.status == "unconverged" and not result.ok and not result.converged and result.steps == 3
    assert result.energy is not None and "step limit" in result.error


def test_stable_compound_on_hull_and_polymorph_above(relaxed, calc):
    entries = [reference_entry(relaxed[n].structure, relaxed[n].energy, n, "chgnet") for n in ("Na", "Cl", "NaCl")]
    on_hull = energy_above_hull(relaxed["NaCl_strained"].structure, relaxed["NaCl_strained"].energy, entries)
    assert abs(on_hull.e_above_hull) < 0.005
    assert -2.6 < on_hull.formation_energy_per_atom < -1.6  # experiment: -2.13 eV/atom
    assert on_hull.decomposition == {"NaCl": 1.0}

    b2 = energy_above_hull(relaxed["NaCl_B2"].structure, relaxed["NaCl_B2"].energy, entries)
    assert b2.e_above_hull > 0.02

    distorted = relaxed["NaCl"].structure.copy()
    distorted.perturb(0.15, min_distance=0.05)
    distorted.apply_strain(0.04)
    energy = predict_batch([distorted], calc)[0].energy
    assert energy_above_hull(distorted, energy, entries).e_above_hull > on_hull.e_above_hull + 0.005

    with_elements_only = energy_above_hull(relaxed["NaCl"].structure, relaxed["NaCl"].energy, entries[:2])
    assert with_elements_only.e_above_hull < -1.0  # a new ground state lies below the hull of its references


def test_missing_elemental_reference_is_an_error(relaxed):
    from crysloop.errors import CrysloopError

    entries = [reference_entry(relaxed["Na"].structure, relaxed["Na"].energy, "Na", "chgnet")]
    with pytest.raises(CrysloopError, match="Cl"):
        energy_above_hull(relaxed["NaCl"].structure, relaxed["NaCl"].energy, entries)


def test_elemental_reference_structures_cover_the_periodic_table():
    from pymatgen.core import Element

    for z in range(1, 95):
        symbol = Element.from_Z(z).symbol
        structures = elemental_reference_structures(symbol)
        assert structures and all({e.symbol for e in s.composition} == {symbol} for s in structures), symbol
        assert all(s.volume / len(s) > 3.0 for s in structures), symbol
    assert chemical_subsystems("Cl-Na-O") == ["Cl", "Na", "O", "Cl-Na", "Cl-O", "Na-O", "Cl-Na-O"]


def test_relaxed_si_is_phonon_stable(relaxed, calc):
    result = phonon_stability(relaxed["Si"].structure, calc, min_length=5.0)
    assert result.stable and result.n_imaginary == 0
    assert result.min_frequency_thz > -0.01
    assert 11.0 < result.max_frequency_thz < 17.0  # optical mode at Gamma, 15.5 THz in experiment


def test_cubic_batio3_is_flagged_unstable(calc):
    bto = Structure(
        Lattice.cubic(4.03),
        ["Ba", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    result = phonon_stability(bto, calc, min_length=3.0)
    assert not result.stable and result.n_imaginary > 0
    assert result.min_frequency_thz < -1.0  # the ferroelectric soft mode
    lenient = phonon_stability(bto, calc, min_length=3.0, tolerance_thz=-result.min_frequency_thz + 0.1)
    assert lenient.stable and lenient.n_imaginary == 0  # the verdict follows the tolerance


def test_supercell_reaches_min_plane_spacing():
    structure = diamond_si(5.43)
    matrix = supercell_matrix_for(structure, 10.0)
    supercell = structure.copy().make_supercell(matrix)
    m = supercell.lattice.matrix
    heights = [supercell.volume / np.linalg.norm(np.cross(m[(i + 1) % 3], m[(i + 2) % 3])) for i in range(3)]
    assert min(heights) >= 10.0
    assert min(heights) < 10.0 + max(heights) / np.diag(matrix).max() + 1e-6


def test_mattersim_adapter_runs_with_random_model(tmp_path):
    import torch

    from crysloop.screening.potentials import mattersim_calculator, mattersim_potential

    torch.manual_seed(0)
    potential = mattersim_potential(device="cpu")
    checkpoint = tmp_path / "random-m3gnet.pth"
    torch.save(
        {"model_name": "m3gnet", "model": potential.model.state_dict(), "model_args": potential.model.get_model_args()},
        checkpoint,
    )
    calc = get_calculator("mattersim-1m", "cpu", weights=checkpoint)  # the pretrained-weights code path
    structures = [diamond_si(5.43), rocksalt_nacl(5.64)]
    batched = predict_batch(structures, calc)
    direct = predict_batch(structures, mattersim_calculator(potential))
    for a, b in zip(batched, direct, strict=True):
        assert np.isfinite(a.energy) and a.forces.shape == b.forces.shape
        assert a.energy == pytest.approx(b.energy, rel=1e-5)
        assert np.allclose(a.stress, b.stress, atol=1e-6)
    from ase.build import bulk

    atoms = bulk("Si", "diamond", 5.43)
    atoms.calc = calc
    assert atoms.get_potential_energy() == pytest.approx(batched[0].energy, rel=1e-5)
    results = relax_structures(structures, calc, config=RelaxConfig(steps=2, max_volume_ratio=100.0))
    assert [r.steps for r in results if r.ok] and all(r.status in ("ok", "failed") for r in results)


def test_unknown_mlip_and_missing_weights_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="unknown MLIP"):
        get_calculator("mace")
    with pytest.raises(InputError, match="does not exist"):
        get_calculator("mattersim-5m", "cpu", weights=tmp_path / "missing.pth")


def test_left_handed_cell_gets_phonons_like_the_right_handed_one():
    """A left-handed cell (as generated crystals can have) is the same crystal: phonopy must not refuse it."""
    from ase.calculators.emt import EMT

    copper = Structure(Lattice.cubic(3.61), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    swapped = copper.lattice.matrix[[1, 0, 2]]
    left = Structure(Lattice(swapped), copper.species, copper.frac_coords[:, [1, 0, 2]])
    assert np.linalg.det(left.lattice.matrix) < 0
    a, b = phonon_stability(copper, EMT(), min_length=6.0), phonon_stability(left, EMT(), min_length=6.0)
    assert a.stable and b.stable
    assert b.max_frequency_thz == pytest.approx(a.max_frequency_thz, rel=1e-3)
