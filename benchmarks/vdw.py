"""The shipped Janus III-VI bilayer subset: size, label ranges, build time per bilayer, proper-bilayer fraction.

Reads crysloop/assets/datasets/vdw_iii_vi_mini (manifest and splits), checks every bilayer with the layer analysis
of ``crysloop evaluate --layered`` (a sanity check: the builder's own output should be proper bilayers), and times
``--time N`` fresh bilayer relaxations (positions + in-plane cell, MLIP + D3, the manifest's fmax and step limit) in
this process (from unrelaxed monolayers, so a few more steps than in the build). It also counts the distinct 1x1
bilayers of all 45 x 45 ordered pairs (48,600 stackings) by their plane/site sequences up to in-plane symmetry and
turning over, checked against the builder's StructureMatcher deduplication on three pairs; J2DH-8 has 19,926.
The last line printed is one JSON object.

    nice -n 10 .venv/bin/python benchmarks/vdw.py --time 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from crysloop.data.datasets import read_structures
from crysloop.evaluation.layers import analyse_layers
from crysloop.vdw.bilayers import REGISTRIES, Stacking, make_bilayer, pair_bilayers
from crysloop.vdw.build import BuildConfig, relax_bilayer
from crysloop.vdw.monolayers import all_monolayers

SUBSET = Path(__file__).resolve().parents[1] / "crysloop" / "assets" / "datasets" / "vdw_iii_vi_mini"


_THIRDS = {"A": (0, 0), "B": (1, 2), "C": (2, 1)}  # in-plane sites of the 1x1 cell, in thirds of a and b
_SITE = {v: k for k, v in _THIRDS.items()}


def _move(site: str, shift: tuple[int, int], sign: int = 1) -> str:
    x, y = _THIRDS[site]
    return _SITE[((sign * x + shift[0]) % 3, (sign * y + shift[1]) % 3)]


def _canonical(planes: list[tuple[str, str]]) -> tuple:
    """The (element, site) sequence up to in-plane translation, in-plane inversion and turning the bilayer over."""
    variants = []
    for sequence in (planes, planes[::-1]):
        x, y = _THIRDS[sequence[0][1]]
        for sign in (1, -1):
            variants.append(tuple((e, _move(site, (-sign * x % 3, -sign * y % 3), sign)) for e, site in sequence))
    return min(variants)


def _stacking_planes(lower, upper, stacking: Stacking) -> list[tuple[str, str]]:
    def planes(layer, flipped):
        sequence = [(layer.bottom[1], "B"), (layer.bottom[0], "A"), (layer.top[0], "A"), (layer.top[1], "B")]
        return sequence[::-1] if flipped else sequence

    shift = tuple(round(3 * f) for f in REGISTRIES[stacking.registry])
    sign = -1 if stacking.rotation == 60 else 1
    top = [(e, _move(site, shift, sign)) for e, site in planes(upper, stacking.upper_flipped)]
    return planes(lower, stacking.lower_flipped) + top


def count_distinct_bilayers() -> tuple[int, int, bool]:
    """(stackings, distinct bilayers) over all ordered pairs, and whether three pairs agree with StructureMatcher."""
    layers = {m.name: m for m in all_monolayers()}
    flips = list(itertools.product((False, True), repeat=2))

    def distinct(pairs) -> set:
        return {_canonical(_stacking_planes(layers[a], layers[b], Stacking(a, b, fl, fu, rot, reg)))
                for a, b in pairs for (fl, fu), rot, reg in itertools.product(flips, (0, 60), REGISTRIES)}  # fmt: skip

    every = distinct(itertools.product(layers, layers))
    checks = [("Se-Ga-Ga-Se", "Se-Ga-Ga-Se"), ("S-Al-Al-Se", "S-Al-Ga-Te"), ("S-Al-Al-S", "S-Al-Al-Se")]
    agree = all(
        len(distinct({(a, b), (b, a)})) == len(pair_bilayers({n: layers[n].structure() for n in (a, b)}, a, b))
        for a, b in checks
    )
    return len(layers) ** 2 * len(flips) * 2 * len(REGISTRIES), len(every), agree


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
    records = [r for split in ("train", "val", "test")
               for r in read_structures(args.subset / f"{split}.csv.gz", progress=False)]  # fmt: skip
    categories = [analyse_layers(r.structure).category for r in records]
    stackings, distinct, agree = count_distinct_bilayers()
    keys = ("formation_energy_per_atom", "binding_energy", "interlayer_distance", "strain_lower", "strain_upper")
    ranges = {k: [round(min(r.properties[k] for r in records), 4), round(max(r.properties[k] for r in records), 4)]
              for k in keys}  # fmt: skip
    result = {
        "bilayers": len(records),
        "splits": manifest["splits"],
        "monolayers": manifest["monolayers"],
        "monolayer_pairs": len({tuple(sorted((r.properties["lower"], r.properties["upper"]))) for r in records}),
        "converged_fraction": round(float(np.mean([bool(r.properties["converged"]) for r in records])), 4),
        "label_ranges": ranges,
        "binding_energy_units": "meV/A^2",
        "proper_bilayer_fraction": round(categories.count("proper_bilayer") / len(records), 4),
        "build_relax_seconds_per_bilayer": manifest["relax_seconds_per_bilayer_recorded"],
        "build_relax_steps_per_bilayer": manifest["relax_steps_per_bilayer"],
        "relax_seconds_per_bilayer_now": _time_relaxations(args.time, manifest),
        "all_pairs_stackings": stackings,
        "all_pairs_distinct_bilayers": distinct,
        "distinct_count_agrees_with_structure_matcher": agree,
        "fmax": manifest["config"]["fmax"],
        "mlip": manifest["config"]["key"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
