"""Training and fine-tuning of DiffCSP on the shared loop (``crysloop.models.training``): AdamW, EMA weights,
gradient clipping, LR decay on plateau, resumable checkpoints.

Runs on CPU and CUDA alike (bf16 autocast on CUDA by default; ``compile=True`` compiles the message-passing
layers). Progress shows in a tqdm bar; per-epoch metrics go to a JSON-lines log.

How the shipped checkpoint was trained, and its figures: docs/checkpoints.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch

from crysloop.data.tensors import CrystalTensors
from crysloop.data.tensors import records_to_tensors as tensors_of
from crysloop.errors import InputError
from crysloop.models.checkpoint import resume_from
from crysloop.models.diffcsp.checkpoints import KIND, save_checkpoint
from crysloop.models.diffcsp.config import DiffCSPConfig
from crysloop.models.diffcsp.model import MAX_ATOMS, DiffCSP
from crysloop.models.slab import slab_geometry, to_slab_cells
from crysloop.models.training import OptimizerConfig, RunConfig, Trainer, seed_everything
from crysloop.settings import resolve_device

FinetuneScope = Literal["all", "conditions"]


def records_to_tensors(records: Iterable[Any], properties: Sequence[str] = ()) -> CrystalTensors:
    """Training crystals as tensors (``crysloop.data.tensors.records_to_tensors``), at most ``MAX_ATOMS`` each."""
    return tensors_of(records, properties, max_atoms=MAX_ATOMS)


def property_statistics(
    tensors: CrystalTensors, names: Sequence[str], wanted: Sequence[str] | None = None
) -> dict[str, tuple[float, float]]:
    """(mean, std) of each ``wanted`` property (default: all) over the crystals that have it; ``names`` is the
    column order of ``tensors.properties``."""
    stats = {}
    for name in wanted if wanted is not None else names:
        column = tensors.properties[:, list(names).index(name)]
        column = column[~torch.isnan(column)]
        if len(column) == 0:
            raise InputError(f"no training crystal has a value for the condition {name!r}")
        std = float(column.std()) if len(column) > 1 else 0.0
        stats[name] = (float(column.mean()), std if std > 1e-8 else 1.0)
    return stats


def optimizer_config(config: DiffCSPConfig) -> OptimizerConfig:
    """DiffCSP's optimisation: AdamW, the learning rate cut on plateau, gradient clipping, EMA weights."""
    return OptimizerConfig(
        "adamw",
        lr=config.lr,
        weight_decay=config.weight_decay,
        schedule="plateau",
        plateau_factor=config.plateau_factor,
        plateau_patience=config.plateau_patience,
        min_lr=config.min_lr,
        clip=config.grad_clip,
        clip_mode=config.grad_clip_mode,
        ema_decay=config.ema_decay,
    )


def _as_tensors(data: Any, properties: Sequence[str]) -> CrystalTensors:
    return data if isinstance(data, CrystalTensors) else records_to_tensors(data, properties)


@torch.no_grad()
def _validation_loss(model: DiffCSP, data: CrystalTensors, batch_size: int, seed: int) -> float:
    state = torch.random.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    torch.manual_seed(seed)
    losses, weights = [], []
    for start in range(0, len(data.num_atoms), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data.num_atoms)), device=data.num_atoms.device)
        losses.append(float(model.loss(data.select(idx))["loss"]))
        weights.append(len(idx))
    torch.random.set_rng_state(state)
    if cuda_state is not None:
        torch.cuda.set_rng_state_all(cuda_state)
    return sum(loss * w for loss, w in zip(losses, weights, strict=True)) / sum(weights)


class _Denoising:
    """DiffCSP in the training loop: shuffled batches, the denoising loss (bf16 autocast on CUDA when ``amp``),
    the validation loss of the EMA weights at each epoch's end."""

    def __init__(self, model: DiffCSP, data: CrystalTensors, val: CrystalTensors | None, seed: int, amp: bool):
        self.model, self.data, self.val, self.seed, self.amp = model, data, val, seed, amp
        self.batch_size = model.config.batch_size
        self.steps_per_epoch = math.ceil(len(data.num_atoms) / self.batch_size)
        self.generators = {"order": torch.Generator().manual_seed(seed)}
        self.monitor = "train_loss" if val is None else "val_loss"

    def batches(self) -> list[torch.Tensor]:
        return list(torch.randperm(len(self.data.num_atoms), generator=self.generators["order"]).split(self.batch_size))

    def step(self, idx: torch.Tensor, trainer: Trainer) -> dict[str, float]:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            losses = self.model.loss(self.data.select(idx.to(self.data.num_atoms.device)))
        trainer.optimise("model", losses["loss"])
        return {f"train_{key}": float(value.detach()) for key, value in losses.items()}

    def end_epoch(self, trainer: Trainer, metrics: dict[str, float]) -> dict[str, float]:
        if self.val is None:
            return {}
        return {"val_loss": _validation_loss(trainer.weights("model"), self.val, self.batch_size, self.seed)}


def train_diffcsp(
    records: Iterable[Any] | CrystalTensors,
    config: DiffCSPConfig,
    device: str | None = None,
    steps: int | None = None,
    epochs: int | None = None,
    val_records: Iterable[Any] | CrystalTensors | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    log_path: str | Path | None = None,
    model: DiffCSP | None = None,
    seed: int = 0,
    time_limit_s: float | None = None,
    checkpoint_every: int = 10,
    slim: bool = False,
    amp: bool | None = None,
    compile: bool = False,
    progress: bool = True,
) -> DiffCSP:
    """Train DiffCSP on crystals (with properties for conditioning); returns the EMA model in eval mode.

    Stops after ``steps`` optimiser steps or ``epochs`` passes (default 100 epochs), or at ``time_limit_s``.
    ``checkpoint_path`` is written every ``checkpoint_every`` epochs and at the end (``slim``: EMA weights only,
    no training state); ``resume=True`` continues from it. ``model`` continues training an existing model.
    """
    device = resolve_device(device)
    seed_everything(seed)
    data = _as_tensors(records, config.properties)
    missing = [name for name in config.properties if name not in config.property_stats]
    if missing:
        stats = property_statistics(data, config.properties, missing)
        config = replace(config, property_stats={**config.property_stats, **stats})
    if config.semi_periodic and config.slab is None:
        geometry = slab_geometry(data)
        config = replace(config, slab_c=geometry.c, slab_half_width=geometry.half_width)
    val = _as_tensors(val_records, config.properties) if val_records is not None else None
    if config.slab is not None:  # slab cells: the model's fixed c, slabs centred
        data = to_slab_cells(data, config.slab)
        val = to_slab_cells(val, config.slab) if val is not None else None
    val = val.to(device) if val is not None else None
    data = data.to(device)
    if model is None:
        model = DiffCSP(config)
    elif model.config != config:
        raise InputError("train_diffcsp: the model's config differs from the config given")
    model = model.to(device).train()
    if model.num_atoms_counts.sum() == 0:
        model.num_atoms_counts.copy_(torch.bincount(data.num_atoms, minlength=MAX_ATOMS + 1)[: MAX_ATOMS + 1].float())
    n = len(data.num_atoms)

    def save(trainer: Trainer) -> None:
        if checkpoint_path is None:
            return
        metadata = {
            "steps": trainer.step,
            "epochs": trainer.epoch,
            "train_crystals": n,
            "device": device,
            "train_seconds": trainer.elapsed,
        }
        save_checkpoint(trainer.weights("model"), checkpoint_path, None if slim else trainer.state_dict(), metadata)

    use_amp = device.startswith("cuda") if amp is None else amp
    run = RunConfig(
        steps=steps,
        epochs=epochs if epochs is not None else 100,
        time_limit_s=time_limit_s,
        checkpoint_every=checkpoint_every,
        log_path=log_path,
        progress=progress,
        name="training DiffCSP",
    )
    trainer = Trainer(
        {"model": (model, optimizer_config(config))}, _Denoising(model, data, val, seed, use_amp), run, save
    )
    saved = resume_from(checkpoint_path, KIND) if resume else None
    if saved is not None:
        trainer.load_state_dict(saved["training_state"])
    if compile:
        for layer in model.denoiser.layers:
            layer.compile(dynamic=True)
    trainer.fit()
    return trainer.weights("model").eval()


def finetune_diffcsp(
    model: DiffCSP,
    records: Iterable[Any],
    new_properties: Sequence[str] = (),
    steps: int | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    scope: FinetuneScope = "all",
    **train_kwargs: Any,
) -> DiffCSP:
    """Continue training ``model`` on new labelled crystals, keeping its weights and adding embeddings for
    ``new_properties`` (output layer zero: an untrained condition changes nothing); returns the fine-tuned EMA model.

    ``scope="conditions"`` trains the property embeddings only and leaves the denoiser as it was, so the
    unconditional model is unchanged; ``"all"`` trains every weight.
    """
    names = tuple(model.config.properties) + tuple(p for p in new_properties if p not in model.config.properties)
    data = _as_tensors(records, names)
    added = tuple(p for p in names if p not in model.config.properties)
    stats = property_statistics(data, names, added) if added else {}
    config = model.config.with_properties(added, stats)
    if lr is not None:
        config = replace(config, lr=lr)
    missing_stats = [p for p in config.properties if p not in config.property_stats]
    if missing_stats:
        raise InputError(f"no statistics for the conditions {missing_stats}")
    seed_everything(train_kwargs.get("seed", 0))  # the new property embeddings start the same wherever this runs
    new_model = DiffCSP(config)
    result = new_model.load_state_dict(model.state_dict(), strict=False)
    if result.unexpected_keys or any(not k.startswith("property_embeddings.") for k in result.missing_keys):
        raise InputError("finetune_diffcsp: the model's weights do not fit its config")
    for name in added:  # a new condition starts as a no-op: its embedding's output layer is zero until trained
        output = new_model.property_embeddings[config.properties.index(name)][-1]
        torch.nn.init.zeros_(output.weight)
        torch.nn.init.zeros_(output.bias)
    if scope not in ("all", "conditions"):
        raise InputError(f"fine-tuning scope must be 'all' or 'conditions', not {scope!r}")
    if scope == "conditions":
        if not config.properties:
            raise InputError("fine-tuning scope 'conditions' needs a condition to train; this model has none")
        for name, parameter in new_model.named_parameters():
            parameter.requires_grad_(name.startswith("property_embeddings."))
    if epochs is None and steps is None:
        epochs = 20
    return train_diffcsp(data, config, steps=steps, epochs=epochs, model=new_model, **train_kwargs)
