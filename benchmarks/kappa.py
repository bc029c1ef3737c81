"""Kappa benchmark: MLIP-relaxed (CHGNet by default) diamond Si, zincblende GaAs and rocksalt NaCl through phono3py (RTA, 300 K).

Prints a table, then one JSON line: time per structure and kappa next to the experimental room-temperature values,
and a smoothness probe of the potential: the even part (F(+d) + F(-d)) / 2 of the forces when one atom of a 2x2x2
conventional supercell moves by +-d. It is the signal finite-difference fc3 is built from and grows as d^2 on a
smooth energy surface, so its growth from d = 0.01 to 0.03 A should be about 9 (ASE's EMT on fcc Cu, the control,
gives 9.00).
Usage: python benchmarks/kappa.py [--mlip chgnet] [--mesh 19] [--device cpu] [--fc2-min-length 12]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from pymatgen.core import Lattice, Structure

from crysloop.kappa.conductivity import KappaConfig, compute_kappa
from crysloop.screening.potentials import batch_forces, get_calculator
from crysloop.screening.relax import relax_structure

# Experimental kappa at ~300 K (W/m/K): Si ~150 (Glassbrenner & Slack 1964), GaAs ~50 (Carlson et al. 1965),
# NaCl ~7 (Hakansson & Andersson 1986).
CRYSTALS = {
    "Si": (Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]]), 150.0),
    "GaAs": (Structure.from_spacegroup("F-43m", Lattice.cubic(5.653), ["Ga", "As"], [[0, 0, 0], [0.25] * 3]), 50.0),
    "NaCl": (Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.640), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]), 7.0),
}


def even_force(structure: Structure, calculator, d: float) -> float:
    """Largest component of (F(+d) + F(-d)) / 2 when atom 0 of the 2x2x2 supercell moves by d along x (eV/A)."""
    cells = []
    for sign in (1, -1):
        cell = structure * (2, 2, 2)
        cell.translate_sites([0], [sign * d, 0, 0], frac_coords=False, to_unit_cell=False)
        cells.append(cell)
    plus, minus = batch_forces(cells, calculator)
    return float(abs(plus + minus).max() / 2)


def main() -> None:
    """Relax each crystal with the MLIP, compute kappa(300 K), report against experiment."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mesh", type=int, default=19, help="q-mesh n (n x n x n)")
    parser.add_argument("--fc3-min-length", type=float, default=6.0)
    parser.add_argument("--fc2-min-length", type=float, default=12.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mlip", default="chgnet", help="chgnet (offline), mattersim-1m or mattersim-5m")
    args = parser.parse_args()
    config = KappaConfig(fc3_min_length=args.fc3_min_length, fc2_min_length=args.fc2_min_length,
                         mesh=(args.mesh,) * 3, temperatures=(300.0,))  # fmt: skip
    calculator = get_calculator(args.mlip, device=args.device)
    rows = {}
    for name, (structure, experiment) in CRYSTALS.items():
        start = time.perf_counter()
        relaxed = relax_structure(structure, calculator, fmax=0.005)
        relax_s = time.perf_counter() - start
        outcome = compute_kappa(relaxed.structure, calculator, config, calculator_name=args.mlip, progress=False)
        even = {d: even_force(relaxed.structure, calculator, d) for d in (0.01, 0.03)}
        rows[name] = {
            "kappa_300K": round(outcome.kappa_average[0], 3),
            "experiment_300K": experiment,
            "ratio_to_experiment": round(outcome.kappa_average[0] / experiment, 3),
            "a_relaxed": round(relaxed.structure.lattice.a, 4),  # conventional cubic cell
            "n_displacements": outcome.n_displacements,
            "min_frequency_thz": round(outcome.min_frequency_thz, 4),
            "relax_s": round(relax_s, 1),
            "kappa_s": round(outcome.wall_time_s, 1),
            "even_force_0.01": round(even[0.01], 6),
            "even_force_0.03": round(even[0.03], 6),
            "even_force_growth": round(even[0.03] / even[0.01], 2),  # ~9 on a smooth energy surface
        }
        print(f"{name:5s} kappa(300 K) = {outcome.kappa_average[0]:8.2f} W/m/K  (experiment ~{experiment:g}); "
              f"{outcome.n_displacements} supercells, relax {relax_s:.0f} s, kappa {outcome.wall_time_s:.0f} s",
              flush=True)  # fmt: skip
    from ase.calculators.emt import EMT

    copper = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    control = even_force(copper, EMT(), 0.03) / even_force(copper, EMT(), 0.01)
    order = sorted(rows, key=lambda n: -rows[n]["kappa_300K"])
    summary = {
        "benchmark": "kappa",
        "mlip": args.mlip,
        "device": args.device,
        "machine": platform.machine(),
        "method": "RTA",
        "mesh": [args.mesh] * 3,
        "fc3_min_length": args.fc3_min_length,
        "fc2_min_length": args.fc2_min_length,
        "structures": rows,
        "control_emt_cu_even_force_growth": round(control, 2),
        "order_matches_experiment": order == ["Si", "GaAs", "NaCl"],
        "seconds_per_structure": round(sum(r["relax_s"] + r["kappa_s"] for r in rows.values()) / len(rows), 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
