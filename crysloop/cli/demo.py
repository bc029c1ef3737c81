"""``crysloop demo``: the main job on embedded defaults (embedded database, shipped data, CPU)."""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def demo() -> None:
    """Load the shipped MP-20 sample, convert it to model tensors, store it in the results database, summarise."""
    from crysloop.data.embedded import mp20_mini_path
    from crysloop.data.tensors import collate, structure_to_data
    from crysloop.flows.ingest import ingest_flow
    from crysloop.infra.db import database
    from crysloop.infra.queries import status
    from crysloop.infra.settings import get_settings

    start = time.perf_counter()
    summary = ingest_flow(str(mp20_mini_path()), split="train")
    from crysloop.data.datasets import read_structures

    records = read_structures(mp20_mini_path(), progress=False)
    batch = collate([structure_to_data(r.structure, {"formation_energy_per_atom": r.properties["formation_energy_per_atom"]})
                     for r in records])  # fmt: skip
    with database(readonly=True) as connection:
        counts = status()["collections"]
    table = Table(title="crysloop demo", show_header=False)
    table.add_row("dataset", f"{summary.dataset}: {summary.read} structures ({summary.skipped} unreadable)")
    table.add_row("stored", f"{summary.inserted} new, {summary.existing} already present")
    table.add_row("tensors", f"{batch.num_graphs} crystals, {batch.num_nodes} atoms, lattice {tuple(batch.lattice.shape)}, "
                             f"frac_coords {tuple(batch.frac_coords.shape)}")  # fmt: skip
    table.add_row("database", f"{connection.backend} at {connection.location}: {counts['candidates']} candidates")
    table.add_row("time", f"{time.perf_counter() - start:.1f} s")
    console.print(table)
    console.print(f"Look at the results: [bold]crysloop db query --limit 10[/]   (data in {get_settings().data_dir})")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
