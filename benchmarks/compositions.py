"""Stage I benchmark: valence labelling of MP-20 under both vocabularies and alloy rules, and the composition
language model's samples by constrained decoding, exact rejection sampling and raw (unconstrained) sampling.

Trains on the MP-20 training compositions available here (mp_20_sample/train + mp_20_biternary/val; the full
MP-20 train split is not on this machine), or evaluates ``--checkpoint`` (the shipped model was trained on exactly
these), against held-out compositions (mp_20_sample/test + mp_20_biternary/test, labelled with the model's
vocabulary). Per sampling method: Wasserstein distances to the held-out compositions of the number of elements
(CDVAE's "element counts"), the number of oxidation-state species, atoms per cell, per-element atom fractions
(stoichiometry) and atomic numbers (which elements); uniqueness, novelty (formula not in the training set), SMACT
validity, the share of raw draws that are admissible (neutral and following the labelling rules; 1 by construction
for the two exact methods) and wall time per SMACT-valid composition with the SMACT check included in every
method. Last line: JSON.

    .venv/bin/python benchmarks/compositions.py [--checkpoint crysloop/assets/checkpoints/composition_lm.pt]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from crysloop.chemistry.oxidation import is_supported_element, occasional_states
from crysloop.chemistry.valence import label_compositions
from crysloop.data.compositions import read_compositions
from crysloop.evaluation.distributions import wasserstein
from crysloop.evaluation.validity import composition_validity
from crysloop.models.composition import (
    load_checkpoint,
    sample_compositions,
    sample_compositions_rejection,
    train_composition_lm,
)
from crysloop.models.composition.sampling import admissible

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TRAIN = ["mp_20_sample/train.csv.gz", "mp_20_biternary/val.csv.gz"]
HELD_OUT = ["mp_20_sample/test.csv.gz", "mp_20_biternary/test.csv.gz"]
ALL = ["mp_20_sample/train.csv.gz", "mp_20_sample/val.csv.gz", "mp_20_sample/test.csv.gz", *TRAIN[1:], *HELD_OUT[1:]]


def _records(paths):
    return [r for p in paths for r in read_compositions(DATA / p)]


def _uses_occasional(assignment, vocabulary: str) -> bool:
    return any(state in occasional_states(element, vocabulary) for element, state, _ in assignment.species)


def labelling() -> dict:
    """Coverage, speed and the ionic / alloy split of every MP-20 row here (``ALL``: mp_20_sample train, val and
    test, mp_20_biternary val and test), per vocabulary and rule; coverage counts rows whose elements are all
    supported. ``occasional``: labels that use one of the vocabulary's occasional states."""
    compositions = [r.composition for r in _records(ALL)]
    supported = [all(is_supported_element(e.symbol) for e in c) for c in compositions]
    figures: dict = {"label_n": len(compositions), "label_n_supported_elements": sum(supported)}
    for vocabulary in ("common", "full"):
        for rule in ("ionic-first", "paper"):
            start = time.perf_counter()
            labels = label_compositions(compositions, vocabulary=vocabulary, alloy_rule=rule)
            elapsed = time.perf_counter() - start
            labelled = sum(a is not None for a in labels)
            ionic = sum(bool(a and a.ionic) for a in labels)
            covered = sum(a is not None for a, s in zip(labels, supported) if s)
            figures[f"label_{vocabulary}_{rule}"] = {
                "labelled": labelled,
                "ionic": ionic,
                "alloy": labelled - ionic,
                "occasional": sum(bool(a and _uses_occasional(a, vocabulary)) for a in labels),
                "coverage_supported": round(covered / sum(supported), 4),
                "seconds": round(elapsed, 2),
            }
    return figures


def _features(assignments) -> dict[str, list[float]]:
    features: dict[str, list[float]] = {"n_elements": [], "n_species": [], "n_atoms": [], "fractions": [], "z": []}
    for a in assignments:
        composition = a.composition
        features["n_elements"].append(len(composition.elements))
        features["n_species"].append(len(a.species))
        features["n_atoms"].append(composition.num_atoms)
        features["fractions"] += [composition.get_atomic_fraction(e) for e in composition.elements]
        features["z"] += [e.Z for e in composition.elements]
    return features


def _figures(
    samples, seconds: float, draws: int, admissible_share: float | None, reference: dict, train_formulas
) -> dict:
    start = time.perf_counter()
    valid = [composition_validity(s.composition) for s in samples]
    seconds += time.perf_counter() - start
    features = _features(samples)
    formulas = [s.formula for s in samples]
    unique = set(formulas)
    return {
        "n": len(samples),
        "raw_draws": draws,
        "admissible_share_of_draws": None if admissible_share is None else round(admissible_share, 4),
        "ionic_fraction": round(sum(s.ionic for s in samples) / len(samples), 4),
        "smact_validity": round(sum(valid) / len(samples), 4),
        "uniqueness": round(len(unique) / len(formulas), 4),
        "novelty": round(len(unique - train_formulas) / max(1, len(unique)), 4),
        **{f"wd_{k}": round(wasserstein(features[k], reference[k]), 4) for k in features},
        "seconds_with_smact_check": round(seconds, 2),
        "smact_valid_per_s": round(sum(valid) / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="Evaluate this model instead of training one.")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--n", type=int, default=1000, help="Samples per method.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    figures = labelling()

    train_records = _records(TRAIN)
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint)
        figures["train_epochs"] = model.metadata["training"]["epochs"]
    else:
        model = train_composition_lm([r.composition for r in train_records], epochs=args.epochs, seed=0)
        figures["train_epochs"] = args.epochs
    figures.update(
        train_seconds=round(model.metadata["training"]["train_seconds"], 1),
        train_n=model.metadata["training"]["n_train"],
        vocabulary=model.config.vocabulary,
        vocabulary_size=len(model.vocabulary.species),
    )
    train_formulas = {r.composition.reduced_formula for r in train_records}
    held_out = [
        a
        for a in label_compositions([r.composition for r in _records(HELD_OUT)], vocabulary=model.config.vocabulary)
        if a is not None
    ]
    reference = _features(held_out)
    figures["held_out_n"] = len(held_out)
    figures["held_out_ionic_fraction"] = round(sum(a.ionic for a in held_out) / len(held_out), 4)

    start = time.perf_counter()
    constrained = sample_compositions(model, args.n, seed=args.seed, constrained=True)
    figures["constrained"] = _figures(constrained, time.perf_counter() - start, args.n, 1.0, reference, train_formulas)
    start = time.perf_counter()
    exact, draws = sample_compositions_rejection(model, args.n, seed=args.seed)
    # the admissible share of raw draws is measured on the unconstrained row (the last batch is not used up here)
    figures["rejection"] = _figures(exact, time.perf_counter() - start, draws, None, reference, train_formulas)
    start = time.perf_counter()
    raw = sample_compositions(model, args.n, seed=args.seed, constrained=False)
    seconds = time.perf_counter() - start
    share = sum(admissible(model, s) for s in raw) / len(raw)
    figures["unconstrained"] = _figures(raw, seconds, args.n, share, reference, train_formulas)
    figures["unconstrained"]["neutral_fraction"] = round(sum(s.charge == 0 for s in raw) / len(raw), 4)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
