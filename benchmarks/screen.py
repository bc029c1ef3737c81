"""MLIP screening throughput on MP-20 crystals (../shared/data/mp_20_sample/test.csv.gz) on the CPU.

Relaxes the first N test crystals (cell and positions, FIRE, fmax and step limit as in the screen flow) one at a
time, then ``--batch-size`` per forward pass, then one at a time split over ``--workers`` worker processes (as the
campaign's ``processes`` executor does; worker start-up and model loading included), and times the phonon check
(default 10 A supercell) on the first ``--phonons`` relaxed crystals. Throughput counts converged relaxations
only; failed and unconverged (step limit) ones are reported apart as a failure rate. The last line printed is one
JSON object.

    nice -n 10 .venv/bin/python benchmarks/screen.py --n 100 --phonons 5
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from crysloop.data.datasets import read_structures
from crysloop.infra.executors import limit_threads
from crysloop.screening.phonons import PhononConfig, phonon_stability
from crysloop.screening.potentials import get_calculator
from crysloop.screening.relax import RelaxConfig, relax_structures

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mp_20_sample" / "test.csv.gz"


def _relax(structures, calc, config, batch_size):
    """Relax and time; throughput counts converged relaxations only, failures and step-limit hits are apart."""
    started = time.perf_counter()
    results = relax_structures(structures, calc, batch_size=batch_size, config=config)
    minutes = (time.perf_counter() - started) / 60
    ok = [r for r in results if r.ok]
    return results, {
        "batch_size": batch_size,
        "wall_s": round(minutes * 60, 1),
        "converged_per_min": round(len(ok) / minutes, 2),
        "converged": len(ok),
        "unconverged": sum(r.status == "unconverged" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "failure_rate": round((len(results) - len(ok)) / len(results), 3),
        "mean_steps": round(float(np.mean([r.steps for r in ok])), 1) if ok else None,
        "errors": [r.error for r in results if r.status == "failed"],
    }


def _relax_part(args) -> list:
    structures, mlip, config = args
    return relax_structures(structures, get_calculator(mlip, "cpu"), batch_size=1, config=config)


def _relax_in_processes(structures, mlip, config, workers: int, threads: int) -> dict:
    parts = [structures[i::workers] for i in range(workers)]
    started = time.perf_counter()
    with ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=limit_threads, initargs=(threads,)
    ) as pool:
        results = [r for part in pool.map(_relax_part, [(p, mlip, config) for p in parts]) for r in part]
    minutes = (time.perf_counter() - started) / 60
    converged = sum(r.ok for r in results)
    return {
        "workers": workers,
        "threads_per_worker": threads,
        "wall_s": round(minutes * 60, 1),
        "converged_per_min": round(converged / minutes, 2),
        "converged": converged,
        "failure_rate": round((len(results) - converged) / len(results), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="MP-20 test crystals to relax")
    parser.add_argument("--mlip", default="sevenn-l3i5")
    parser.add_argument("--fmax", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--phonons", type=int, default=5, help="relaxed crystals to phonon-check")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (per worker process too)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the parallel run (0: skip)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)

    records = read_structures(DATA)[: args.n]
    structures = [r.structure for r in records]
    calc = get_calculator(args.mlip, "cpu")
    config = RelaxConfig(fmax=args.fmax, steps=args.steps)
    relax_structures(structures[:1], calc, config=RelaxConfig(steps=2))  # warm-up

    sequential, seq_stats = _relax(structures, calc, config, 1)
    print("one at a time:", seq_stats, flush=True)
    batched, batch_stats = _relax(structures, calc, config, args.batch_size)
    print("batched:", batch_stats, flush=True)
    parallel = _relax_in_processes(structures, args.mlip, config, args.workers, args.threads) if args.workers else None
    print("worker processes:", parallel, flush=True)
    both = [(a, b) for a, b in zip(sequential, batched, strict=True) if a.ok and b.ok]
    energy_diff = max((abs(a.energy_per_atom - b.energy_per_atom) for a, b in both), default=0.0)

    phonon_times, phonon_rows = [], []
    for result in [r for r in sequential if r.ok][: args.phonons]:
        outcome = phonon_stability(result.structure, calc, PhononConfig())
        phonon_times.append(outcome.wall_time_s)
        phonon_rows.append(
            {
                "formula": result.structure.composition.reduced_formula,
                "nsites": len(result.structure),
                "supercell_atoms": len(result.structure) * int(np.prod(np.diag(outcome.supercell_matrix))),
                "displacements": outcome.n_displacements,
                "stable": outcome.stable,
                "min_frequency_thz": round(outcome.min_frequency_thz, 3),
                "wall_s": round(outcome.wall_time_s, 1),
            }
        )
        print("phonons:", phonon_rows[-1], flush=True)

    print(
        json.dumps(
            {
                "benchmark": "screen",
                "mlip": args.mlip,
                "device": "cpu",
                "torch_threads": args.threads,
                "n": len(structures),
                "fmax": args.fmax,
                "steps": args.steps,
                "mean_nsites": round(float(np.mean([len(s) for s in structures])), 1),
                "one_at_a_time": seq_stats,
                "batched": batch_stats,
                "batched_speedup": round(batch_stats["converged_per_min"] / seq_stats["converged_per_min"], 2),
                "processes": parallel,
                "processes_speedup": round(parallel["converged_per_min"] / seq_stats["converged_per_min"], 2)
                if parallel
                else None,
                "max_energy_diff_ev_per_atom": round(energy_diff, 4),
                "phonon_s_per_structure": round(float(np.mean(phonon_times)), 1) if phonon_times else None,
                "phonon_stable": sum(r["stable"] for r in phonon_rows),
                "phonon_checked": len(phonon_rows),
            }
        )
    )


if __name__ == "__main__":
    main()
