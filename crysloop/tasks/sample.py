"""Prefect tasks that sample from the generative models (tagged "gpu" so a concurrency limit can gate them)."""

from __future__ import annotations

from prefect import task

from crysloop.campaign.config import CDVAEModelConfig, CompositionModelConfig, StructureModelConfig
from crysloop.campaign.generation import (
    cdvae_structures_for,
    known_conditions,
    structures_for,
)
from crysloop.chemistry.valence import ValenceAssignment
from crysloop.infra.store import NewCandidate
from crysloop.models import cdvae, composition, diffcsp
from crysloop.models.composition import sample_valid_compositions
from crysloop.settings import resolve_device


@task(name="sample-compositions", tags=["gpu", "stage-1"], retries=1)
def sample_compositions_task(
    n: int, conditions: dict[str, float], config: CompositionModelConfig, seed: int, device: str = "auto"
) -> tuple[list[ValenceAssignment], dict]:
    """Stage I: ``n`` charge-neutral compositions; returns them and the conditions the model could use."""
    device = resolve_device(device)
    model = composition.load_checkpoint(config.checkpoint, device=device)
    assignments = sample_valid_compositions(
        model,
        n,
        conditions,
        max_atoms=config.max_atoms,
        temperature=config.temperature,
        top_k=config.top_k,
        seed=seed,
        device=device,
    )
    return assignments, known_conditions(conditions, model.condition_names)


@task(name="sample-structures", tags=["gpu", "stage-2"], retries=1)
def sample_structures_task(
    assignments: list[ValenceAssignment],
    conditions: dict[str, float],
    config: StructureModelConfig,
    seed: int,
    device: str = "auto",
    origin: dict | None = None,
) -> list[NewCandidate]:
    """Stage II: one structure per composition, with classifier-free guidance toward ``conditions``."""
    device = resolve_device(device)
    model = diffcsp.load_checkpoint(config.checkpoint, device=device)
    origin = {**(origin or {}), "structure_checkpoint": config.checkpoint}
    return structures_for(
        assignments,
        model,
        conditions,
        guidance=config.guidance,
        steps=config.steps,
        batch_size=config.batch_size,
        seed=seed,
        device=device,
        origin=origin,
        rescale_volume=config.rescale_volume,
    )


@task(name="sample-cdvae-structures", tags=["gpu", "stage-2"], retries=1)
def sample_cdvae_structures_task(
    assignments: list[ValenceAssignment],
    conditions: dict[str, float],
    config: CDVAEModelConfig,
    seed: int,
    device: str = "auto",
    origin: dict | None = None,
) -> list[NewCandidate]:
    """Stage II with ConditionCDVAE+: a structure for each composition, steered toward ``conditions``."""
    model, gan = cdvae.load_checkpoint(config.checkpoint, device=resolve_device(device))
    origin = {**(origin or {}), "structure_checkpoint": config.checkpoint}
    return cdvae_structures_for(
        assignments,
        model,
        gan,
        conditions,
        candidates=config.candidates,
        steps_per_level=config.steps_per_level,
        batch_size=config.batch_size,
        seed=seed,
        origin=origin,
    )
