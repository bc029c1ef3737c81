"""Prefect tasks of MLIP screening: relax candidates, relax and cache hull references, check phonons, store results.

The science is in :mod:`crysloop.screening`, the database side in :mod:`crysloop.infra.screening`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from crysloop.infra.screening import (
    ScreenItem,
    dataset_reference_structures,
    hull_reference_entries,
    save_hull_reference_entries,
    save_screening_result,
)
from crysloop.screening.config import ScreeningConfig
from crysloop.screening.hull import HullResult
from crysloop.screening.mp_references import SOURCE_API, SOURCE_TABLE, api_entries, table_entries
from crysloop.screening.phonons import PhononConfig, PhononResult, phonon_stability
from crysloop.screening.potentials import get_calculator
from crysloop.screening.record import result_fields
from crysloop.screening.references import new_reference_entries
from crysloop.screening.relax import RelaxConfig, RelaxResult, relax_structures


def _config_key(*configs: object) -> str:
    return hashlib.sha1(repr(configs).encode()).hexdigest()[:12]


def _relax_cache_key(context, parameters: dict) -> str:
    ids = ",".join(item.candidate_id for item in parameters["items"])
    digest = hashlib.sha1(ids.encode()).hexdigest()
    return f"screen-relax-{parameters['mlip']}-{_config_key(parameters['config'])}-{digest}"


@task(
    name="relax-candidates",
    task_run_name="relax-{label}",
    tags=["mlip"],
    persist_result=True,
    cache_key_fn=_relax_cache_key,
)
def relax_candidates_task(
    items: Sequence[ScreenItem], mlip: str, config: RelaxConfig, batch_size: int, label: str
) -> list[RelaxResult]:
    """Relax a chunk of candidates together (batched inference); cached by candidate ids, potential and settings."""
    return relax_structures(
        [item.structure for item in items], get_calculator(mlip), batch_size=batch_size, config=config
    )


@task(name="hull-references", task_run_name="references-{mlip}-{chemsys}", tags=["mlip"], cache_policy=NO_CACHE)
def hull_references_task(
    chemsys: str,
    mlip: str,
    config: RelaxConfig,
    extra_structures: Sequence[Structure] = (),
    batch_size: int = ScreeningConfig.model_fields["batch_size"].default,
) -> list[ComputedStructureEntry]:
    """Reference entries of exactly ``chemsys`` under ``mlip``: the cached ones, plus any new reference relaxed now
    (from ``extra_structures``, the dataset's known compounds and, for an element, its elemental structures)."""
    cached = hull_reference_entries(mlip, chemsys)
    entries = [ComputedStructureEntry.from_dict(d) for d in cached or []]
    structures = list(extra_structures) + dataset_reference_structures(chemsys)
    new = new_reference_entries(chemsys, {e.entry_id for e in entries}, structures, mlip, config, batch_size)
    if new or cached is None:  # a system tried once is cached, even when no reference converged
        entries += new
        save_hull_reference_entries(mlip, chemsys, [e.as_dict() for e in entries])
    return entries


@task(name="mp-references", task_run_name="mp-references-{chemsys}", tags=["db"], cache_policy=NO_CACHE)
def mp_references_task(chemsys: str) -> tuple[list[ComputedEntry], str]:
    """Materials Project entries of ``chemsys`` and its sub-systems, with their source name.

    With ``MP_API_KEY`` set, the system's full hull is fetched once through mp-api and cached in the database
    (under ``mp-api``); otherwise the shipped table serves.
    """
    if not os.environ.get("MP_API_KEY"):
        return table_entries(chemsys), SOURCE_TABLE
    cached = hull_reference_entries(SOURCE_API, chemsys)
    if cached is not None:
        return [ComputedEntry.from_dict(d) for d in cached], SOURCE_API
    entries = api_entries(chemsys)
    save_hull_reference_entries(SOURCE_API, chemsys, [e.as_dict() for e in entries])
    return entries, SOURCE_API


def _phonon_cache_key(context, parameters: dict) -> str:
    item = parameters["item"]
    return f"screen-phonons-{parameters['mlip']}-{_config_key(parameters['config'])}-{item.candidate_id}"


@task(
    name="phonon-stability",
    task_run_name="phonons-{item.formula}-{item.candidate_id}",
    tags=["mlip"],
    persist_result=True,
    cache_key_fn=_phonon_cache_key,
)
def phonon_task(item: ScreenItem, structure: Structure, mlip: str, config: PhononConfig) -> PhononResult:
    """Phonon stability of one relaxed candidate; cached by candidate id, potential and settings."""
    result = phonon_stability(structure, get_calculator(mlip), config)
    result.phonon = None  # the Phonopy object stays out of the persisted result
    return result


@task(
    name="save-screening-result",
    task_run_name="save-{item.formula}-{item.candidate_id}",
    tags=["db"],
    retries=2,
    retry_delay_seconds=2,
    cache_policy=NO_CACHE,
)
def save_screening_result_task(
    item: ScreenItem,
    mlip: str,
    relax: RelaxResult,
    hull: HullResult | None,
    phonon: PhononResult | None,
    ehull_stable: float,
    error: str | None = None,
) -> str:
    """Store the ``ScreeningResult`` of one candidate (:func:`crysloop.screening.record.result_fields`); its status."""
    fields = result_fields(relax, hull, phonon, ehull_stable, error)
    save_screening_result(
        item.candidate_id, mlip, {"campaign": item.campaign, "formula": item.formula, "chemsys": item.chemsys, **fields}
    )
    return fields["status"]
