"""Fast uniqueness and novelty give exactly StructureMatcher's all-pairs answers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.core.operations import SymmOp

from crysloop.evaluation.matching import (
    PYMATGEN_TOLERANCES,
    _lattice_may_map,
    _may_fit,
    _prepare,
    novel_mask,
    unique_mask,
)


def _all_pairs_unique(structures, tolerances=PYMATGEN_TOLERANCES):
    """The definition (and crysloop's earlier code): fit every structure against each earlier unique one."""
    matcher = tolerances.matcher()
    reps, flags = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in structures:
            duplicate = False
            for rep in reps:
                if rep.composition.reduced_formula != s.composition.reduced_formula:
                    continue
                try:
                    duplicate = matcher.fit(s, rep)
                except Exception:
                    duplicate = False
                if duplicate:
                    break
            flags.append(not duplicate)
            if not duplicate:
                reps.append(s)
    return np.array(flags)


def _variants(rng: np.random.Generator) -> list[Structure]:
    """Crystals of few compositions: near-copies (duplicates), strained copies across the ltol edge, supercells,
    shuffled and rotated copies and unrelated random cells, so buckets hold matches and near-misses."""
    bases = [
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure.from_spacegroup(
            "P4_2/mnm", Lattice.tetragonal(4.59, 2.96), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]]
        ),
        Structure.from_spacegroup(
            "Pm-3m", Lattice.cubic(3.9), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]
        ),
    ]
    out = []
    for base in bases:
        for k in range(10):
            s = base.copy()
            kind = k % 5
            if kind == 0:
                s.perturb(0.05 + 0.1 * rng.random())
            elif kind == 1:
                stretch = np.diag(1 + rng.uniform(-0.3, 0.3, 3))
                s = Structure(Lattice(s.lattice.matrix @ stretch), s.species, s.frac_coords)
            elif kind == 2:
                s.make_supercell([2, 1, 1] if k < 5 else [1, 1, 2])
                s.perturb(0.05)
            elif kind == 3:
                order = rng.permutation(len(s))
                s = Structure(s.lattice, [s.species[i] for i in order], s.frac_coords[order])
                s.apply_operation(SymmOp.from_axis_angle_and_translation(rng.normal(size=3), rng.uniform(0, 360)))
            else:
                s = Structure(
                    Lattice.from_parameters(*(rng.uniform(3, 7, 3)), *(rng.uniform(70, 110, 3))),
                    s.species,
                    rng.random((len(s), 3)),
                )
            out.append(s)
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_unique_mask_equals_all_pairs(seed):
    structures = _variants(np.random.default_rng(seed))
    expected = _all_pairs_unique(structures)
    assert 0 < expected.sum() < len(structures)  # both duplicates and unique crystals present
    assert unique_mask(structures, n_jobs=1).tolist() == expected.tolist()


def test_prefilter_never_rules_out_a_fitting_pair():
    structures = _variants(np.random.default_rng(2))
    matcher = PYMATGEN_TOLERANCES.matcher()
    prepared = [_prepare(s, matcher) for s in structures]
    fitting = skipped = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, s in enumerate(structures):
            allowed = _may_fit(prepared[i], prepared, PYMATGEN_TOLERANCES.ltol)
            allowed &= _lattice_may_map(prepared[i], prepared, PYMATGEN_TOLERANCES)
            for j, t in enumerate(structures):
                if s.composition.reduced_formula != t.composition.reduced_formula:
                    continue
                fits = matcher.fit(s, t)
                fitting += fits
                skipped += not allowed[j]
                assert allowed[j] or not fits, (i, j)
    assert fitting > len(structures) and skipped > 0  # the check saw matches and did prune


def test_novel_mask_equals_all_pairs():
    rng = np.random.default_rng(3)
    structures = _variants(rng)
    train, generated = structures[:15], structures[15:]
    matcher = PYMATGEN_TOLERANCES.matcher()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [
            not any(t.composition.reduced_formula == g.composition.reduced_formula and matcher.fit(g, t) for t in train)
            for g in generated
        ]
    assert novel_mask(generated, train, n_jobs=1).tolist() == expected
    assert 0 < sum(expected) < len(expected)


def _one_composition(rng: np.random.Generator, kinds: int, n: int) -> list[Structure]:
    """``n`` crystals of one composition and site count: ``kinds`` random P1 cells of one shape family (the worst
    case for bucketing), copied rotated, site-shuffled and perturbed, some as 1x1x2 supercells."""
    species = ["Li", "Li", "Fe", "P", "O", "O", "O", "O"]
    prototypes = [
        Structure(
            Lattice.from_parameters(*rng.uniform(4.0, 6.0, 3), *rng.uniform(70, 110, 3)),
            species,
            rng.random((len(species), 3)),
        )
        for _ in range(kinds)
    ]
    out = []
    for _ in range(n):
        s = prototypes[int(rng.integers(kinds))].copy()
        order = rng.permutation(len(s))
        s = Structure(s.lattice, [s.species[i] for i in order], s.frac_coords[order])
        s.apply_operation(SymmOp.from_axis_angle_and_translation(rng.normal(size=3), rng.uniform(0, 360)))
        if rng.random() < 0.2:
            s.make_supercell([1, 1, 2])
        s.perturb(0.03)
        out.append(s)
    return out


def test_unique_mask_equals_all_pairs_on_one_composition():
    structures = _one_composition(np.random.default_rng(4), kinds=12, n=36)
    expected = _all_pairs_unique(structures)
    assert 1 < expected.sum() < len(structures) - 5
    assert unique_mask(structures, n_jobs=1).tolist() == expected.tolist()


def test_lattice_test_is_necessary_and_prunes():
    """Where pymatgen finds a unimodular lattice mapping the vectorised test allows the pair; it rejects others."""
    rng = np.random.default_rng(5)
    structures = _one_composition(rng, kinds=25, n=25)
    for c in (30.0, 32.0, 60.0):  # long cells: their windows reach past the lattice points the test looks at
        long = Structure(Lattice.from_parameters(3.0, 3.1, c, 90, 90, 91), ["Li", "Fe"] * 4, rng.random((8, 3)))
        structures += [long, long.copy()]
    matcher = PYMATGEN_TOLERANCES.matcher()
    prepared = [_prepare(s, matcher) for s in structures]
    mapped = rejected = 0
    for candidate in prepared:
        allowed = _lattice_may_map(candidate, prepared, PYMATGEN_TOLERANCES)
        for j, target in enumerate(prepared):
            ratio = (target.structure.volume / candidate.structure.volume) ** (1 / 6)
            mappings = Lattice(candidate.structure.lattice.matrix * ratio).find_all_mappings(
                Lattice(target.structure.lattice.matrix / ratio), ltol=0.2, atol=5.0, skip_rotation_matrix=True
            )
            maps = any(abs(abs(np.linalg.det(m)) - 1) < 0.5 for _, _, m in mappings)
            assert allowed[j] or not maps
            mapped += maps
            rejected += not allowed[j]
    assert mapped >= len(prepared) and rejected > len(prepared)
