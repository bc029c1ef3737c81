"""``crysloop kappa``: lattice thermal conductivity with phono3py (MLIP forces, or a VASP flow for verification)."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crysloop.campaign.config import LabelConfig
from crysloop.cli.options import field_option, finite
from crysloop.errors import InputError
from crysloop.kappa.config import KappaStageConfig

app = typer.Typer(
    help="Lattice thermal conductivity (phono3py): run on screened candidates, show, verify with DFT.",
    no_args_is_help=True,
)
console = Console()


def parse_temperatures(text: str | None) -> tuple[float, ...] | None:
    """``"300,600"`` -> ``(300.0, 600.0)``; None (option unset) stays None."""
    if text is None:
        return None
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError as exc:
        raise InputError(f"temperatures must be comma-separated numbers in K, got {text!r}") from exc
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise InputError(f"--temperatures must be finite non-negative numbers in K, got {text!r}")
    return values


def parse_mesh(text: str | None) -> tuple[int, int, int] | float | None:
    """``"11,11,11"`` -> three integers; ``"40"`` -> a length in Angstrom for phono3py's automatic mesh; None stays."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    number = float if len(parts) == 1 else int
    try:
        values = [number(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1 and math.isfinite(values[0]) and values[0] > 0:
        return values[0]
    if len(values) == 3 and min(values) >= 1:
        return tuple(values)  # type: ignore[return-value]
    raise InputError(
        f"--mesh must be three positive integers (11,11,11) or one positive length in Angstrom (40), got {text!r}"
    )


def _stage(temperatures: str | None, mesh: str | None, **options) -> KappaStageConfig:
    """The kappa stage's config from the command's options; those left unset take the class defaults."""
    from crysloop.strict import build

    return build(
        KappaStageConfig, {**options, "temperatures": parse_temperatures(temperatures), "mesh": parse_mesh(mesh)}
    )


def _read_structure(path: Path):
    from pymatgen.core import Structure

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return Structure.from_file(path)
    except Exception as exc:
        raise InputError(f"{path}: not a readable structure ({exc})") from exc


TEMPERATURES = field_option(KappaStageConfig, "temperatures", "--temperatures", "-t")
MESH = field_option(KappaStageConfig, "mesh")
FC3 = field_option(KappaStageConfig, "fc3_min_length")
FC2 = field_option(KappaStageConfig, "fc2_min_length")
LBTE = field_option(KappaStageConfig, "lbte", "--lbte")
MLIP = field_option(KappaStageConfig, "mlip")


@app.command()
def run(
    campaign: str = typer.Option(None, help="Only candidates of this campaign."),
    mlip: str = MLIP,
    screening_mlip: str = typer.Option(
        None, help="Take candidates from screening results of this potential (default: settings)."
    ),
    temperatures: str = TEMPERATURES,
    top_n: int = field_option(KappaStageConfig, "top_n"),
    max_e_above_hull: float = field_option(LabelConfig, "ehull_stable", "--max-e-above-hull"),
    max_atoms: int = field_option(KappaStageConfig, "max_atoms"),
    max_displacements: int = field_option(KappaStageConfig, "max_displacements"),
    mesh: str = MESH,
    fc3_min_length: float = FC3,
    fc2_min_length: float = FC2,
    lbte: bool = LBTE,
    metal: list[str] = typer.Option([], help="Treat as metal (candidate id, structure hash or formula); repeatable."),
    nonmetal: list[str] = typer.Option([], help="Treat as non-metal, overriding the band-gap proxy; repeatable."),
    recompute: bool = typer.Option(False, "--recompute", help="Recompute candidates that already have a result."),
) -> None:
    """Kappa of the best screened candidates (ok, phonon-stable, low e_above_hull), stored in the database."""
    from crysloop.flows.kappa import kappa_flow
    from crysloop.strict import build

    config = _stage(
        temperatures,
        mesh,
        mlip=mlip,
        top_n=top_n,
        max_atoms=max_atoms,
        max_displacements=max_displacements,
        fc3_min_length=fc3_min_length,
        fc2_min_length=fc2_min_length,
        lbte=lbte,
    )
    labels = build(LabelConfig, {"ehull_stable": max_e_above_hull}, flags={"ehull_stable": "--max-e-above-hull"})
    metal_labels = {**dict.fromkeys(nonmetal, False), **dict.fromkeys(metal, True)}
    summary = kappa_flow(
        config,
        labels,
        campaign=campaign,
        screening_mlip=screening_mlip,
        metal_labels=metal_labels or None,
        recompute=recompute,
    )
    table = Table(title=f"kappa ({summary.mlip}, W/m/K)")
    for column in ("candidate", "formula", "E_hull", *(f"{t:g} K" for t in config.temperatures), "time (s)"):
        table.add_column(column)
    for row in summary.results:
        kappas = [f"{k:.2f}" for k in row["kappa_average"]]
        table.add_row(
            row["candidate"], row["formula"], f"{row['e_above_hull']:.3f}", *kappas, f"{row['wall_time_s']:.0f}"
        )
    console.print(table)
    console.print(f"computed {summary.computed}, skipped {summary.skipped}, failed {summary.failed}")


@app.command()
def show(
    campaign: str = typer.Option(None, help="Only results of this campaign."),
    mlip: str = typer.Option(None, help="Only results of this calculator (mlip name or vasp)."),
    temperature: float = typer.Option(300.0, callback=finite, min=0, help="Temperature (K) to show."),
    limit: int = typer.Option(20, min=1, help="Rows to show, highest kappa first."),
) -> None:
    """Stored kappa results, highest kappa first."""
    from crysloop.infra.db import database
    from crysloop.infra.kappa import kappa_results
    from crysloop.kappa.targets import kappa_at

    with database(readonly=True):
        rows = [(kappa_at(r, temperature), r) for r in kappa_results(campaign, mlip)]
    rows.sort(key=lambda pair: -1.0 if pair[0] is None else pair[0], reverse=True)
    table = Table(title=f"kappa at {temperature:g} K (W/m/K)")
    for column in ("formula", "calculator", "method", "status", "kappa", "mesh", "note"):
        table.add_column(column)
    for value, r in rows[:limit]:
        kappa = "-" if value is None else f"{value:.2f}"
        mesh = "x".join(str(n) for n in r.mesh) or "-"
        table.add_row(r.formula or "?", r.calculator, r.method, r.status, kappa, mesh, r.error or "")
    console.print(table)


@app.command()
def structure(
    path: Path = typer.Argument(..., help="Relaxed structure (CIF, POSCAR, ...)."),
    mlip: str = MLIP,
    d3: bool = typer.Option(False, "--d3", help="Add D3 dispersion (zero damping, PBE) to the potential."),
    temperatures: str = TEMPERATURES,
    mesh: str = MESH,
    fc3_min_length: float = FC3,
    fc2_min_length: float = FC2,
    lbte: bool = LBTE,
) -> None:
    """Kappa of one structure file, without the database (force sets cached for resuming)."""
    from crysloop.kappa.conductivity import KappaConfig, compute_kappa
    from crysloop.screening.potentials import with_d3_name
    from crysloop.settings import get_settings

    stage = _stage(
        temperatures, mesh, mlip=mlip, fc3_min_length=fc3_min_length, fc2_min_length=fc2_min_length, lbte=lbte
    )
    name = with_d3_name(stage.mlip, d3)
    outcome = compute_kappa(
        _read_structure(path),
        name,
        KappaConfig.of(stage),
        calculator_name=name,
        cache_dir=get_settings().cache_dir / "kappa",
    )
    table = Table(title=f"{outcome.formula}: kappa ({name}, {outcome.method}, mesh {outcome.mesh}), W/m/K")
    for column in ("T (K)", "average", "xx", "yy", "zz", "yz", "xz", "xy"):
        table.add_column(column)
    for t, average, tensor in zip(outcome.temperatures, outcome.kappa_average, outcome.kappa, strict=True):
        table.add_row(f"{t:g}", f"{average:.3f}", *(f"{k:.3f}" for k in tensor))
    console.print(table)
    console.print(
        f"{outcome.n_displacements} displaced supercells ({outcome.n_evaluated} evaluated now), "
        f"min frequency {outcome.min_frequency_thz:.3f} THz, {outcome.wall_time_s:.1f} s"
    )


@app.command()
def dft(
    path: Path = typer.Argument(..., help="Relaxed structure (CIF, POSCAR, ...)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the jobflow Flow (JSON)."),
    temperatures: str = TEMPERATURES,
    mesh: str = MESH,
    fc3_min_length: float = FC3,
    fc2_min_length: float = FC2,
    lbte: bool = LBTE,
) -> None:
    """Write the VASP verification flow (atomate2 statics on every displaced supercell, then kappa) as JSON."""
    from monty.serialization import dumpfn

    from crysloop.kappa.conductivity import KappaConfig
    from crysloop.kappa.vasp import dft_kappa_flow

    stage = _stage(temperatures, mesh, fc3_min_length=fc3_min_length, fc2_min_length=fc2_min_length, lbte=lbte)
    flow = dft_kappa_flow(_read_structure(path), KappaConfig.of(stage))
    dumpfn(flow, output)
    console.print(
        f"{output}: {len(flow.jobs) - 1} VASP statics + 1 kappa job; run it with jobflow "
        f"(run_locally or a manager such as jobflow-remote)"
    )
