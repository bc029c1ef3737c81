"""Survival of generated crystals under MLIP relaxation, with the demo campaign's settings.

Samples ``--n`` compositions from the composition LM (constrained decoding, ``max_atoms`` and seed of
``crysloop/assets/campaigns/demo.yaml``), predicts one structure for each with every DiffCSP checkpoint given
(round 0 of the demo: no condition the shipped model knows, so no guidance; chunks of the demo's batch size, seeded
as the generate flow does), drops what the generate flow drops (overlapping atoms, implausible density) and relaxes
the rest with CHGNet at the demo's screening settings (fmax, steps). A crystal survives when it passes the
generation filter and its relaxation ends without failure (no collapse, explosion, overlap or non-finite energy).
All checkpoints see the same compositions. The last line printed is one JSON object. The crysloop package
imported is the one on ``PYTHONPATH`` (so an older checkout can sample an older checkpoint with its own code).

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python benchmarks/survival.py --n 24 --checkpoint new.pt
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "crysloop" / "assets" / "campaigns" / "demo.yaml"


def _reason(error: str | None) -> str:
    """Coarse failure class of a relaxation error message."""
    text = (error or "").lower()
    for word in ("collapsed", "exploded", "close", "finite", "time"):
        if word in text:
            return word
    return "other"


def survival(checkpoint: Path | None, assignments, config, lattice_clip: float | str | None) -> dict:
    """Generate one structure per composition with ``checkpoint`` (None = shipped) and relax them."""
    from crysloop.campaign.generation import split_valid
    from crysloop.infra.store import NewCandidate
    from crysloop.models import diffcsp
    from crysloop.screening.potentials import get_calculator
    from crysloop.screening.relax import RelaxConfig, relax_structures

    model = diffcsp.load_checkpoint(checkpoint, device="cpu")
    size, seed = config.structure_model.batch_size, config.seed
    started = time.perf_counter()
    items = []
    for start in range(0, len(assignments), size):  # as structures_for in the generate flow's chunks, guidance 0
        structures = diffcsp.sample_structures(
            model, [a.composition for a in assignments[start : start + size]], steps=config.structure_model.steps,
            batch_size=size, device="cpu", seed=seed + start, lattice_clip=lattice_clip)
        items += [NewCandidate(structure) for structure in structures]
    sample_s = time.perf_counter() - started
    valid, invalid = split_valid(items)
    relax_config = RelaxConfig(fmax=config.screening.fmax, steps=config.screening.steps)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = relax_structures([item.structure for item in valid], get_calculator(config.mlip, "cpu"),
                                   batch_size=config.screening.batch_size, config=relax_config)
    relax_s = time.perf_counter() - started
    ratios = [r.structure.volume / item.structure.volume for r, item in zip(results, valid) if r.ok]
    survived = sum(r.ok for r in results)
    return {
        "checkpoint": str(checkpoint) if checkpoint else "shipped",
        "lattice_clip": lattice_clip,
        "generated": len(items),
        "invalid_at_generation": invalid,
        "relaxed": len(results),
        "relax_failed": len(results) - survived,
        "failure_reasons": dict(Counter(_reason(r.error) for r in results if not r.ok)),
        "survived": survived,
        "survival_rate": round(survived / len(items), 4) if items else None,
        "median_volume_ratio_survivors": round(float(torch.tensor(ratios).median()), 3) if ratios else None,
        "sample_s": round(sample_s, 1),
        "relax_s": round(relax_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24, help="Crystals per checkpoint.")
    parser.add_argument("--checkpoint", type=Path, action="append", default=None,
                        help="DiffCSP checkpoint (repeatable); default: the shipped one.")
    parser.add_argument("--composition-checkpoint", type=Path, default=None, help="Default: the shipped LM.")
    parser.add_argument("--lattice-clip", default="auto",
                        help="Clamp of the clean-lattice estimate: auto (the sampler's default), off, or A.")
    parser.add_argument("--seed", type=int, default=None, help="Default: the demo's seed.")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from crysloop.campaign.config import load_config
    from crysloop.campaign.generation import sample_valid_compositions
    from crysloop.models import composition

    config = load_config(DEMO)
    if args.seed is not None:
        config = config.model_copy(update={"seed": args.seed})
    lm = composition.load_checkpoint(args.composition_checkpoint, device="cpu")
    cm = config.composition_model
    assignments = sample_valid_compositions(lm, args.n, {}, max_atoms=cm.max_atoms, temperature=cm.temperature,
                                            top_k=cm.top_k, seed=config.seed, device="cpu")
    clip = None if args.lattice_clip == "off" else args.lattice_clip if args.lattice_clip == "auto" else float(args.lattice_clip)
    runs = [survival(c, assignments, config, clip) for c in (args.checkpoint or [None])]
    for run in runs:
        print(f"{run['checkpoint']}: {run['survived']}/{run['generated']} survive ({run['failure_reasons']})")
    import crysloop

    print(json.dumps({"benchmark": "demo survival", "crysloop": str(Path(crysloop.__file__).parent), "n": args.n, "seed": config.seed, "mlip": config.mlip,
                      "fmax": config.screening.fmax, "relax_steps": config.screening.steps,
                      "compositions": [a.composition.formula for a in assignments], "runs": runs}))


if __name__ == "__main__":
    main()
