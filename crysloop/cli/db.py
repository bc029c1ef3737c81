"""``crysloop db``: status, query and export of the results database."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crysloop.cli.options import finite
from crysloop.errors import InputError
from crysloop.infra.db import database
from crysloop.infra.export import FORMATS, export_candidates
from crysloop.infra.queries import CandidateFilter, find_candidates, query
from crysloop.infra.queries import status as db_status

app = typer.Typer(help="Results database: status, query, export.", no_args_is_help=True)
console = Console() if sys.stdout.isatty() else Console(width=200)  # tables are not cut when piped

_DFT_STATES = ("pending", "running", "completed", "failed")


def _filter(campaign, formula, elements, ehull_max, phonon_stable, dft_state, mlip, limit) -> CandidateFilter:
    if dft_state is not None and dft_state not in _DFT_STATES:
        raise InputError(f"--dft-state {dft_state!r} is not one of {', '.join(_DFT_STATES)}")
    return CandidateFilter(
        campaign=campaign,
        formula=formula,
        elements=tuple(e for e in (elements or "").split(",") if e.strip()),
        ehull_max=ehull_max,
        phonon_stable=phonon_stable,
        dft_state=dft_state,
        mlip=mlip,
        limit=limit or None,
    )


CAMPAIGN = typer.Option(None, "--campaign", help="Campaign name.")
FORMULA = typer.Option(None, "--formula", help="Reduced formula, e.g. GaN.")
ELEMENTS = typer.Option(None, "--elements", help="Comma-separated elements that must all be present.")
EHULL = typer.Option(None, "--ehull-max", callback=finite, help="Maximum energy above hull, eV/atom.")
PHONON = typer.Option(None, "--phonon-stable/--phonon-unstable", help="Phonon stability label.")
DFT = typer.Option(None, "--dft-state", help="DFT job state: pending, running, completed, failed.")
MLIP = typer.Option(None, "--mlip", help="Screening potential, e.g. chgnet.")


@app.command()
def status() -> None:
    """Where the database is and what it holds."""
    with database(readonly=True) as connection:
        summary = db_status()
    console.print(f"[bold]{connection.backend}[/] database {connection.db_name!r} at {connection.location}")
    table = Table("collection", "documents")
    for name, count in summary["collections"].items():
        table.add_row(name, str(count))
    console.print(table)
    if summary["candidates_per_campaign"]:
        console.print(
            "candidates per campaign: " + ", ".join(f"{k}: {v}" for k, v in summary["candidates_per_campaign"].items())
        )
    if summary["dft_states"]:
        console.print("DFT jobs: " + ", ".join(f"{k}: {v}" for k, v in summary["dft_states"].items()))


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


@app.command("query")
def query_cmd(
    campaign: str = CAMPAIGN,
    formula: str = FORMULA,
    elements: str = ELEMENTS,
    ehull_max: float = EHULL,
    phonon_stable: bool = PHONON,
    dft_state: str = DFT,
    mlip: str = MLIP,
    limit: int = typer.Option(50, "--limit", min=0, help="At most this many rows (0: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
) -> None:
    """Candidates matching the filters, with their screening, DFT and kappa results."""
    flt = _filter(campaign, formula, elements, ehull_max, phonon_stable, dft_state, mlip, limit)
    with database(readonly=True):
        rows = query(flt)
    if as_json:
        for row in rows:
            print(json.dumps(row.as_dict()))
        return
    columns = [
        "structure_hash",
        "formula",
        "nsites",
        "source",
        "campaign",
        "round",
        "e_above_hull",
        "phonon_stable",
        "dft_state",
        "kappa_300k",
    ]
    table = Table(*columns, title=f"{len(rows)} candidates")
    for row in rows:
        values = row.as_dict()
        values["structure_hash"] = values["structure_hash"][:10]
        table.add_row(*(_fmt(values[c]) for c in columns))
    console.print(table)


_SUFFIXES = {".xyz": "extxyz", ".extxyz": "extxyz", ".csv": "csv", ".csv.gz": "csv", ".json": "json"}


def _format_from_name(out: Path) -> str:
    """The export format a file name implies; a name without a suffix is a folder of CIFs."""
    name = out.name.lower()
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    if not out.suffix or name.endswith(".cif") or out.is_dir():
        return "cif"
    raise InputError(
        f"{out}: cannot tell the export format from {out.suffix!r}; name the file .extxyz/.xyz, .csv[.gz] "
        f"or .json, give a folder for CIFs, or pass --format ({', '.join(FORMATS)})"
    )


@app.command("export")
def export_cmd(
    out: Path = typer.Argument(..., help="Output file (extxyz, csv, json) or folder (cif)."),
    fmt: str = typer.Option(None, "--format", help=f"One of {', '.join(FORMATS)}; default from the file suffix."),
    campaign: str = CAMPAIGN,
    formula: str = FORMULA,
    elements: str = ELEMENTS,
    ehull_max: float = EHULL,
    phonon_stable: bool = PHONON,
    dft_state: str = DFT,
    mlip: str = MLIP,
    limit: int = typer.Option(0, "--limit", min=0, help="At most this many candidates (0: all)."),
) -> None:
    """Write the matching candidates' best structures (DFT > MLIP-relaxed > generated) and results."""
    fmt = fmt or _format_from_name(out)
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "cif" and out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder (CIF export writes one file per candidate into a folder)")
    flt = _filter(campaign, formula, elements, ehull_max, phonon_stable, dft_state, mlip, limit)
    with database(readonly=True):
        candidates = list(find_candidates(flt))
        written = export_candidates(candidates, out, fmt, mlip=mlip)
    console.print(f"wrote {len(candidates)} candidates as {fmt} to {written}")
