"""One training loop for every crysloop model: DiffCSP, ConditionCDVAE+ and its latent WGAN-GP, and the composition
language model.

The loop owns what training has in common: optimisers and learning-rate schedules built from a typed config,
gradient clipping, EMA weights, step/epoch/time limits, a tqdm bar, a JSON-lines metrics log and the resumable
state (weights, optimisers, schedules, EMA, random generators, counters, time spent) handed to the caller's
checkpoint writer at epoch ends. A model brings a ``TrainingTask``: the batches of an epoch, one step on a batch
(each loss handed to ``Trainer.optimise`` with the name of the part it trains; a GAN trains two) and what an
epoch's end adds (a validation loss, the figure the plateau schedules follow).

Checkpoints are written at epoch ends only (a run stopped by a step or time limit ends its partial epoch first), so
a run killed at any step and resumed from its last checkpoint repeats the same steps with the same random numbers.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from crysloop.errors import InputError

RandomStream = torch.Generator | random.Random


@dataclass(frozen=True)
class OptimizerConfig:
    """How one part of a model is trained: the optimiser, its learning-rate schedule (``plateau``: cut by
    ``plateau_factor`` when the monitored figure has not improved for ``plateau_patience`` epochs; ``one-cycle``:
    warm up to ``lr`` and anneal over the run), gradient clipping (each value or the global norm) and an optional
    EMA of the weights."""

    algorithm: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: Literal["constant", "plateau", "one-cycle"] = "constant"
    plateau_factor: float = 0.1
    plateau_patience: int = 10
    min_lr: float = 0.0
    clip: float | None = None
    clip_mode: Literal["value", "norm"] = "norm"
    ema_decay: float | None = None

    def optimizer(self, parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        """The optimiser over ``parameters``."""
        algorithm = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[self.algorithm]
        return algorithm(parameters, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)

    def scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        """The learning-rate schedule of ``optimizer`` over a run of ``total_steps`` steps (None: constant)."""
        if self.schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=self.plateau_factor, patience=self.plateau_patience, min_lr=self.min_lr
            )
        if self.schedule == "one-cycle":
            steps = max(total_steps, 4)  # at least two warm-up steps (a campaign round may fine-tune on a few labels)
            return torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=self.lr, total_steps=steps, pct_start=max(0.1, 2 / steps)
            )
        return None


@dataclass(frozen=True)
class RunConfig:
    """How long a run goes and what it reports: ``steps`` optimiser steps if given, else ``epochs`` passes, and at
    most ``time_limit_s`` seconds; a checkpoint every ``checkpoint_every`` epochs (0: at the end only); a progress
    bar labelled ``name``; one line of metrics per epoch in ``log_path``, with ``log_prefix`` before the epoch and
    step counters (two stages can share a log)."""

    steps: int | None = None
    epochs: int = 100
    time_limit_s: float | None = None
    checkpoint_every: int = 0
    log_path: Path | None = None
    log_prefix: str = ""
    progress: bool = True
    name: str = "training"


class TrainingTask(Protocol):
    """What a model brings to the loop."""

    steps_per_epoch: int
    generators: dict[str, RandomStream]  # random streams besides torch's global ones, saved for resuming
    monitor: str | None  # the epoch metric that plateau schedules follow

    def batches(self) -> list[Any]:
        """The batches of the next epoch, in training order."""

    def step(self, batch: Any, trainer: Trainer) -> dict[str, float]:
        """One step on ``batch``: losses to ``trainer.optimise``; returns figures averaged over the epoch."""

    def end_epoch(self, trainer: Trainer, metrics: dict[str, float]) -> dict[str, float]:
        """Figures the end of an epoch adds to the epoch's averages ``metrics``."""


def seed_everything(seed: int) -> None:
    """Seed torch's global generators (CPU and every GPU); model code draws its noise from them."""
    torch.manual_seed(seed)


def clip_gradients(module: nn.Module, config: OptimizerConfig) -> None:
    """Clip each gradient value of ``module`` to +-``config.clip`` (``clip_mode="value"``) or their global norm to
    ``config.clip`` (``"norm"``); nothing when ``clip`` is None."""
    if config.clip is None:
        return
    if config.clip_mode == "value":
        torch.nn.utils.clip_grad_value_(module.parameters(), config.clip)
    else:
        torch.nn.utils.clip_grad_norm_(module.parameters(), config.clip)


def ema_update(decay: float) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """EMA update whose decay warms up as min(decay, (1 + n) / (10 + n)), so short runs are not dominated by
    the random initial weights (a fixed 0.999 keeps 37% of them after 1,000 steps)."""

    def update(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        n = float(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        return d * averaged + (1 - d) * current

    return update


class Trainer:
    """Trains the named parts of a model (``{name: (module, optimiser config)}``) on a task; ``fit`` runs the loop,
    ``state_dict``/``load_state_dict`` save and resume it, ``on_checkpoint(trainer)`` writes checkpoints."""

    def __init__(
        self,
        parts: dict[str, tuple[nn.Module, OptimizerConfig]],
        task: TrainingTask,
        run: RunConfig,
        on_checkpoint: Callable[[Trainer], None] | None = None,
    ):
        self.task, self.run, self.on_checkpoint = task, run, on_checkpoint
        self.total_steps = run.steps if run.steps is not None else run.epochs * task.steps_per_epoch
        self.modules: dict[str, nn.Module] = {}
        self.configs: dict[str, OptimizerConfig] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        self.emas: dict[str, AveragedModel] = {}
        for name, (module, config) in parts.items():
            self.modules[name], self.configs[name] = module, config
            self.optimizers[name] = config.optimizer(module.parameters())
            self.schedulers[name] = config.scheduler(self.optimizers[name], self.total_steps)
            if config.ema_decay is not None:
                self.emas[name] = AveragedModel(module, avg_fn=ema_update(config.ema_decay), use_buffers=True)
        self.step, self.epoch, self.elapsed_before = 0, 0, 0.0
        self.metrics: dict[str, float] = {}  # the last epoch's
        self._start = time.monotonic()

    @property
    def elapsed(self) -> float:
        """Seconds spent training, earlier runs of a resumed one included."""
        return self.elapsed_before + time.monotonic() - self._start

    def weights(self, name: str) -> nn.Module:
        """The module to keep of part ``name``: its EMA where it has one."""
        return self.emas[name].module if name in self.emas else self.modules[name]

    def optimise(self, name: str, loss: torch.Tensor) -> None:
        """One optimiser step of part ``name`` on ``loss``: gradients, clipping, step, per-step schedule, EMA."""
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(self.modules[name], self.configs[name])
        optimizer.step()
        scheduler = self.schedulers[name]
        if scheduler is not None and not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step()
        if name in self.emas:
            self.emas[name].update_parameters(self.modules[name])

    def fit(self) -> None:
        """Train until the step or epoch budget is spent or time runs out; checkpoints as configured."""
        run = self.run
        self._start = time.monotonic()
        log = None
        if run.log_path is not None:
            Path(run.log_path).parent.mkdir(parents=True, exist_ok=True)
            log = open(run.log_path, "a")  # noqa: SIM115 - closed in the finally below
        bar = tqdm(
            total=self.total_steps, initial=self.step, desc=run.name, disable=not run.progress, dynamic_ncols=True
        )
        try:
            out_of_time = False
            while self.step < self.total_steps and not out_of_time:
                sums: dict[str, float] = {}
                counts: dict[str, int] = {}
                batches = self.task.batches()
                if not batches:
                    raise InputError(f"{run.name}: an epoch has no batches (no training data?)")
                for batch in batches:
                    for key, value in self.task.step(batch, self).items():
                        sums[key] = sums.get(key, 0.0) + value
                        counts[key] = counts.get(key, 0) + 1
                    self.step += 1
                    bar.update(1)
                    if self.step >= self.total_steps:
                        break
                    if run.time_limit_s is not None and time.monotonic() - self._start > run.time_limit_s:
                        out_of_time = True
                        break
                self.epoch += 1
                self._end_epoch({key: total / counts[key] for key, total in sums.items()}, log, bar)
            self.checkpoint()
        finally:
            bar.close()
            if log is not None:
                log.close()

    def _end_epoch(self, metrics: dict[str, float], log, bar) -> None:
        metrics.update(self.task.end_epoch(self, metrics))
        monitored = metrics.get(self.task.monitor, math.inf) if self.task.monitor else math.inf
        for scheduler in self.schedulers.values():
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(monitored)
        rates = {name: optimizer.param_groups[0]["lr"] for name, optimizer in self.optimizers.items()}
        prefix = self.run.log_prefix
        metrics.update({f"{prefix}epoch": self.epoch, f"{prefix}step": self.step})
        metrics.update(
            {"lr": next(iter(rates.values()))}
            if len(rates) == 1
            else {f"lr_{name}": rate for name, rate in rates.items()}
        )
        metrics["seconds"] = round(self.elapsed, 2)
        self.metrics = metrics
        if self.task.monitor in metrics:
            bar.set_postfix({self.task.monitor: f"{metrics[self.task.monitor]:.4g}"})
        if log is not None:
            log.write(json.dumps(metrics) + "\n")
            log.flush()
        if self.run.checkpoint_every and self.epoch % self.run.checkpoint_every == 0:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Hand the run to the checkpoint writer, if any."""
        if self.on_checkpoint is not None:
            self.on_checkpoint(self)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to take the same steps as an uninterrupted one (plain data)."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "elapsed_s": self.elapsed,
            "modules": {name: module.state_dict() for name, module in self.modules.items()},
            "optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items() if s is not None},
            "ema": {name: ema.state_dict() for name, ema in self.emas.items()},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "task": {name: _stream_state(stream) for name, stream in self.task.generators.items()},
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the run saved in ``state``."""
        if "modules" not in state:
            raise InputError(
                "this training state was written by an earlier crysloop (checkpoint format 1) and "
                "cannot be resumed; start from the checkpoint's weights instead"
            )
        for name, module in self.modules.items():
            module.load_state_dict(state["modules"][name])
            self.optimizers[name].load_state_dict(state["optimizers"][name])
            if self.schedulers[name] is not None:
                self.schedulers[name].load_state_dict(state["schedulers"][name])
            if name in self.emas:
                self.emas[name].load_state_dict(state["ema"][name])
        self.step, self.epoch, self.elapsed_before = state["step"], state["epoch"], state["elapsed_s"]
        torch.set_rng_state(state["rng"]["torch"])
        if torch.cuda.is_available() and state["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        for name, stream in self.task.generators.items():
            _set_stream_state(stream, state["rng"]["task"][name])


def _stream_state(stream: RandomStream) -> Any:
    return stream.get_state() if isinstance(stream, torch.Generator) else stream.getstate()


def _set_stream_state(stream: RandomStream, state: Any) -> None:
    if isinstance(stream, torch.Generator):
        stream.set_state(state)
    else:
        stream.setstate(state)
