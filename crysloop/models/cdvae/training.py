"""Training of ConditionCDVAE+ on the shared loop (``crysloop.models.training``): the VAE (teacher forcing of the
lattice early, LR decay on plateau), then the latent WGAN-GP on the frozen encoder, both resumable from one
checkpoint; fine-tuning continues both on new labelled crystals.

How the shipped checkpoint was trained, and its figures: docs/checkpoints.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from crysloop.data.graph import radius_graph_pbc
from crysloop.data.tensors import CrystalTensors
from crysloop.errors import InputError
from crysloop.models.cdvae.checkpoints import KIND, save_checkpoint
from crysloop.models.cdvae.config import CDVAEConfig
from crysloop.models.cdvae.gan import GANConfig, LatentGAN, train_latent_gan
from crysloop.models.cdvae.model import ConditionCDVAE, lattice_features
from crysloop.models.checkpoint import resume_from
from crysloop.models.slab import fits_slab, slab_geometry, to_slab_cells
from crysloop.models.training import OptimizerConfig, RunConfig, Trainer, seed_everything
from crysloop.settings import resolve_device


def as_tensors(data: Iterable[Any] | CrystalTensors, config: CDVAEConfig) -> CrystalTensors:
    """CrystalTensors with the config's numeric conditions as property columns (records are Niggli-reduced); a
    fitted semi-periodic model gets slab cells (its fixed c, slabs centred)."""
    from crysloop.data.tensors import records_to_tensors

    tensors = data if isinstance(data, CrystalTensors) else records_to_tensors(data, config.scalar_conditions)
    return tensors if config.slab is None else to_slab_cells(tensors, config.slab)


def dataset_statistics(data: CrystalTensors, config: CDVAEConfig, sample: int = 256) -> dict[str, Any]:
    """Scalers and graph statistics of the data in use: lattice feature mean/std, property mean/std, largest
    cell, elements present, mean atom count and mean degree of the periodic radius graph; for a semi-periodic
    config first the slab geometry, on whose cells the rest is computed."""
    slab: dict[str, float] = {}
    if config.semi_periodic:
        geometry = slab_geometry(data, config.cutoff)
        data = to_slab_cells(data, geometry)
        slab = {"slab_c": geometry.c, "slab_half_width": geometry.half_width}
    feats = lattice_features(data.lattice.double(), data.num_atoms).float()
    std = feats.std(dim=0) if len(feats) > 1 else torch.ones(6)
    stats: dict[str, Any] = {
        "lattice_stats": (tuple(feats.mean(dim=0).tolist()), tuple(torch.where(std > 1e-6, std, 1.0).tolist())),
        "max_atoms": int(data.num_atoms.max()),
        "elements": tuple(sorted(set(data.atom_types.tolist()))),
        "mean_num_atoms": float(data.num_atoms.float().mean()),
        **slab,
    }
    props = {}
    for i, name in enumerate(config.scalar_conditions):
        column = data.properties[:, i]
        column = column[~torch.isnan(column)]
        if len(column) == 0:
            raise InputError(f"no training crystal has a value for the condition {name!r}")
        spread = float(column.std()) if len(column) > 1 else 0.0
        props[name] = (float(column.mean()), spread if spread > 1e-8 else 1.0)
    stats["property_stats"] = props
    subset = data.select(torch.arange(min(sample, len(data.num_atoms))))
    graph = radius_graph_pbc(subset.frac_coords, subset.lattice, subset.num_atoms, config.cutoff, config.max_neighbors)
    stats["mean_degree"] = graph.edge_index.shape[1] / len(subset.atom_types)
    return stats


def optimizer_config(config: CDVAEConfig) -> OptimizerConfig:
    """The VAE's optimisation: Adam, the rate cut on plateau of the training loss, global-norm clipping."""
    return OptimizerConfig(
        "adam",
        lr=config.lr,
        schedule="plateau",
        plateau_factor=config.plateau_factor,
        plateau_patience=config.plateau_patience,
        min_lr=config.min_lr,
        clip=config.grad_clip,
    )


class _Autoencoding:
    """The VAE in the training loop: shuffled batches, the lattice teacher-forced for the first
    ``teacher_forcing_fraction`` of the steps (and of the time limit)."""

    monitor = "train_loss"

    def __init__(self, model: ConditionCDVAE, data: CrystalTensors, seed: int, time_limit_s: float | None):
        self.model, self.data, self.time_limit_s = model, data, time_limit_s
        self.batch_size = model.config.batch_size
        self.steps_per_epoch = math.ceil(len(data.num_atoms) / self.batch_size)
        self.generators = {"order": torch.Generator().manual_seed(seed)}

    def batches(self) -> list[torch.Tensor]:
        return list(torch.randperm(len(self.data.num_atoms), generator=self.generators["order"]).split(self.batch_size))

    def step(self, idx: torch.Tensor, trainer: Trainer) -> dict[str, float]:
        fraction = self.model.config.teacher_forcing_fraction
        teacher = trainer.step < fraction * trainer.total_steps and (
            self.time_limit_s is None or trainer.elapsed < fraction * self.time_limit_s
        )
        losses = self.model.loss(self.data.select(idx.to(self.data.num_atoms.device)), teacher_forcing=teacher)
        trainer.optimise("model", losses["loss"])
        return {f"train_{key}": float(value.detach()) for key, value in losses.items()}

    def end_epoch(self, trainer: Trainer, metrics: dict[str, float]) -> dict[str, float]:
        return {}


class _Checkpoints:
    """Both stages checkpoint to one file: the VAE's weights, the GAN's generator once it trains, a summary, and
    (unless ``slim``) the training state of the stage in progress."""

    def __init__(self, model: ConditionCDVAE, path: str | Path | None, slim: bool, summary: dict[str, Any]):
        self.model, self.path, self.slim, self.summary = model, path, slim, summary

    def vae(self, trainer: Trainer) -> None:
        self.summary.update(steps=trainer.step, epochs=trainer.epoch, vae_seconds=round(trainer.elapsed, 1))
        self._write(None, trainer, "vae", trainer.elapsed)

    def gan(self, gan: LatentGAN, trainer: Trainer) -> None:
        self._write(gan, trainer, "gan", self.summary["vae_seconds"] + trainer.elapsed)

    def _write(self, gan: LatentGAN | None, trainer: Trainer, stage: str, seconds: float) -> None:
        if self.path is None:
            return
        state = None if self.slim else {**trainer.state_dict(), "stage": stage, "summary": self.summary}
        save_checkpoint(self.model, self.path, gan, {**self.summary, "train_seconds": round(seconds, 1)}, state)


def train_cdvae(
    records: Iterable[Any] | CrystalTensors,
    config: CDVAEConfig,
    device: str | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    time_limit_s: float | None = None,
    gan_config: GANConfig | None = None,
    gan_epochs: int = 0,
    checkpoint_path: str | Path | None = None,
    log_path: str | Path | None = None,
    model: ConditionCDVAE | None = None,
    seed: int = 0,
    progress: bool = True,
    resume: bool = False,
    checkpoint_every: int = 10,
    slim: bool = False,
) -> tuple[ConditionCDVAE, LatentGAN | None]:
    """Train the VAE for ``steps`` optimiser steps or ``epochs`` passes (default 100) or until ``time_limit_s``,
    then (``gan_epochs`` > 0) the latent WGAN-GP; returns both in eval mode.

    A new model takes its scalers from ``records``; ``model`` continues training an existing one (fine-tuning).
    ``checkpoint_path`` is written every ``checkpoint_every`` epochs of either stage and at the end (``slim``:
    without the training state); ``resume=True`` continues the run saved there, in whichever stage it stopped.
    """
    device = resolve_device(device)
    seed_everything(seed)
    data = as_tensors(records, config)
    if model is None:
        config = replace(config, **dataset_statistics(data, config))
        model = ConditionCDVAE(config)
    data = as_tensors(data, model.config)
    too_big = int(data.num_atoms.max()) > model.config.max_atoms
    if too_big:
        raise InputError(f"a training crystal has more than the model's {model.config.max_atoms} atoms")
    data = data.to(device)
    model = model.to(device).train()
    saved = resume_from(checkpoint_path, KIND) if resume else None
    state = saved["training_state"] if saved is not None else None
    checkpoints = _Checkpoints(
        model,
        checkpoint_path,
        slim,
        {"train_crystals": len(data.num_atoms), "device": device, "gan_epochs": gan_epochs},
    )
    if state is not None and state["stage"] == "gan":  # the VAE was trained to the end before the GAN began
        model.load_state_dict(saved["state_dict"])
        checkpoints.summary.update(state["summary"])
    else:
        run = RunConfig(
            steps=steps,
            epochs=epochs if epochs is not None else 100,
            time_limit_s=time_limit_s,
            checkpoint_every=checkpoint_every,
            log_path=log_path,
            progress=progress,
            name="training ConditionCDVAE+",
        )
        vae = Trainer(
            {"model": (model, optimizer_config(config))},
            _Autoencoding(model, data, seed, time_limit_s),
            run,
            checkpoints.vae,
        )
        if state is not None:
            vae.load_state_dict(state)
            state = None
        vae.fit()
    model.eval()
    gan = None
    if gan_epochs > 0:
        gan = train_latent_gan(
            model,
            data,
            gan_config or GANConfig(),
            epochs=gan_epochs,
            seed=seed,
            log_path=log_path,
            progress=progress,
            on_checkpoint=checkpoints.gan,
            checkpoint_every=checkpoint_every,
            resume_state=state,
        )
    return model, gan


def with_conditions(model: ConditionCDVAE, names: Iterable[str], data: CrystalTensors) -> ConditionCDVAE:
    """A copy of ``model`` that also takes the numeric conditions ``names`` (statistics from ``data``, whose
    property columns follow ``names`` after the model's own). Old weights are kept; each new fusion factor starts
    as the constant 1, so the extended model decodes exactly as before until it is trained."""
    names = list(names)
    added = tuple(name for name in names if name not in model.config.conditions)
    if not added:
        return model
    scalar = list(model.config.scalar_conditions) + list(added)
    probe = replace(model.config, conditions=tuple(scalar))
    stats = dataset_statistics(
        CrystalTensors(
            data.atom_types,
            data.frac_coords,
            data.lattice,
            data.num_atoms,
            data.properties[:, [names.index(n) for n in scalar]],
        ),
        probe,
    )
    config = replace(
        model.config,
        conditions=model.config.conditions + added,
        property_stats={**stats["property_stats"], **model.config.property_stats},
    )
    extended = ConditionCDVAE(config).to(model.device)
    target = extended.state_dict()
    for key, value in model.state_dict().items():
        leading = tuple(slice(0, size) for size in value.shape)
        target[key][leading] = value  # same shape, or the rows of the old conditions / property outputs
    if model.fusion is None:  # z_c was z: the fusion term starts at zero
        target["fusion.rank_weights"].zero_()
        target["fusion.bias"].zero_()
    for index in range(len(model.config.conditions) + 1, len(config.conditions) + 1):
        target[f"fusion.factors.{index}"].zero_()
        target[f"fusion.factors.{index}"][:, -1, :] = 1.0
    extended.load_state_dict(target)
    return extended


def finetune_cdvae(
    model: ConditionCDVAE,
    records: Iterable[Any],
    new_conditions: Iterable[str] = (),
    epochs: int = 5,
    gan_epochs: int = 0,
    gan_config: GANConfig | None = None,
    **train_kwargs: Any,
) -> tuple[ConditionCDVAE, LatentGAN | None]:
    """Continue training ``model`` on new labelled crystals, adding ``new_conditions`` (label names) as numeric
    conditions; its scalers and vocabulary are kept (a semi-periodic model also its slab geometry, and it skips
    crystals that are not slabs fitting it). The latent GAN is retrained when ``gan_epochs`` > 0."""
    names = list(model.config.scalar_conditions) + [n for n in new_conditions if n not in model.config.conditions]
    from crysloop.data.tensors import records_to_tensors

    data = records_to_tensors(records, names)
    if model.config.slab is not None:  # a semi-periodic model learns from the slabs that fit its slab region only
        keep = fits_slab(data, model.config.slab, model.config.cutoff)
        if not keep.any():
            raise InputError(f"none of the {len(keep)} crystals is a slab that fits this semi-periodic model")
        data = data.select(keep.nonzero().squeeze(1))
    model = with_conditions(model, names, data)
    return train_cdvae(
        data, model.config, epochs=epochs, model=model, gan_epochs=gan_epochs, gan_config=gan_config, **train_kwargs
    )
