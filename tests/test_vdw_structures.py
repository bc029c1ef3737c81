"""III-VI monolayers and their bilayers: counts, compositions, Janus sides, gap, vacuum, registry, duplicates."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition

from crysloop.errors import InputError
from crysloop.vdw.bilayers import Stacking, make_bilayer, pair_bilayers, stackings
from crysloop.vdw.monolayers import all_monolayers, select_monolayers

MONOLAYERS = {m.name: m for m in all_monolayers()}


def test_45_monolayers_with_the_right_families_and_janus_sides():
    layers = all_monolayers()
    assert len(layers) == len(MONOLAYERS) == 45
    assert Counter(m.family for m in layers) == {"MX": 9, "MM'X2": 9, "M2XX'": 9, "MM'XX'": 18}
    for m in layers:
        structure = m.structure()
        assert len(structure) == 4
        z = structure.cart_coords[:, 2]
        bottom, top = structure[int(np.argmin(z))].specie.symbol, structure[int(np.argmax(z))].specie.symbol
        assert (bottom, top) == (m.bottom[1], m.top[1])  # chalcogens outside, metals inside
        assert {structure[i].specie.symbol for i in np.argsort(z)[1:3]} == {m.bottom[0], m.top[0]}
        assert m.janus == (m.bottom != m.top)
    formulas = {m.formula for m in layers}
    assert {Composition(f).reduced_formula for f in ("GaSe", "InSe", "Ga2SSe", "GaInSe2", "AlInSTe")} <= formulas
    # no monolayer is another one turned over
    assert not {m.flipped().name for m in layers if m.janus} & set(MONOLAYERS)


def test_select_monolayers_rejects_elements_outside_iii_vi():
    assert {m.formula for m in select_monolayers(["Ga", "Se"])} == {"GaSe"}
    assert len(select_monolayers(["Ga", "In", "Se"])) == 3
    with pytest.raises(InputError, match="Mo"):
        select_monolayers(["Mo", "S"])


def _split(structure):
    layer = np.array(structure.site_properties["layer"])
    z = structure.cart_coords[:, 2]
    return z[layer == 0], z[layer == 1]


def test_bilayer_has_two_layers_gap_vacuum_and_registry():
    lower, upper = MONOLAYERS["Se-Ga-Ga-Se"].structure(), MONOLAYERS["Se-In-In-Se"].structure()
    stacking = Stacking("Se-Ga-Ga-Se", "Se-In-In-Se", False, False, 0, "AB")
    bilayer = make_bilayer(lower, upper, stacking, gap=3.4, vacuum=18.0)
    z_low, z_up = _split(bilayer)
    assert len(z_low) == len(z_up) == 4
    assert z_up.min() - z_low.max() == pytest.approx(3.4)
    assert bilayer.lattice.c - (z_up.max() - z_low.min()) == pytest.approx(18.0)
    assert np.allclose(bilayer.lattice.matrix[2, :2], 0) and bilayer.lattice.matrix[2, 2] > 0  # c along z
    assert bilayer.lattice.a == pytest.approx(0.5 * (lower.lattice.a + upper.lattice.a))
    # AB: the upper metals sit over (1/3, 2/3) of the lower metals' column
    layer = bilayer.site_properties["layer"]
    metals_low = [s.frac_coords[:2] for s, lay in zip(bilayer, layer) if lay == 0 and s.specie.symbol == "Ga"]
    metals_up = [s.frac_coords[:2] for s, lay in zip(bilayer, layer) if lay == 1 and s.specie.symbol == "In"]
    shift = np.mod(metals_up[0] - metals_low[0], 1.0)
    assert np.allclose(shift, [1 / 3, 2 / 3], atol=1e-6)


def test_flips_and_rotations_give_distinct_structures_and_duplicates_are_removed():
    name = "S-Ga-Ga-Se"  # Janus: flipping it matters
    mono = {name: MONOLAYERS[name].structure()}
    candidates = stackings(name, name)
    assert len(candidates) == 24
    built = [make_bilayer(mono[name], mono[name], s) for s in candidates]
    matcher = StructureMatcher(
        ltol=0.05, stol=0.05, angle_tol=1.0, primitive_cell=False, scale=False, attempt_supercell=False
    )
    by_key = {s.key: b for s, b in zip(candidates, built)}
    assert not matcher.fit(by_key[f"{name}/{name}/uu/r0/AA/1x1"], by_key[f"{name}/{name}/uf/r0/AA/1x1"])  # flip
    assert not matcher.fit(by_key[f"{name}/{name}/uu/r0/AB/1x1"], by_key[f"{name}/{name}/uu/r60/AB/1x1"])  # rotation
    unique = pair_bilayers(mono, name, name)
    assert 1 < len(unique) < len(candidates)
    for i, (_, a) in enumerate(unique):  # nothing left matches anything else
        assert not any(matcher.fit(a, b) for _, b in unique[i + 1 :])
    for b in built:  # everything removed matches something kept
        assert any(matcher.fit(b, u) for _, u in unique)


def test_symmetric_homobilayer_has_the_five_known_high_symmetry_stackings():
    name = "Se-Ga-Ga-Se"
    assert len(pair_bilayers({name: MONOLAYERS[name].structure()}, name, name)) == 5


def test_twisted_sqrt7_cell_is_commensurate():
    name = "Se-Ga-Ga-Se"
    mono = MONOLAYERS[name].structure()
    twisted = [s for s in stackings(name, name, twists=["sqrt7"]) if s.twist == "sqrt7"]
    assert twisted and twisted[0].twist_angle == pytest.approx(21.79, abs=0.01)
    bilayer = make_bilayer(mono, mono, twisted[0])
    assert len(bilayer) == 2 * 7 * 4
    assert bilayer.lattice.a == pytest.approx(np.sqrt(7) * mono.lattice.a)
    assert min(bilayer.distance_matrix[np.triu_indices(len(bilayer), 1)]) > 2.0  # no overlapping atoms


def test_unknown_twists_are_input_errors():
    with pytest.raises(InputError, match="sqrt3"):
        stackings("Se-Ga-Ga-Se", "Se-Ga-Ga-Se", twists=["sqrt3"])
    with pytest.raises(InputError, match="sqrt5"):
        stackings("Se-Ga-Ga-Se", "Se-Ga-Ga-Se", twists=["sqrt5"])


def test_per_pair_spreads_a_subset_over_the_pairs():
    from crysloop.vdw.build import candidate_bilayers
    from crysloop.vdw.config import BuildConfig

    mono = {m.name: m.structure() for m in select_monolayers(["Ga", "In", "Se"])}  # GaSe, InSe, GaInSe2
    every = candidate_bilayers(BuildConfig(elements=("Ga", "In", "Se")), mono, progress=False)
    spread = candidate_bilayers(BuildConfig(elements=("Ga", "In", "Se"), per_pair=2), mono, progress=False)
    pairs = Counter(frozenset((s.lower, s.upper)) for s, _ in spread)
    assert len(pairs) == 6 and set(pairs.values()) == {2}
    assert {s.key for s, _ in spread} < {s.key for s, _ in every}
    again = candidate_bilayers(BuildConfig(elements=("Ga", "In", "Se"), per_pair=2), mono, progress=False)
    assert [s.key for s, _ in again] == [s.key for s, _ in spread]  # seeded
