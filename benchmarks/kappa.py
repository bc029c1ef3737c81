"""Kappa benchmark: Si, GaAs, NaCl against experiment, a smoothness probe, and phononDB-103 mSRE (Matbench Discovery).

Part ``trio``: MLIP-relaxed diamond Si, zincblende GaAs and rocksalt NaCl through phono3py (RTA, 300 K) next to the
experimental room-temperature values, with a smoothness probe of the potential: the even part (F(+d) + F(-d)) / 2
of the forces when one atom of a 2x2x2 conventional supercell moves by +-d. It is the signal finite-difference fc3
is built from and grows as d^2 on a smooth energy surface, so its growth from d = 0.01 to 0.03 A should be about 9
(ASE's EMT on fcc Cu, the control, gives 9.00).

Part ``phonondb``: a stratified subset (every k-th compound of each prototype, sorted by DFT kappa) of the 103
binaries of ../shared/data/kappa_phonondb_103: each prototype (rocksalt 225, zincblende 216, wurtzite 186) is built
from covalent radii, relaxed with the symmetry fixed (ASE FixSymmetry), and its kappa at 300 K computed with
crysloop's kappa stage; the symmetric relative error 2|k_ML - k_DFT| / (k_ML + k_DFT), 2 for a failure or imaginary
modes, is averaged (mSRE). Settings follow Matbench Discovery where ours differ: 0.03 A displacements, isotope
scattering, symmetry-constrained relaxation.
Usage: python benchmarks/kappa.py --mlip sevenn-0 --part trio|phonondb|all [--n 21] [--start K] [--stop K]
       python benchmarks/kappa.py --mlip sevenn-0 --merge run1.log run2.log   (summary of split phonondb runs)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import time
from pathlib import Path

from ase.data import atomic_numbers, covalent_radii
from pymatgen.core import Composition, Lattice, Structure

from crysloop.kappa.conductivity import KappaConfig, compute_kappa
from crysloop.screening.potentials import batch_forces, get_calculator
from crysloop.screening.relax import RelaxConfig, relax_structure

PHONONDB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kappa_phonondb_103" / "kappa_dft.csv"
IMAGINARY_THZ = -0.05  # a mode below this on the kappa mesh counts as a failed (dynamically unstable) calculation

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


def prototype(formula: str, spacegroup: int) -> Structure:
    """Rocksalt (225), zincblende (216) or wurtzite (186) AB with the bond length from covalent radii."""
    a_el, b_el = [str(e) for e in Composition(formula).elements]
    bond = float(covalent_radii[atomic_numbers[a_el]] + covalent_radii[atomic_numbers[b_el]])
    if spacegroup == 225:
        return Structure.from_spacegroup(225, Lattice.cubic(2 * bond), [a_el, b_el], [[0, 0, 0], [0.5] * 3])
    if spacegroup == 216:
        return Structure.from_spacegroup(
            216, Lattice.cubic(4 * bond / math.sqrt(3)), [a_el, b_el], [[0, 0, 0], [0.25] * 3]
        )
    if spacegroup == 186:
        a = bond * math.sqrt(8 / 3)
        lattice = Lattice.hexagonal(a, a * math.sqrt(8 / 3))
        return Structure.from_spacegroup(186, lattice, [a_el, b_el], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 3 / 8]])
    raise ValueError(f"no prototype for space group {spacegroup}")


def stratified(rows: list[dict], n: int) -> list[dict]:
    """About ``n`` rows: per space group, sorted by DFT kappa, evenly spaced picks (covers low to high kappa)."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["spacegroup_number"], []).append(row)
    picked = []
    per_group = max(1, round(n / len(groups)))
    for members in groups.values():
        members.sort(key=lambda r: float(r["kappa_dft_300K"]))
        step = len(members) / per_group
        picked += [members[int((i + 0.5) * step)] for i in range(per_group)]
    return picked


def sre(k_ml: float | None, k_dft: float) -> float:
    """Symmetric relative error; 2 (the maximum) for a failed calculation."""
    if k_ml is None or not math.isfinite(k_ml) or k_ml <= 0:
        return 2.0
    return 2 * abs(k_ml - k_dft) / (k_ml + k_dft)


def kappa_of(
    structure: Structure, calculator, name: str, config: KappaConfig, relax: RelaxConfig
) -> tuple[dict, Structure]:
    """Relax (symmetry fixed) then kappa at 300 K: times, the lowest frequency on the mesh, and the relaxed cell."""
    start = time.perf_counter()
    relaxed = relax_structure(structure, calculator, config=relax)
    relax_s = time.perf_counter() - start
    if not relaxed.ok:
        return {"error": relaxed.error, "relax_s": round(relax_s, 1)}, relaxed.structure
    outcome = compute_kappa(relaxed.structure, calculator, config, calculator_name=name, progress=False)
    return {
        "kappa_300K": outcome.kappa_average[0],
        "converged": relaxed.converged,
        "volume_per_atom": round(relaxed.structure.volume / len(relaxed.structure), 3),
        "n_displacements": outcome.n_displacements,
        "min_frequency_thz": round(outcome.min_frequency_thz, 4),
        "relax_s": round(relax_s, 1),
        "kappa_s": round(outcome.wall_time_s, 1),
    }, relaxed.structure


def run_trio(calculator, name: str, config: KappaConfig, relax: RelaxConfig) -> dict:
    rows = {}
    for formula, (structure, experiment) in CRYSTALS.items():
        row, relaxed = kappa_of(structure, calculator, name, config, relax)
        even = {d: even_force(relaxed, calculator, d) for d in (0.01, 0.03)}
        kappa = row.get("kappa_300K")
        row.update(
            {
                "kappa_300K": None if kappa is None else round(kappa, 3),
                "experiment_300K": experiment,
                "ratio_to_experiment": None if kappa is None else round(kappa / experiment, 3),
                "a_relaxed": round(relaxed.lattice.a, 4),
                "even_force_growth": round(even[0.03] / even[0.01], 2),  # ~9 on a smooth energy surface
            }
        )
        rows[formula] = row
        print(f"{formula:5s} {json.dumps(row)}", flush=True)
    from ase.calculators.emt import EMT

    copper = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    control = even_force(copper, EMT(), 0.03) / even_force(copper, EMT(), 0.01)
    kappas = {f: rows[f]["kappa_300K"] or 0.0 for f in rows}
    return {
        "structures": rows,
        "control_emt_cu_even_force_growth": round(control, 2),
        "order_matches_experiment": kappas["Si"] > kappas["GaAs"] > kappas["NaCl"],
        "all_within_2.5x": all(
            r["ratio_to_experiment"] and 1 / 2.5 <= r["ratio_to_experiment"] <= 2.5 for r in rows.values()
        ),
    }


def run_phonondb(
    calculator, name: str, config: KappaConfig, relax: RelaxConfig, n: int, start: int = 0, stop: int | None = None
) -> dict:
    with PHONONDB.open() as handle:
        rows = stratified(list(csv.DictReader(handle)), n)[start:stop]
    results = []
    for row in rows:
        k_dft = float(row["kappa_dft_300K"])
        try:
            out, _ = kappa_of(prototype(row["formula"], int(row["spacegroup_number"])), calculator, name, config, relax)
        except Exception as exc:
            out = {"error": f"{type(exc).__name__}: {exc}"}
        k_ml = out.get("kappa_300K")
        if k_ml is not None and out["min_frequency_thz"] < IMAGINARY_THZ:
            out["error"] = "imaginary modes"
        error = sre(None if "error" in out else k_ml, k_dft)
        results.append(
            {
                "formula": row["formula"],
                "spacegroup": int(row["spacegroup_number"]),
                "kappa_dft": k_dft,
                "kappa_ml": None if k_ml is None else round(k_ml, 3),
                "sre": round(error, 3),
                **out,
            }
        )
        print(json.dumps(results[-1]), flush=True)
    return phonondb_summary(results)


def phonondb_summary(results: list[dict]) -> dict:
    """mSRE, failures and time per compound over per-compound result rows (one run's or several split runs')."""
    errors = [r["sre"] for r in results]
    return {
        "n_compounds": len(results),
        "msre": round(sum(errors) / len(errors), 3),
        "failed": sum("error" in r for r in results),
        "seconds_per_compound": round(
            sum(r.get("relax_s", 0) + r.get("kappa_s", 0) for r in results) / len(results), 1
        ),
        "compounds": {r["formula"] + f"-{r['spacegroup']}": [r["kappa_ml"], r["kappa_dft"], r["sre"]] for r in results},
    }


def main() -> None:
    """Run the selected parts with one potential and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlip", default="sevenn-l3i5")
    parser.add_argument("--part", choices=("trio", "phonondb", "all"), default="all")
    parser.add_argument("--n", type=int, default=21, help="phononDB compounds (stratified by prototype and kappa)")
    parser.add_argument("--start", type=int, default=0, help="skip the first compounds of the subset (to split a run)")
    parser.add_argument("--stop", type=int, default=None, help="end before this compound of the subset")
    parser.add_argument("--mesh", type=int, default=19, help="q-mesh n (n x n x n)")
    parser.add_argument("--fc3-min-length", type=float, default=6.0)
    parser.add_argument("--fc2-min-length", type=float, default=12.0)
    parser.add_argument("--displacement", type=float, default=0.03)
    parser.add_argument("--no-isotope", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="LOG",
        help="Only summarise the per-compound lines of the logs of split phonondb runs (--start).",
    )
    args = parser.parse_args()
    if args.merge:
        rows, mlips = {}, set()
        for log in args.merge:
            for line in log.read_text().splitlines():
                if line.startswith('{"formula"'):
                    row = json.loads(line)
                    rows[(row["formula"], row["spacegroup"])] = row  # a compound two split runs both did counts once
                elif line.startswith('{"benchmark"'):
                    mlips.add(json.loads(line)["mlip"])  # runs stopped early have no summary line to say
        print(
            json.dumps(
                {
                    "benchmark": "kappa",
                    "mlip": sorted(mlips),
                    "merged_logs": [str(p) for p in args.merge],
                    "phonondb": phonondb_summary(list(rows.values())),
                }
            )
        )
        return
    config = KappaConfig(
        fc3_min_length=args.fc3_min_length,
        fc2_min_length=args.fc2_min_length,
        displacement=args.displacement,
        mesh=(args.mesh,) * 3,
        temperatures=(300.0,),
        is_isotope=not args.no_isotope,
    )
    relax = RelaxConfig(fmax=0.005, steps=300, fix_symmetry=True)
    calculator = get_calculator(args.mlip, device=args.device)
    summary: dict = {
        "benchmark": "kappa",
        "mlip": args.mlip,
        "device": args.device,
        "machine": platform.machine(),
        "method": "RTA",
        "mesh": [args.mesh] * 3,
        "fc3_min_length": args.fc3_min_length,
        "fc2_min_length": args.fc2_min_length,
        "displacement": args.displacement,
        "isotope": not args.no_isotope,
        "relaxation": "FixSymmetry, fmax 0.005",
    }
    if args.part in ("trio", "all"):
        summary["trio"] = run_trio(calculator, args.mlip, config, relax)
    if args.part in ("phonondb", "all"):
        summary["phonondb"] = run_phonondb(calculator, args.mlip, config, relax, args.n, args.start, args.stop)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
