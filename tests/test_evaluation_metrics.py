"""Coverage, distributions, matching, fingerprints and the full suite on hand-built crystals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.core.operations import SymmOp

from crysloop.errors import InputError
from crysloop.evaluation import evaluate, write_report
from crysloop.evaluation.coverage import coverage, coverage_cutoffs
from crysloop.evaluation.fingerprints import (
    FingerprintCache,
    compute_fingerprints,
    crystalnn_fingerprint,
)
from crysloop.evaluation.matching import novel_mask, reconstruction, unique_mask
from crysloop.evaluation.parallel import parallel_map


def rocksalt(a=5.64, cation="Na", anion="Cl"):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def zincblende(a=5.65, cation="Ga", anion="As"):
    return Structure.from_spacegroup("F-43m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.25, 0.25, 0.25]])


def cscl(a=4.12, cation="Cs", anion="Cl"):
    return Structure(Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def rutile():
    return Structure.from_spacegroup(
        "P4_2/mnm", Lattice.tetragonal(4.59, 2.96), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]]
    )


def perovskite():
    return Structure(
        Lattice.cubic(3.9),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


def moved(structure: Structure, angle=37.0, shift=(0.13, 0.41, 0.77)) -> Structure:
    """A rigidly rotated and translated copy, sites in reverse order."""
    copy = structure.copy()
    copy.apply_operation(SymmOp.from_axis_angle_and_translation([1, 2, 3], angle))
    copy.translate_sites(list(range(len(copy))), shift, frac_coords=True)
    return Structure(copy.lattice, copy.species[::-1], copy.frac_coords[::-1])


@pytest.fixture
def cache(tmp_path):
    store = FingerprintCache(tmp_path / "fp.sqlite")
    yield store
    store.close()


def test_fingerprint_is_the_site_average_and_symmetry_reduction_agrees_on_simple_cells():
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

    site_fp = CrystalNNFingerprint.from_preset("ops")
    for structure in (rutile(), perovskite()):
        plain = np.mean([site_fp.featurize(structure, i) for i in range(len(structure))], axis=0)
        np.testing.assert_allclose(crystalnn_fingerprint(structure), plain, atol=1e-9)
        np.testing.assert_allclose(crystalnn_fingerprint(structure, symmetry_reduced=True), plain, atol=1e-10)


def test_fingerprints_are_invariant_and_cached(cache):
    a = rocksalt()
    fp = compute_fingerprints([a, moved(a)], n_jobs=1, cache=cache)
    assert fp.ok.all()
    np.testing.assert_allclose(fp.structure[0], fp.structure[1], atol=1e-8)
    again = compute_fingerprints([a], n_jobs=1, cache=cache)
    np.testing.assert_array_equal(again.structure[0], fp.structure[0])
    assert len(cache.get_many([])) == 0 and cache._db.execute("SELECT COUNT(*) FROM fp").fetchone()[0] == 2


def test_set_against_itself_has_full_coverage_and_zero_distances(cache):
    crystals = [rocksalt(), zincblende(), cscl(), rutile(), perovskite()]
    fp = compute_fingerprints(crystals, n_jobs=1, cache=cache)
    metrics = coverage(fp, fp, coverage_cutoffs("mp20"))
    assert metrics["cov_recall"] == 1.0 and metrics["cov_precision"] == 1.0
    assert metrics["amsd_recall"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["amcd_precision"] == pytest.approx(0.0, abs=1e-12)


def test_disjoint_sets_have_zero_coverage(cache):
    generated = [zincblende(), zincblende(5.43, "Si", "Si"), zincblende(4.36, "Si", "C")]
    reference = [cscl(), cscl(3.0, "Fe", "Al"), cscl(3.4, "Cs", "Br")]
    metrics = coverage(
        compute_fingerprints(generated, n_jobs=1, cache=cache),
        compute_fingerprints(reference, n_jobs=1, cache=cache),
        coverage_cutoffs("mp20"),
    )
    assert metrics["cov_recall"] == 0.0 and metrics["cov_precision"] == 0.0
    assert metrics["amsd_recall"] > 0.4


def test_coverage_thresholds_by_dataset():
    assert (coverage_cutoffs("mp_20").structure, coverage_cutoffs("mp_20").composition) == (0.4, 10.0)
    assert (coverage_cutoffs("perov_5").structure, coverage_cutoffs("carbon_24").composition) == (0.2, 4.0)
    assert coverage_cutoffs("mydata", (0.3, 5.0)).composition == 5.0
    with pytest.raises(InputError):
        coverage_cutoffs("mydata")


def test_rotated_translated_copy_matches_with_zero_rmse():
    truths = [rutile(), perovskite(), rocksalt()]
    predicted = [moved(t) for t in truths[:2]] + [zincblende()]
    result = reconstruction(predicted, truths, [True] * 3, [True, True, True], n_jobs=1)
    assert result["match_rate"] == pytest.approx(2 / 3)
    assert result["rms_dist"] == pytest.approx(0.0, abs=1e-6)
    # A match also needs a valid ground truth (DiffCSP).
    assert reconstruction(predicted, truths, [True] * 3, [False, True, True], n_jobs=1)["match_rate"] == pytest.approx(
        1 / 3
    )


def test_perturbed_copy_matches_with_small_rmse():
    truth = rutile()
    predicted = truth.copy()
    predicted.perturb(0.1, min_distance=0.05, seed=3)
    result = reconstruction([predicted], [truth], [True], [True], n_jobs=1)
    assert result["match_rate"] == 1.0 and 0.0 < result["rms_dist"] < 0.2


def test_uniqueness_and_novelty_by_structure_matching():
    a, b, c = rocksalt(), zincblende(5.64, "Na", "Cl"), rutile()
    generated = [a, moved(a), b, c]
    assert unique_mask(generated, n_jobs=1).tolist() == [True, False, True, True]
    assert novel_mask(generated, [rocksalt(5.70), rutile()], n_jobs=1).tolist() == [False, False, True, False]


def test_parallel_map_keeps_order_across_processes():
    items = list(range(40))
    assert parallel_map(abs, [-i for i in items], n_jobs=2, chunk_size=3) == items


def test_evaluate_suite_and_report_files(tmp_path, cache):
    reference = [rocksalt(), zincblende(), cscl(), rutile(), perovskite()]
    overlapping = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.02, 0, 0]])
    unbalanced = Structure(Lattice.cubic(4.0), ["Na", "Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0.5, 0.5]])
    generated = [moved(s) for s in reference] + [moved(rocksalt()), overlapping, unbalanced]
    report = evaluate(
        generated,
        reference,
        train=[rutile()],
        dataset="mp20",
        ground_truth=reference + reference[:3],
        generated_energy_per_atom=[-1.0] * 8,
        reference_energy_per_atom=[-1.0] * 5,
        stable=[True, True, False, True, True, True, True, True],
        n_jobs=1,
        cache=cache,
    )
    m = report.metrics
    assert m["comp_valid"] == pytest.approx(7 / 8) and m["struct_valid"] == pytest.approx(7 / 8)
    assert m["valid"] == pytest.approx(6 / 8)
    assert m["cov_recall"] == 1.0
    assert m["wdist_energy_per_atom"] == pytest.approx(0.0)
    assert m["match_rate"] == pytest.approx(6 / 8)  # the rocksalt copy also matches its paired rocksalt truth
    assert m["rms_dist"] == pytest.approx(0.0, abs=1e-6)
    assert m["n_unique"] == 5 and m["n_novel"] == 5 and m["n_unique_novel"] == 4
    assert m["n_sun"] == 3 and m["sun_rate"] == pytest.approx(3 / 8)
    assert report.counts["sampled"] == 6 and set(report.timings) >= {"fingerprints_generated", "coverage"}

    paths = write_report(report, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["metrics"]["valid"] == pytest.approx(0.75)
    assert "| cov_recall | 1 |" in paths["markdown"].read_text()
    for name in ("density", "num_elements", "energy_per_atom"):
        assert paths[name].read_bytes()[:4] == b"\x89PNG"


def test_evaluate_rejects_mismatched_labels(cache):
    with pytest.raises(InputError):
        evaluate([rocksalt()], [rocksalt()], stable=[True, False], cache=cache, n_jobs=1)


def test_cell_too_small_to_build_has_no_fingerprint():
    assert crystalnn_fingerprint(Structure(Lattice.cubic(0.4), ["Na"], [[0, 0, 0]])) is None
