"""The ``screen`` flow: candidates in the database -> MLIP relaxation -> energy above hull -> phonons -> results.

Hull references (``ScreeningConfig.hull``): Materials Project phases (``mp``: the shipped table, or mp-api with
``MP_API_KEY``; candidate energies MP2020-corrected) or structures relaxed with the same potential (``mlip``).
Only converged relaxations are placed on a hull; a candidate whose system has no known compound is stored with
its hull distance but an unknown stability.

Resumable: candidates with a ``ScreeningResult`` for the potential are skipped, and each chunk's results are stored
as soon as the chunk is done. Relaxations run ``batch_size`` candidates per forward pass; phonon checks run at most
``executor.workers`` at a time (tasks are tagged ``mlip``, so ``prefect concurrency-limit create mlip N`` caps them
across flows as well).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.runtime import flow_run
from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry

from crysloop.campaign.config import LabelConfig
from crysloop.infra.db import database
from crysloop.infra.executors import ExecutorConfig
from crysloop.infra.screening import ScreenItem, pending_candidates
from crysloop.screening.config import ScreeningConfig
from crysloop.screening.hull import chemical_subsystems, chemsys_of, energy_above_hull, materials_project_structures
from crysloop.screening.mp_references import SOURCE_MLIP, corrected_energy
from crysloop.screening.phonons import PhononConfig
from crysloop.screening.record import stability
from crysloop.screening.relax import RelaxConfig, RelaxResult
from crysloop.tasks.screen import (
    hull_references_task,
    mp_references_task,
    phonon_task,
    relax_candidates_task,
    save_screening_result_task,
)


@dataclass
class ScreenSummary:
    """What a screening run did: counts and one row per candidate screened in this run."""

    mlip: str
    screened: int = 0
    failed: int = 0
    unconverged: int = 0
    unknown: int = 0  # placed on a hull that holds no compound of the system: stability unknown
    phonon_checked: int = 0
    rows: list[dict] = field(default_factory=list)


def _run_name() -> str:
    params = flow_run.parameters
    config = params.get("config")
    mlip = config.get("mlip") if isinstance(config, dict) else getattr(config, "mlip", None)
    return f"screen-{params.get('campaign') or 'all'}-{mlip or 'default-mlip'}"


def _label(items: Sequence[ScreenItem]) -> str:
    head = ",".join(f"{i.formula}:{i.candidate_id[-6:]}" for i in items[:3])
    return head + (f"+{len(items) - 3}" if len(items) > 3 else "")


def _reference_structures_by_chemsys(structures: Sequence[Structure]) -> dict[str, list[Structure]]:
    grouped: dict[str, list[Structure]] = {}
    for structure in structures:
        grouped.setdefault(chemsys_of(structure), []).append(structure)
    return grouped


@flow(name="screen", flow_run_name=_run_name)
def screen_flow(
    config: ScreeningConfig | None = None,
    labels: LabelConfig | None = None,
    campaign: str | None = None,
    executor: ExecutorConfig | None = None,
    max_candidates: int | None = None,
    reference_structures: list[Structure] | None = None,
    retry_failed: bool = False,
    materials_project: bool = False,
) -> ScreenSummary:
    """Screen the unscreened candidates (of ``campaign``) under ``config`` and store ``ScreeningResult`` documents.

    Energies above hull use Materials Project references (``config.hull="mp"``) or references relaxed with the same
    potential (``"mlip"``: elements, the dataset's known compounds, ``reference_structures`` and, with
    ``materials_project``, MP structures); phonons run for converged candidates of covered systems within
    ``labels.ehull_stable`` eV/atom of the hull. ``executor.workers`` relaxation parts and phonon checks run at once
    (on the task runner the caller gives the flow). Unset configs take their class defaults.
    """
    config = config or ScreeningConfig()
    labels = labels or LabelConfig()
    concurrency = (executor or ExecutorConfig()).workers
    mlip = config.mlip
    logger = get_run_logger()
    relax_config = RelaxConfig.of(config)
    phonon_config = PhononConfig.of(config) if config.phonons else None
    extra = _reference_structures_by_chemsys(reference_structures or [])
    summary = ScreenSummary(mlip=mlip)
    references: dict[str, list[ComputedStructureEntry]] = {}
    sources: dict[str, str] = {}
    with database():
        items = pending_candidates(campaign, mlip, max_candidates, retry_failed)
        logger.info("%d candidates to screen with %s", len(items), mlip)
        if not items:
            return summary
        progress = create_progress_artifact(0.0, key="screen-progress", description=f"screening with {mlip}")
        for start in range(0, len(items), config.batch_size):
            chunk = items[start : start + config.batch_size]
            relaxed = _relax_chunk(chunk, mlip, relax_config, config.batch_size, concurrency)
            if config.hull == "mp":
                _ensure_mp_references(chunk, references, sources)
            else:
                _ensure_references(chunk, mlip, relax_config, config.batch_size, extra, materials_project, references)
            _finish_chunk(
                chunk, relaxed, mlip, labels.ehull_stable, phonon_config, concurrency, references, sources, summary
            )
            done = start + len(chunk)
            update_progress_artifact(progress, 100.0 * done / len(items))
            logger.info(
                "screened %d/%d (%d failed, %d unconverged, %d of unknown stability)",
                done,
                len(items),
                summary.failed,
                summary.unconverged,
                summary.unknown,
            )
        create_table_artifact(summary.rows, key="screen-results", description=f"screening with {mlip}")
    return summary


def _relax_chunk(
    chunk: Sequence[ScreenItem], mlip: str, config: RelaxConfig, batch_size: int, concurrency: int
) -> list[RelaxResult]:
    """Relax a chunk as ``concurrency`` parts on the flow's task runner (threads, worker processes or Dask)."""
    size = math.ceil(len(chunk) / concurrency)
    parts = [chunk[start : start + size] for start in range(0, len(chunk), size)]
    futures = [relax_candidates_task.submit(part, mlip, config, batch_size, _label(part)) for part in parts]
    return [result for future in futures for result in future.result()]


def _ensure_references(
    chunk: Sequence[ScreenItem],
    mlip: str,
    config: RelaxConfig,
    batch_size: int,
    extra: dict[str, list[Structure]],
    materials_project: bool,
    references: dict[str, list[ComputedStructureEntry]],
) -> None:
    """Relax (or load from the cache) the references of every sub-system the chunk's candidates need."""
    for chemsys in sorted({item.chemsys for item in chunk}):
        needed = [sub for sub in chemical_subsystems(chemsys) if sub not in references]
        if not needed:
            continue
        from_mp = _reference_structures_by_chemsys(materials_project_structures(chemsys)) if materials_project else {}
        for sub in needed:
            structures = extra.get(sub, []) + from_mp.get(sub, [])
            references[sub] = hull_references_task(sub, mlip, config, structures, batch_size)


def _ensure_mp_references(chunk: Sequence[ScreenItem], references: dict[str, list], sources: dict[str, str]) -> None:
    """Materials Project entries (table or mp-api) of each candidate system of the chunk, stored under the system."""
    for chemsys in sorted({item.chemsys for item in chunk} - set(references)):
        references[chemsys], sources[chemsys] = mp_references_task(chemsys)


def _hull_of(item: ScreenItem, relax: RelaxResult, mlip: str, references: dict[str, list], sources: dict[str, str]):
    if item.chemsys in sources:  # Materials Project references: candidate energy on MP's corrected scale
        energy = corrected_energy(relax.structure, relax.energy, mlip)
        return energy_above_hull(relax.structure, energy, references[item.chemsys], sources[item.chemsys])
    subsystems = [entry for sub in chemical_subsystems(item.chemsys) for entry in references.get(sub, [])]
    return energy_above_hull(relax.structure, relax.energy, subsystems, SOURCE_MLIP)


def _finish_chunk(
    chunk: Sequence[ScreenItem],
    relaxed: Sequence[RelaxResult],
    mlip: str,
    ehull_stable: float,
    phonon_config: PhononConfig | None,
    concurrency: int,
    references: dict[str, list[ComputedStructureEntry]],
    sources: dict[str, str],
    summary: ScreenSummary,
) -> None:
    """Hull distances for the converged part of the chunk, phonons (unless ``phonon_config`` is None) for those near
    a covered hull, then store all."""
    hulls, errors = {}, {}
    for item, relax in zip(chunk, relaxed, strict=True):
        if not relax.ok:
            continue
        try:
            hulls[item.candidate_id] = _hull_of(item, relax, mlip, references, sources)
        except Exception as exc:
            errors[item.candidate_id] = f"hull: {exc}"
    queue = [
        (item, relax)
        for item, relax in zip(chunk, relaxed, strict=True)
        if phonon_config
        and item.candidate_id in hulls
        and hulls[item.candidate_id].covered
        and hulls[item.candidate_id].e_above_hull <= ehull_stable
    ]
    phonon_results = {}
    for start in range(0, len(queue), concurrency):
        wave = [
            (item, phonon_task.submit(item, relax.structure, mlip, phonon_config))
            for item, relax in queue[start : start + concurrency]
        ]
        for item, future in wave:
            future.wait()
            state = future.state
            if state.is_completed():
                phonon_results[item.candidate_id] = future.result()
            else:
                errors[item.candidate_id] = f"phonons: {state.message or 'failed'}"
    for item, relax in zip(chunk, relaxed, strict=True):
        hull, phonon = hulls.get(item.candidate_id), phonon_results.get(item.candidate_id)
        status = save_screening_result_task(
            item, mlip, relax, hull, phonon, ehull_stable, errors.get(item.candidate_id)
        )
        unknown = status == "ok" and hull is not None and not hull.covered
        summary.screened += 1
        summary.failed += status == "failed"
        summary.unconverged += status == "unconverged"
        summary.unknown += unknown
        summary.phonon_checked += phonon is not None
        summary.rows.append(
            {
                "candidate": item.candidate_id,
                "formula": item.formula,
                "status": status,
                "error": errors.get(item.candidate_id) or relax.error,
                "converged": relax.converged,
                "steps": relax.steps,
                "energy_per_atom": relax.energy_per_atom,
                "e_above_hull": hull.e_above_hull if hull else None,
                "stability": stability(status, hull, ehull_stable),
                "hull_source": hull.source if hull else None,
                "hull_compounds": hull.n_compounds if hull else None,
                "formation_energy_per_atom": hull.formation_energy_per_atom if hull else None,
                "phonon_stable": phonon.stable if phonon else None,
                "min_frequency_thz": phonon.min_frequency_thz if phonon else None,
            }
        )
