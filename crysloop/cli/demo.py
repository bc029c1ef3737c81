"""``crysloop demo``: the main job on embedded defaults, a small real campaign on CPU.

Shipped Stage I and Stage II checkpoints, SevenNet-l3i5 screening (offline weights) against the shipped
Materials Project hull table, the embedded database: two rounds
of generate -> screen -> label -> fine-tune -> generate.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from crysloop.resources import asset_path

console = Console()


def demo_config_path() -> Path:
    return asset_path("campaigns", "demo.yaml")


def demo(
    name: str = typer.Option("demo", help="Campaign name (a finished campaign of this name is shown, not rerun)."),
) -> None:
    """Run the demo campaign: 2 small rounds with the shipped models, SevenNet-l3i5 and the embedded database."""
    from crysloop.campaign.config import load_config
    from crysloop.cli.campaign import print_rounds
    from crysloop.flows.campaign import campaign_dir, campaign_flow
    from crysloop.settings import get_settings

    config = load_config(demo_config_path()).model_copy(update={"name": name})
    console.print(
        f"[bold]crysloop demo[/]: campaign {name!r}, {config.rounds} rounds x {config.candidates_per_round} "
        f"crystals, potential {config.screening.mlip} (offline; users default to MatterSim), device {config.device}"
    )
    start = time.perf_counter()
    results = campaign_flow(config.model_dump(mode="json"))
    print_rounds(results)
    settings = get_settings()
    console.print(f"finished in {time.perf_counter() - start:.0f} s")
    console.print(f"results database: embedded, {settings.db_dir}" if not settings.mongodb_uri else "results: MongoDB")
    console.print(f"plots: {campaign_dir(name)}")
    console.print(f"look at the candidates:  [bold].venv/bin/crysloop db query --campaign {name}[/]")
    console.print(f"round statistics:        [bold].venv/bin/crysloop campaign status {name}[/]")
