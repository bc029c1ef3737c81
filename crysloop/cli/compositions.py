"""``crysloop compositions``: valence labelling, training and sampling of the Stage I composition model."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crysloop.cli.options import parse_conditions
from crysloop.errors import InputError
from crysloop.settings import resolve_device

app = typer.Typer(help="Stage I compositions: valence labelling, language-model training and sampling.", no_args_is_help=True)
console = Console()


def _write_csv(path: Path, assignments, extra: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["formula", "composition", "ionic", "oxidation_states", *(extra or {})])
        for assignment in assignments:
            if assignment is None:
                writer.writerow(["", "", "", "", *(extra or {}).values()])
                continue
            composition = {e: int(c) for e, c in assignment.composition.get_el_amt_dict().items()}
            writer.writerow([assignment.formula, json.dumps(composition), assignment.ionic,
                             json.dumps(assignment.as_records()), *(extra or {}).values()])  # fmt: skip


@app.command()
def label(
    inputs: list[str] = typer.Argument(..., help="Formulas (Fe3O4 NaCl) or files (CSV with formula/cif column, CIF folder)."),
    csv_out: Path = typer.Option(None, "--csv", help="Write formula, ionic flag and oxidation states per input."),
    vocabulary: str = typer.Option("common", help="Oxidation states: common (curated) or full (all of pymatgen's)."),
    alloy_rule: str = typer.Option("ionic-first", help="ionic-first, or paper (alloy whenever every element can be 0)."),
) -> None:
    """Label compositions with charge-neutral oxidation states (ionic) or as alloys."""
    from crysloop.chemistry.valence import as_composition, label_compositions
    from crysloop.data.compositions import read_compositions

    compositions = []
    for item in inputs:
        if Path(item).exists():
            compositions.extend(r.composition for r in read_compositions(item))
        else:
            compositions.append(as_composition(item))
    start = time.perf_counter()
    labels = label_compositions(compositions, vocabulary=vocabulary, alloy_rule=alloy_rule)
    elapsed = time.perf_counter() - start
    if csv_out:
        _write_csv(csv_out, labels)
    if len(compositions) <= 50:
        table = Table("input", "type", "oxidation states")
        for composition, assignment in zip(compositions, labels, strict=True):
            text = str(assignment).split("(", 1)[1].split(": ", 1)[1][:-1] if assignment else "no assignment"
            kind = ("ionic" if assignment.ionic else "alloy") if assignment else "-"
            table.add_row(composition.reduced_formula, kind, text)
        console.print(table)
    labelled = sum(a is not None for a in labels)
    console.print(f"{labelled}/{len(labels)} labelled ({sum(bool(a and a.ionic) for a in labels)} ionic) in {elapsed:.2f} s")


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


@app.command()
def train(
    data: list[Path] = typer.Argument(..., help="Training data: CSV[.gz] with formula or cif column, or structure files."),
    out: Path = typer.Option(..., "--out", help="Checkpoint to write (.pt)."),
    properties: list[str] = typer.Option([], "--property", help="Condition NAME[=COLUMN][:binary|continuous]; repeatable."),
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
    from crysloop.infra.models import register_model
    from crysloop.models.composition import (
        CompositionLMConfig, finetune_composition_lm, load_checkpoint, train_composition_lm,
    )  # fmt: skip
    from crysloop.data.compositions import read_compositions

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
    run = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "device": device, "seed": seed, "progress": True,
           "checkpoint_path": out, "resume": resume}  # fmt: skip
    if init:
        examples = list(zip(compositions, values, strict=True))
        model = finetune_composition_lm(load_checkpoint(init, device="cpu"), examples, kinds, **run)
    else:
        from crysloop.chemistry.oxidation import check_vocabulary

        config = CompositionLMConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                                     vocabulary=check_vocabulary(vocabulary))
        model = train_composition_lm(compositions, values, kinds, config, **run)
    report = model.metadata["finetunes"][-1] if init else model.metadata["training"]
    if save_db:
        register_model(name or str(out.resolve()), "composition", out, model.condition_names, report)
    console.print(f"trained on {report['n_train']} compositions ({report['skipped']} skipped), final loss "
                  f"{report['final_loss']:.3f}, {report['train_seconds']:.0f} s -> {out}")  # fmt: skip


@app.command()
def sample(
    n: int = typer.Option(1000, "--n", help="Number of compositions."),
    condition: list[str] = typer.Option([], "--condition", help="NAME=VALUE, e.g. ehull=0.0; repeatable."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Model checkpoint (default: the shipped one)."),
    temperature: float = typer.Option(1.0, help="Sampling temperature."),
    top_k: int = typer.Option(0, "--top-k", help="Keep the k most likely species per step (0 = all)."),
    unconstrained: bool = typer.Option(False, "--unconstrained", help="Sample without the neutrality constraint."),
    rejection: bool = typer.Option(False, "--rejection", help="Exact p(x | neutral): sample unconstrained, keep "
                                   "only what constrained decoding could produce."),
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
        _write_csv(csv_out, samples, {"conditions": json.dumps(conditions)})
    if save_db:
        from crysloop.infra.models import store_generated_compositions

        store_generated_compositions(samples, conditions, str(checkpoint or shipped_checkpoint_path()), campaign,
                                     round_index)  # fmt: skip
    ionic = [s for s in samples if s.ionic]
    neutral = sum(s.charge == 0 for s in ionic)
    console.print(f"{len(samples)} compositions in {elapsed:.1f} s: {len(ionic)} ionic ({neutral} neutral), "
                  f"{len(samples) - len(ionic)} alloys, {len({s.formula for s in samples})} unique formulas"
                  + ("; saved to the database" if save_db else "") + (f"; CSV {csv_out}" if csv_out else ""))  # fmt: skip
