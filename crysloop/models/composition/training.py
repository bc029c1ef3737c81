"""Training and fine-tuning of the composition language model on labelled compositions.

Each epoch shows every composition once with its (species, count) tuples in a fresh random order (permutation
augmentation). Property values are dropped to "no condition" with probability ``condition_dropout`` so the same
model samples unconditionally.

Training compositions are labelled with the model's oxidation-state vocabulary (``CompositionLMConfig.vocabulary``,
default the curated ``common`` one; see :mod:`crysloop.chemistry.oxidation`). The shipped checkpoint
``crysloop/assets/checkpoints/composition_lm.pt`` (common vocabulary, 215 species) was trained, from the
repository root with the MP-20 data beside the checkout, by::

    crysloop compositions train ../shared/data/mp_20_sample/train.csv.gz \\
        ../shared/data/mp_20_biternary/val.csv.gz \\
        --property ehull=e_above_hull --property formation_energy=formation_energy_per_atom \\
        --epochs 60 --seed 0 --device cpu --out crysloop/assets/checkpoints/composition_lm.pt
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pymatgen.core import Composition

from crysloop.chemistry.valence import ValenceAssignment, label_compositions
from crysloop.errors import InputError
from crysloop.settings import resolve_device
from crysloop.models.composition.model import CompositionLM, CompositionLMConfig, ConditionSpec
from crysloop.models.composition.vocab import BOS, EOS, PAD, CompositionVocabulary

CompositionLike = Composition | str | dict | ValenceAssignment


def _assignments(compositions: Sequence[CompositionLike], vocabulary: str) -> list[ValenceAssignment | None]:
    todo = [c for c in compositions if not isinstance(c, ValenceAssignment)]
    labelled = iter(label_compositions(todo, vocabulary=vocabulary))
    return [c if isinstance(c, ValenceAssignment) else next(labelled) for c in compositions]


def _value(properties: dict | None, name: str) -> float:
    value = (properties or {}).get(name)
    return math.nan if value is None else float(value)


def infer_condition_kind(values: Sequence[float]) -> str:
    """'binary' when every value is 0 or 1 (or a bool), else 'continuous'."""
    present = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not present:
        raise InputError("a condition has no values in the training data")
    return "binary" if all(v in (0.0, 1.0) for v in present) else "continuous"


def _condition_spec(name: str, kind: str | None, values: list[float]) -> ConditionSpec:
    kind = kind or infer_condition_kind(values)
    present = np.array([v for v in values if not math.isnan(v)], dtype=float)
    if kind == "continuous":
        return ConditionSpec(name, kind, float(present.mean()), float(present.std()) or 1.0)
    return ConditionSpec(name, kind)


class _Examples:
    """Tokenised training compositions and their condition values (NaN where absent)."""

    def __init__(self, model: CompositionLM, compositions, properties, names: list[str]):
        vocabulary: CompositionVocabulary = model.vocabulary
        self.tokens: list[list[tuple[int, int]]] = []
        rows: list[list[float]] = []
        self.skipped = 0
        for assignment, props in zip(_assignments(compositions, model.config.vocabulary), properties, strict=True):
            if assignment is None or len(assignment.species) > model.config.max_species:
                self.skipped += 1
                continue
            if any(c > model.config.max_count or (e, s) not in vocabulary.index for e, s, c in assignment.species):
                self.skipped += 1
                continue
            self.tokens.append(vocabulary.encode(assignment))
            rows.append([_value(props, n) for n in names])
        self.values = torch.tensor(rows, dtype=torch.float32).reshape(len(rows), len(names))
        if not self.tokens:
            raise InputError("no training composition could be labelled and tokenised")

    def batch(self, indices: list[int], rng: random.Random):
        """Inputs, species targets and count targets of a batch, tuples freshly permuted."""
        size = len(indices)
        length = max(len(self.tokens[i]) for i in indices)
        species = torch.full((size, length + 1), PAD, dtype=torch.long)
        counts = torch.zeros((size, length + 1), dtype=torch.long)
        target_species = torch.full((size, length + 1), -100, dtype=torch.long)
        target_counts = torch.full((size, length + 1), -100, dtype=torch.long)
        for row, index in enumerate(indices):
            tokens = list(self.tokens[index])
            rng.shuffle(tokens)
            n = len(tokens)
            species[row, 0] = BOS
            for position, (token, count) in enumerate(tokens, start=1):
                species[row, position], counts[row, position] = token, count
                target_species[row, position - 1], target_counts[row, position - 1] = token, count
            target_species[row, n] = EOS
        return species, counts, target_species, target_counts


def _fit(model: CompositionLM, examples: _Examples, names: list[str], epochs: int, batch_size: int, lr: float,
         device: str, seed: int, condition_dropout: float, progress: bool) -> dict:  # fmt: skip
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = max(epochs * math.ceil(len(examples.tokens) / batch_size), 4)
    # OneCycle needs at least two warm-up steps (a campaign round may fine-tune on a handful of labels)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=max(0.1, 2 / steps))
    start, losses = time.perf_counter(), []
    for epoch in range(epochs):
        order = list(range(len(examples.tokens)))
        rng.shuffle(order)
        epoch_loss = []
        for first in range(0, len(order), batch_size):
            indices = order[first : first + batch_size]
            species, counts, target_species, target_counts = (
                t.to(device) for t in examples.batch(indices, rng)
            )
            values = examples.values[indices].clone()
            values[torch.rand(values.shape) < condition_dropout] = math.nan
            conditions = {name: values[:, i].to(device) for i, name in enumerate(names)}
            hidden = model(species, counts, conditions)
            species_loss = F.cross_entropy(model.species_logits(hidden).flatten(0, 1), target_species.flatten())
            with_count = target_counts >= 0
            count_logits = model.count_logits(hidden[with_count], target_species[with_count])
            loss = species_loss + F.cross_entropy(count_logits, target_counts[with_count])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            epoch_loss.append(loss.item())
        losses.append(float(np.mean(epoch_loss)))
        if progress:
            print(f"epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f}", flush=True)
    model.eval()
    return {
        "n_train": len(examples.tokens),
        "skipped": examples.skipped,
        "epochs": epochs,
        "final_loss": losses[-1] if losses else math.nan,
        "train_seconds": time.perf_counter() - start,
    }


def train_composition_lm(
    compositions: Sequence[CompositionLike],
    properties: Sequence[dict] | None = None,
    conditions: dict[str, str | None] | Sequence[str] | None = None,
    config: CompositionLMConfig | None = None,
    epochs: int = 60,
    batch_size: int = 256,
    lr: float = 2e-3,
    device: str = "cpu",
    seed: int = 0,
    condition_dropout: float = 0.3,
    progress: bool = False,
) -> CompositionLM:
    """Train a new model on compositions (labelled here unless given as assignments).

    ``conditions`` names the properties to condition on (``{name: "binary" | "continuous" | None}``, None =
    infer from the values); their values come from ``properties``, one dict per composition (missing = NaN).
    """
    properties = list(properties) if properties is not None else [{} for _ in compositions]
    if len(properties) != len(compositions):
        raise InputError(f"{len(compositions)} compositions but {len(properties)} property dicts")
    kinds = dict(conditions) if isinstance(conditions, dict) else {n: None for n in conditions or []}
    config = config or CompositionLMConfig()
    config.conditions = [
        _condition_spec(name, kind, [_value(p, name) for p in properties]) for name, kind in kinds.items()
    ]
    torch.manual_seed(seed)
    model = CompositionLM(config)
    names = model.condition_names
    examples = _Examples(model, compositions, properties, names)
    model.metadata = {"training": _fit(model, examples, names, epochs, batch_size, lr, resolve_device(device), seed,
                                       condition_dropout, progress)}  # fmt: skip
    return model


def finetune_composition_lm(
    model: CompositionLM,
    records_with_labels: Sequence[tuple[CompositionLike, dict]],
    conditions: dict[str, str | None] | Sequence[str] | None = None,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 5e-4,
    device: str = "cpu",
    seed: int = 0,
    condition_dropout: float = 0.3,
    progress: bool = False,
) -> CompositionLM:
    """Continue training ``model`` (in place, weights kept) on (composition, labels) pairs.

    Conditions default to every label name; names the model lacks are added as new conditions (kind from
    ``conditions`` or inferred), so each campaign round can fine-tune on fresh stability labels.
    """
    torch.manual_seed(seed)  # new condition embeddings start the same wherever this runs (a resumed campaign too)
    compositions = [c for c, _ in records_with_labels]
    labels = [dict(l or {}) for _, l in records_with_labels]
    if conditions is None:
        conditions = sorted({name for l in labels for name in l})
    kinds = dict(conditions) if isinstance(conditions, dict) else {n: None for n in conditions}
    for name, kind in kinds.items():
        if name not in model.conditions:
            model.add_condition(_condition_spec(name, kind, [_value(l, name) for l in labels]))
    names = model.condition_names
    examples = _Examples(model, compositions, labels, names)
    report = _fit(model, examples, names, epochs, batch_size, lr, resolve_device(device), seed, condition_dropout, progress)
    model.metadata.setdefault("finetunes", []).append({**report, "conditions": list(kinds)})
    return model
