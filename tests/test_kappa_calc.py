"""phono3py kappa with CHGNet forces: Si vs NaCl, tensor symmetry, supercells, resuming from cached force sets."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crysloop.kappa.cache import force_set_key, load_force_set
from crysloop.kappa.cells import standard_primitive, supercell_diagonal
from crysloop.kappa.conductivity import (
    KappaConfig,
    build_phono3py,
    compute_kappa,
    displaced_supercells,
    displacement_count,
    relax_for_kappa,
)
from crysloop.kappa.cost import displacement_skip_reason
from crysloop.kappa.vasp import _config_dict, kappa_from_dft_forces

# Small but real: 2x2x2 primitive supercells (16 atoms) for fc3 and fc2, an 11^3 q-mesh.
CONFIG = KappaConfig(fc3_min_length=6.0, fc2_min_length=6.0, mesh=(11, 11, 11), temperatures=(300.0, 600.0))


def diamond_si() -> Structure:
    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]])


def rocksalt_nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def shared_force_cache(tmp_path_factory):
    """One force-set cache per pytest session, so the kappa modules evaluate each CHGNet force set once."""
    path = tmp_path_factory.getbasetemp() / "kappa-chgnet-force-sets"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def kappas(tmp_path_factory):
    cache = shared_force_cache(tmp_path_factory)
    si = compute_kappa(diamond_si(), "chgnet", CONFIG, calculator_name="chgnet", cache_dir=cache, progress=False)
    nacl = compute_kappa(rocksalt_nacl(), "chgnet", CONFIG, calculator_name="chgnet", progress=False)
    return {"Si": si, "NaCl": nacl, "cache": cache}


def voigt_to_matrix(v):
    xx, yy, zz, yz, xz, xy = v
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def test_si_kappa_finite_cubic_isotropic_and_above_nacl(kappas):
    si, nacl = kappas["Si"], kappas["NaCl"]
    assert si.n_displacements == 57  # phono3py's count for the diamond primitive cell at 2x2x2
    assert si.temperatures == [300.0, 600.0] and si.mesh == [11, 11, 11]
    for outcome in (si, nacl):
        kappa = np.array(outcome.kappa)
        assert np.isfinite(kappa).all()
        for voigt in kappa:
            tensor = voigt_to_matrix(voigt)
            np.testing.assert_allclose(tensor, tensor.T)
            # cubic: isotropic diagonal, vanishing off-diagonal
            assert np.ptp(np.diag(tensor)) <= 1e-6 * np.max(np.diag(tensor))
            assert np.max(np.abs(tensor - np.diag(np.diag(tensor)))) <= 1e-6 * np.max(np.diag(tensor))
        assert outcome.kappa_average[0] > outcome.kappa_average[1] > 0  # Umklapp: kappa falls with temperature
        assert outcome.min_frequency_thz > -0.05  # no imaginary modes
    assert si.kappa_average[0] > nacl.kappa_average[0]


def test_supercell_diagonal_uses_perpendicular_widths():
    primitive = standard_primitive(diamond_si())  # fcc primitive: face distance a/sqrt(3) = 3.14 A
    assert len(primitive) == 2
    assert supercell_diagonal(primitive, 6.0) == [2, 2, 2]
    assert supercell_diagonal(primitive, 12.0) == [4, 4, 4]
    assert supercell_diagonal(rocksalt_nacl(), 6.0) == [2, 2, 2]  # cubic 5.64 A cell


def test_separate_fc2_supercell_adds_its_displacements():
    ph3 = build_phono3py(diamond_si(), KappaConfig(fc3_min_length=6.0, fc2_min_length=12.0))
    fc3, fc2 = displaced_supercells(ph3)
    assert (len(fc3), len(fc3[0])) == (57, 16)
    assert (len(fc2), len(fc2[0])) == (1, 128)  # one symmetry-distinct displacement in diamond


def test_displacement_budget_skips_low_symmetry_cells_before_any_force():
    config = KappaConfig(fc3_min_length=6.0, fc2_min_length=12.0)
    fc3, fc2 = displaced_supercells(build_phono3py(diamond_si(), config))
    assert displacement_count(diamond_si(), config) == len(fc3) + len(fc2) == 58
    # The same four atoms in a distorted P1 cell: every atom and pair is symmetry-distinct.
    p1 = Structure(
        Lattice.from_parameters(4.1, 4.3, 4.6, 84, 95, 101),
        ["Na", "Cl", "Na", "Cl"],
        [[0, 0, 0], [0.52, 0.47, 0.51], [0.49, 0.03, 0.55], [0.02, 0.51, 0.46]],
    )
    count = displacement_count(p1, config)
    assert count > 10 * 58
    assert displacement_skip_reason(diamond_si(), config, 500) is None
    reason = displacement_skip_reason(p1, config, 500)
    assert reason and f"needs {count} displaced supercells" in reason
    assert displacement_skip_reason(p1, config, None) is None


class CountingModel:
    """CHGNet counting the structures it is asked for and raising past ``fail_after`` of them (a killed run)."""

    def __init__(self, model, fail_after: int | None = None):
        self.inner = model
        self.evaluated = 0
        self.fail_after = fail_after

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def graph_converter(self, structure, *args, **kwargs):  # called once per structure a forward pass evaluates
        if self.fail_after is not None and self.evaluated >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.evaluated += 1
        return self.inner.graph_converter(structure, *args, **kwargs)


def counting_chgnet(fail_after: int | None = None):
    """A CHGNet ASE calculator whose batched model counts (and can stop) force evaluations."""
    from crysloop.screening.potentials import get_calculator

    calculator = get_calculator("chgnet", device="cpu")
    calculator.model = CountingModel(calculator.model, fail_after)
    return calculator


def test_interrupted_run_resumes_from_cached_forces(tmp_path, kappas):
    config = KappaConfig(**{**CONFIG.__dict__, "chunk_size": 8})
    dying = counting_chgnet(fail_after=20)
    with pytest.raises(KeyboardInterrupt):
        compute_kappa(diamond_si(), dying, config, calculator_name="chgnet", cache_dir=tmp_path, progress=False)
    assert dying.model.evaluated == 20  # chunks of 8: killed inside the third, so 16 forces are cached
    cached = list(tmp_path.glob("fc3-chgnet-*.npz"))
    assert len(cached) == 1 and len(load_force_set(cached[0], 16)) == 16
    assert not list(tmp_path.glob("*.tmp.npz"))

    resumed = counting_chgnet()
    outcome = compute_kappa(diamond_si(), resumed, config, calculator_name="chgnet", cache_dir=tmp_path, progress=False)
    assert resumed.model.evaluated == 57 - 16 and outcome.n_evaluated == 41
    # an interrupted-and-resumed run gives the conductivity of an uninterrupted one
    np.testing.assert_allclose(outcome.kappa_average, kappas["Si"].kappa_average, rtol=1e-3)

    again = counting_chgnet()
    rerun = compute_kappa(diamond_si(), again, config, calculator_name="chgnet", cache_dir=tmp_path, progress=False)
    assert again.model.evaluated == 0 and rerun.n_evaluated == 0
    np.testing.assert_allclose(rerun.kappa, outcome.kappa)


def test_dft_kappa_job_reproduces_the_mlip_path_from_the_same_forces(kappas):
    """The DFT flow's final job, fed the cached CHGNet force set in place of VASP forces, gives the MLIP kappa."""
    ph3 = build_phono3py(diamond_si(), CONFIG)
    fc3_cells, _ = displaced_supercells(ph3)
    forces = load_force_set(kappas["cache"] / f"{force_set_key('chgnet', fc3_cells, 'fc3')}.npz", 16)
    assert forces.shape == (57, 16, 3)
    response = kappa_from_dft_forces.original(diamond_si(), _config_dict(CONFIG), forces.tolist(), None)
    out = response.output
    assert out["calculator"] == "vasp" and out["method"] == "RTA"
    np.testing.assert_allclose(out["kappa"], kappas["Si"].kappa, rtol=1e-8, atol=1e-10)


def test_relax_for_kappa_reaches_the_potentials_own_cell_and_keeps_the_space_group():
    """Kappa starts from the kappa potential's equilibrium: a strained Si cell comes back to CHGNet's lattice constant
    (the same from above and below), still Fd-3m; a relaxation that cannot converge is an error, not a silent start."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    strained = [Structure.from_spacegroup("Fd-3m", Lattice.cubic(a), ["Si"], [[0, 0, 0]]) for a in (5.30, 5.60)]
    relaxed = [relax_for_kappa(s, "chgnet") for s in strained]
    a_small, a_large = (r.lattice.a for r in relaxed)
    assert a_small == pytest.approx(a_large, abs=2e-3) and a_small == pytest.approx(5.43, rel=0.02)
    assert all(SpacegroupAnalyzer(r, symprec=1e-3).get_space_group_number() == 227 for r in relaxed)
    with pytest.raises(RuntimeError, match="relaxation before kappa failed"):
        relax_for_kappa(strained[1], "chgnet", fmax=1e-6, steps=2)
