"""``crysloop screen``: relax candidates with an ML potential, place them on the hull, check phonon stability."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from crysloop.cli.options import finite, positive

app = typer.Typer(help="Screen candidates with an ML potential: relaxation, energy above hull, phonon stability.",
                  invoke_without_command=True)  # fmt: skip
console = Console()


@app.callback()
def screen(
    campaign: str = typer.Option(None, help="Only candidates of this campaign (default: all generated and user ones)."),
    mlip: str = typer.Option(None, help="sevenn-l3i5, sevenn-0, chgnet, mattersim-1m or mattersim-5m (default: settings)."),
    d3: bool = typer.Option(False, "--d3", help="Add D3 dispersion (zero damping, PBE) to the potential; layered materials."),
    phonons: bool = typer.Option(True, "--phonons/--no-phonons", help="Check phonon stability near the hull."),
    ehull_threshold: float = typer.Option(0.1, callback=finite, help="Phonons only below this energy above hull (eV/atom)."),
    max_candidates: int = typer.Option(None, min=1, help="Screen at most this many candidates."),
    fmax: float = typer.Option(0.01, callback=positive, help="Force threshold of the relaxation (eV/A)."),
    steps: int = typer.Option(500, min=0, help="Step limit of the relaxation."),
    batch_size: int = typer.Option(16, min=1, help="Structures per forward pass."),
    phonon_min_length: float = typer.Option(10.0, callback=positive, help="Minimum plane spacing of the phonon supercell (A)."),
    phonon_tolerance: float = typer.Option(0.5, callback=positive, help="A mode below -this (THz) is imaginary."),
    concurrency: int = typer.Option(2, min=1, help="Relaxation parts and phonon checks running at once."),
    processes: bool = typer.Option(False, "--processes", help="Run them in worker processes (CPU) instead of threads."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Screen again candidates that failed before."),
    hull: str = typer.Option("mp", help="Hull references: mp (Materials Project table, or mp-api with MP_API_KEY) or "
                                        "mlip (relaxed with the same potential)."),
    materials_project: bool = typer.Option(False, "--materials-project",
                                           help="With --hull mlip: add MP structures (mp-api, MP_API_KEY)."),
) -> None:
    """Screen the unscreened candidates; finished ones are skipped, so an interrupted run resumes."""
    from crysloop.infra.executors import ExecutorConfig
    from crysloop.flows.runners import task_runner
    from crysloop.flows.screen import screen_flow
    from crysloop.screening.potentials import with_d3_name

    mlip = with_d3_name(mlip, d3)
    executor = ExecutorConfig(kind="processes" if processes else "threads", workers=max(1, concurrency))
    with console.status(f"screening with {mlip} ..."):
        summary = screen_flow.with_options(task_runner=task_runner(executor))(
            campaign=campaign, mlip=mlip, phonons=phonons, ehull_threshold=ehull_threshold,
            max_candidates=max_candidates, fmax=fmax, steps=steps, batch_size=batch_size,
            phonon_min_length=phonon_min_length, phonon_tolerance_thz=phonon_tolerance, concurrency=concurrency, retry_failed=retry_failed,
            materials_project=materials_project, hull=hull,
        )  # fmt: skip
    table = Table(title=f"screened with {summary.mlip}")
    for column in ("formula", "status", "steps", "E (eV/atom)", "E_hull (eV/atom)", "stability", "hull refs", "phonons",
                   "min freq (THz)"):  # fmt: skip
        table.add_column(column)
    for row in summary.rows:
        refs = "-" if row["hull_source"] is None else f"{row['hull_source']}, {row['hull_compounds']} compounds"
        table.add_row(
            row["formula"], row["status"] if not row["error"] else f"{row['status']}: {row['error']}", str(row["steps"]),
            _fmt(row["energy_per_atom"]), _fmt(row["e_above_hull"]), row["stability"], refs,
            {True: "stable", False: "unstable", None: "-"}[row["phonon_stable"]], _fmt(row["min_frequency_thz"], 2),
        )  # fmt: skip
    if summary.rows:
        console.print(table)
    console.print(f"{summary.screened} screened, {summary.failed} failed, {summary.unconverged} unconverged, "
                  f"{summary.unknown} of unknown stability (no known compound in the system), "
                  f"{summary.phonon_checked} phonon-checked")  # fmt: skip


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
