"""The ``generate`` flow: Stage I compositions -> Stage II structures -> deduplicated candidates in the database."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, get_run_logger

from crysloop.campaign.config import CDVAEModelConfig, CompositionModelConfig, StructureModelConfig
from crysloop.campaign.generation import valid_flags
from crysloop.infra.db import database
from crysloop.tasks.sample import sample_cdvae_structures_task, sample_compositions_task, sample_structures_task
from crysloop.tasks.store import store_sampled_task


@dataclass
class GenerateSummary:
    """How many candidates a generation produced and how many were new."""

    requested: int
    generated: int
    invalid: int
    inserted: int
    existing: int
    conditions_stage1: dict
    conditions_stage2: dict


@flow(name="generate", flow_run_name="generate-{campaign}-round-{round_index}")
def generate_flow(
    n: int,
    conditions: dict[str, float] | None = None,
    campaign: str | None = None,
    round_index: int | None = None,
    composition_checkpoint: str = "shipped",
    structure_checkpoint: str = "shipped",
    composition_config: CompositionModelConfig | None = None,
    structure_config: StructureModelConfig | None = None,
    seed: int = 0,
    device: str = "auto",
    generator: str = "crysvcd",
    cdvae_config: CDVAEModelConfig | None = None,
) -> GenerateSummary:
    """Sample ``n`` crystals (CrysVCD: valence-constrained compositions, then DiffCSP structures) and store them.

    The same seed gives the same crystals, so re-running an interrupted generation adds no duplicates.
    ``generator="condition-cdvae-plus"`` decodes the structures with ConditionCDVAE+ (``structure_checkpoint`` is
    then its checkpoint) instead of DiffCSP.
    """
    logger = get_run_logger()
    composition_config = composition_config or CompositionModelConfig(checkpoint=composition_checkpoint)
    structure_config = structure_config or StructureModelConfig(checkpoint=structure_checkpoint)
    conditions = dict(conditions or {})
    assignments, used1 = sample_compositions_task(composition_checkpoint, n, conditions, composition_config, seed, device)
    origin = {"composition_checkpoint": composition_checkpoint, "conditions_stage1": used1, "seed": seed}
    stage2, stage2_config = sample_structures_task, structure_config
    if generator == "condition-cdvae-plus":
        stage2, stage2_config = sample_cdvae_structures_task, cdvae_config or CDVAEModelConfig()
    size = stage2_config.batch_size  # chunks run in parallel on the task runner: threads, or a Dask cluster
    futures = [
        stage2.with_options(task_run_name=f"sample-structures-{start // size}").submit(
            structure_checkpoint, assignments[start : start + size], conditions, stage2_config, seed + start,
            device, origin)
        for start in range(0, len(assignments), size)
    ]  # fmt: skip
    sampled = [item for future in futures for item in future.result()]
    valid = valid_flags(sampled)
    with database():
        report = store_sampled_task(sampled, valid, campaign=campaign, round_index=round_index)
    invalid = valid.count(False)
    used2 = sampled[0].origin["conditions_stage2"] if sampled else {}
    logger.info("generated %d crystals (%d structurally invalid discarded): %d new, %d already known; "
                "conditions stage I %s, stage II %s", len(sampled), invalid, report.inserted, report.existing,
                used1, used2)  # fmt: skip
    return GenerateSummary(n, len(sampled), invalid, report.inserted, report.existing, used1, used2)
