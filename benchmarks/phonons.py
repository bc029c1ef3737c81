"""Phonon false alarms on known materials: how often the phonon check flags MP-20 crystals near the hull as unstable.

The first ``--n`` MP-20 test crystals (../shared/data/mp_20_sample/test.csv.gz; every row is a known compound within
0.08 eV/atom of the DFT hull, most of them dynamically stable) with at most ``--max-sites`` sites are relaxed with
each potential (fmax 0.01 eV/A, as the screen flow does) and phonon-checked with supercells of each minimum plane
spacing in ``--lengths``. A crystal is flagged when its lowest counted frequency is below -tolerance; the fraction
flagged is reported for each supercell size and each tolerance in ``--tolerances`` (one phonon calculation serves all
tolerances). The last line printed is one JSON object.
Usage: python benchmarks/phonons.py --mlip sevenn-l3i5 chgnet --n 30 --lengths 6 10
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import time
import warnings
from pathlib import Path

from pymatgen.core import Structure

from crysloop.screening.phonons import PhononConfig, phonon_stability
from crysloop.screening.potentials import get_calculator
from crysloop.screening.relax import RelaxConfig, relax_structures

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mp_20_sample" / "test.csv.gz"


def known_crystals(n: int, max_sites: int) -> list[tuple[str, str, Structure]]:
    """(material id, formula, structure) of the first ``n`` test rows with at most ``max_sites`` sites."""
    with gzip.open(DATA, "rt") as handle:
        rows = list(csv.DictReader(handle))
    picked = []
    for row in rows:
        structure = Structure.from_str(row["cif"], fmt="cif")
        if len(structure) <= max_sites:
            picked.append((row["material_id"], row["pretty_formula"], structure))
        if len(picked) == n:
            break
    return picked


def evaluate(mlip: str, crystals, lengths: list[float], tolerances: list[float]) -> dict:
    calculator = get_calculator(mlip, "cpu")
    started = time.perf_counter()
    relaxed = relax_structures([s for _, _, s in crystals], calculator, config=RelaxConfig(fmax=0.01, steps=500))
    relax_s = time.perf_counter() - started
    rows = []
    for (material_id, formula, _), result in zip(crystals, relaxed, strict=True):
        if not result.ok:
            continue
        for length in lengths:  # both sizes per crystal, so a partial run still compares them on the same crystals
            outcome = phonon_stability(result.structure, calculator, PhononConfig(min_length=length))
            rows.append(
                {
                    "material_id": material_id,
                    "formula": formula,
                    "length": length,
                    "min_frequency_thz": round(outcome.min_frequency_thz, 3),
                    "wall_s": round(outcome.wall_time_s, 1),
                }
            )
            print(mlip, json.dumps(rows[-1]), flush=True)
    per_length = {}
    for length in lengths:
        minima = [r["min_frequency_thz"] for r in rows if r["length"] == length]
        per_length[str(length)] = {
            f"{tol:g}": round(sum(m < -tol for m in minima) / len(minima), 3) for tol in tolerances
        }
        per_length[str(length)]["checked"] = len(minima)
    return {
        "relaxed": sum(r.ok for r in relaxed),
        "not_ok": sum(not r.ok for r in relaxed),
        "relax_s": round(relax_s, 1),
        "fraction_flagged": per_length,  # per supercell min length (A): per tolerance (THz)
        "phonon_s_per_crystal": round(sum(r["wall_s"] for r in rows) / max(1, len(rows)), 1),
        "worst": sorted(rows, key=lambda r: r["min_frequency_thz"])[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlip", nargs="+", default=["sevenn-l3i5", "chgnet"])
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--max-sites", type=int, default=8)
    parser.add_argument("--lengths", type=float, nargs="+", default=[6.0, 10.0])
    parser.add_argument("--tolerances", type=float, nargs="+", default=[0.01, 0.1, 0.2, 0.3, 0.5])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    crystals = known_crystals(args.n, args.max_sites)
    summary = {
        "benchmark": "phonons",
        "n": len(crystals),
        "max_sites": args.max_sites,
        "lengths": args.lengths,
        "tolerances_thz": args.tolerances,
        "potentials": {},
    }
    for mlip in args.mlip:
        summary["potentials"][mlip] = evaluate(mlip, crystals, args.lengths, args.tolerances)
        print(mlip, json.dumps(summary["potentials"][mlip]), flush=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
