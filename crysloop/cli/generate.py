"""``crysloop generate`` (Stage I then Stage II into the database) and ``crysloop server`` (the Prefect UI)."""

from __future__ import annotations

import typer
from rich.console import Console

from crysloop.campaign.config import CompositionModelConfig, StructureModelConfig
from crysloop.cli.options import field_option, parse_conditions

console = Console()


def generate(
    n: int = typer.Option(..., "--n", min=1, help="Number of crystals."),
    condition: list[str] = typer.Option([], "--condition", help="NAME=VALUE target, e.g. stable=1; repeatable."),
    campaign: str = typer.Option(None, "--campaign", help="Store the candidates under this campaign."),
    composition_checkpoint: str = field_option(CompositionModelConfig, "checkpoint", "--composition-checkpoint"),
    structure_checkpoint: str = field_option(StructureModelConfig, "checkpoint", "--structure-checkpoint"),
    guidance: float = field_option(StructureModelConfig, "guidance"),
    steps: int = field_option(StructureModelConfig, "steps"),
    rescale_volume: bool = field_option(StructureModelConfig, "rescale_volume", "--rescale-volume/--no-rescale-volume"),
    seed: int = typer.Option(0, help="Random seed (same seed, same crystals)."),
    device: str = typer.Option(None, help="torch device: auto, cpu, cuda[:N] (default: CRYSLOOP_DEVICE, else auto)."),
) -> None:
    """Generate crystals with CrysVCD: charge-neutral compositions, then structures for them, into the database."""
    from crysloop.campaign.config import GenerationConfig
    from crysloop.campaign.generation import check_conditions, model_condition_names
    from crysloop.flows.generate import generate_flow
    from crysloop.settings import resolve_device
    from crysloop.strict import build

    device = resolve_device(device)
    conditions = parse_conditions(condition)
    composition = build(
        CompositionModelConfig, {"checkpoint": composition_checkpoint}, flags={"checkpoint": "--composition-checkpoint"}
    )
    structure = build(
        StructureModelConfig,
        {"checkpoint": structure_checkpoint, "guidance": guidance, "steps": steps, "rescale_volume": rescale_volume},
        flags={"checkpoint": "--structure-checkpoint"},
    )
    check_conditions(conditions, model_condition_names(composition.checkpoint, structure.checkpoint))
    config = GenerationConfig(composition_model=composition, structure_model=structure)
    summary = generate_flow(n, conditions, config, campaign=campaign, seed=seed, device=device)
    console.print(
        f"generated {summary.generated} crystals ({summary.invalid} structurally invalid, discarded): "
        f"{summary.inserted} new, {summary.existing} already stored "
        f"(conditions used: stage I {summary.conditions_stage1 or 'none'}, "
        f"stage II {summary.conditions_stage2 or 'none'})"
    )
    console.print(f"look at them: crysloop db query{' --campaign ' + campaign if campaign else ''}")
