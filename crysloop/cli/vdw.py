"""``crysloop data build-vdw``: build a Janus III-VI van der Waals bilayer dataset with an MLIP + D3."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console

from crysloop.cli.options import field_option
from crysloop.infra.executors import ExecutorConfig
from crysloop.vdw.config import BuildConfig

console = Console()


def _items(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(part.strip() for part in text.split(",") if part.strip())


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

    executor_config = build(ExecutorConfig, {"kind": executor, "workers": workers, "address": address},
                            flags={"kind": "--executor"})  # fmt: skip
    config = build(BuildConfig, {
        "mlip": mlip, "damping": damping, "fmax": fmax, "steps": steps, "gap": gap, "vacuum": vacuum,
        "twists": _items(twist), "elements": _items(elements), "max_bilayers": max_bilayers, "per_pair": per_pair,
        "seed": seed, "device": device, "executor": executor_config,
    }, flags={"twists": "--twist"})  # fmt: skip
    command = "crysloop " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])
    summary = build_dataset(config, out, progress=progress, command=command)
    console.print(f"{summary.bilayers} bilayers ({summary.failed} failed relaxations, {summary.relaxed_now} relaxed now)")
    for key, (low, high) in summary.label_ranges.items():
        console.print(f"  {key}: {low} .. {high}")
    console.print(f"manifest: {summary.manifest}")


def register(app: typer.Typer) -> None:
    """Add ``build-vdw`` to the ``data`` sub-app."""
    app.command("build-vdw")(build_vdw)
