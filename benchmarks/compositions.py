"""Stage I benchmark: valence-labelling coverage and speed on MP-20, and the composition language model.

Trains on the MP-20 training compositions available here (mp_20_sample/train + mp_20_biternary/val; the full
MP-20 train split is not on this machine), or evaluates ``--checkpoint`` (the shipped model was trained on exactly
these), and evaluates against held-out compositions (mp_20_sample/test + mp_20_biternary/test). Last line: JSON.

    .venv/bin/python benchmarks/compositions.py [--checkpoint crysloop/assets/checkpoints/composition_lm.pt]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from crysloop.chemistry.oxidation import is_supported_element
from crysloop.chemistry.valence import label_compositions
from crysloop.evaluation.distributions import wasserstein
from crysloop.evaluation.validity import composition_validity
from crysloop.models.composition import load_checkpoint, sample_compositions, train_composition_lm
from crysloop.models.composition.data import read_compositions

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TRAIN = ["mp_20_sample/train.csv.gz", "mp_20_biternary/val.csv.gz"]
HELD_OUT = ["mp_20_sample/test.csv.gz", "mp_20_biternary/test.csv.gz"]
ALL = ["mp_20_sample/train.csv.gz", "mp_20_sample/val.csv.gz", "mp_20_sample/test.csv.gz", *TRAIN[1:], *HELD_OUT[1:]]


def _records(paths):
    return [r for p in paths for r in read_compositions(DATA / p)]


def labelling() -> dict:
    compositions = [r.composition for r in _records(ALL)]
    start = time.perf_counter()
    labels = label_compositions(compositions)
    elapsed = time.perf_counter() - start
    supported = [all(is_supported_element(e.symbol) for e in c) for c in compositions]
    labelled_supported = sum(a is not None for a, s in zip(labels, supported) if s)
    return {
        "label_n": len(compositions),
        "label_seconds": round(elapsed, 3),
        "label_coverage_supported": round(labelled_supported / sum(supported), 4),
        "label_coverage_all": round(sum(a is not None for a in labels) / len(labels), 4),
        "label_ionic_fraction": round(sum(bool(a and a.ionic) for a in labels) / max(1, sum(a is not None for a in labels)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="Evaluate this model instead of training one.")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--n", type=int, default=1000, help="Samples per mode.")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    figures = labelling()

    train_records = _records(TRAIN)
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint)
        figures["train_seconds"] = round(model.metadata["training"]["train_seconds"], 1)
        figures["train_epochs"] = model.metadata["training"]["epochs"]
    else:
        model = train_composition_lm([r.composition for r in train_records], epochs=args.epochs, seed=0)
        figures["train_seconds"] = round(model.metadata["training"]["train_seconds"], 1)
        figures["train_epochs"] = args.epochs
    figures["train_n"] = model.metadata["training"]["n_train"]
    train_formulas = {r.composition.reduced_formula for r in train_records}
    held_out = [a for a in label_compositions([r.composition for r in _records(HELD_OUT)]) if a is not None]

    start = time.perf_counter()
    constrained = sample_compositions(model, args.n, seed=1, constrained=True)
    constrained_seconds = time.perf_counter() - start
    start = time.perf_counter()
    raw = sample_compositions(model, args.n, seed=1, constrained=False)
    raw_valid = [composition_validity(s.composition) for s in raw]
    raw_seconds = time.perf_counter() - start
    constrained_valid = [composition_validity(s.composition) for s in constrained]

    ionic = [s for s in constrained if s.ionic]
    formulas = [s.formula for s in constrained]
    unique = set(formulas)
    a_rate = sum(constrained_valid) / constrained_seconds
    b_rate = sum(raw_valid) / raw_seconds
    figures.update({
        "n_samples": args.n,
        "ionic_fraction": round(len(ionic) / len(constrained), 4),
        "neutral_fraction_ionic": round(sum(s.charge == 0 for s in ionic) / max(1, len(ionic)), 4),
        "smact_validity": round(sum(constrained_valid) / len(constrained), 4),
        "uniqueness": round(len(unique) / len(formulas), 4),
        "novelty": round(len(unique - train_formulas) / max(1, len(unique)), 4),
        "wasserstein_n_elements": round(wasserstein([len(s.composition.elements) for s in constrained],
                                                    [len(a.composition.elements) for a in held_out]), 4),  # fmt: skip
        "unconstrained_neutral_fraction_ionic": round(
            sum(s.charge == 0 for s in raw if s.ionic) / max(1, sum(s.ionic for s in raw)), 4),
        "unconstrained_smact_validity": round(sum(raw_valid) / len(raw), 4),
        "constrained_seconds": round(constrained_seconds, 2),
        "unconstrained_plus_check_seconds": round(raw_seconds, 2),
        "valid_per_s_constrained": round(a_rate, 1),
        "valid_per_s_unconstrained_smact": round(b_rate, 1),
        "throughput_ratio": round(a_rate / b_rate, 3) if b_rate else None,
    })  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
