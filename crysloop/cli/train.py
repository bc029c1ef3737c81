"""``crysloop train``: train a generator from a dataset (Stage I composition model, Stage II DiffCSP, ConditionCDVAE+).

Every command writes its checkpoint atomically and records it in the results database (``--no-db`` skips that).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console

from crysloop.cli.options import names
from crysloop.errors import InputError
from crysloop.settings import resolve_device

app = typer.Typer(
    help="Train a generator: composition (Stage I), structure (DiffCSP), cdvae (ConditionCDVAE+).", no_args_is_help=True
)
console = Console()


def _parse_properties(options: list[str]) -> dict[str, tuple[str, str | None]]:
    """NAME[=COLUMN][:binary|continuous] -> {name: (column, kind)}."""
    parsed = {}
    for option in options:
        spec, _, kind = option.partition(":")
        name, _, column = spec.partition("=")
        if not name or (kind and kind not in ("binary", "continuous")):
            raise InputError(f"--property {option!r}: expected NAME[=COLUMN][:binary|continuous]")
        parsed[name] = (column or name, kind or None)
    return parsed


@app.command("composition")
def composition(
    data: list[Path] = typer.Argument(
        ..., help="Training data: CSV[.gz] with formula or cif column, or structure files."
    ),
    out: Path = typer.Option(..., "--out", help="Checkpoint to write (.pt)."),
    properties: list[str] = typer.Option(
        [], "--property", help="Condition NAME[=COLUMN][:binary|continuous]; repeatable."
    ),
    epochs: int = typer.Option(60, help="Passes over the data."),
    batch_size: int = typer.Option(256, help="Compositions per step."),
    lr: float = typer.Option(2e-3, help="Peak learning rate (one-cycle)."),
    n_layer: int = typer.Option(3, help="Transformer layers."),
    n_head: int = typer.Option(4, help="Attention heads."),
    n_embd: int = typer.Option(128, help="Width."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option(None, help="torch device: auto, cpu, cuda[:N] (default: CRYSLOOP_DEVICE, else auto)."),
    init: Path = typer.Option(None, "--init", help="Fine-tune this checkpoint instead of starting from scratch."),
    vocabulary: str = typer.Option("common", help="Oxidation states of a new model: common (curated) or full."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run saved in --out (same data and options)."),
    name: str = typer.Option(None, "--name", help="Name of the checkpoint in the results database (default: --out)."),
    save_db: bool = typer.Option(True, "--db/--no-db", help="Record the checkpoint in the results database."),
) -> None:
    """Train (or fine-tune with --init) the composition language model; writes the checkpoint as it goes and records
    it in the results database."""
    from crysloop.data.compositions import read_compositions
    from crysloop.infra.models import register_model
    from crysloop.models.composition import (
        CompositionLMConfig,
        finetune_composition_lm,
        load_checkpoint,
        train_composition_lm,
    )

    device = resolve_device(device)
    records = [r for path in data for r in read_compositions(path)]
    if not records:
        raise InputError("no compositions in the training data")
    spec = _parse_properties(properties)
    for condition, (column, _) in spec.items():
        if not any(column in r.properties for r in records):
            raise InputError(f"--property {condition}: column {column!r} is not in the training data")
    values = [{name: r.properties.get(column) for name, (column, _) in spec.items()} for r in records]
    kinds = {name: kind for name, (_, kind) in spec.items()}
    compositions = [r.composition for r in records]
    run = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "device": device,
        "seed": seed,
        "progress": True,
        "checkpoint_path": out,
        "resume": resume,
    }
    if init:
        examples = list(zip(compositions, values, strict=True))
        model = finetune_composition_lm(load_checkpoint(init, device="cpu"), examples, kinds, **run)
    else:
        from crysloop.chemistry.oxidation import check_vocabulary

        config = CompositionLMConfig(
            n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocabulary=check_vocabulary(vocabulary)
        )
        model = train_composition_lm(compositions, values, kinds, config, **run)
    report = model.metadata["finetunes"][-1] if init else model.metadata["training"]
    if save_db:
        register_model(name or str(out.resolve()), "composition", out, model.condition_names, report)
    console.print(
        f"trained on {report['n_train']} compositions ({report['skipped']} skipped), final loss "
        f"{report['final_loss']:.3f}, {report['train_seconds']:.0f} s -> {out}"
    )


@app.command("structure")
def structure(
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
    init: Path = typer.Option(
        None,
        "--init",
        help="Start from this checkpoint's weights (same network size and "
        "conditions); the training settings are this command's.",
    ),
    slim: bool = typer.Option(False, "--slim", help="Store EMA weights only (small file, cannot resume)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the message-passing layers."),
    threads: int = typer.Option(None, help="CPU threads for torch (1 is fastest on a busy machine)."),
    split: str = typer.Option("train", help="Split, for dataset names."),
    semi_periodic: bool = typer.Option(
        False,
        "--semi-periodic",
        help="Layered data: keep c fixed and atoms inside the slab (no wrapping "
        "across the vacuum); saved in the checkpoint, used when sampling.",
    ),
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
    config = DiffCSPConfig.preset(
        preset, mode=mode, properties=names(properties), semi_periodic=semi_periodic, **overrides
    )
    model = None
    if init is not None:
        from crysloop.models.diffcsp import DiffCSP, load_checkpoint

        start = load_checkpoint(init, device="cpu")
        if semi_periodic and not start.config.semi_periodic:
            raise InputError(f"{init} is a 3D-periodic model; --semi-periodic needs a semi-periodic one or none")
        config = replace(
            config,
            property_stats=start.config.property_stats,
            slab_c=start.config.slab_c,
            slab_half_width=start.config.slab_half_width,
        )
        model = DiffCSP(config)
        try:
            model.load_state_dict(start.state_dict())
        except RuntimeError:
            raise InputError(f"{init}: its network size or conditions differ from --preset/--properties") from None
    records = [record for source in data for record in load_dataset(source, split=split)]
    val_records = load_dataset(val, split="val") if val else None
    console.print(f"training DiffCSP ({preset}, {mode}) on {len(records)} crystals")
    model = train_diffcsp(
        records,
        config,
        device=device,
        steps=steps,
        epochs=epochs,
        val_records=val_records,
        checkpoint_path=out,
        resume=resume,
        log_path=out.with_suffix(".metrics.jsonl"),
        seed=seed,
        time_limit_s=time_limit,
        slim=slim,
        compile=compile,
        model=model,
    )
    if save_db:
        register_model(name or str(out.resolve()), "structure", out, model.config.properties, {"n_train": len(records)})
    size = sum(p.numel() for p in model.parameters())
    console.print(f"wrote {out} ({size / 1e6:.2f}M parameters); metrics in {out.with_suffix('.metrics.jsonl')}")


@app.command("cdvae")
def cdvae(
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
    semi_periodic: bool = typer.Option(
        False,
        "--semi-periodic",
        help="Layered data: keep c fixed and atoms inside the slab (no wrapping "
        "across the vacuum); saved in the checkpoint, used when sampling.",
    ),
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
    config = CDVAEConfig.preset(
        preset, encoder=encoder, conditions=names(conditions), semi_periodic=semi_periodic, **overrides
    )
    records = [record for source in data for record in load_dataset(source, split=split, progress=False)]
    kind = ", semi-periodic" if semi_periodic else ""
    console.print(f"training ConditionCDVAE+ ({preset}, {encoder} encoder{kind}) on {len(records)} crystals")
    log = out.with_suffix(".metrics.jsonl")
    model, gan = train_cdvae(
        records,
        config,
        device=device,
        epochs=epochs,
        steps=steps,
        time_limit_s=time_limit,
        gan_config=GANConfig.preset(preset),
        gan_epochs=gan_epochs,
        checkpoint_path=out,
        log_path=log,
        seed=seed,
        resume=resume,
    )
    if save_db:
        register_model(
            name or str(out.resolve()), "cdvae", out, model.config.scalar_conditions, {"n_train": len(records)}
        )
    size = sum(p.numel() for p in model.parameters())
    console.print(f"wrote {out} ({size / 1e6:.2f}M parameters{', with latent GAN' if gan else ''}); metrics in {log}")
