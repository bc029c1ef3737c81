"""Wall time per metric of the evaluation suite on MP-20 crystals (../shared/data/mp_20_biternary).

Reference, training and generated sets are drawn from the MP-20 val + test splits (14,258 binary/ternary
crystals): reference = the first N_ref of a shuffle, train = the next N_train, generated = perturbed copies
(every site moved 0.05 A) of reference (70 %) and training (20 %) crystals plus rotated repeats of earlier generated
crystals (10 %), paired with their sources as ground truth. Each size runs with a cold fingerprint cache, then once
more with the cache warm (as on the next campaign round). The last line printed is one JSON object.

    nice -n 10 .venv/bin/python benchmarks/evaluate.py --n-generated 1000 --n-reference 1000 --n-train 1000
    nice -n 10 .venv/bin/python benchmarks/evaluate.py --n-generated 10000 --n-reference 9000 --n-train 5000

``--compare`` instead measures uniqueness on 2,000 crystals of one composition (mostly duplicates, mostly unique random
cells, relabelled MP-20 prototypes) and the suite's per-crystal time against CDVAE's code path on MP-20 and on MP-20
crystals with 12-24 atoms, all in one process (see ``evaluate_compare.py``):

    nice -n 10 .venv/bin/python benchmarks/evaluate.py --compare --per-crystal 60
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from pymatgen.core.operations import SymmOp

from crysloop.data.datasets import read_structures
from crysloop.evaluation import evaluate
from crysloop.evaluation.fingerprints import FingerprintCache

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mp_20_biternary"


def build_sets(pool, n_generated: int, n_reference: int, n_train: int, seed: int):
    """Reference, train, generated and ground-truth lists as described in the module docstring."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))
    reference = [pool[i] for i in order[:n_reference]]
    train = [pool[i] for i in order[n_reference : n_reference + n_train]]
    generated, truth = [], []
    for _ in range(n_generated):
        u = rng.random()
        if u < 0.1 and generated:
            j = int(rng.integers(len(generated)))
            copy = generated[j].copy()
            copy.apply_operation(SymmOp.from_axis_angle_and_translation([0, 0, 1], 30.0))
            generated.append(copy)
            truth.append(truth[j])
            continue
        source = (
            reference[int(rng.integers(len(reference)))]
            if u < 0.8 or not train
            else train[int(rng.integers(len(train)))]
        )
        copy = source.copy()
        copy.perturb(0.05, seed=int(rng.integers(2**31)))
        generated.append(copy)
        truth.append(source)
    return reference, train, generated, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-generated", type=int, nargs="+", default=[1000])
    parser.add_argument("--n-reference", type=int, default=1000)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--fast", action="store_true", help="symmetry-reduced fingerprints")
    parser.add_argument("--no-warm", action="store_true", help="skip the warm-cache rerun")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", action="store_true", help="uniqueness at scale and per-crystal cost vs CDVAE")
    parser.add_argument("--unique-n", type=int, default=2000)
    parser.add_argument("--unique-kinds", type=int, default=200)
    parser.add_argument("--unique-prefix", type=int, default=300, help="crystals the all-pairs loop also runs on")
    parser.add_argument("--per-crystal", type=int, default=60, help="crystals per set for the per-crystal times")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.compare:
        print(json.dumps(compare(args)))
        return

    start = time.perf_counter()
    pool = read_structures(DATA / "val.csv.gz", progress=False).structures
    pool += read_structures(DATA / "test.csv.gz", progress=False).structures
    read_s = time.perf_counter() - start
    results = {"pool": len(pool), "read_s": round(read_s, 1), "fast": args.fast, "runs": []}
    for n in args.n_generated:
        reference, train, generated, truth = build_sets(pool, n, args.n_reference, args.n_train, args.seed)
        with tempfile.TemporaryDirectory() as folder:
            cache = FingerprintCache(Path(folder) / "fp.sqlite")
            runs = [("cold", cache)] + ([] if args.no_warm else [("warm", cache)])
            for label, store in runs:
                t0 = time.perf_counter()
                report = evaluate(
                    generated,
                    reference,
                    train,
                    "mp20",
                    ground_truth=truth,
                    n_jobs=args.jobs,
                    cache=store,
                    symmetry_reduced_fingerprints=args.fast,
                )
                wall = time.perf_counter() - t0
                results["runs"].append(
                    {
                        "cache": label,
                        "n_generated": n,
                        "n_reference": len(reference),
                        "n_train": len(train),
                        "wall_s": round(wall, 1),
                        "timings_s": report.timings,
                        "cpu_s": report.cpu_seconds,
                        "metrics": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in report.metrics.items()},
                    }
                )
                print(json.dumps(results["runs"][-1]), flush=True)
            cache.close()
    cold = [r for r in results["runs"] if r["cache"] == "cold"]
    if cold:
        # Measured figures only. The steps scale differently (fingerprints linearly in each set, pairwise steps such
        # as coverage and matching with the pairs they compare), so a linear extrapolation in the generated count
        # misleads; run the size you need (second command in the module docstring) for its figures.
        r = cold[-1]
        results["fingerprint_cpu_s_per_crystal"] = {
            "generated": round(r["cpu_s"]["fingerprints_generated"] / r["n_generated"], 4),
            "reference": round(r["cpu_s"]["fingerprints_reference"] / r["n_reference"], 4),
        }
    print(json.dumps(results))


def compare(args) -> dict:
    """Uniqueness on one composition and per-crystal suite vs CDVAE times, all in this one process."""
    from evaluate_compare import per_crystal, uniqueness

    pool = read_structures(DATA / "val.csv.gz", progress=False).structures
    large = [s for s in pool if 12 <= len(s) <= 24]
    both = pool + read_structures(DATA / "test.csv.gz", progress=False).structures  # 2,000+ ABC2 crystals
    figures = {"uniqueness": uniqueness(both, args.unique_n, args.unique_kinds, args.unique_prefix, args.seed)}
    figures["per_crystal"] = [
        per_crystal(pool, args.per_crystal, args.seed, "mp20"),
        per_crystal(large, args.per_crystal, args.seed, "mp20 12-24 atoms"),
    ]
    return figures


if __name__ == "__main__":
    main()
