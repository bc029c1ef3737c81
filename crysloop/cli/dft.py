"""``crysloop dft``: relax the best screened candidates with VASP, resume failed jobs, report the metrics."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from crysloop.cli.options import field_option
from crysloop.dft.config import DFTStageConfig
from crysloop.dft.metrics import DFTMetrics, dft_metrics
from crysloop.infra.db import database

app = typer.Typer(help="DFT verification with VASP (atomate2 + custodian): run, resume, report.", no_args_is_help=True)
console = Console()

CAMPAIGN = typer.Option(None, "--campaign", help="Campaign name; all campaigns when left out.")
MAX_ERRORS = field_option(DFTStageConfig, "max_errors")
POLL = field_option(DFTStageConfig, "poll_seconds")


def _stage(**options) -> DFTStageConfig:
    """The DFT stage's config from the command's options; those left unset take the class defaults."""
    from crysloop.strict import build

    return build(DFTStageConfig, options)


def _print_metrics(metrics: DFTMetrics, title: str = "DFT verification") -> None:
    def fmt(value, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    table = Table("metric", "value", title=title)
    table.add_row("jobs", str(metrics.n_jobs))
    table.add_row("finished (completed or failed)", str(metrics.n_finished))
    table.add_row("converged", str(metrics.n_converged))
    table.add_row("convergence rate", fmt(metrics.convergence_rate, ".1%"))
    table.add_row("mean ionic steps", fmt(metrics.mean_ionic_steps, ".1f"))
    table.add_row("mean |E_DFT - E_initial| (eV/atom)", fmt(metrics.mean_energy_diff_per_atom, ".4f"))
    for state, count in sorted(metrics.states.items()):
        table.add_row(f"jobs {state}", str(count))
    console.print(table)


def _print_failures(campaign: str | None) -> None:
    """One line per failed job with the reason stored for it (custodian's, VASP's or the set-up's)."""
    from crysloop.infra.dft import find_jobs

    for job in find_jobs(campaign):
        if job.state == "failed":
            reason = job.errors[-1] if job.errors else "no reason recorded"
            console.print(
                f"[red]failed[/] {job.formula or '-'} (job {job.pk}): {reason}", highlight=False, soft_wrap=True
            )


@app.command()
def run(
    campaign: str = CAMPAIGN,
    preset: str = field_option(DFTStageConfig, "preset"),
    top_n: int = field_option(DFTStageConfig, "top_n"),
    max_errors: int = MAX_ERRORS,
    poll_seconds: float = POLL,
) -> None:
    """Relax the best screened candidates with VASP (command: CRYSLOOP_VASP_CMD) and store the results."""
    from crysloop.dft.presets import RunSettings, check_vasp_setup
    from crysloop.flows.dft import dft_flow

    config = _stage(preset=preset, top_n=top_n, max_errors=max_errors, poll_seconds=poll_seconds)
    run_settings = RunSettings.of(config)
    check_vasp_setup(run_settings)  # one error line now, not after starting a flow
    with database():
        metrics = dft_flow(config, campaign=campaign, run=run_settings)
        _print_metrics(DFTMetrics(**metrics))
        _print_failures(campaign)


@app.command()
def resume(
    campaign: str = CAMPAIGN,
    max_attempts: int = field_option(DFTStageConfig, "max_attempts"),
    max_errors: int = MAX_ERRORS,
    poll_seconds: float = POLL,
    stale_hours: float | None = typer.Option(
        None, "--stale-hours", min=0, help="Also restart jobs left running longer than this (a killed run)."
    ),
) -> None:
    """Restart failed jobs from their last CONTCAR with the INCAR corrections custodian recorded."""
    from crysloop.flows.dft import dft_resume_flow

    config = _stage(max_attempts=max_attempts, max_errors=max_errors, poll_seconds=poll_seconds)
    with database():
        metrics = dft_resume_flow(config, campaign=campaign, stale_hours=stale_hours)
        _print_metrics(DFTMetrics(**metrics))
        _print_failures(campaign)


@app.command()
def report(
    campaign: str = CAMPAIGN,
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON line."),
    by_generator: bool = typer.Option(
        False, "--by-generator", help="Metrics per generator (ConditionCDVAE+, DiffCSP, ...)."
    ),
) -> None:
    """Convergence rate, mean ionic steps and mean energy difference of the DFT jobs (ConditionCDVAE+ metrics)."""
    from crysloop.dft.jobs import job_generators
    from crysloop.dft.metrics import dft_metrics_by_generator
    from crysloop.infra.dft import find_jobs

    with database(readonly=True):
        job_list = find_jobs(campaign)
        metrics = dft_metrics(job_list)
        per_generator = dft_metrics_by_generator(job_list, job_generators(job_list)) if by_generator else {}
        rows = [
            (job.formula or "-", job.preset, job.state, len(job.attempts), job.ionic_steps, job.energy_diff_per_atom)
            for job in job_list
        ]
    if as_json:
        print(json.dumps({g: m.as_dict() for g, m in per_generator.items()} if by_generator else metrics.as_dict()))
        return
    jobs_table = Table("formula", "preset", "state", "attempts", "ionic steps", "|dE| (eV/atom)", title="DFT jobs")
    for formula, preset, state, attempts, steps, diff in rows:
        jobs_table.add_row(
            formula,
            preset,
            state,
            str(attempts),
            "-" if steps is None else str(steps),
            "-" if diff is None else f"{diff:.4f}",
        )
    console.print(jobs_table)
    _print_metrics(metrics)
    for generator, figures in per_generator.items():
        _print_metrics(figures, title=f"DFT verification: {generator}")
    with database(readonly=True):
        _print_failures(campaign)
