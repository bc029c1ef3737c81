"""Potential names and loading: SevenNet offline, the MatterSim fallback and strict weight loading, D3 names."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crysloop.errors import CrysloopError, InputError
from crysloop.screening import potentials
from crysloop.screening.potentials import check_mlip_name, get_calculator, predict_batch, with_d3_name
from crysloop.screening.relax import RelaxConfig, relax_structures

pytestmark = pytest.mark.usefixtures("single_thread")


def diamond_si(a: float) -> Structure:
    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(a), ["Si"], [[0, 0, 0]]).get_primitive_structure()


def test_sevenn_relaxes_si_to_its_experimental_lattice_constant():
    """SevenNet-l3i5 from the wheel (no network): diamond Si within 1.5 % of a = 5.431 A, converged."""
    result = relax_structures([diamond_si(5.60)], "sevenn-l3i5", config=RelaxConfig(fmax=0.01, steps=200))[0]
    assert result.ok and result.converged
    a_conventional = result.structure.lattice.a * np.sqrt(2)
    assert a_conventional == pytest.approx(5.431, rel=0.015)


def test_sevenn_calculators_share_one_model_and_agree():
    first, second = get_calculator("sevenn-l3i5", "cpu"), get_calculator("sevenn-l3i5", "cpu")
    assert first is not second and first.model is second.model
    a, b = predict_batch([diamond_si(5.43)], first)[0], predict_batch([diamond_si(5.43)], second)[0]
    assert a.energy == pytest.approx(b.energy) and np.allclose(a.forces, b.forces)


def test_batched_sevenn_pass_equals_one_structure_at_a_time():
    """The batched SevenNet path (used on GPUs) gives each structure of a mixed batch its own energy, forces, stress."""
    nacl = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.7), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]
    ).get_primitive_structure()
    si = diamond_si(5.40) * (2, 1, 1)
    si.perturb(0.05, seed=3)  # nonzero forces
    calculator = get_calculator("sevenn-0", "cpu")
    serial = predict_batch([si, nacl], calculator)  # CPU: one at a time through the ASE calculator
    batched = potentials.predict_sevenn(calculator, [potentials._as_atoms(si), potentials._as_atoms(nacl)])
    assert [len(p.forces) for p in batched] == [len(si), len(nacl)] == [4, 2]
    assert np.abs(serial[0].forces).max() > 0.05
    for one, many in zip(serial, batched, strict=True):
        assert many.energy == pytest.approx(one.energy, abs=1e-4)
        np.testing.assert_allclose(many.forces, one.forces, atol=1e-4)
        np.testing.assert_allclose(many.stress, one.stress, atol=1e-6)


def test_d3_suffix_adds_dispersion_and_names_stay_apart():
    assert with_d3_name("sevenn-0", True) == "sevenn-0+d3"
    assert with_d3_name("sevenn-0+d3", True) == "sevenn-0+d3"
    assert check_mlip_name("SEVENN-0") == "sevenn-0"
    plain = predict_batch([diamond_si(5.43)], get_calculator("sevenn-0", "cpu"))[0]
    dispersed = predict_batch([diamond_si(5.43)], get_calculator("sevenn-0+d3", "cpu"))[0]
    assert dispersed.energy < plain.energy  # D3 is attractive
    with pytest.raises(InputError, match="unknown MLIP"):
        check_mlip_name("chgnet+d4")


def test_mattersim_default_without_weights_falls_back_in_one_line(monkeypatch, tmp_path, capsys):
    from crysloop.settings import get_settings

    monkeypatch.setenv("CRYSLOOP_MLIP", "mattersim-1m")
    monkeypatch.setattr(potentials, "MATTERSIM_CACHE", tmp_path / "empty")
    monkeypatch.setattr(potentials, "_fallback_said", set())
    get_settings.cache_clear()
    try:
        assert check_mlip_name(None) == "sevenn-l3i5"
        assert check_mlip_name(None) == "sevenn-l3i5"
        assert check_mlip_name("mattersim-1m") == "mattersim-1m"  # asked for by name: no fallback
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "mattersim-1m weights not found" in err and "Traceback" not in err
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "mattersim-v1.0.0-1M.pth").write_bytes(b"")
        assert check_mlip_name(None) == "mattersim-1m"  # weights present: the papers' default stays
    finally:
        get_settings.cache_clear()


def test_mattersim_weights_with_mismatched_keys_are_an_error():
    import torch

    from crysloop.screening.potentials import mattersim_potential

    torch.manual_seed(0)
    state = mattersim_potential(device="cpu").model.state_dict()
    renamed = {("renamed." + k if i == 0 else k): v for i, (k, v) in enumerate(state.items())}
    with pytest.raises(CrysloopError, match="do not match"):
        mattersim_potential(state_dict=renamed, device="cpu")
    mattersim_potential(state_dict=state, device="cpu")  # the matching dict loads
