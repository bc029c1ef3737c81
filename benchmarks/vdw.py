"""The shipped Janus III-VI bilayer subset: size, label ranges, build time per bilayer, proper-bilayer fraction.

Reads crysloop/assets/datasets/vdw_iii_vi_mini (manifest and splits), checks every bilayer with the layer analysis
of ``crysloop evaluate --layered`` (a sanity check: the builder's own output should be proper bilayers), and times
``--time N`` fresh bilayer relaxations (positions + in-plane cell, MLIP + D3, the manifest's fmax and step limit) in
this process (from unrelaxed monolayers, so a few more steps than in the build). It also counts the distinct 1x1
bilayers of all 45 x 45 ordered pairs (48,600 stackings) by their plane/site sequences up to in-plane symmetry and
turning over, checked against the builder's StructureMatcher deduplication on three pairs; J2DH-8 has 19,926.

With ``--cdvae LABEL=CHECKPOINT`` (repeatable) it also judges ConditionCDVAE+ models trained on the subset
(issue 14, ConditionCDVAE+ on the bilayers): reconstruction match rate and RMSE on the test split (matcher stol 0.5,
angle_tol 10, ltol 0.3; the paper: 25.35 % / 0.1842), the layer categories of ``--samples`` unconditional samples
(proper-bilayer fraction, as ``crysloop evaluate --layered``), and with ``--targets`` the formation-energy
adherence: ``--per-target`` samples per target and unconditional, relaxed (positions and in-plane cell, c fixed)
with the subset's own potential (manifest: MLIP + D3) and labelled against its elemental references; medians.
Langevin runs ``--steps-per-level`` steps per noise level (the paper: 100).
With ``--diffcsp LABEL=CHECKPOINT`` (repeatable) it judges ab initio DiffCSP models trained on the subset the same
way: the layer categories of ``--samples`` unconditional samples and of its structure predictions for the test
split's compositions (``--diffcsp-csp``; ``--diffcsp-steps`` predictor-corrector steps, default all of the model's
timesteps), for semi-periodic against 3D-periodic training.
The last line printed is one JSON object.

    nice -n 10 .venv/bin/python benchmarks/vdw.py --time 3
    nice -n 10 .venv/bin/python benchmarks/vdw.py --time 0 --no-count --cdvae periodic=periodic.pt \
        --cdvae semi_periodic=crysloop/assets/checkpoints/vdw-cdvae.pt --steps-per-level 10 --samples 32 \
        --targets=-0.80,-0.62 --per-target 8
    nice -n 10 .venv/bin/python benchmarks/vdw.py --time 0 --no-count --diffcsp periodic=diffcsp-periodic.pt \
        --diffcsp semi_periodic=diffcsp-semi.pt --samples 64
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from crysloop.data.datasets import read_structures
from crysloop.evaluation.layers import CATEGORIES, analyse_layers
from crysloop.vdw.bilayers import REGISTRIES, Stacking, make_bilayer, pair_bilayers
from crysloop.vdw.build import relax_bilayer
from crysloop.vdw.config import BuildConfig
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
        return {
            _canonical(_stacking_planes(layers[a], layers[b], Stacking(a, b, fl, fu, rot, reg)))
            for a, b in pairs
            for (fl, fu), rot, reg in itertools.product(flips, (0, 60), REGISTRIES)
        }

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
    config = BuildConfig(
        mlip=settings["mlip"], damping=settings["damping"], fmax=settings["fmax"], steps=settings["steps"], device="cpu"
    )
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


PAPER_RECONSTRUCTION = {"match_rate": 0.2535, "rms_dist": 0.1842}  # ConditionCDVAE+ on J2DH-8


def _formation_energies(structures, manifest: dict) -> tuple[list[float], int]:
    """Formation energies (eV/atom) of ``structures`` after relaxation with the subset's potential (in-plane cell,
    c fixed), against its elemental references; and how many could not be labelled (other elements, failures)."""
    from crysloop.screening.relax import RelaxConfig, relax_structures
    from crysloop.vdw.build import potential
    from crysloop.vdw.config import IN_PLANE_MASK
    from crysloop.vdw.descriptors import formation_energy_per_atom

    settings, mu = manifest["config"], manifest["chemical_potentials_eV_per_atom"]
    usable = [s for s in structures if {e.symbol for e in s.composition.elements} <= set(mu)]
    calculator = potential(settings["mlip"], settings["damping"], "cpu")
    results = relax_structures(
        usable,
        calculator,
        batch_size=1,
        config=RelaxConfig(fmax=settings["fmax"], steps=settings["steps"], cell_mask=IN_PLANE_MASK),
    )
    energies = [
        formation_energy_per_atom(r.structure, r.energy, mu)
        for r in results
        if r.energy is not None and r.status != "failed"
    ]
    return energies, len(structures) - len(energies)


def _cdvae_figures(checkpoint: Path, records: dict, manifest: dict, args: argparse.Namespace) -> dict:
    """Reconstruction, unconditional layer categories and (with targets) formation-energy adherence of one model."""
    from crysloop.evaluation.matching import reconstruction
    from crysloop.evaluation.validity import validity
    from crysloop.models.cdvae import load_checkpoint, sample_structures
    from crysloop.models.cdvae.sampling import reconstruct_structures

    model, gan = load_checkpoint(checkpoint, device="cpu")
    out: dict = {"semi_periodic": model.config.semi_periodic}
    if args.reconstruct:
        started = time.perf_counter()
        test = records["test"][: args.reconstruct]
        predicted, truth = reconstruct_structures(model, test, args.steps_per_level, seed=args.seed)
        figures = reconstruction(
            predicted, truth, [validity(s).valid for s in predicted], [validity(s).valid for s in truth], n_jobs=1
        )
        same = [p.composition.reduced_formula == t.composition.reduced_formula for p, t in zip(predicted, truth)]
        out["reconstruction"] = {
            "match_rate": round(figures["match_rate"], 4),
            "rms_dist": None if math.isnan(figures["rms_dist"]) else round(figures["rms_dist"], 4),
            "same_composition": round(sum(same) / len(predicted), 4),
            "n": len(predicted),
            "seconds": round(time.perf_counter() - started, 1),
        }
    if args.samples:
        started = time.perf_counter()
        samples = sample_structures(model, gan, n=args.samples, steps_per_level=args.steps_per_level, seed=args.seed)
        counts = Counter(analyse_layers(s).category for s in samples)
        out["unconditional"] = {
            "n": len(samples),
            "seconds": round(time.perf_counter() - started, 1),
            **{c: round(counts.get(c, 0) / len(samples), 4) for c in CATEGORIES},
        }
    if args.targets:
        adherence = {}
        for target in [None, *args.targets]:
            conditions = {} if target is None else {"formation_energy_per_atom": target}
            drawn = sample_structures(
                model,
                gan,
                n=args.per_target,
                conditions=conditions,
                steps_per_level=args.steps_per_level,
                seed=args.seed + 1,
            )
            energies, unlabelled = _formation_energies(drawn, manifest)
            adherence["unconditional" if target is None else f"{target:g}"] = {
                "median": round(statistics.median(energies), 4) if energies else None,
                "n": len(energies),
                "unlabelled": unlabelled,
                "proper_bilayer": round(
                    sum(analyse_layers(s).category == "proper_bilayer" for s in drawn) / len(drawn), 4
                ),
            }
        out["formation_energy_adherence"] = adherence
    metadata = torch.load(checkpoint, map_location="cpu", weights_only=True).get("metadata", {})
    out["train_steps"], out["train_seconds"] = metadata.get("steps"), metadata.get("vae_seconds")
    return out


def _categories(structures: list, started: float) -> dict:
    counts = Counter(analyse_layers(s).category for s in structures)
    return {
        "n": len(structures),
        "seconds": round(time.perf_counter() - started, 1),
        **{c: round(counts.get(c, 0) / len(structures), 4) for c in CATEGORIES},
    }


def _diffcsp_figures(checkpoint: Path, records: dict, args: argparse.Namespace) -> dict:
    """Layer categories of one DiffCSP model's unconditional ab initio samples and of its structure predictions
    for the test split's compositions (one each), and its training budget."""
    from crysloop.models.diffcsp import load_checkpoint, sample_structures

    model = load_checkpoint(checkpoint, device="cpu")
    metadata = torch.load(checkpoint, map_location="cpu", weights_only=True).get("metadata", {})
    out = {
        "semi_periodic": model.config.semi_periodic,
        "properties": list(model.config.properties),
        "train_steps": metadata.get("steps"),
        "train_seconds": metadata.get("train_seconds"),
    }
    if args.samples:
        started = time.perf_counter()
        samples = sample_structures(model, n=args.samples, steps=args.diffcsp_steps, device="cpu", seed=args.seed)
        out["unconditional"] = _categories(samples, started)
    if args.diffcsp_csp:
        started = time.perf_counter()
        compositions = [r.structure.composition for r in records["test"][: args.diffcsp_csp]]
        predicted = sample_structures(model, compositions, steps=args.diffcsp_steps, device="cpu", seed=args.seed)
        out["csp_test"] = _categories(predicted, started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=Path, default=SUBSET)
    parser.add_argument("--time", type=int, default=3, help="Fresh bilayer relaxations to time (0 = none).")
    parser.add_argument("--no-count", action="store_true", help="Skip counting the distinct bilayers of all pairs.")
    parser.add_argument(
        "--cdvae",
        action="append",
        default=[],
        metavar="LABEL=CHECKPOINT",
        help="A ConditionCDVAE+ model trained on the subset, to judge (repeatable).",
    )
    parser.add_argument(
        "--diffcsp",
        action="append",
        default=[],
        metavar="LABEL=CHECKPOINT",
        help="An ab initio DiffCSP model trained on the subset, to judge (repeatable).",
    )
    parser.add_argument(
        "--diffcsp-steps", type=int, default=None, help="DiffCSP sampling steps (default: the model's timesteps)."
    )
    parser.add_argument(
        "--diffcsp-csp",
        type=int,
        default=10**6,
        help="Test compositions DiffCSP predicts structures for (default: all; 0: none).",
    )
    parser.add_argument("--steps-per-level", type=int, default=10, help="Langevin steps per noise level.")
    parser.add_argument("--samples", type=int, default=32, help="Unconditional samples per model (0: none).")
    parser.add_argument(
        "--reconstruct", type=int, default=10**6, help="Test bilayers to reconstruct (default: all; 0: none)."
    )
    parser.add_argument(
        "--targets",
        type=lambda t: [float(x) for x in t.split(",") if x],
        default=[],
        help="Formation-energy targets (eV/atom), comma-separated, for the adherence test.",
    )
    parser.add_argument("--per-target", type=int, default=8, help="Samples per target (and unconditional).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    manifest = json.loads((args.subset / "manifest.json").read_text())
    splits = {
        split: list(read_structures(args.subset / f"{split}.csv.gz", progress=False))
        for split in ("train", "val", "test")
    }
    records = [r for split in splits.values() for r in split]
    categories = [analyse_layers(r.structure).category for r in records]
    stackings, distinct, agree = (None, None, None) if args.no_count else count_distinct_bilayers()
    keys = ("formation_energy_per_atom", "binding_energy", "interlayer_distance", "strain_lower", "strain_upper")
    ranges = {
        k: [round(min(r.properties[k] for r in records), 4), round(max(r.properties[k] for r in records), 4)]
        for k in keys
    }
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
    if args.cdvae:
        result["cdvae"] = {
            "paper_reconstruction": PAPER_RECONSTRUCTION,
            "steps_per_level": args.steps_per_level,
            "test_bilayers": len(splits["test"]),
        }
        for item in args.cdvae:
            label, _, path = item.partition("=")
            result["cdvae"][label] = _cdvae_figures(Path(path), splits, manifest, args)
    if args.diffcsp:
        result["diffcsp"] = {"steps": args.diffcsp_steps, "seed": args.seed}
        for item in args.diffcsp:
            label, _, path = item.partition("=")
            result["diffcsp"][label] = _diffcsp_figures(Path(path), splits, args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
