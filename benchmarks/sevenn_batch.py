"""SevenNet batched vs one-at-a-time forces on displaced supercells: speed ratio and agreement.

``--n`` randomly displaced (0.03 A) 2x2x2 supercells of diamond Si (64 atoms, as phonopy/phono3py evaluate) are
evaluated by the ASE calculator one at a time, then by :func:`crysloop.screening.potentials.predict_sevenn` in
batches of ``--batch-size``; each path runs ``--repeats`` times after one warm-up pass and the best time counts.
The last line printed is one JSON object.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sevenn_batch.py --mlip sevenn-0 --device cpu
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from crysloop.screening.potentials import atom_batches, get_calculator, predict_sevenn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlip", default="sevenn-0", choices=("sevenn-0", "sevenn-l3i5"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    calculator = get_calculator(args.mlip, args.device)
    cell = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.47), ["Si"], [[0, 0, 0]]) * (2, 2, 2)
    rng = np.random.default_rng(0)
    atoms_list = []
    for _ in range(args.n):
        atoms = AseAtomsAdaptor.get_atoms(cell)
        atoms.positions += rng.normal(0.0, 0.03, atoms.positions.shape)
        atoms_list.append(atoms)

    def serial() -> list[np.ndarray]:
        out = []
        for atoms in atoms_list:
            copy = atoms.copy()
            copy.calc = calculator
            out.append(copy.get_forces())
        return out

    def batched() -> list[np.ndarray]:
        batches = atom_batches([len(a) for a in atoms_list], args.batch_size, max_atoms=10_000)
        return [p.forces for b in batches for p in predict_sevenn(calculator, atoms_list[b.start : b.stop])]

    timings, forces = {}, {}
    for name, run in (("serial", serial), ("batched", batched)):
        forces[name] = run()  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
        timings[name] = best
    difference = max(float(np.abs(a - b).max()) for a, b in zip(forces["serial"], forces["batched"], strict=True))
    print(
        json.dumps(
            {
                "benchmark": "sevenn_batch",
                "mlip": args.mlip,
                "device": args.device,
                "n": args.n,
                "atoms_per_cell": len(cell),
                "batch_size": args.batch_size,
                "serial_s": round(timings["serial"], 2),
                "batched_s": round(timings["batched"], 2),
                "batched_speedup": round(timings["serial"] / timings["batched"], 2),
                "max_force_difference_ev_per_a": difference,
            }
        )
    )


if __name__ == "__main__":
    main()
