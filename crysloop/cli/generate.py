"""``crysloop generate`` (Stage I then Stage II into the database) and ``crysloop server`` (the Prefect UI)."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from crysloop.cli.options import finite, parse_conditions

console = Console()


def generate(
    n: int = typer.Option(..., "--n", min=1, help="Number of crystals."),
    condition: list[str] = typer.Option([], "--condition", help="NAME=VALUE target, e.g. stable=1; repeatable."),
    campaign: str = typer.Option(None, "--campaign", help="Store the candidates under this campaign."),
    composition_checkpoint: str = typer.Option("shipped", help="Stage I checkpoint path, or 'shipped'."),
    structure_checkpoint: str = typer.Option("shipped", help="Stage II checkpoint path, or 'shipped'."),
    guidance: float = typer.Option(None, min=0.0, callback=finite,
                                   help="Classifier-free guidance weight w (default 2, as CrysVCD and campaigns)."),
    steps: int = typer.Option(None, min=1, help="Diffusion steps (default: the model's)."),
    rescale_volume: bool = typer.Option(
        True, help="Scale each sampled cell to its composition's expected volume (additive element volumes)."),
    seed: int = typer.Option(0, help="Random seed (same seed, same crystals)."),
    device: str = typer.Option(None, help="torch device: auto, cpu, cuda[:N] (default: CRYSLOOP_DEVICE, else auto)."),
) -> None:
    """Generate crystals with CrysVCD: charge-neutral compositions, then structures for them, into the database."""
    from crysloop.campaign.config import CompositionModelConfig, StructureModelConfig
    from crysloop.campaign.generation import check_conditions, model_condition_names
    from crysloop.flows.generate import generate_flow
    from crysloop.settings import resolve_device

    device = resolve_device(device)
    conditions = parse_conditions(condition)
    check_conditions(conditions, model_condition_names(composition_checkpoint, structure_checkpoint))
    summary = generate_flow(
        n=n, conditions=conditions, campaign=campaign,
        composition_checkpoint=composition_checkpoint, structure_checkpoint=structure_checkpoint,
        composition_config=CompositionModelConfig(checkpoint=composition_checkpoint),
        structure_config=StructureModelConfig(checkpoint=structure_checkpoint, steps=steps, rescale_volume=rescale_volume,
                                              **({} if guidance is None else {"guidance": guidance})),
        seed=seed, device=device,
    )  # fmt: skip
    console.print(f"generated {summary.generated} crystals ({summary.invalid} structurally invalid, discarded): "
                  f"{summary.inserted} new, {summary.existing} already stored "
                  f"(conditions used: stage I {summary.conditions_stage1 or 'none'}, "
                  f"stage II {summary.conditions_stage2 or 'none'})")  # fmt: skip
    console.print(f"look at them: crysloop db query{' --campaign ' + campaign if campaign else ''}")


def server(
    host: str = typer.Option("127.0.0.1", help="Address to bind; keep localhost unless behind a proxy."),
    port: int = typer.Option(4200, help="Port of the API and UI."),
) -> None:
    """Start a Prefect server with its UI (then set PREFECT_API_URL=http://HOST:PORT/api for runs to show up)."""
    console.print(f"Prefect UI on http://{host}:{port}  --  in other shells: export PREFECT_API_URL=http://{host}:{port}/api")
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    prefect = os.path.join(os.path.dirname(sys.executable), "prefect")
    os.execve(prefect, [prefect, "server", "start", "--host", host, "--port", str(port)], env)


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
    app.command("server")(server)
