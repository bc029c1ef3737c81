"""The shipped Janus III-VI bilayer subset: size, label ranges, build time per bilayer, proper-bilayer fraction.

Reads crysloop/assets/datasets/vdw_iii_vi_mini (manifest and splits), checks every bilayer with the layer analysis
of ``crysloop evaluate --layered`` (a sanity check: the builder's own output should be proper bilayers), and times
``--time N`` fresh bilayer relaxations (positions + in-plane cell, MLIP + D3, the manifest's fmax and step limit) in
this process. The last line printed is one JSON object.

    nice -n 10 .venv/bin/python benchmarks/vdw.py --time 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from crysloop.data.datasets import read_structures
from crysloop.evaluation.layers import analyse_layers
from crysloop.vdw.bilayers import Stacking, make_bilayer
from crysloop.vdw.build import BuildConfig, relax_bilayer
from crysloop.vdw.monolayers import all_monolayers

SUBSET = Path(__file__).resolve().parents[1] / "crysloop" / "assets" / "datasets" / "vdw_iii_vi_mini"


def _time_relaxations(n: int, manifest: dict) -> float | None:
    """Mean wall seconds per bilayer relaxation (and its two single points) on ``n`` heterobilayers."""
    if n < 1:
        return None
    settings = manifest["config"]
    config = BuildConfig(mlip=settings["mlip"], damping=settings["damping"], fmax=settings["fmax"],
                         steps=settings["steps"], device="cpu")  # fmt: skip
    layers = all_monolayers()
    rng = np.random.default_rng(1)
    seconds = []
    for _ in range(n + 1):  # the first one loads the potential and is not counted
        lower, upper = (layers[i] for i in rng.choice(len(layers), 2, replace=False))
        stacking = Stacking(lower.name, upper.name, False, bool(rng.integers(2)), 0, "AB")
        bilayer = make_bilayer(lower.structure(), upper.structure(), stacking)
        started = time.perf_counter()
        relax_bilayer(bilayer.as_dict(), list(bilayer.site_properties["layer"]), config)
        seconds.append(time.perf_counter() - started)
    seconds = seconds[1:]
    return float(np.mean(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=Path, default=SUBSET)
    parser.add_argument("--time", type=int, default=3, help="Fresh bilayer relaxations to time (0 = none).")
    args = parser.parse_args()
    torch.set_num_threads(1)
    manifest = json.loads((args.subset / "manifest.json").read_text())
    records = [r for split in ("train", "val", "test") for r in read_structures(args.subset / f"{split}.csv.gz", progress=False)]
    categories = [analyse_layers(r.structure).category for r in records]
    keys = ("formation_energy_per_atom", "binding_energy", "interlayer_distance", "strain_lower", "strain_upper")
    ranges = {k: [round(min(r.properties[k] for r in records), 4), round(max(r.properties[k] for r in records), 4)] for k in keys}
    result = {
        "bilayers": len(records),
        "splits": manifest["splits"],
        "monolayers": manifest["monolayers"],
        "pairs": len({(r.properties["lower"], r.properties["upper"]) for r in records}),
        "converged_fraction": round(float(np.mean([bool(r.properties["converged"]) for r in records])), 4),
        "label_ranges": ranges,
        "binding_energy_units": "meV/A^2",
        "proper_bilayer_fraction": round(categories.count("proper_bilayer") / len(records), 4),
        "build_seconds_per_bilayer_manifest": manifest["seconds_per_bilayer_this_run"],
        "relax_seconds_per_bilayer_now": _time_relaxations(args.time, manifest),
        "fmax": manifest["config"]["fmax"],
        "mlip": manifest["config"]["key"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
