"""Survival of generated crystals under MLIP relaxation, on the demo campaign's settings.

Samples ``--n`` compositions from the composition LM (constrained decoding, ``max_atoms`` and seed of
``crysloop/assets/campaigns/demo.yaml``) and predicts one structure for each with every DiffCSP checkpoint given,
as the generate flow does (chunks of the demo's batch size and sampling steps; round 0 of the demo: no condition,
so no guidance, unless ``--condition`` asks for round 1's stable = 1 with the demo's guidance weight). The demo's
volume rescaling (``structure_model.rescale_volume``; ``--rescale-volume on|off`` overrides it) and the generate
flow's filter (overlapping atoms, implausible density) run next, and what passes is relaxed with the demo's
potential (``mlip``), ``fmax`` and step limit. Every generated sample counts: it survives when it passes the
filter and its relaxation converges without failure. Outcomes are counted apart: ``invalid_at_generation``
(filtered), ``unconverged`` (step limit reached, no failure) and failures by reason (collapsed, exploded, atoms
too close, non-finite). Each sampled cell's volume per atom is compared with its composition's expected one
(``crysloop.chemistry.volume``: additive element volumes fitted on the training crystals) and its shortest
interatomic distance is recorded; per-sample rows and medians by outcome go into the JSON line printed last.

``--checkpoint PATH@DIR`` samples ``PATH`` with the crysloop package of an earlier checkout in ``DIR`` (a
subprocess with ``PYTHONPATH=DIR``, with that package's sampler defaults), so an old checkpoint is measured with
its own code; the compositions, filter and relaxation are always this checkout's.

    nice -n 10 .venv/bin/python benchmarks/survival.py --n 24 --checkpoint old.pt@/tmp/old --checkpoint shipped
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "crysloop" / "assets" / "campaigns" / "demo.yaml"


def _reason(result) -> str:
    """Outcome class of one relaxation: ok, unconverged, or the failure's kind."""
    if result.status != "failed":
        return result.status
    text = (result.error or "").lower()
    for word in ("collapsed", "exploded", "close", "finite", "timed out", "potential"):
        if word in text:
            return word.replace("close", "atoms too close").replace("finite", "non-finite").replace(" out", "out")
    return "other failure"


def generate(job: dict) -> list[dict]:
    """Structures (as dicts) for ``job``'s formulas, sampled by the crysloop package on ``sys.path``."""
    from crysloop.models import diffcsp

    checkpoint = None if job["checkpoint"] == "shipped" else job["checkpoint"]
    model = diffcsp.load_checkpoint(checkpoint, device="cpu")
    conditions = {k: v for k, v in job["conditions"].items() if k in model.config.properties}
    extra = {} if job["lattice_clip"] is None else {"lattice_clip": job["lattice_clip"]}
    size, out = job["batch_size"], []
    for start in range(0, len(job["formulas"]), size):  # as the generate flow: one call per chunk, seed + offset
        structures = diffcsp.sample_structures(
            model,
            job["formulas"][start : start + size],
            conditions=conditions or None,
            guidance=job["guidance"] if conditions else 0.0,
            steps=job["steps"],
            batch_size=size,
            device="cpu",
            seed=job["seed"] + start,
            **extra,
        )
        out += [s.as_dict() for s in structures]
    return out


def _generate_with(code: str | None, job: dict) -> list:
    """Run ``generate`` here, or in a subprocess importing crysloop from ``code``; pymatgen Structures back."""
    from pymatgen.core import Structure

    if code is None:
        return [Structure.from_dict(d) for d in generate(job)]
    env = {**os.environ, "PYTHONPATH": str(Path(code).resolve())}
    proc = subprocess.run(
        [sys.executable, __file__, "--generate-job"],
        input=json.dumps(job),
        text=True,
        capture_output=True,
        env=env,
        cwd=str(Path(code).resolve()),
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"generation with the code in {code} failed:\n{proc.stderr[-3000:]}")
    return [Structure.from_dict(d) for d in json.loads(proc.stdout.strip().splitlines()[-1])]


def cell_diagnostics(structure) -> dict:
    """Volume per atom, its ratio to the composition's expected volume (None if unknown), the shortest distance."""
    from crysloop.chemistry.volume import expected_volume_per_atom

    n = len(structure)
    expected = expected_volume_per_atom(structure.composition)
    distances = structure.distance_matrix + torch.eye(n).numpy() * 1e9 if n > 1 else None
    return {
        "volume_per_atom": round(structure.volume / n, 2),
        "volume_vs_expected": round(structure.volume / n / expected, 3) if expected else None,
        "min_distance": round(float(distances.min()), 3) if distances is not None else None,
        "max_length": round(max(structure.lattice.abc), 2),
    }


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def survival(checkpoint: str, code: str | None, assignments, config, args) -> dict:
    """Generate one structure per composition with ``checkpoint`` and relax them on the demo's settings."""
    from crysloop.campaign.generation import valid_flags
    from crysloop.chemistry.volume import rescale_to_expected_volume
    from crysloop.infra.store import NewCandidate
    from crysloop.screening.potentials import get_calculator
    from crysloop.screening.relax import RelaxConfig, relax_structures

    sm = config.generation.structure_model
    job = {
        "checkpoint": checkpoint,
        "formulas": [a.composition.formula for a in assignments],
        "steps": sm.steps,
        "batch_size": sm.batch_size,
        "seed": config.seed,
        "guidance": sm.guidance,
        "conditions": dict(args.condition),
        "lattice_clip": args.lattice_clip,
    }
    started = time.perf_counter()
    generated = _generate_with(code, job)
    sample_s = time.perf_counter() - started
    rescale = sm.rescale_volume if args.rescale_volume is None else args.rescale_volume == "on"
    prepared = [rescale_to_expected_volume(s) for s in generated] if rescale else generated
    rows = [
        {
            "formula": s.composition.formula.replace(" ", ""),
            "generated": cell_diagnostics(s),
            "rescaled": cell_diagnostics(p) if rescale else None,
        }
        for s, p in zip(generated, prepared, strict=True)
    ]
    flags = valid_flags([NewCandidate(s) for s in prepared])
    to_relax = [s for s, ok in zip(prepared, flags, strict=True) if ok]
    relax_config = RelaxConfig(fmax=config.screening.fmax, steps=config.screening.steps)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = iter(
            relax_structures(
                to_relax,
                get_calculator(config.screening.mlip, "cpu"),
                batch_size=config.screening.batch_size,
                config=relax_config,
            )
        )
    relax_s = time.perf_counter() - started
    for row, structure, ok in zip(rows, prepared, flags, strict=True):
        if not ok:
            row["outcome"] = "invalid_at_generation"
            continue
        result = next(results)
        row["outcome"] = _reason(result)
        row["relax_steps"] = result.steps
        row["volume_ratio"] = round(result.structure.volume / structure.volume, 3)
    outcomes = Counter(row["outcome"] for row in rows)
    survived = outcomes.get("ok", 0)
    by_outcome = {
        outcome: {
            "n": count,
            "median_volume_vs_expected": _median(
                r["generated"]["volume_vs_expected"] for r in rows if r["outcome"] == outcome
            ),
            "median_min_distance": _median(r["generated"]["min_distance"] for r in rows if r["outcome"] == outcome),
        }
        for outcome, count in sorted(outcomes.items())
    }
    return {
        "checkpoint": checkpoint,
        "code": code or str(ROOT),
        "lattice_clip": args.lattice_clip if args.lattice_clip is not None else "package default",
        "rescale_volume": rescale,
        "generated": len(rows),
        "outcomes": dict(outcomes),
        "survived": survived,
        "survival_rate": round(survived / len(rows), 4) if rows else None,
        "relaxed_without_failure": survived + outcomes.get("unconverged", 0),
        "by_outcome": by_outcome,
        "median_volume_vs_expected": _median(r["generated"]["volume_vs_expected"] for r in rows),
        "sample_s": round(sample_s, 1),
        "relax_s": round(relax_s, 1),
        "samples": rows,
    }


def _clip(text: str) -> float | str | None:
    return {"off": None, "auto": "auto"}.get(text) if text in ("off", "auto") else float(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24, help="Crystals per checkpoint.")
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=None,
        help="DiffCSP checkpoint, 'shipped' or PATH, optionally PATH@DIR to sample with the crysloop "
        "package in DIR (repeatable); default: the shipped one.",
    )
    parser.add_argument("--composition-checkpoint", type=Path, default=None, help="Default: the shipped LM.")
    parser.add_argument(
        "--lattice-clip",
        type=_clip,
        default=None,
        help="Clamp of the clean-lattice estimate: auto, off, or A; default: the sampler's default.",
    )
    parser.add_argument(
        "--rescale-volume",
        choices=["on", "off"],
        default=None,
        help="Override the demo's structure_model.rescale_volume.",
    )
    parser.add_argument(
        "--condition",
        action="append",
        default=[],
        type=lambda s: (s.split("=")[0], float(s.split("=")[1])),
        help="NAME=VALUE condition for Stage II (with the demo's guidance), e.g. stable=1.",
    )
    parser.add_argument("--seed", type=int, default=None, help="Default: the demo's seed.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--generate-job", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.generate_job:
        print(json.dumps(generate(json.loads(sys.stdin.read()))))
        return

    import crysloop
    from crysloop.campaign.config import load_config
    from crysloop.models import composition
    from crysloop.models.composition import sample_valid_compositions

    config = load_config(DEMO)
    if args.seed is not None:
        config = config.model_copy(update={"seed": args.seed})
    lm = composition.load_checkpoint(args.composition_checkpoint, device="cpu")
    cm = config.generation.composition_model
    assignments = sample_valid_compositions(
        lm,
        args.n,
        {},
        max_atoms=cm.max_atoms,
        temperature=cm.temperature,
        top_k=cm.top_k,
        seed=config.seed,
        device="cpu",
    )
    runs = []
    for spec in args.checkpoint or ["shipped"]:
        checkpoint, _, code = spec.partition("@")
        runs.append(
            survival(
                str(Path(checkpoint).resolve()) if checkpoint != "shipped" else checkpoint,
                code or None,
                assignments,
                config,
                args,
            )
        )
    for run in runs:
        print(f"{run['checkpoint']} ({run['code']}): {run['survived']}/{run['generated']} survive {run['outcomes']}")
    print(
        json.dumps(
            {
                "benchmark": "demo survival",
                "crysloop": str(Path(crysloop.__file__).parent),
                "n": args.n,
                "seed": config.seed,
                "mlip": config.screening.mlip,
                "fmax": config.screening.fmax,
                "relax_steps": config.screening.steps,
                "conditions": dict(args.condition),
                "guidance": config.generation.structure_model.guidance if args.condition else 0.0,
                "compositions": [a.composition.formula for a in assignments],
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
