"""Validity rules of the evaluation suite: structural distances/volume and SMACT charge neutrality on smact 4."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import smact
from pymatgen.core import Composition, Lattice, Structure
from smact.screening import pauling_test

from crysloop.evaluation.validity import composition_validity, structure_validity, validity


def rocksalt() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_ordinary_crystal_is_valid():
    v = validity(rocksalt())
    assert v.composition and v.structure and v.valid


def test_overlapping_atoms_are_invalid():
    s = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0.1, 0.1, 0.1], [0.15, 0.1, 0.1]])  # 0.25 A apart
    assert not structure_validity(s)
    assert structure_validity(Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0.1, 0.1, 0.1], [0.25, 0.1, 0.1]]))


def test_overlap_across_the_cell_boundary_is_found():
    s = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0.01, 0.5, 0.5], [0.99, 0.5, 0.5]])  # 0.1 A through the face
    assert not structure_validity(s)


def test_atom_too_close_to_its_own_image_is_invalid():
    s = Structure(Lattice.orthorhombic(0.4, 5.0, 5.0), ["Na"], [[0, 0, 0]])
    assert not structure_validity(s)


def test_skewed_cell_short_distance_is_found():
    # The same rock-salt crystal in a strongly sheared (equivalent) cell: still valid; a squeezed one is not.
    s = rocksalt().copy()
    s.make_supercell([[1, 0, 0], [3, 1, 0], [0, 0, 1]])
    assert structure_validity(s)
    squeezed = Structure(Lattice([[3.0, 0, 0], [8.9, 0.3, 0], [0, 0, 5.0]]), ["Na"], [[0, 0, 0]])
    assert not structure_validity(squeezed)  # b - 3a has length about 0.32 A


def test_tiny_volume_is_invalid():
    s = Structure(Lattice.cubic(0.45), ["Na"], [[0, 0, 0]])
    assert not structure_validity(s, cutoff=0.0)


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("NaCl", True),
        ("Na2Cl", False),  # unbalanced
        ("NaCl2", False),
        ("Fe2O3", True),
        ("Al2O3", True),
        ("LiFePO4", True),
        ("CuZn", True),  # all metals count as valid
        ("Si", True),  # one element is valid
        ("Na8Cl8", True),  # reduced before the test
    ],
)
def test_composition_validity(formula, expected):
    assert composition_validity(Composition(formula)) is expected


def _smact4_reference(formula: str) -> bool:
    """Independent re-statement with smact 4's own API on the SMACT-2014 oxidation states (no unknown enegs)."""
    comp = Composition(formula).reduced_composition
    symbols = [e.symbol for e in sorted(comp.elements, key=lambda e: e.Z)]
    counts = [int(comp[s]) for s in symbols]
    if len(symbols) == 1 or all(s in smact.metals for s in symbols):
        return True
    elements = [smact.Element(s) for s in symbols]
    enegs = [e.pauling_eneg for e in elements]
    for ox in itertools.product(*[e.oxidation_states_smact14 for e in elements]):
        if smact.neutral_ratios(ox, stoichs=[(c,) for c in counts]) and pauling_test(ox, enegs):
            return True
    return False


@pytest.mark.parametrize(
    "formula",
    [
        "MgO",
        "MgO2",
        "TiO2",
        "Ti2O",
        "K2S",
        "KS2",
        "CaF2",
        "CaF3",
        "LiMnO2",
        "BaTiO3",
        "SrTi2O3",
        "NaNO3",
        "Cs3Sb",
        "GaAs",
        "AsGa3",
        "FeS2",
        "Li3N",
        "NF3",
        "SiC",
        "CO2",
    ],
)
def test_composition_validity_agrees_with_smact4_api(formula):
    assert composition_validity(Composition(formula)) is _smact4_reference(formula)


def test_default_smact4_oxidation_states_differ_from_the_cdvae_ones():
    # The trap this module avoids: smact 4's default list is not the SMACT-2014 list CDVAE was written against.
    fe = smact.Element("Fe")
    assert fe.oxidation_states != fe.oxidation_states_smact14
    assert isinstance(smact.neutral_ratios((1, -1), stoichs=[(1,), (1,)]), list)


def test_nan_coordinates_are_invalid():
    s = rocksalt()
    s.replace(0, "Na", coords=[np.nan, 0, 0])
    assert not structure_validity(s)


def test_unknown_electronegativity_follows_smact2_semantics():
    from crysloop.evaluation.validity import _pauling_ok

    # smact 2.x raised TypeError on the first cation-anion pair with an unknown value; CDVAE counted that as a pass.
    assert _pauling_ok((1, -1), (None, 3.0))
    # ... but a violating pair met before it still fails, as the pairs are visited in the same order.
    assert not _pauling_ok((1, -1, -1), (3.5, 2.0, None))
    assert _pauling_ok((1, -1), (0.9, 3.2)) and not _pauling_ok((1, -1), (3.2, 0.9))


def test_many_element_composition_is_decided_in_bounded_memory():
    """10^10 combinations of oxidation states: enumerated in chunks, not materialised (that needed ~74 GiB)."""
    import tracemalloc

    from pymatgen.core import Composition

    from crysloop.evaluation.validity import composition_validity

    tracemalloc.start()
    try:
        assert composition_validity(Composition("MnFeCoNiCrVTiCuSnPbSbBiSO"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 300 * 2**20


# A cell emitted by an under-trained DiffCSP model (4 atoms, 5.8e8 A^3 per atom, gamma 10.6 degrees), as it came out:
# CrystalNN's Voronoi search doubles its sphere up to the cell diagonal, and evaluating it grew past 20 GB before the
# plausibility rule (3 GiB of address space: MemoryError after 2.6 s, swallowed as a failed fingerprint).
EXPLODED = (
    [
        [142.9053192138672, 86.17687225341797, -1302.06640625],
        [186.2115020751953, 262.650390625, -1060.9591064453125],
        [-7225.69970703125, 5550.65185546875, -262.7940979003906],
    ],
    ["Sc", "Al", "Rh", "Rh"],
    [
        [0.46317946910858154, 0.5451331734657288, 0.7738065123558044],
        [0.904807984828949, 0.7434379458427429, 0.06066180393099785],
        [0.18594510853290558, 0.03105989471077919, 0.7952790856361389],
        [0.007345438934862614, 0.17960809171199799, 0.6150820851325989],
    ],
)


def test_implausible_cells_are_rejected_before_any_neighbour_search():
    import crysloop.evaluation.validity as rules
    from crysloop.evaluation.validity import plausible_cell

    assert plausible_cell(rocksalt())
    bilayer_like = Structure(
        Lattice.hexagonal(3.2, 40.0), ["Mo", "S", "S"], [[0, 0, 0.5], [1 / 3, 2 / 3, 0.54], [1 / 3, 2 / 3, 0.46]]
    )
    assert plausible_cell(bilayer_like) and structure_validity(bilayer_like)  # a slab with 35 A of vacuum
    side = (rules.MAX_VOLUME_PER_ATOM * 1.01) ** (1 / 3)
    assert not plausible_cell(Structure(Lattice.cubic(side), ["Na"], [[0, 0, 0]]))
    assert plausible_cell(Structure(Lattice.cubic(side * 0.99), ["Na"], [[0, 0, 0]]))
    long_cell = Structure(
        Lattice.orthorhombic(3, 3, rules.MAX_LATTICE_LENGTH + 1), ["Na"] * 40, [[0, 0, k / 40] for k in range(40)]
    )
    assert not plausible_cell(long_cell) and not structure_validity(long_cell)
    inf_cell = rocksalt()
    inf_cell.lattice = Lattice(np.where(np.eye(3) > 0, np.inf, 0.0))
    assert not plausible_cell(inf_cell)


def test_exploded_cell_is_invalid_in_bounded_memory_and_time(tmp_path):
    """The whole validity rule on the exploded cell rejects it without starting CrystalNN, in a child process capped
    at 3 GiB of address space so that a regression fails here instead of exhausting the machine."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    script = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))
        from pymatgen.core import Lattice, Structure
        from crysloop.evaluation import fingerprints
        from crysloop.evaluation.report import valid_mask
        from crysloop.evaluation.validity import structure_validity
        calls = []
        real = fingerprints.site_fingerprints
        fingerprints.site_fingerprints = lambda *a: calls.append(1) or real(*a)  # counts, still runs
        matrix, species, coords = {EXPLODED!r}
        s = Structure(Lattice(matrix), species, coords)
        print(structure_validity(s), valid_mask([s], n_jobs=1, cache=None).tolist(), len(calls))
    """)
    env = {"PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "[False]", "0"]
