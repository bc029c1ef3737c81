"""Peak memory of one phonon stability check (10 A supercell, CHGNet on the CPU) of an MP-20 test crystal.

Picks the crystal by reduced formula from ../shared/data/mp_20_sample/test.csv.gz (unrelaxed: memory depends on
the supercell, not on the forces being small). The last line printed is one JSON object with the supercell size,
the peak resident memory of the process (ru_maxrss) and the wall time.

    /usr/bin/time -v .venv/bin/python benchmarks/phonon_memory.py --formula LiMnO2
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from crysloop.data.datasets import read_structures
from crysloop.screening.phonons import phonon_stability
from crysloop.screening.potentials import get_calculator

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mp_20_sample" / "test.csv.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formula", default="LiMnO2")
    parser.add_argument("--min-length", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    records = read_structures(DATA, progress=False, workers=1)
    structure = next(r.structure for r in records if r.structure.composition.reduced_formula == args.formula)
    calculator = get_calculator("chgnet", "cpu")
    started = time.perf_counter()
    result = phonon_stability(structure, calculator, min_length=args.min_length)
    print(
        json.dumps(
            {
                "benchmark": "phonon_memory",
                "formula": args.formula,
                "nsites": len(structure),
                "supercell_atoms": len(structure) * int(np.prod(np.diag(result.supercell_matrix))),
                "displacements": result.n_displacements,
                "wall_s": round(time.perf_counter() - started, 1),
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
