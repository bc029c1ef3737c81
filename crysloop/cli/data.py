"""``crysloop data``: fetch public datasets, inspect structure files, ingest them into the database."""

from __future__ import annotations

from collections import Counter
import typer
from rich.console import Console
from rich.table import Table

from crysloop.cli import vdw
from crysloop.data.datasets import KNOWN_DATASETS, SPLITS, fetch_dataset, load_dataset
from crysloop.errors import InputError

app = typer.Typer(help="Datasets: fetch, inspect, ingest, build the vdW bilayer set.", no_args_is_help=True)
console = Console()
vdw.register(app)


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
    table.add_row("distinct elements", f"{len(elements)} (most common: {', '.join(e for e, _ in elements.most_common(8))})")
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
    console.print(f"{summary.dataset}: read {summary.read}, skipped {summary.skipped}, "
                  f"stored {summary.inserted} new, {summary.existing} already present"
                  f"{f', {len(summary.warnings)} with warnings' if summary.warnings else ''}")  # fmt: skip

