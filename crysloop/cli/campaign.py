"""``crysloop campaign``: run, resume, schedule and inspect generation campaigns."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crysloop.campaign.config import load_config, parse_config
from crysloop.infra.db import database

app = typer.Typer(help="Generation campaigns: run, resume, deploy on a schedule, status, list.", no_args_is_help=True)
console = Console() if sys.stdout.isatty() else Console(width=200)


def print_rounds(results: dict) -> None:
    table = Table(
        "round",
        "generated",
        "valid",
        "unique",
        "novel",
        "screened",
        "stable",
        "unknown",
        "unconv.",
        "stable frac.",
        "min E_hull",
        "phonon-stable frac.",
        "S.U.N.",
    )
    for index, stats in sorted(results.items()):

        def cell(key, fmt="{}", stats=stats):
            value = stats.get(key)
            return "-" if value is None else fmt.format(value)

        table.add_row(
            str(index),
            cell("generated"),
            cell("valid"),
            cell("unique"),
            cell("novel"),
            cell("screened"),
            cell("stable"),
            cell("unknown"),
            cell("unconverged"),
            cell("stable_fraction", "{:.2f}"),
            cell("ehull_min", "{:.3f}"),
            cell("phonon_stable_fraction", "{:.2f}"),
            cell("sun"),
        )
    console.print(table)
    console.print(
        "stable: within the stability window of the hull of Materials Project phases; unknown: no compound "
        "of the system is known, so there is no hull to judge by (not counted in stable fractions, "
        "E_hull or S.U.N.); unconv.: relaxation hit its step limit (never stable)."
    )
    deep = [(i, s["ehull_min"]) for i, s in sorted(results.items()) if (s.get("ehull_min") or 0.0) < -0.2]
    for index, value in deep:
        console.print(
            f"round {index}: a candidate {value:.2f} eV/atom below the hull is a claim of a new ground state; "
            f"the potential's error on new chemistries (~0.05-0.1 eV/atom) or a phase missing from the "
            f"reference table can explain it: check it with DFT (crysloop dft) before believing it."
        )


@app.command()
def run(config: Path = typer.Argument(..., help="Campaign YAML file.")) -> None:
    """Run a campaign to the end (continuing it if it exists with the same configuration)."""
    from crysloop.flows.campaign import campaign_flow

    cfg = load_config(config)
    results = campaign_flow(cfg.model_dump(mode="json"))
    print_rounds(results)
    console.print(f"Results: [bold]crysloop db query --campaign {cfg.name}[/]")


@app.command()
def resume(name: str = typer.Argument(..., help="Campaign name.")) -> None:
    """Continue a stopped or killed campaign from the database state, skipping finished work."""
    from crysloop.flows.campaign import campaign_flow
    from crysloop.infra.campaign import get_campaign

    with database(readonly=True):
        stored = dict(get_campaign(name).config)
    results = campaign_flow(stored, resume=True)
    print_rounds(results)


@app.command()
def deploy(
    config: Path = typer.Argument(..., help="Campaign YAML file."),
    cron: str = typer.Option("0 2 * * *", "--cron", help="Schedule (cron syntax, server time zone)."),
    work_pool: str = typer.Option(
        None, "--work-pool", help="Register for this work pool's workers instead of serving."
    ),
) -> None:
    """Schedule a campaign as a Prefect deployment: served by this process, or run by a work pool's workers."""
    from crysloop.flows.deploy import campaign_deployment, register_for_work_pool

    cfg = load_config(config)
    if work_pool:
        deployment_id = register_for_work_pool(cfg, cron, work_pool)
        console.print(
            f"deployment {cfg.name} ({deployment_id}) scheduled '{cron}' on work pool {work_pool!r}; "
            f"start a worker: prefect worker start --pool {work_pool}"
        )
        return
    from prefect import serve

    console.print(f"serving campaign {cfg.name} on schedule '{cron}' (Ctrl-C stops; runs show in the Prefect UI)")
    serve(campaign_deployment(cfg, cron))


@app.command()
def status(name: str = typer.Argument(None, help="Campaign name; all campaigns when omitted.")) -> None:
    """Round-by-round statistics of a campaign."""
    from crysloop.infra.campaign import all_campaigns, get_campaign, rounds

    with database(readonly=True):
        names = [name] if name else [c.name for c in all_campaigns()]
        for campaign_name in names:
            campaign = get_campaign(campaign_name)
            config = parse_config(campaign.config)
            done = rounds(campaign_name)
            console.print(
                f"[bold]{campaign_name}[/] ({campaign.status}): {len([r for r in done if r.status == 'completed'])}"
                f"/{config.rounds} rounds, {config.candidates_per_round} candidates per round, {config.screening.mlip}"
            )
            print_rounds({r.index: {**r.stats, "stages": r.stages_done} for r in done})


@app.command("list")
def list_campaigns() -> None:
    """Every campaign in the database."""
    from crysloop.infra.campaign import all_campaigns, candidate_count

    with database(readonly=True):
        table = Table("name", "status", "rounds", "candidates", "created", "description")
        for campaign in all_campaigns():
            table.add_row(
                campaign.name,
                campaign.status,
                str(campaign.config.get("rounds")),
                str(candidate_count(campaign.name)),
                campaign.created_at.strftime("%Y-%m-%d %H:%M"),
                campaign.description,
            )
    console.print(table)
