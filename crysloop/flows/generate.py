"""The ``generate`` flow: Stage I compositions -> Stage II structures -> deduplicated candidates in the database."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, get_run_logger

from crysloop.campaign.config import GenerationConfig
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
    config: GenerationConfig | None = None,
    campaign: str | None = None,
    round_index: int | None = None,
    seed: int = 0,
    device: str = "auto",
) -> GenerateSummary:
    """Sample ``n`` crystals (CrysVCD: valence-constrained compositions, then DiffCSP structures) and store them.

    The same seed gives the same crystals, so re-running an interrupted generation adds no duplicates.
    ``config.generator="condition-cdvae-plus"`` decodes the structures with ConditionCDVAE+ instead of DiffCSP.
    An unset config takes the class defaults (the shipped models).
    """
    logger = get_run_logger()
    config = config or GenerationConfig()
    conditions = dict(conditions or {})
    composition = config.composition_model
    assignments, used1 = sample_compositions_task(n, conditions, composition, seed, device)
    origin = {"composition_checkpoint": composition.checkpoint, "conditions_stage1": used1, "seed": seed}
    stage2 = sample_cdvae_structures_task if config.generator == "condition-cdvae-plus" else sample_structures_task
    stage2_config = config.stage2
    size = stage2_config.batch_size  # chunks run in parallel on the task runner: threads, or a Dask cluster
    futures = [
        stage2.with_options(task_run_name=f"sample-structures-{start // size}").submit(
            assignments[start : start + size], conditions, stage2_config, seed + start, device, origin
        )
        for start in range(0, len(assignments), size)
    ]
    sampled = [item for future in futures for item in future.result()]
    valid = valid_flags(sampled)
    with database():
        report = store_sampled_task(sampled, valid, campaign=campaign, round_index=round_index)
    invalid = valid.count(False)
    used2 = sampled[0].origin["conditions_stage2"] if sampled else {}
    logger.info(
        "generated %d crystals (%d structurally invalid discarded): %d new, %d already known; "
        "conditions stage I %s, stage II %s",
        len(sampled),
        invalid,
        report.inserted,
        report.existing,
        used1,
        used2,
    )
    return GenerateSummary(n, len(sampled), invalid, report.inserted, report.existing, used1, used2)
