"""``crysloop data build-vdw``: build a Janus III-VI van der Waals bilayer dataset with an MLIP + D3."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console

console = Console()


def _items(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def build_vdw(
    out: Path = typer.Option(Path("vdw-dataset"), "--out", help="Folder for train/val/test CSVs and manifest.json."),
    mlip: str = typer.Option(None, help="Screening potential: chgnet, mattersim-1m, ... (default: settings)."),
    damping: str = typer.Option("zero", help="D3 damping: zero (as the paper's DFT-D3), bj, zerom or bjm."),
    elements: str = typer.Option(None, help="Only monolayers of these elements, e.g. Ga,In,Se (default: all 45)."),
    max_bilayers: int = typer.Option(None, "--max-bilayers", help="Stop after this many distinct bilayers."),
    per_pair: int = typer.Option(None, "--per-pair", help="Random distinct stackings kept per pair (spread a subset)."),
    twist: str = typer.Option(None, help="Add commensurate twisted cells, e.g. sqrt7,sqrt13."),
    fmax: float = typer.Option(0.05, help="Force threshold of every relaxation (eV/A)."),
    steps: int = typer.Option(300, help="Step limit of every relaxation."),
    gap: float = typer.Option(3.2, help="Starting interlayer gap (A)."),
    vacuum: float = typer.Option(15.0, help="Vacuum along c (A), at least 15."),
    seed: int = typer.Option(0, help="Seed of the pair order and the 6:2:2 split."),
    executor: str = typer.Option("threads", help="Where bilayers relax: threads (this process), processes or dask."),
    workers: int = typer.Option(2, help="Worker processes (processes, local dask)."),
    address: str = typer.Option(None, help="tcp://host:8786 of a running Dask scheduler."),
    device: str = typer.Option(None, help="torch device (default: settings)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Relax the III-VI monolayers and their bilayers with an MLIP + D3 and write a labelled CDVAE-format dataset.

    Resumable: relaxations are stored in the database as they finish; rerun the same command to continue.
    """
    from pydantic import ValidationError

    from crysloop.infra.executors import ExecutorConfig
    from crysloop.errors import InputError
    from crysloop.screening.potentials import check_mlip_name
    from crysloop.vdw.build import BuildConfig, build_dataset

    try:
        executor_config = ExecutorConfig(kind=executor, workers=workers, address=address)
    except ValidationError as exc:
        raise InputError(f"--executor/--workers: {exc.errors()[0]['msg']}") from None
    config = BuildConfig(
        mlip=check_mlip_name(mlip), damping=damping, fmax=fmax, steps=steps, gap=gap, vacuum=vacuum,
        twists=_items(twist), elements=_items(elements), max_bilayers=max_bilayers, per_pair=per_pair, seed=seed,
        device=device,
        executor=executor_config,
    )  # fmt: skip
    command = "crysloop " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])
    summary = build_dataset(config, out, progress=progress, command=command)
    console.print(f"{summary.bilayers} bilayers ({summary.failed} failed relaxations, {summary.relaxed_now} relaxed now)")
    for key, (low, high) in summary.label_ranges.items():
        console.print(f"  {key}: {low} .. {high}")
    console.print(f"manifest: {summary.manifest}")


def register(app: typer.Typer) -> None:
    """Add ``build-vdw`` to the ``data`` sub-app."""
    app.command("build-vdw")(build_vdw)
