"""``crysloop data``: fetch public datasets, inspect and ingest structure files, label compositions with oxidation
states, build the van der Waals bilayer dataset."""

from __future__ import annotations

import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crysloop.cli.options import field_option
from crysloop.data.compositions import write_assignments_csv
from crysloop.data.datasets import KNOWN_DATASETS, SPLITS, fetch_dataset, load_dataset
from crysloop.errors import InputError
from crysloop.infra.executors import ExecutorConfig
from crysloop.vdw.config import BuildConfig

app = typer.Typer(
    help="Datasets: fetch, inspect, ingest, label compositions, build the vdW bilayer set.", no_args_is_help=True
)
console = Console()


@app.command()
def fetch(
    name: str = typer.Argument(..., help=f"One of: {', '.join(KNOWN_DATASETS)}."),
    splits: str = typer.Option(",".join(SPLITS), help="Comma-separated splits."),
) -> None:
    """Download a CDVAE dataset's splits to the cache (checksummed)."""
    for split in splits.split(","):
        path = fetch_dataset(name.lower().replace("-", "_"), split.strip())
        console.print(f"{name}/{split}: {path}")


@app.command()
def inspect(
    source: str = typer.Argument(..., help="Dataset name or path (CSV[.gz], extxyz, CIF/POSCAR or a folder)."),
    split: str = typer.Option("train", help="Split, for dataset names."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unparsable rows instead of failing."),
) -> None:
    """Summarise a dataset: size, elements, sites per cell, properties."""
    dataset = load_dataset(source, split=split, skip_bad=skip_bad)
    if not dataset:
        raise InputError(f"{source}: no readable structures")
    nsites = [len(r.structure) for r in dataset]
    nelements = Counter(len(r.structure.composition.elements) for r in dataset)
    elements = Counter(el.symbol for r in dataset for el in r.structure.composition.elements)
    table = Table(title=f"{dataset.name or source}", show_header=False)
    table.add_row("structures", str(len(dataset)))
    table.add_row("skipped rows", str(len(dataset.skipped)))
    table.add_row("sites per cell", f"min {min(nsites)}, median {sorted(nsites)[len(nsites) // 2]}, max {max(nsites)}")
    table.add_row("elements per compound", ", ".join(f"{k}: {v}" for k, v in sorted(nelements.items())))
    table.add_row(
        "distinct elements", f"{len(elements)} (most common: {', '.join(e for e, _ in elements.most_common(8))})"
    )
    table.add_row("properties", ", ".join(sorted(dataset[0].properties)) or "-")
    console.print(table)
    for where, reason in dataset.skipped[:10]:
        console.print(f"[yellow]skipped[/] {where}: {reason}", highlight=False, soft_wrap=True)
    for where, note in dataset.warnings[:10]:
        console.print(f"[yellow]warning:[/] {where}: {note}", highlight=False, soft_wrap=True)


@app.command()
def ingest(
    source: str = typer.Argument(..., help="Dataset name or path."),
    split: str = typer.Option("train", help="Split, for dataset names."),
    limit: int = typer.Option(None, min=1, help="Store only the first N structures."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unparsable rows instead of failing."),
) -> None:
    """Store a dataset's structures in the results database (idempotent)."""
    from crysloop.flows.ingest import ingest_flow

    summary = ingest_flow(source, split=split, limit=limit, skip_bad=skip_bad)
    for where, reason in summary.skipped_rows[:10]:
        console.print(f"[yellow]skipped[/] {where}: {reason}", highlight=False, soft_wrap=True)
    for where, note in summary.warnings[:10]:
        console.print(f"[yellow]warning:[/] {where}: {note}", highlight=False, soft_wrap=True)
    console.print(
        f"{summary.dataset}: read {summary.read}, skipped {summary.skipped}, "
        f"stored {summary.inserted} new, {summary.existing} already present"
        f"{f', {len(summary.warnings)} with warnings' if summary.warnings else ''}"
    )


@app.command()
def label(
    inputs: list[str] = typer.Argument(
        ..., help="Formulas (Fe3O4 NaCl) or files (CSV with formula/cif column, CIF folder)."
    ),
    csv_out: Path = typer.Option(None, "--csv", help="Write formula, ionic flag and oxidation states per input."),
    vocabulary: str = typer.Option("common", help="Oxidation states: common (curated) or full (all of pymatgen's)."),
    alloy_rule: str = typer.Option(
        "ionic-first", help="ionic-first, or paper (alloy whenever every element can be 0)."
    ),
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
        write_assignments_csv(csv_out, labels)
    if len(compositions) <= 50:
        table = Table("input", "type", "oxidation states")
        for composition, assignment in zip(compositions, labels, strict=True):
            text = str(assignment).split("(", 1)[1].split(": ", 1)[1][:-1] if assignment else "no assignment"
            kind = ("ionic" if assignment.ionic else "alloy") if assignment else "-"
            table.add_row(composition.reduced_formula, kind, text)
        console.print(table)
    labelled = sum(a is not None for a in labels)
    console.print(
        f"{labelled}/{len(labels)} labelled ({sum(bool(a and a.ionic) for a in labels)} ionic) in {elapsed:.2f} s"
    )


def _items(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(part.strip() for part in text.split(",") if part.strip())


@app.command("build-vdw")
def build_vdw(
    out: Path = typer.Option(Path("vdw-dataset"), "--out", help="Folder for train/val/test CSVs and manifest.json."),
    mlip: str = field_option(BuildConfig, "mlip"),
    damping: str = field_option(BuildConfig, "damping"),
    elements: str = field_option(BuildConfig, "elements"),
    max_bilayers: int = field_option(BuildConfig, "max_bilayers", "--max-bilayers"),
    per_pair: int = field_option(BuildConfig, "per_pair", "--per-pair"),
    twist: str = field_option(BuildConfig, "twists", "--twist"),
    fmax: float = field_option(BuildConfig, "fmax"),
    steps: int = field_option(BuildConfig, "steps"),
    gap: float = field_option(BuildConfig, "gap"),
    vacuum: float = field_option(BuildConfig, "vacuum"),
    seed: int = field_option(BuildConfig, "seed"),
    executor: str = field_option(ExecutorConfig, "kind", "--executor"),
    workers: int = field_option(ExecutorConfig, "workers"),
    address: str = field_option(ExecutorConfig, "address"),
    device: str = field_option(BuildConfig, "device"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Relax the III-VI monolayers and their bilayers with an MLIP + D3 and write a labelled CDVAE-format dataset.

    Resumable: relaxations are stored in the database as they finish; rerun the same command to continue.
    """
    from crysloop.flows.vdw import build_dataset
    from crysloop.strict import build

    executor_config = build(
        ExecutorConfig, {"kind": executor, "workers": workers, "address": address}, flags={"kind": "--executor"}
    )
    config = build(
        BuildConfig,
        {
            "mlip": mlip,
            "damping": damping,
            "fmax": fmax,
            "steps": steps,
            "gap": gap,
            "vacuum": vacuum,
            "twists": _items(twist),
            "elements": _items(elements),
            "max_bilayers": max_bilayers,
            "per_pair": per_pair,
            "seed": seed,
            "device": device,
            "executor": executor_config,
        },
        flags={"twists": "--twist"},
    )
    command = "crysloop " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])
    summary = build_dataset(config, out, progress=progress, command=command)
    console.print(
        f"{summary.bilayers} bilayers ({summary.failed} failed relaxations, {summary.relaxed_now} relaxed now)"
    )
    for key, (low, high) in summary.label_ranges.items():
        console.print(f"  {key}: {low} .. {high}")
    console.print(f"manifest: {summary.manifest}")
