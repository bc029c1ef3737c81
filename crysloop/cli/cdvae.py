"""``crysloop cdvae``: train ConditionCDVAE+, sample crystals toward property/formula targets, reconstruct."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from crysloop.cli.options import parse_conditions
from crysloop.errors import InputError

app = typer.Typer(help="ConditionCDVAE+: train, sample, reconstruct.", no_args_is_help=True)
console = Console()


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


@app.command()
def train(
    data: list[str] = typer.Argument(..., help="Training data: dataset names or paths (CSV[.gz], extxyz, folders)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint file to write."),
    preset: str = typer.Option("cpu-small", help="Size: paper (GPU), cpu-small, cpu-tiny."),
    encoder: str = typer.Option("equiformer", help="equiformer (EquiformerV2-style) or dimenet (DimeNet++)."),
    conditions: str = typer.Option("", help="Comma-separated conditions: property columns and/or 'formula'."),
    epochs: int = typer.Option(None, help="VAE passes over the data (default 100 unless --steps)."),
    steps: int = typer.Option(None, help="VAE optimiser steps (overrides --epochs)."),
    time_limit: float = typer.Option(None, help="Stop the VAE stage after this many seconds."),
    gan_epochs: int = typer.Option(50, help="Epochs of the latent WGAN-GP (0: none; sampling then uses the prior)."),
    batch_size: int = typer.Option(None, help="Crystals per batch (default: the preset's)."),
    device: str = typer.Option(None, help="torch device: auto, cpu, cuda[:N] (default: CRYSLOOP_DEVICE, else auto)."),
    seed: int = typer.Option(0, help="Random seed."),
    threads: int = typer.Option(None, help="CPU threads for torch."),
    split: str = typer.Option("train", help="Split, for dataset names."),
    semi_periodic: bool = typer.Option(False, "--semi-periodic",
                                       help="Layered data: keep c fixed and atoms inside the slab (no wrapping "
                                            "across the vacuum); saved in the checkpoint, used when sampling."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run saved in --out (same data and options)."),
    name: str = typer.Option(None, "--name", help="Name of the checkpoint in the results database (default: --out)."),
    save_db: bool = typer.Option(True, "--db/--no-db", help="Record the checkpoint in the results database."),
) -> None:
    """Train a ConditionCDVAE+ model (VAE, then the latent GAN); writes the checkpoint as it goes and a metrics log,
    and records the checkpoint in the results database."""
    import torch

    from crysloop.data.datasets import load_dataset
    from crysloop.infra.models import register_model
    from crysloop.models.cdvae import CDVAEConfig, GANConfig, train_cdvae

    if encoder not in ("equiformer", "dimenet"):
        raise InputError(f"--encoder must be equiformer or dimenet, not {encoder!r}")
    if threads:
        torch.set_num_threads(threads)
    overrides = {"batch_size": batch_size} if batch_size else {}
    config = CDVAEConfig.preset(preset, encoder=encoder, conditions=_names(conditions), semi_periodic=semi_periodic,
                                **overrides)  # fmt: skip
    records = [record for source in data for record in load_dataset(source, split=split, progress=False)]
    kind = ", semi-periodic" if semi_periodic else ""
    console.print(f"training ConditionCDVAE+ ({preset}, {encoder} encoder{kind}) on {len(records)} crystals")
    log = out.with_suffix(".metrics.jsonl")
    model, gan = train_cdvae(records, config, device=device, epochs=epochs, steps=steps, time_limit_s=time_limit,
                             gan_config=GANConfig.preset(preset), gan_epochs=gan_epochs, checkpoint_path=out,
                             log_path=log, seed=seed, resume=resume)  # fmt: skip
    if save_db:
        register_model(name or str(out.resolve()), "cdvae", out, model.config.scalar_conditions,
                       {"n_train": len(records)})  # fmt: skip
    size = sum(p.numel() for p in model.parameters())
    console.print(f"wrote {out} ({size / 1e6:.2f}M parameters{', with latent GAN' if gan else ''}); metrics in {log}")


@app.command()
def sample(
    n: int = typer.Option(None, "--n", help="Number of crystals (with --formula: per formula)."),
    condition: list[str] = typer.Option([], "--condition", "-c", help="Property target NAME=VALUE (repeatable)."),
    formula: list[str] = typer.Option([], "--formula", "-f", help="Formula of one cell, e.g. MoS2 (repeatable)."),
    formulas_from_lm: bool = typer.Option(False, "--formulas-from-lm",
                                          help="Take --n charge-balanced formulas from the Stage I language model."),
    checkpoint: Path = typer.Option(None, help="Checkpoint (default: the shipped model)."),
    candidates: int = typer.Option(100, help="Latents drawn per sample; the property predictor keeps the best."),
    steps_per_level: int = typer.Option(None, help="Langevin steps per noise level (default: the model's 100)."),
    batch_size: int = typer.Option(64, help="Crystals decoded together."),
    device: str = typer.Option(None, help="torch device: auto, cpu, cuda[:N] (default: CRYSLOOP_DEVICE, else auto)."),
    seed: int = typer.Option(0, help="Random seed."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder to write CIF files into."),
) -> None:
    """Sample crystals: unconditional, toward property targets, for given formulas, or several at once."""
    from crysloop.models.cdvae import load_checkpoint, sample_structures
    from crysloop.models.cdvae.conditions import check_conditions, formula_atoms
    from crysloop.models.cdvae.sampling import formulas_from_language_model

    targets = parse_conditions(condition)
    if formula and formulas_from_lm:
        raise InputError("give --formula or --formulas-from-lm, not both")
    if n is not None and n < 1:
        raise InputError("--n must be at least 1")
    if not formula and n is None:
        raise InputError("give --n (number of crystals) or --formula")
    model, gan = load_checkpoint(checkpoint, device=device)
    check_conditions(model.config, targets)
    for f in formula:
        formula_atoms(model.config, f)
    formulas = [f for f in formula for _ in range(n or 1)]
    if formulas_from_lm:
        formulas = formulas_from_language_model(n, model.config.max_atoms, seed=seed, device=str(model.device))
    structures = sample_structures(model, gan, n=n, conditions=targets, formulas=formulas or None,
                                   candidates=candidates, steps_per_level=steps_per_level, batch_size=batch_size,
                                   seed=seed, progress=True)  # fmt: skip
    for i, structure in enumerate(structures):
        lat = structure.lattice
        console.print(f"{i:4d}  {structure.composition.formula:24s}  a,b,c {lat.a:.2f} {lat.b:.2f} {lat.c:.2f}  "
                      f"angles {lat.alpha:.0f} {lat.beta:.0f} {lat.gamma:.0f}  V {lat.volume:.1f}")  # fmt: skip
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for i, structure in enumerate(structures):
            structure.to(filename=str(out / f"{i:04d}_{structure.composition.reduced_formula}.cif"))
        console.print(f"wrote {len(structures)} CIF files to {out}")


@app.command()
def reconstruct(
    data: str = typer.Argument(..., help="Crystals to reconstruct: a dataset name or path."),
    checkpoint: Path = typer.Option(None, help="Checkpoint (default: the shipped model)."),
    n: int = typer.Option(100, "--n", min=1, help="Reconstruct the first n crystals."),
    steps_per_level: int = typer.Option(None, help="Langevin steps per noise level (default: the model's 100)."),
    batch_size: int = typer.Option(32, help="Crystals decoded together."),
    device: str = typer.Option(None, help="torch device: auto, cpu, cuda[:N] (default: CRYSLOOP_DEVICE, else auto)."),
    seed: int = typer.Option(0, help="Random seed."),
    split: str = typer.Option("test", help="Split, for dataset names."),
    out: Path = typer.Option(None, "--out", "-o", help="JSON file for the figures."),
) -> None:
    """Encode and decode crystals; print the match rate and RMSE (StructureMatcher stol 0.5, angle_tol 10,
    ltol 0.3, both crystals valid)."""
    from crysloop.data.datasets import load_dataset
    from crysloop.evaluation.matching import reconstruction
    from crysloop.evaluation.validity import validity
    from crysloop.models.cdvae import load_checkpoint
    from crysloop.models.cdvae.sampling import reconstruct_structures

    model, _ = load_checkpoint(checkpoint, device=device)
    records = list(load_dataset(data, split=split, progress=False))[:n]
    predicted, truth = reconstruct_structures(model, records, steps_per_level, batch_size=batch_size, seed=seed,
                                              progress=True)  # fmt: skip
    figures = reconstruction(predicted, truth, [validity(s).valid for s in predicted],
                             [validity(s).valid for s in truth], n_jobs=1)  # fmt: skip
    console.print(f"match rate {100 * figures['match_rate']:.2f} %  RMSE {figures['rms_dist']:.4f}  "
                  f"({figures['n_matched']}/{figures['n_pairs']} matched)")  # fmt: skip
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures) + "\n")
