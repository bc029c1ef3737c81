"""The ``kappa`` flow: thermal conductivity of the best screened candidates, stored as ``KappaResult`` documents."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from prefect import flow, get_run_logger

from crysloop.infra.db import database
from crysloop.kappa.conductivity import KappaConfig
from crysloop.kappa.cost import DEFAULT_MAX_DISPLACEMENTS
from crysloop.screening.potentials import DEFAULT_KAPPA_MLIP, check_mlip_name
from crysloop.tasks.kappa import (
    compute_kappa_task,
    kappa_skip_reason,
    save_kappa_result_task,
    select_kappa_candidates_task,
)


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
    campaign: str | None = None,
    mlip: str | None = None,
    screening_mlip: str | None = None,
    temperatures: Sequence[float] = (300.0,),
    top_n: int = 5,
    max_e_above_hull: float = 0.1,
    max_atoms: int = 20,
    max_displacements: int | None = DEFAULT_MAX_DISPLACEMENTS,
    mesh: Sequence[int] | float = 40.0,
    fc3_min_length: float = 6.0,
    fc2_min_length: float = 12.0,
    lbte: bool = False,
    metal_labels: dict[str, bool] | None = None,
    recompute: bool = False,
) -> KappaSummary:
    """Kappa of up to ``top_n`` screened candidates (ok, phonon-stable, lowest e_above_hull first) with ``mlip``.

    ``mlip`` (default SevenNet-0, see ``DEFAULT_KAPPA_MLIP``) relaxes each candidate again and gives the forces;
    ``screening_mlip`` (default: the settings' potential) names the screening results candidates are taken from.
    Metals, primitive cells above ``max_atoms`` and cells needing more than ``max_displacements`` displaced supercells
    (None: no limit) are stored as skipped and do not use a slot; ``metal_labels``
    (candidate id, structure hash or formula -> is metal) override the band gap and composition proxy.
    """
    mlip = check_mlip_name(mlip or DEFAULT_KAPPA_MLIP)
    screening_mlip = check_mlip_name(screening_mlip)
    config = KappaConfig(
        fc3_min_length=fc3_min_length,
        fc2_min_length=fc2_min_length,
        mesh=mesh if isinstance(mesh, (int, float)) else tuple(int(n) for n in mesh),
        temperatures=tuple(float(t) for t in temperatures),
        lbte=lbte,
    )
    logger = get_run_logger()
    summary = KappaSummary(mlip=mlip)
    with database():
        queue = select_kappa_candidates_task(screening_mlip, campaign, max_e_above_hull, config.method, recompute, mlip)
        for item in queue:
            if summary.computed >= top_n:
                break
            reason = kappa_skip_reason(item, max_atoms, metal_labels, config, max_displacements)
            if reason:
                save_kappa_result_task(item, mlip, config, status="skipped", error=reason)
                summary.skipped += 1
                logger.info("skipped %s: %s", item.formula, reason)
                continue
            state = compute_kappa_task(item, mlip, config, return_state=True)
            if state.is_failed():
                error = str(state.message or "kappa calculation failed")
                save_kappa_result_task(item, mlip, config, status="failed", error=error)
                summary.failed += 1
                logger.warning("kappa of %s failed: %s", item.formula, error)
                continue
            outcome = state.result()
            save_kappa_result_task(item, mlip, config, outcome)
            summary.computed += 1
            summary.results.append(
                {"candidate": item.candidate_id, "formula": item.formula, "e_above_hull": item.e_above_hull,
                 "temperatures": outcome.temperatures, "kappa_average": outcome.kappa_average,
                 "min_frequency_thz": outcome.min_frequency_thz, "wall_time_s": outcome.wall_time_s}
            )  # fmt: skip
            logger.info("%s: kappa %s W/m/K", item.formula, [round(k, 2) for k in outcome.kappa_average])
    return summary
