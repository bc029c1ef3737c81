"""The ``kappa`` flow: thermal conductivity of the best screened candidates, stored as ``KappaResult`` documents."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import flow, get_run_logger

from crysloop.campaign.config import LabelConfig
from crysloop.infra.db import database
from crysloop.kappa.conductivity import KappaConfig
from crysloop.kappa.config import KappaStageConfig
from crysloop.kappa.cost import metal_label, stage_skip_reason
from crysloop.screening.potentials import check_mlip_name
from crysloop.tasks.kappa import compute_kappa_task, save_kappa_result_task, select_kappa_candidates_task


@dataclass
class KappaSummary:
    """What a kappa run computed, skipped and failed; ``results`` holds one row per computed candidate."""

    mlip: str
    computed: int = 0
    skipped: int = 0
    failed: int = 0
    results: list[dict] = field(default_factory=list)


@flow(name="kappa")
def kappa_flow(
    config: KappaStageConfig | None = None,
    labels: LabelConfig | None = None,
    campaign: str | None = None,
    screening_mlip: str | None = None,
    metal_labels: dict[str, bool] | None = None,
    recompute: bool = False,
) -> KappaSummary:
    """Kappa of up to ``config.top_n`` screened candidates (ok, phonon-stable, within ``labels.ehull_stable`` of the
    hull, lowest first) with ``config.mlip``.

    ``screening_mlip`` (default: the settings' potential) names the screening results candidates are taken from.
    Metals, large primitive cells and cells needing too many displaced supercells are stored as skipped and do not
    use a slot; ``metal_labels`` (candidate id, structure hash or formula -> is metal) override the band gap and
    composition proxy. Unset configs take their class defaults.
    """
    config = config or KappaStageConfig()
    labels = labels or LabelConfig()
    screening_mlip = check_mlip_name(screening_mlip)
    calculation = KappaConfig.of(config)
    mlip = config.mlip
    logger = get_run_logger()
    summary = KappaSummary(mlip=mlip)
    with database():
        queue = select_kappa_candidates_task(
            screening_mlip, campaign, labels.ehull_stable, calculation.method, recompute, mlip
        )
        for item in queue:
            if summary.computed >= config.top_n:
                break
            is_metal = metal_label((item.candidate_id, item.structure_hash, item.formula), metal_labels)
            reason = stage_skip_reason(item.structure, config, item.band_gap, is_metal)
            if reason:
                save_kappa_result_task(item, mlip, calculation, status="skipped", error=reason)
                summary.skipped += 1
                logger.info("skipped %s: %s", item.formula, reason)
                continue
            state = compute_kappa_task(item, mlip, calculation, return_state=True)
            if state.is_failed():
                error = str(state.message or "kappa calculation failed")
                save_kappa_result_task(item, mlip, calculation, status="failed", error=error)
                summary.failed += 1
                logger.warning("kappa of %s failed: %s", item.formula, error)
                continue
            outcome = state.result()
            save_kappa_result_task(item, mlip, calculation, outcome)
            summary.computed += 1
            summary.results.append(
                {
                    "candidate": item.candidate_id,
                    "formula": item.formula,
                    "e_above_hull": item.e_above_hull,
                    "temperatures": outcome.temperatures,
                    "kappa_average": outcome.kappa_average,
                    "min_frequency_thz": outcome.min_frequency_thz,
                    "wall_time_s": outcome.wall_time_s,
                }
            )
            logger.info("%s: kappa %s W/m/K", item.formula, [round(k, 2) for k in outcome.kappa_average])
    return summary
