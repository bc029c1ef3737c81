"""``crysloop sample``: draw from one generator into files (compositions, structures, ConditionCDVAE+ crystals) and
reconstruct crystals through ConditionCDVAE+'s latent space; ``crysloop generate`` runs the whole pipeline instead."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crysloop.cli.options import parse_conditions
from crysloop.data.compositions import write_assignments_csv
from crysloop.errors import InputError
from crysloop.settings import resolve_device

app = typer.Typer(
    help="Sample one generator: composition, structure, cdvae; reconstruct through ConditionCDVAE+.",
    no_args_is_help=True,
)
console = Console()


def _lattice_clip(text: str) -> float | str | None:
    if text in ("auto", "off"):
        return None if text == "off" else text
    try:
        return float(text)
    except ValueError:
        raise InputError(f"--lattice-clip must be auto, off or a length in A, not {text!r}") from None


@app.command("composition")
def composition(
    n: int = typer.Option(1000, "--n", help="Number of compositions."),
    condition: list[str] = typer.Option([], "--condition", help="NAME=VALUE, e.g. ehull=0.0; repeatable."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Model checkpoint (default: the shipped one)."),
    temperature: float = typer.Option(1.0, help="Sampling temperature."),
    top_k: int = typer.Option(0, "--top-k", help="Keep the k most likely species per step (0 = all)."),
    unconstrained: bool = typer.Option(False, "--unconstrained", help="Sample without the neutrality constraint."),
    rejection: bool = typer.Option(
        False,
        "--rejection",
        help="Exact p(x | neutral): sample unconstrained, keep only what constrained decoding could produce.",
    ),
    seed: int = typer.Option(None, help="Random seed."),
    device: str = typer.Option(None, help="torch device: auto, cpu, cuda[:N] (default: CRYSLOOP_DEVICE, else auto)."),
    csv_out: Path = typer.Option(None, "--csv", help="Write the samples to this CSV."),
    save_db: bool = typer.Option(True, "--db/--no-db", help="Store GeneratedComposition documents."),
    campaign: str = typer.Option(None, "--campaign", help="Campaign the samples belong to."),
    round_index: int = typer.Option(None, "--round", help="Campaign round."),
) -> None:
    """Sample compositions (charge-neutral unless --unconstrained) to the results database and/or a CSV."""
    from crysloop.models.composition import load_checkpoint, sample_compositions, shipped_checkpoint_path

    device = resolve_device(device)
    conditions = parse_conditions(condition)
    if n <= 0:
        raise InputError("--n must be positive")
    model = load_checkpoint(checkpoint)
    start = time.perf_counter()
    if rejection and unconstrained:
        raise InputError("--rejection and --unconstrained exclude each other")
    if rejection:
        from crysloop.models.composition import sample_compositions_rejection

        samples, _ = sample_compositions_rejection(model, n, conditions or None, temperature, top_k, seed, device)
    else:
        samples = sample_compositions(model, n, conditions or None, temperature, top_k, not unconstrained, seed, device)
    elapsed = time.perf_counter() - start
    if csv_out:
        write_assignments_csv(csv_out, samples, {"conditions": json.dumps(conditions)})
    if save_db:
        from crysloop.infra.models import store_generated_compositions

        store_generated_compositions(
            samples, conditions, str(checkpoint or shipped_checkpoint_path()), campaign, round_index
        )
    ionic = [s for s in samples if s.ionic]
    neutral = sum(s.charge == 0 for s in ionic)
    console.print(
        f"{len(samples)} compositions in {elapsed:.1f} s: {len(ionic)} ionic ({neutral} neutral), "
        f"{len(samples) - len(ionic)} alloys, {len({s.formula for s in samples})} unique formulas"
        + ("; saved to the database" if save_db else "")
        + (f"; CSV {csv_out}" if csv_out else "")
    )


@app.command("structure")
def structure(
    compositions: list[str] = typer.Argument(
        None, help="Compositions (one cell each, e.g. Sr2Ti2O6); none = ab initio."
    ),
    n: int = typer.Option(None, "--n", help="Ab initio: number of structures to generate."),
    checkpoint: Path = typer.Option(None, help="DiffCSP checkpoint (default: the shipped model)."),
    samples: int = typer.Option(1, help="Structures per composition."),
    condition: list[str] = typer.Option([], "--condition", "-c", help="Property condition NAME=VALUE (repeatable)."),
    guidance: float = typer.Option(0.0, help="Classifier-free guidance weight w."),
    steps: int = typer.Option(None, help="Sampling steps (default: the model's 1000 timesteps)."),
    step_lr: float = typer.Option(1e-5, help="Langevin corrector step size (0 turns the corrector off)."),
    lattice_clip: str = typer.Option(
        "auto",
        help="Clip each step's clean-lattice estimate to +-this (A); off "
        "(as DiffCSP), or auto: 50 A (an unclipped first step blows cells up).",
    ),
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
        model,
        queries,
        n=n,
        conditions=parse_conditions(condition),
        guidance=guidance,
        steps=steps,
        step_lr=step_lr,
        batch_size=batch_size,
        device=device,
        seed=seed,
        progress=True,
        lattice_clip=_lattice_clip(lattice_clip),
    )
    table = Table("#", "formula", "a, b, c (A)", "alpha, beta, gamma", "volume (A^3)")
    for i, structure in enumerate(structures):
        lat = structure.lattice
        table.add_row(
            str(i),
            structure.composition.formula,
            ", ".join(f"{x:.2f}" for x in lat.abc),
            ", ".join(f"{x:.1f}" for x in lat.angles),
            f"{lat.volume:.1f}",
        )
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            structure.to(filename=str(out / f"{i:04d}_{structure.composition.reduced_formula}.cif"))
    console.print(table)
    if out is not None:
        console.print(f"wrote {len(structures)} CIF files to {out}")


@app.command("cdvae")
def cdvae(
    n: int = typer.Option(None, "--n", help="Number of crystals (with --formula: per formula)."),
    condition: list[str] = typer.Option([], "--condition", "-c", help="Property target NAME=VALUE (repeatable)."),
    formula: list[str] = typer.Option([], "--formula", "-f", help="Formula of one cell, e.g. MoS2 (repeatable)."),
    formulas_from_lm: bool = typer.Option(
        False, "--formulas-from-lm", help="Take --n charge-balanced formulas from the Stage I language model."
    ),
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
    structures = sample_structures(
        model,
        gan,
        n=n,
        conditions=targets,
        formulas=formulas or None,
        candidates=candidates,
        steps_per_level=steps_per_level,
        batch_size=batch_size,
        seed=seed,
        progress=True,
    )
    for i, structure in enumerate(structures):
        lat = structure.lattice
        console.print(
            f"{i:4d}  {structure.composition.formula:24s}  a,b,c {lat.a:.2f} {lat.b:.2f} {lat.c:.2f}  "
            f"angles {lat.alpha:.0f} {lat.beta:.0f} {lat.gamma:.0f}  V {lat.volume:.1f}"
        )
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
    predicted, truth = reconstruct_structures(
        model, records, steps_per_level, batch_size=batch_size, seed=seed, progress=True
    )
    figures = reconstruction(
        predicted, truth, [validity(s).valid for s in predicted], [validity(s).valid for s in truth], n_jobs=1
    )
    console.print(
        f"match rate {100 * figures['match_rate']:.2f} %  RMSE {figures['rms_dist']:.4f}  "
        f"({figures['n_matched']}/{figures['n_pairs']} matched)"
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures) + "\n")
