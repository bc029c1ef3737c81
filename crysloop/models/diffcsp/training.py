"""Training and fine-tuning of DiffCSP: EMA weights, gradient clipping, LR decay on plateau, resumable checkpoints.

Runs on CPU and CUDA alike (bf16 autocast on CUDA by default; ``compile=True`` compiles the message-passing
layers). Progress shows in a tqdm bar; per-epoch metrics go to a JSON-lines log.

The shipped checkpoint ``crysloop/assets/checkpoints/diffcsp_mp20_small.pt`` was first trained by::

    crysloop structures train ../shared/data/mp_20_biternary/val.csv.gz ../shared/data/mp_20_sample/train.csv.gz \\
        --preset cpu-small --mode abinitio --properties band_gap,formation_energy_per_atom --batch-size 64 \\
        --epochs 300 --time-limit 2100 --seed 0 --slim --threads 1 \\
        --out crysloop/assets/checkpoints/diffcsp_mp20_small.pt

(7,987 crystals: the MP-20 binary/ternary val rows plus the MP-20 sample train rows; 5,653 steps, 46 epochs before
the time limit) with the earlier model (no self-edges, type loss weight 1, global-norm clipping, independent
condition dropping). It was then retrained with the fixed model and DiffCSP's settings, starting from those
weights (a copy of them in old.pt), by the same command with ``--init old.pt --time-limit 2400`` (1,646 more
steps, 14 epochs: the shared 2-core CPU was heavily loaded). Both are demo models, far from converged: the same
command with ``--device cuda`` and no ``--time-limit`` trains the full 300 epochs. The metrics logs of both runs,
one after the other, sit beside the checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from crysloop.data.tensors import CrystalTensors
from crysloop.data.tensors import records_to_tensors as tensors_of
from crysloop.errors import InputError
from crysloop.settings import resolve_device
from crysloop.models.diffcsp.checkpoints import read_checkpoint, save_checkpoint
from crysloop.models.diffcsp.config import DiffCSPConfig
from crysloop.models.diffcsp.model import MAX_ATOMS, DiffCSP
from crysloop.models.slab import slab_geometry, to_slab_cells

FinetuneScope = Literal["all", "conditions"]


def records_to_tensors(records: Iterable[Any], properties: Sequence[str] = ()) -> CrystalTensors:
    """Training crystals as tensors (``crysloop.data.tensors.records_to_tensors``), at most ``MAX_ATOMS`` each."""
    return tensors_of(records, properties, max_atoms=MAX_ATOMS)


def property_statistics(tensors: CrystalTensors, names: Sequence[str],
                        wanted: Sequence[str] | None = None) -> dict[str, tuple[float, float]]:
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


def _ema_fn(decay: float):
    """EMA update whose decay warms up as min(decay, (1 + n) / (10 + n)), so short runs are not dominated by
    the random initial weights (a fixed 0.999 keeps 37% of them after 1,000 steps)."""

    def update(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        n = float(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        return d * averaged + (1 - d) * current

    return update


def clip_gradients(model: torch.nn.Module, config: DiffCSPConfig) -> None:
    """Clip each gradient value to +-``grad_clip`` (DiffCSP, Lightning's ``gradient_clip_algorithm="value"``) or
    the global gradient norm to ``grad_clip`` (``grad_clip_mode="norm"``)."""
    if config.grad_clip_mode == "value":
        torch.nn.utils.clip_grad_value_(model.parameters(), config.grad_clip)
    else:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)


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
    no optimiser state); ``resume=True`` continues from it. ``model`` continues training an existing model.
    """
    device = resolve_device(device)
    torch.manual_seed(seed)
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
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=config.plateau_factor, patience=config.plateau_patience, min_lr=config.min_lr
    )
    ema = AveragedModel(model, avg_fn=_ema_fn(config.ema_decay), use_buffers=True)
    n = len(data.num_atoms)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = steps if steps is not None else (epochs if epochs is not None else 100) * steps_per_epoch
    step, epoch, elapsed_before = 0, 0, 0.0
    if resume and checkpoint_path is not None and Path(checkpoint_path).is_file():
        payload = read_checkpoint(checkpoint_path)
        state = payload.get("training_state")
        if state is None:
            raise InputError(f"{checkpoint_path} holds no training state (saved slim); cannot resume")
        model.load_state_dict(state["model"])
        ema.module.load_state_dict(payload["state_dict"])
        ema.n_averaged.fill_(state["n_averaged"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, elapsed_before = state["step"], state["epoch"], state.get("elapsed_s", 0.0)
    if compile:
        for layer in model.denoiser.layers:
            layer.compile(dynamic=True)
    use_amp = (device.startswith("cuda")) if amp is None else amp
    generator = torch.Generator().manual_seed(seed + epoch)
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "a") if log_path else None  # noqa: SIM115 - closed in the finally below
    start_time = time.monotonic()

    def save() -> None:
        if checkpoint_path is None:
            return
        metadata = {"steps": step, "epochs": epoch, "train_crystals": n, "device": device,
                    "train_seconds": elapsed_before + time.monotonic() - start_time}
        training_state = None if slim else {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "n_averaged": int(ema.n_averaged), "step": step, "epoch": epoch, "elapsed_s": metadata["train_seconds"],
        }
        save_checkpoint(ema.module, checkpoint_path, training_state, metadata)

    bar = tqdm(total=total_steps, initial=step, desc="training DiffCSP", disable=not progress, dynamic_ncols=True)
    try:
        out_of_time = False
        while step < total_steps and not out_of_time:
            sums: dict[str, float] = {}
            seen = 0
            for idx in torch.randperm(n, generator=generator).to(device).split(config.batch_size):
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                    losses = model.loss(data.select(idx))
                optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                clip_gradients(model, config)
                optimizer.step()
                ema.update_parameters(model)
                step += 1
                seen += 1
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + float(value.detach())
                bar.update(1)
                if step >= total_steps:
                    break
                if time_limit_s is not None and time.monotonic() - start_time > time_limit_s:
                    out_of_time = True
                    break
            epoch += 1
            metrics = {f"train_{k}": v / max(seen, 1) for k, v in sums.items()}
            monitor = metrics.get("train_loss", float("inf"))
            if val is not None:
                metrics["val_loss"] = monitor = _validation_loss(ema.module, val, config.batch_size, seed)
            scheduler.step(monitor)
            metrics.update(epoch=epoch, step=step, lr=optimizer.param_groups[0]["lr"],
                           seconds=round(elapsed_before + time.monotonic() - start_time, 2))
            bar.set_postfix(loss=f"{metrics.get('train_loss', float('nan')):.4f}", lr=f"{metrics['lr']:.1e}")
            if log is not None:
                log.write(json.dumps(metrics) + "\n")
                log.flush()
            if checkpoint_every and epoch % checkpoint_every == 0:
                save()
        save()
    finally:
        bar.close()
        if log is not None:
            log.close()
    return ema.module.eval()


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
    torch.manual_seed(train_kwargs.get("seed", 0))  # the new property embeddings start the same wherever this runs
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
