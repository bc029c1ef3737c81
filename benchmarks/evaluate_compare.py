"""Uniqueness at scale and the suite's per-crystal cost against CDVAE's code path, for benchmarks/evaluate.py.

``uniqueness``: 2,000 crystals of one composition, three ways. "duplicates" and "random": the composition of the first
6-10-atom ternary crystal of the pool, ``kinds`` random cells (random lattice of one shape family, random positions,
all P1 with one site count: the worst case, no key separates them), drawn ``n`` times as rotated, site-shuffled
copies with every site moved 0.02 A, so the answer is the number of distinct cells drawn; "duplicates" draws from
200 cells, "random" from ``n``. "mp20": real crystals, the first ``n`` ABC2 crystals of the pool relabelled as LiFeO2
(A and B by electronegativity), so the answer is the number of distinct ABC2 prototypes among them. crysloop's
``unique_mask`` runs on all of them; the all-pairs loop (every crystal fitted against each earlier unique one, with
no shortcut) on a prefix, with the two answers compared on that prefix.

``per_crystal``: one process, no cache. CDVAE's code path per generated crystal and its ground truth (CDVAE builds
a ``Crystal`` of both): SMACT validity, the distance-matrix structure check, matminer's CrystalNNFingerprint ("ops")
on every site and Magpie ElementProperty, then StructureMatcher.get_rms_dist of the pair (the reconstruction metric).
crysloop's suite does the same
work (validity, fingerprints of generated crystals, reconstruction) in ``evaluate``; its per-step timings are summed.
"""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
from pymatgen.core import Element, Lattice, Structure
from pymatgen.core.operations import SymmOp


def one_composition_set(base: Structure, n: int, kinds: int, seed: int) -> list[Structure]:
    """``n`` crystals with ``base``'s species: ``kinds`` random cells, each copied (rotated, shuffled, perturbed)."""
    rng = np.random.default_rng(seed)
    volume = base.volume
    prototypes = []
    for _ in range(kinds):
        lattice = Lattice.from_parameters(*rng.uniform(0.7, 1.3, 3), *rng.uniform(65, 115, 3))
        lattice = lattice.scale(volume * rng.uniform(0.8, 1.2))
        prototypes.append(Structure(lattice, base.species, rng.random((len(base), 3))))
    out = []
    for _ in range(n):
        s = prototypes[int(rng.integers(kinds))].copy()
        order = rng.permutation(len(s))
        s = Structure(s.lattice, [s.species[i] for i in order], s.frac_coords[order])
        s.apply_operation(SymmOp.from_axis_angle_and_translation(rng.normal(size=3), float(rng.uniform(0, 360))))
        s.perturb(0.02, seed=int(rng.integers(2**31)))
        out.append(s)
    return out


def all_pairs_unique(structures, tolerances) -> np.ndarray:
    """First-of-kind uniqueness by fitting every crystal against each earlier unique one (no shortcuts)."""
    matcher = tolerances.matcher()
    reps, flags = [], []
    for s in structures:
        duplicate = False
        for rep in reps:
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


def relabelled_prototypes(pool, n: int) -> list[Structure]:
    """The first ``n`` ABC2 crystals of ``pool`` as LiFeO2: A (less electronegative) -> Li, B -> Fe, C -> O."""
    out = []
    for s in pool:
        amounts = s.composition.element_composition.reduced_composition.get_el_amt_dict()
        if sorted(amounts.values()) != [1.0, 1.0, 2.0]:
            continue
        singles = sorted((e for e, a in amounts.items() if a == 1.0), key=lambda e: Element(e).X)
        double = next(e for e, a in amounts.items() if a == 2.0)
        mapping = {singles[0]: "Li", singles[1]: "Fe", double: "O"}
        out.append(Structure(s.lattice, [mapping[site.specie.symbol] for site in s], s.frac_coords))
        if len(out) == n:
            break
    return out


def uniqueness(pool, n: int, kinds: int, prefix: int, seed: int) -> list[dict]:
    """Wall times of crysloop's uniqueness on ``n`` crystals of one composition and of all pairs on a prefix."""
    from crysloop.evaluation.matching import PYMATGEN_TOLERANCES, unique_mask

    base = next(s for s in pool if 6 <= len(s) <= 10 and len(s.composition) == 3)
    sets = {
        "duplicates": one_composition_set(base, n, kinds, seed),
        "random": one_composition_set(base, n, n, seed),
        "mp20": relabelled_prototypes(pool, n),
    }
    warnings.filterwarnings("ignore")
    figures = []
    for label, structures in sets.items():
        t0 = time.perf_counter()
        fast = unique_mask(structures, n_jobs=1)
        fast_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        slow_prefix = all_pairs_unique(structures[:prefix], PYMATGEN_TOLERANCES)
        slow_prefix_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        fast_prefix = unique_mask(structures[:prefix], n_jobs=1)
        fast_prefix_s = time.perf_counter() - t0
        figures.append(
            {
                "set": label,
                "formula": structures[0].composition.reduced_formula,
                "n": len(structures),
                "unique_s": round(fast_s, 1),
                "n_unique": int(fast.sum()),
                "prefix": prefix,
                "unique_prefix_s": round(fast_prefix_s, 1),
                "all_pairs_prefix_s": round(slow_prefix_s, 1),
                "prefix_speedup": round(slow_prefix_s / fast_prefix_s, 2) if fast_prefix_s else None,
                "prefix_identical": bool((fast_prefix == slow_prefix).all()),
                "n_unique_prefix": int(slow_prefix.sum()),
            }
        )
        print(json.dumps(figures[-1]), flush=True)
    return figures


def cdvae_per_crystal(generated, truth) -> tuple[float, list]:
    """Seconds per crystal of CDVAE's per-crystal evaluation code path, and its values (for a consistency check)."""
    from matminer.featurizers.composition.composite import ElementProperty
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from crysloop.evaluation.validity import _reduced_counts, smact_validity

    cnn, magpie = CrystalNNFingerprint.from_preset("ops"), ElementProperty.from_preset("magpie")
    matcher = StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)

    def crystal(s: Structure) -> tuple[bool, bool, np.ndarray | None]:
        reduced = _reduced_counts(s.composition)
        comp = reduced is not None and smact_validity.__wrapped__(*reduced)  # uncached, as CDVAE computes it
        dist = s.distance_matrix + np.eye(len(s)) * 10.0
        struct = bool(dist.min() > 0.5) and s.volume >= 0.1
        try:
            fp = np.mean([cnn.featurize(s, i) for i in range(len(s))], axis=0)
        except Exception:
            fp = None
        magpie.featurize(s.composition)
        return comp, struct, fp

    values = []
    t0 = time.perf_counter()
    for s, t in zip(generated, truth):
        comp, struct, fp = crystal(s)
        crystal(t)
        rms = matcher.get_rms_dist(s, t)
        values.append((comp, struct, fp, None if rms is None else rms[0]))
    return (time.perf_counter() - t0) / len(generated), values


def per_crystal(pool, n: int, seed: int, label: str) -> dict:
    """crysloop's suite vs CDVAE's code per generated crystal, one process, on ``n`` perturbed crystals of ``pool``."""
    from crysloop.evaluation import evaluate

    rng = np.random.default_rng(seed)
    truth = [pool[i] for i in rng.permutation(len(pool))[:n]]
    generated = []
    for s in truth:
        copy = s.copy()
        copy.perturb(0.05, seed=int(rng.integers(2**31)))
        generated.append(copy)
    warnings.filterwarnings("ignore")
    evaluate(generated[:2], truth[:2], None, "mp20", ground_truth=truth[:2], n_jobs=1, cache=False)  # warm-up
    cdvae_per_crystal(generated[:2], truth[:2])  # warm-up: featurizer tables, imports
    report = evaluate(generated, truth[: min(n, 20)], None, "mp20", ground_truth=truth, n_jobs=1, cache=False)
    steps = ("validity", "fingerprints_generated", "reconstruction")
    suite = sum(report.timings[k] for k in steps) / n
    cdvae, values = cdvae_per_crystal(generated, truth)
    matched = [v[3] for v in values if v[0] and v[1] and v[2] is not None and v[3] is not None]  # DiffCSP's rule
    return {
        "set": label,
        "n": n,
        "mean_atoms": round(float(np.mean([len(s) for s in generated])), 1),
        "suite_s_per_crystal": round(suite, 4),
        "suite_steps": {k: report.timings[k] for k in steps},
        "cdvae_s_per_crystal": round(cdvae, 4),
        "speedup": round(cdvae / suite, 2),
        "match_rate_suite": report.metrics["match_rate"],
        "match_rate_cdvae_path": len(matched) / n,
        "comp_valid_suite": report.metrics["comp_valid"],
        "comp_valid_cdvae_path": float(np.mean([v[0] for v in values])),
    }
