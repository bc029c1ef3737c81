"""``crysloop structures``: train DiffCSP and sample crystal structures (from compositions or ab initio)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crysloop.cli.options import parse_conditions
from crysloop.errors import InputError
from crysloop.settings import resolve_device

app = typer.Typer(help="Crystal structures with DiffCSP: train, sample.", no_args_is_help=True)
console = Console()


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _lattice_clip(text: str) -> float | str | None:
    if text in ("auto", "off"):
        return None if text == "off" else text
    try:
        return float(text)
    except ValueError:
        raise InputError(f"--lattice-clip must be auto, off or a length in A, not {text!r}") from None


@app.command()
def train(
    data: list[str] = typer.Argument(..., help="Training data: dataset names or paths (CSV[.gz], extxyz, folders)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint file to write."),
    preset: str = typer.Option("cpu-small", help="Network size: diffcsp, gpu-medium, cpu-small, cpu-tiny."),
    mode: str = typer.Option("csp", help="csp (compositions given) or abinitio (atom types diffused as well)."),
    properties: str = typer.Option("", help="Comma-separated property columns to condition on."),
    val: str = typer.Option(None, help="Validation data (dataset name or path) for the plateau LR schedule."),
    epochs: int = typer.Option(None, help="Passes over the data (default 100 unless --steps)."),
    steps: int = typer.Option(None, help="Optimiser steps (overrides --epochs)."),
    time_limit: float = typer.Option(None, help="Stop after this many seconds (a checkpoint is written)."),
    batch_size: int = typer.Option(None, help="Crystals per batch (default: the preset's)."),
    lr: float = typer.Option(None, help="Learning rate (default: the preset's)."),
    device: str = typer.Option(None, help="torch device: auto, cpu, cuda[:N] (default: CRYSLOOP_DEVICE, else auto)."),
    seed: int = typer.Option(0, help="Random seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue from --out if it holds a training state."),
    init: Path = typer.Option(None, "--init", help="Start from this checkpoint's weights (same network size and "
                              "conditions); the training settings are this command's."),
    slim: bool = typer.Option(False, "--slim", help="Store EMA weights only (small file, cannot resume)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the message-passing layers."),
    threads: int = typer.Option(None, help="CPU threads for torch (1 is fastest on a busy machine)."),
    split: str = typer.Option("train", help="Split, for dataset names."),
    semi_periodic: bool = typer.Option(False, "--semi-periodic",
                                       help="Layered data: keep c fixed and atoms inside the slab (no wrapping "
                                            "across the vacuum); saved in the checkpoint, used when sampling."),
    name: str = typer.Option(None, "--name", help="Name of the checkpoint in the results database (default: --out)."),
    save_db: bool = typer.Option(True, "--db/--no-db", help="Record the checkpoint in the results database."),
) -> None:
    """Train (or resume training) a DiffCSP model; writes the checkpoint and a metrics log beside it and records
    the checkpoint in the results database."""
    import torch

    from crysloop.data.datasets import load_dataset
    from crysloop.infra.models import register_model
    from crysloop.models.diffcsp import DiffCSPConfig, train_diffcsp

    device = resolve_device(device)
    if mode not in ("csp", "abinitio"):
        raise InputError(f"--mode must be csp or abinitio, not {mode!r}")
    if threads:
        torch.set_num_threads(threads)
    overrides = {k: v for k, v in {"batch_size": batch_size, "lr": lr}.items() if v is not None}
    config = DiffCSPConfig.preset(preset, mode=mode, properties=_names(properties), semi_periodic=semi_periodic,
                                  **overrides)  # fmt: skip
    model = None
    if init is not None:
        from crysloop.models.diffcsp import DiffCSP, load_checkpoint

        start = load_checkpoint(init, device="cpu")
        if semi_periodic and not start.config.semi_periodic:
            raise InputError(f"{init} is a 3D-periodic model; --semi-periodic needs a semi-periodic one or none")
        config = replace(config, property_stats=start.config.property_stats, slab_c=start.config.slab_c,
                         slab_half_width=start.config.slab_half_width)  # fmt: skip
        model = DiffCSP(config)
        try:
            model.load_state_dict(start.state_dict())
        except RuntimeError:
            raise InputError(f"{init}: its network size or conditions differ from --preset/--properties") from None
    records = [record for source in data for record in load_dataset(source, split=split)]
    val_records = load_dataset(val, split="val") if val else None
    console.print(f"training DiffCSP ({preset}, {mode}) on {len(records)} crystals")
    model = train_diffcsp(
        records, config, device=device, steps=steps, epochs=epochs, val_records=val_records, checkpoint_path=out,
        resume=resume, log_path=out.with_suffix(".metrics.jsonl"), seed=seed, time_limit_s=time_limit, slim=slim,
        compile=compile, model=model,
    )
    if save_db:
        register_model(name or str(out.resolve()), "structure", out, model.config.properties,
                       {"n_train": len(records)})  # fmt: skip
    size = sum(p.numel() for p in model.parameters())
    console.print(f"wrote {out} ({size / 1e6:.2f}M parameters); metrics in {out.with_suffix('.metrics.jsonl')}")


@app.command()
def sample(
    compositions: list[str] = typer.Argument(None, help="Compositions (one cell each, e.g. Sr2Ti2O6); none = ab initio."),
    n: int = typer.Option(None, "--n", help="Ab initio: number of structures to generate."),
    checkpoint: Path = typer.Option(None, help="DiffCSP checkpoint (default: the shipped model)."),
    samples: int = typer.Option(1, help="Structures per composition."),
    condition: list[str] = typer.Option([], "--condition", "-c", help="Property condition NAME=VALUE (repeatable)."),
    guidance: float = typer.Option(0.0, help="Classifier-free guidance weight w."),
    steps: int = typer.Option(None, help="Sampling steps (default: the model's 1000 timesteps)."),
    step_lr: float = typer.Option(1e-5, help="Langevin corrector step size (0 turns the corrector off)."),
    lattice_clip: str = typer.Option("auto", help="Clip each step's clean-lattice estimate to +-this (A); off "
                                     "(as DiffCSP), or auto: 50 A (an unclipped first step blows cells up)."),
    batch_size: int = typer.Option(256, help="Crystals sampled together."),
    device: str = typer.Option(None, help="torch device: auto, cpu, cuda[:N] (default: CRYSLOOP_DEVICE, else auto)."),
    seed: int = typer.Option(0, help="Random seed."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder to write CIF files into."),
) -> None:
    """Sample crystal structures with DiffCSP and print (or write) them."""
    from crysloop.models.diffcsp import load_checkpoint, sample_structures

    device = resolve_device(device)
    if bool(compositions) == (n is not None):
        raise InputError("give compositions (structure prediction) or --n (ab initio generation), not both")
    if samples < 1:
        raise InputError("--samples must be at least 1")
    model = load_checkpoint(checkpoint, device=device)
    queries = [c for c in compositions for _ in range(samples)] if compositions else None
    structures = sample_structures(
        model, queries, n=n, conditions=parse_conditions(condition), guidance=guidance, steps=steps, step_lr=step_lr,
        batch_size=batch_size, device=device, seed=seed, progress=True, lattice_clip=_lattice_clip(lattice_clip),
    )
    table = Table("#", "formula", "a, b, c (A)", "alpha, beta, gamma", "volume (A^3)")
    for i, structure in enumerate(structures):
        lat = structure.lattice
        table.add_row(str(i), structure.composition.formula, ", ".join(f"{x:.2f}" for x in lat.abc),
                      ", ".join(f"{x:.1f}" for x in lat.angles), f"{lat.volume:.1f}")
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            structure.to(filename=str(out / f"{i:04d}_{structure.composition.reduced_formula}.cif"))
    console.print(table)
    if out is not None:
        console.print(f"wrote {len(structures)} CIF files to {out}")
