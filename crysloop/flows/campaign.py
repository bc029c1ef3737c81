"""The ``campaign`` flow: rounds of generate -> screen -> label -> fine-tune, as CrysVCD's concurrent learning.

Every stage of a round is recorded in the database when it finishes, and every stage is idempotent (seeded
generation deduplicated by structure hash, screening that skips screened candidates, checkpoints written
atomically), so a campaign killed at any point continues with ``resume`` without redoing or duplicating work.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from prefect import flow, get_run_logger, tags
from prefect.artifacts import create_markdown_artifact
from pymatgen.core import Composition, Structure

from crysloop.campaign.config import CampaignConfig, parse_config
from crysloop.campaign.report import best_candidates_markdown, ehull_plot, png_markdown
from crysloop.campaign.stability import stability_class, stability_labels
from crysloop.campaign.statistics import round_statistics
from crysloop.data.datasets import load_dataset
from crysloop.flows.generate import generate_flow
from crysloop.flows.runners import task_runner
from crysloop.flows.screen import screen_flow
from crysloop.infra import campaign as store
from crysloop.infra import faults, models
from crysloop.infra.db import database
from crysloop.settings import get_settings
from crysloop.tasks.train import finetune_cdvae_task, finetune_composition_task, finetune_structure_task

STAGES = ("generate", "screen", "kappa", "finetune", "dft", "statistics")


@lru_cache(maxsize=4)
def reference_structures(source: str) -> tuple[Structure, ...]:
    """Known crystals for novelty and hull references: ``embedded:mp_20_mini``, a dataset name or a path."""
    return tuple(record.structure for record in load_dataset(source, progress=False))


def references_for(candidates, reference: tuple[Structure, ...]) -> list[Structure]:
    """The known crystals whose elements all occur together in some candidate (the hull needs no others)."""
    systems = [set(c.elements) for c in candidates]
    return [s for s in reference if any({el.symbol for el in s.composition.elements} <= sys for sys in systems)]


def campaign_dir(name: str) -> Path:
    return get_settings().runs_dir / "campaigns" / name


def _checkpoint_name(campaign: str, index: int, kind: str) -> str:
    return f"{campaign}-round-{index}-{kind}"


def _models_for_round(config: CampaignConfig, index: int) -> tuple[str, str]:
    """Checkpoints a round samples from: the previous round's fine-tuned models, else the configured ones."""
    composition, structure = config.generation.composition_model.checkpoint, config.generation.stage2.checkpoint
    if index > 0 and config.finetune:
        previous_c = models.find_checkpoint(_checkpoint_name(config.name, index - 1, "composition"))
        previous_s = models.find_checkpoint(_checkpoint_name(config.name, index - 1, "structure"))
        composition = previous_c.path if previous_c else composition
        structure = previous_s.path if previous_s else structure
    return composition, structure


def _stage2(config: CampaignConfig):
    """The Stage II fine-tuning task and its extra arguments for the configured generator."""
    generation = config.generation
    if generation.generator == "condition-cdvae-plus":
        return finetune_cdvae_task, {"gan_epochs": generation.cdvae_model.gan_epochs}
    return finetune_structure_task, {"scope": generation.structure_model.finetune_scope}


def _labelled(config: CampaignConfig, upto: int) -> list[tuple[Composition, Structure, dict]]:
    """Every screened candidate of rounds 0..``upto`` with its stability (and kappa) labels."""
    from crysloop.infra.kappa import kappa_results
    from crysloop.kappa.targets import kappa_labels

    kappa = kappa_labels(kappa_results(config.name)) if config.kappa.enabled else {}
    examples = []
    for index in range(upto + 1):
        for candidate, result in store.round_screening(config.name, index, config.screening.mlip):
            if result is None or result.status != "ok":
                continue
            labels = stability_labels(result.e_above_hull, result.phonon_stable, config.labels, result.hull_covered)
            if str(candidate.id) in kappa:
                labels["log10_kappa"] = kappa[str(candidate.id)]
            if labels:
                structure = store.relaxed_or_generated(candidate, result)
                examples.append((Composition(candidate.composition), structure, labels))
    return examples


def _finetune(config: CampaignConfig, index: int, composition: str, structure: str) -> dict:
    examples = _labelled(config, index)
    if not examples:
        return {"finetune_examples": 0}
    folder = campaign_dir(config.name) / "checkpoints"
    stats = {"finetune_examples": len(examples)}
    structure_task, structure_kwargs = _stage2(config)
    for kind, task, kwargs, parent, data, epochs in (
        (
            "composition",
            finetune_composition_task,
            {},
            composition,
            [(c, l) for c, _, l in examples],
            config.generation.composition_model.finetune_epochs,
        ),
        (
            "structure",
            structure_task,
            structure_kwargs,
            structure,
            [(s, l) for _, s, l in examples],
            config.generation.stage2.finetune_epochs,
        ),
    ):
        name = _checkpoint_name(config.name, index, kind)
        if models.find_checkpoint(name) is not None or epochs == 0:
            continue
        out = folder / f"round-{index}-{kind}.pt"
        report = task.with_options(task_run_name=f"finetune-{kind}-{config.name}-r{index}")(
            parent, data, out, epochs, config.device, config.seed + index, **kwargs
        )
        models.register_checkpoint(
            name,
            kind,
            out,
            campaign=config.name,
            round_index=index,
            parent=parent,
            conditions=report.get("conditions"),
            metrics=report,
        )
    return stats


def _statistics(config: CampaignConfig, index: int, reference: tuple[Structure, ...]) -> dict:
    samples = store.round_samples(
        config.name, index, config.screening.mlip
    )  # all sampled: before validity filter and dedup
    generated = [structure for structure, _ in samples]
    ehull = [r.e_above_hull if r and r.status == "ok" else None for _, r in samples]
    phonon = [r.phonon_stable if r and r.status == "ok" else None for _, r in samples]
    classes = [
        stability_class(
            r.status if r else None,
            r.e_above_hull if r else None,
            r.hull_covered if r else None,
            r.phonon_stable if r else None,
            config.labels,
        )
        for _, r in samples
    ]
    stable = [{"stable": True, "unstable": False}.get(c) for c in classes]
    stats = round_statistics(generated, reference, ehull, phonon, stable)
    stats["unconverged"] = classes.count("unconverged")
    if config.evaluate and generated:
        from crysloop.evaluation import evaluate

        report = evaluate(generated, reference, train=reference, dataset="mp20", n_jobs=1, progress=False)
        stats.update({f"eval_{k}": v for k, v in report.metrics.items() if isinstance(v, (int, float)) or v is None})
    return stats


def _publish(config: CampaignConfig, index: int) -> None:
    """Round artifacts in the Prefect UI: best candidates and the energy-above-hull distribution of every round."""
    from crysloop.infra.queries import candidate_rows

    per_round = {}
    for r in range(index + 1):  # converged results of covered systems: uncovered hull distances are formation energies
        per_round[r] = [
            res.e_above_hull
            for _, res in store.round_screening(config.name, r, config.screening.mlip)
            if res is not None and res.status == "ok" and res.e_above_hull is not None and res.hull_covered is not False
        ]
    plot = ehull_plot(per_round, campaign_dir(config.name) / f"ehull-round-{index}.png", config.labels.ehull_stable)
    classes = {
        c.structure_hash: stability_class(
            r.status if r else None,
            r.e_above_hull if r else None,
            r.hull_covered if r else None,
            r.phonon_stable if r else None,
            config.labels,
        )
        for c, r in store.round_screening(config.name, index, config.screening.mlip)
    }
    rows = [
        {**row.as_dict(), "stability": classes.get(row.structure_hash, "unscreened")}
        for row in candidate_rows(store.round_candidates(config.name, index), mlip=config.screening.mlip)
    ]
    stats = store.open_round(config.name, index).stats
    lines = [f"# {config.name}: round {index}", "", "| statistic | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in stats.items()]
    lines += [
        "",
        "## Best candidates",
        "",
        best_candidates_markdown(rows),
        "",
        "## Energy above hull per round",
        "",
        png_markdown(plot, "energy above hull per round"),
        "",
        f"Plot file: `{plot}`",
    ]
    create_markdown_artifact(
        "\n".join(lines), key=f"{config.name}-round-{index}", description=f"campaign {config.name}, round {index}"
    )


@flow(name="campaign-round", flow_run_name="{config.name}-round-{index}")
def campaign_round(config: CampaignConfig, index: int) -> dict:
    """One round; stages already recorded as done are skipped."""
    logger = get_run_logger()
    reference = reference_structures(config.reference_dataset)
    round_ = store.open_round(config.name, index)
    composition, structure = _models_for_round(config, index)
    done = set(round_.stages_done)
    if "generate" not in done:
        faults.enter("generate", index)
        summary = generate_flow.with_options(task_runner=task_runner(config.executor))(
            config.candidates_per_round,
            config.conditions,
            config.generation.with_checkpoints(composition, structure),
            campaign=config.name,
            round_index=index,
            seed=config.seed + 1000 * index,
            device=config.device,
        )
        store.mark_stage(
            round_,
            "generate",
            sampled=summary.generated,
            invalid_discarded=summary.invalid,
            new_candidates=store.first_stored_by(config.name, index),  # the same after a resume
            conditions_stage1=summary.conditions_stage1,
            conditions_stage2=summary.conditions_stage2,
        )
    if "screen" not in done:
        faults.enter("screen", index)
        screen_flow.with_options(task_runner=task_runner(config.executor))(
            config.screening,
            config.labels,
            campaign=config.name,
            executor=config.executor,
            reference_structures=references_for(store.round_candidates(config.name, index), reference),
        )
        store.mark_stage(round_, "screen")
    if config.kappa.enabled and "kappa" not in done:
        from crysloop.flows.kappa import kappa_flow

        faults.enter("kappa", index)
        kappa_flow(config.kappa, config.labels, campaign=config.name, screening_mlip=config.screening.mlip)
        store.mark_stage(round_, "kappa")
    if config.finetune and index < config.rounds - 1 and "finetune" not in done:
        faults.enter("finetune", index)
        store.mark_stage(round_, "finetune", **_finetune(config, index, composition, structure))
    if config.dft.enabled and "dft" not in done:
        from crysloop.flows.dft import dft_flow
        from crysloop.infra.dft import unfinished_jobs

        faults.enter("dft", index)
        dft_flow(config.dft, campaign=config.name)
        unfinished = unfinished_jobs(config.name)
        if unfinished:  # running in another live process: the stage stays open for `campaign resume`
            raise RuntimeError(
                f"{len(unfinished)} DFT jobs of {config.name} are still pending or running "
                f"({', '.join(sorted({j.state for j in unfinished}))}); resume the campaign later"
            )
        store.mark_stage(round_, "dft")
    if "statistics" not in done:
        faults.enter("statistics", index)
        store.mark_stage(round_, "statistics", **_statistics(config, index, reference))
    _publish(config, index)
    store.finish_round(round_)
    logger.info("round %d of %s: %s", index, config.name, round_.stats)
    return dict(round_.stats)


@flow(name="campaign", flow_run_name="campaign-{config[name]}", log_prints=True)
def campaign_flow(config: dict, resume: bool = False) -> dict:
    """Run (or continue) a campaign from its configuration; returns each round's statistics."""
    config_model = parse_config(config)
    results = {}
    with database():
        campaign = store.open_campaign(
            config_model.model_dump(mode="json"),
            resume=resume,
            normalise=lambda stored: parse_config(stored).model_dump(mode="json"),
        )
        config_model = parse_config(campaign.config)
        store.set_status(campaign, "running")
        try:
            for index in range(config_model.rounds):
                existing = store.open_round(config_model.name, index)
                if existing.status == "completed":
                    results[index] = dict(existing.stats)
                    continue
                with tags(f"campaign:{config_model.name}", f"round:{index}"):
                    results[index] = campaign_round(config_model, index)
        except BaseException:
            store.set_status(campaign, "failed")
            raise
        store.set_status(campaign, "completed")
    return results
