"""``crysloop screen``: relax candidates with an ML potential, place them on the hull, check phonon stability."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from crysloop.campaign.config import LabelConfig
from crysloop.cli.options import field_option
from crysloop.infra.executors import ExecutorConfig
from crysloop.screening.config import ScreeningConfig

app = typer.Typer(
    help="Screen candidates with an ML potential: relaxation, energy above hull, phonon stability.",
    invoke_without_command=True,
)
console = Console()


@app.callback()
def screen(
    campaign: str = typer.Option(None, help="Only candidates of this campaign (default: all generated and user ones)."),
    mlip: str = field_option(ScreeningConfig, "mlip"),
    d3: bool = typer.Option(
        False, "--d3", help="Add D3 dispersion (zero damping, PBE) to the potential; layered materials."
    ),
    phonons: bool = field_option(ScreeningConfig, "phonons", "--phonons/--no-phonons"),
    ehull_threshold: float = field_option(LabelConfig, "ehull_stable", "--ehull-threshold"),
    max_candidates: int = typer.Option(None, min=1, help="Screen at most this many candidates."),
    fmax: float = field_option(ScreeningConfig, "fmax"),
    steps: int = field_option(ScreeningConfig, "steps"),
    batch_size: int = field_option(ScreeningConfig, "batch_size"),
    phonon_min_length: float = field_option(ScreeningConfig, "phonon_min_length"),
    phonon_tolerance: float = field_option(ScreeningConfig, "phonon_tolerance_thz", "--phonon-tolerance"),
    concurrency: int = field_option(ExecutorConfig, "workers", "--concurrency"),
    processes: bool = typer.Option(False, "--processes", help="Run them in worker processes (CPU) instead of threads."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Screen again candidates that failed before."),
    hull: str = field_option(ScreeningConfig, "hull"),
    materials_project: bool = typer.Option(
        False, "--materials-project", help="With --hull mlip: add MP structures (mp-api, MP_API_KEY)."
    ),
) -> None:
    """Screen the unscreened candidates; finished ones are skipped, so an interrupted run resumes."""
    from crysloop.flows.runners import task_runner
    from crysloop.flows.screen import screen_flow
    from crysloop.screening.potentials import with_d3_name
    from crysloop.strict import build

    config = build(
        ScreeningConfig,
        {
            "mlip": with_d3_name(mlip, d3) if mlip or d3 else None,
            "fmax": fmax,
            "steps": steps,
            "batch_size": batch_size,
            "hull": hull,
            "phonons": phonons,
            "phonon_min_length": phonon_min_length,
            "phonon_tolerance_thz": phonon_tolerance,
        },
        flags={"phonon_tolerance_thz": "--phonon-tolerance"},
    )
    labels = build(LabelConfig, {"ehull_stable": ehull_threshold}, flags={"ehull_stable": "--ehull-threshold"})
    executor = build(
        ExecutorConfig,
        {"kind": "processes" if processes else "threads", "workers": concurrency},
        flags={"workers": "--concurrency"},
    )
    with console.status(f"screening with {config.mlip} ..."):
        summary = screen_flow.with_options(task_runner=task_runner(executor))(
            config,
            labels,
            campaign=campaign,
            executor=executor,
            max_candidates=max_candidates,
            retry_failed=retry_failed,
            materials_project=materials_project,
        )
    table = Table(title=f"screened with {summary.mlip}")
    for column in (
        "formula",
        "status",
        "steps",
        "E (eV/atom)",
        "E_hull (eV/atom)",
        "stability",
        "hull refs",
        "phonons",
        "min freq (THz)",
    ):
        table.add_column(column)
    for row in summary.rows:
        refs = "-" if row["hull_source"] is None else f"{row['hull_source']}, {row['hull_compounds']} compounds"
        table.add_row(
            row["formula"],
            row["status"] if not row["error"] else f"{row['status']}: {row['error']}",
            str(row["steps"]),
            _fmt(row["energy_per_atom"]),
            _fmt(row["e_above_hull"]),
            row["stability"],
            refs,
            {True: "stable", False: "unstable", None: "-"}[row["phonon_stable"]],
            _fmt(row["min_frequency_thz"], 2),
        )
    if summary.rows:
        console.print(table)
    console.print(
        f"{summary.screened} screened, {summary.failed} failed, {summary.unconverged} unconverged, "
        f"{summary.unknown} of unknown stability (no known compound in the system), "
        f"{summary.phonon_checked} phonon-checked"
    )


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
