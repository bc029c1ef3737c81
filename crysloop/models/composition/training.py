"""Training and fine-tuning of the composition language model on labelled compositions, on the shared loop
(``crysloop.models.training``: AdamW, one-cycle learning rate, norm clipping, resumable checkpoints).

Each epoch shows every composition once with its (species, count) tuples in a fresh random order (permutation
augmentation). Property values are dropped to "no condition" with probability ``condition_dropout`` so the same
model samples unconditionally.

Training compositions are labelled with the model's oxidation-state vocabulary (``CompositionLMConfig.vocabulary``,
default the curated ``common`` one; see :mod:`crysloop.chemistry.oxidation`).

How the shipped checkpoint was trained, and its figures: docs/checkpoints.md.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pymatgen.core import Composition

from crysloop.chemistry.valence import ValenceAssignment, label_compositions
from crysloop.errors import InputError
from crysloop.models.checkpoint import resume_from
from crysloop.models.composition.checkpoint import KIND, save_checkpoint
from crysloop.models.composition.model import CompositionLM, CompositionLMConfig, ConditionSpec
from crysloop.models.composition.vocab import BOS, EOS, PAD, CompositionVocabulary
from crysloop.models.training import OptimizerConfig, RunConfig, Trainer, seed_everything
from crysloop.settings import resolve_device

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


OPTIMIZER = OptimizerConfig("adamw", weight_decay=0.01, schedule="one-cycle", clip=1.0)  # lr: the trainer's


class _LanguageModelling:
    """The composition model in the training loop: compositions in a fresh random order each epoch, their tuples
    freshly permuted, each condition value dropped with probability ``condition_dropout``."""

    monitor = None

    def __init__(
        self,
        model: CompositionLM,
        examples: _Examples,
        names: list[str],
        batch_size: int,
        seed: int,
        condition_dropout: float,
        device: str,
    ):
        self.model, self.examples, self.names, self.batch_size = model, examples, names, batch_size
        self.condition_dropout, self.device = condition_dropout, device
        self.steps_per_epoch = math.ceil(len(examples.tokens) / batch_size)
        self.generators = {"order": random.Random(seed)}

    def batches(self) -> list[list[int]]:
        order = list(range(len(self.examples.tokens)))
        self.generators["order"].shuffle(order)
        return [order[first : first + self.batch_size] for first in range(0, len(order), self.batch_size)]

    def step(self, indices: list[int], trainer: Trainer) -> dict[str, float]:
        batch = self.examples.batch(indices, self.generators["order"])
        species, counts, target_species, target_counts = (t.to(self.device) for t in batch)
        values = self.examples.values[indices].clone()
        values[torch.rand(values.shape) < self.condition_dropout] = math.nan
        conditions = {name: values[:, i].to(self.device) for i, name in enumerate(self.names)}
        hidden = self.model(species, counts, conditions)
        species_loss = F.cross_entropy(self.model.species_logits(hidden).flatten(0, 1), target_species.flatten())
        with_count = target_counts >= 0
        count_logits = self.model.count_logits(hidden[with_count], target_species[with_count])
        loss = species_loss + F.cross_entropy(count_logits, target_counts[with_count])
        trainer.optimise("model", loss)
        return {"train_loss": loss.item()}

    def end_epoch(self, trainer: Trainer, metrics: dict[str, float]) -> dict[str, float]:
        return {}


@dataclass(frozen=True)
class _Fit:
    """One training or fine-tuning run of the composition model (the public functions' arguments)."""

    epochs: int
    batch_size: int
    lr: float
    device: str
    seed: int
    condition_dropout: float
    progress: bool
    checkpoint_path: str | Path | None
    resume: bool
    checkpoint_every: int


def _fit(
    model: CompositionLM, examples: _Examples, names: list[str], fit: _Fit, record: Callable[[dict], None]
) -> None:
    """Train ``model`` on ``examples``; ``record(report)`` stores the run's report in the model's metadata before
    each checkpoint and at the end."""
    seed_everything(fit.seed)
    model.to(fit.device).train()

    def report(trainer: Trainer) -> dict:
        return {
            "n_train": len(examples.tokens),
            "skipped": examples.skipped,
            "epochs": trainer.epoch,
            "final_loss": trainer.metrics.get("train_loss", math.nan),
            "train_seconds": trainer.elapsed,
        }

    def save(trainer: Trainer) -> None:
        if fit.checkpoint_path is not None:
            record(report(trainer))
            save_checkpoint(model, fit.checkpoint_path, trainer.state_dict())

    task = _LanguageModelling(model, examples, names, fit.batch_size, fit.seed, fit.condition_dropout, fit.device)
    run = RunConfig(
        epochs=fit.epochs,
        checkpoint_every=fit.checkpoint_every,
        progress=fit.progress,
        name="training composition model",
    )
    trainer = Trainer({"model": (model, replace(OPTIMIZER, lr=fit.lr))}, task, run, save)
    saved = resume_from(fit.checkpoint_path, KIND) if fit.resume else None
    if saved is not None:
        trainer.load_state_dict(saved["training_state"])
    trainer.fit()
    model.eval()
    record(report(trainer))


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
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    checkpoint_every: int = 10,
) -> CompositionLM:
    """Train a new model on compositions (labelled here unless given as assignments).

    ``conditions`` names the properties to condition on (``{name: "binary" | "continuous" | None}``, None =
    infer from the values); their values come from ``properties``, one dict per composition (missing = NaN).
    ``checkpoint_path`` is written every ``checkpoint_every`` epochs and at the end; ``resume=True`` continues the
    run saved there.
    """
    properties = list(properties) if properties is not None else [{} for _ in compositions]
    if len(properties) != len(compositions):
        raise InputError(f"{len(compositions)} compositions but {len(properties)} property dicts")
    kinds = dict(conditions) if isinstance(conditions, dict) else dict.fromkeys(conditions or [])
    config = config or CompositionLMConfig()
    config.conditions = [
        _condition_spec(name, kind, [_value(p, name) for p in properties]) for name, kind in kinds.items()
    ]
    seed_everything(seed)
    model = CompositionLM(config)
    names = model.condition_names
    examples = _Examples(model, compositions, properties, names)
    fit = _Fit(
        epochs,
        batch_size,
        lr,
        resolve_device(device),
        seed,
        condition_dropout,
        progress,
        checkpoint_path,
        resume,
        checkpoint_every,
    )
    _fit(model, examples, names, fit, lambda report: model.metadata.update(training=report))
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
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    checkpoint_every: int = 10,
) -> CompositionLM:
    """Continue training ``model`` (in place, weights kept) on (composition, labels) pairs.

    Conditions default to every label name; names the model lacks are added as new conditions (kind from
    ``conditions`` or inferred), so each campaign round can fine-tune on fresh stability labels. Checkpoints and
    resuming as in ``train_composition_lm``.
    """
    seed_everything(seed)  # new condition embeddings start the same wherever this runs (a resumed campaign too)
    compositions = [c for c, _ in records_with_labels]
    labels = [dict(l or {}) for _, l in records_with_labels]
    if conditions is None:
        conditions = sorted({name for l in labels for name in l})
    kinds = dict(conditions) if isinstance(conditions, dict) else dict.fromkeys(conditions)
    for name, kind in kinds.items():
        if name not in model.conditions:
            model.add_condition(_condition_spec(name, kind, [_value(l, name) for l in labels]))
    names = model.condition_names
    examples = _Examples(model, compositions, labels, names)
    fit = _Fit(
        epochs,
        batch_size,
        lr,
        resolve_device(device),
        seed,
        condition_dropout,
        progress,
        checkpoint_path,
        resume,
        checkpoint_every,
    )
    finetunes = model.metadata.setdefault("finetunes", [])
    finetunes.append({})

    def record(report: dict) -> None:
        finetunes[-1] = {**report, "conditions": list(kinds)}

    _fit(model, examples, names, fit, record)
    return model
