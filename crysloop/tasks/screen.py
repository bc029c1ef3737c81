"""Prefect tasks of MLIP screening: pick candidates, relax them, relax and cache hull references, check phonons, store.

Database access happens here (through the documents); the science is in :mod:`crysloop.screening`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE
from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from crysloop.data.canonical import structure_hash
from crysloop.infra.campaigns import campaign_candidate_ids
from crysloop.infra.documents import Candidate, HullReference, ScreeningResult, utcnow
from crysloop.screening.hull import (
    HullResult,
    chemical_subsystems,
    elemental_reference_structures,
    reference_entry,
)
from crysloop.screening.mp_references import SOURCE_API, SOURCE_TABLE, api_entries, table_entries
from crysloop.screening.phonons import PhononConfig, PhononResult, phonon_stability
from crysloop.screening.potentials import get_calculator
from crysloop.screening.relax import RelaxConfig, RelaxResult, relax_structures

SCREENED_SOURCES = ("generated", "user")  # dataset records are the known compounds: references, not candidates


@dataclass
class ScreenItem:
    """A candidate queued for screening: its id, formula, chemical system and starting structure."""

    candidate_id: str
    formula: str
    chemsys: str
    structure: Structure
    campaign: str | None = None


def pending_candidates(campaign: str | None, mlip: str, max_candidates: int | None = None,
                       retry_failed: bool = False) -> list[ScreenItem]:  # fmt: skip
    """Generated and user candidates (of ``campaign`` if given) without a screening result under ``mlip``."""
    results = ScreeningResult.objects(mlip=mlip)
    if retry_failed:
        results = results.filter(status="ok")
    done = {r.to_mongo()["candidate"] for r in results.only("candidate")}
    query = Candidate.objects(source__in=SCREENED_SOURCES).order_by("created_at")
    if campaign:
        query = query.filter(id__in=campaign_candidate_ids(campaign))  # its own and those its rounds sampled again
    items = []
    for candidate in query:
        if candidate.pk in done:
            continue
        items.append(ScreenItem(str(candidate.pk), candidate.formula, candidate.chemsys,
                                Structure.from_dict(candidate.structure), campaign or candidate.campaign))  # fmt: skip
        if max_candidates is not None and len(items) >= max_candidates:
            break
    return items


def dataset_reference_structures(chemsys: str) -> list[Structure]:
    """Structures of known compounds (dataset records) whose chemical system is exactly ``chemsys``."""
    return [Structure.from_dict(c.structure) for c in Candidate.objects(source="dataset", chemsys=chemsys).only("structure")]


def _config_key(*configs: object) -> str:
    return hashlib.sha1(repr(configs).encode()).hexdigest()[:12]


def _relax_cache_key(context, parameters: dict) -> str:
    ids = ",".join(item.candidate_id for item in parameters["items"])
    return f"screen-relax-{parameters['mlip']}-{_config_key(parameters['config'])}-{hashlib.sha1(ids.encode()).hexdigest()}"


@task(name="relax-candidates", task_run_name="relax-{label}", tags=["mlip"], persist_result=True,
      cache_key_fn=_relax_cache_key)  # fmt: skip
def relax_candidates_task(items: Sequence[ScreenItem], mlip: str, config: RelaxConfig, batch_size: int,
                          label: str) -> list[RelaxResult]:  # fmt: skip
    """Relax a chunk of candidates together (batched inference); cached by candidate ids, potential and settings."""
    return relax_structures([item.structure for item in items], get_calculator(mlip), batch_size=batch_size, config=config)


@task(name="hull-references", task_run_name="references-{mlip}-{chemsys}", tags=["mlip"], cache_policy=NO_CACHE)
def hull_references_task(chemsys: str, mlip: str, config: RelaxConfig, extra_structures: Sequence[Structure] = (),
                         batch_size: int = 16) -> list[ComputedStructureEntry]:  # fmt: skip
    """Reference entries of exactly ``chemsys`` under ``mlip``: cached ones, plus any new reference relaxed now.

    Sources: ASE elemental structures (for elements), the dataset's known compounds and ``extra_structures``.
    Entries are keyed by canonical structure hash, so a reference is relaxed once per potential; only converged
    relaxations become references.
    """
    document = HullReference.objects(mlip=mlip, chemsys=chemsys).first()
    entries = [ComputedStructureEntry.from_dict(d) for d in (document.entries if document else [])]
    known = {e.entry_id for e in entries}
    candidates = list(extra_structures) + dataset_reference_structures(chemsys)
    if "-" not in chemsys:
        candidates = elemental_reference_structures(chemsys) + candidates
    todo: dict[str, Structure] = {}
    for structure in candidates:
        key = structure_hash(structure)
        if key not in known and key not in todo:
            todo[key] = structure
    if not todo:
        return entries
    relaxed = relax_structures(list(todo.values()), get_calculator(mlip), batch_size=batch_size, config=config)
    new = [reference_entry(r.structure, r.energy, key, mlip) for key, r in zip(todo, relaxed, strict=True) if r.ok]
    entries += new
    HullReference.objects(mlip=mlip, chemsys=chemsys).update_one(
        upsert=True, set__entries=[e.as_dict() for e in entries], set__created_at=utcnow()
    )
    return entries


@task(name="mp-references", task_run_name="mp-references-{chemsys}", tags=["db"], cache_policy=NO_CACHE)
def mp_references_task(chemsys: str) -> tuple[list[ComputedEntry], str]:
    """Materials Project entries of ``chemsys`` and its sub-systems, with their source name.

    With ``MP_API_KEY`` set, the system's full hull is fetched once through mp-api and cached in the database
    (``HullReference`` under ``mp-api``); otherwise the shipped table serves.
    """
    if not os.environ.get("MP_API_KEY"):
        return table_entries(chemsys), SOURCE_TABLE
    document = HullReference.objects(mlip=SOURCE_API, chemsys=chemsys).first()
    if document is not None:
        return [ComputedEntry.from_dict(d) for d in document.entries], SOURCE_API
    entries = api_entries(chemsys)
    HullReference.objects(mlip=SOURCE_API, chemsys=chemsys).update_one(
        upsert=True, set__entries=[e.as_dict() for e in entries], set__created_at=utcnow()
    )
    return entries, SOURCE_API


def reference_set(chemsys: str, cache: dict[str, list[ComputedStructureEntry]]) -> list[ComputedStructureEntry]:
    """All cached entries of every sub-system of ``chemsys`` (``cache`` maps sub-system -> entries)."""
    return [entry for sub in chemical_subsystems(chemsys) for entry in cache.get(sub, [])]


def _phonon_cache_key(context, parameters: dict) -> str:
    item = parameters["item"]
    return f"screen-phonons-{parameters['mlip']}-{_config_key(parameters['config'])}-{item.candidate_id}"


@task(name="phonon-stability", task_run_name="phonons-{item.formula}-{item.candidate_id}", tags=["mlip"],
      persist_result=True, cache_key_fn=_phonon_cache_key)  # fmt: skip
def phonon_task(item: ScreenItem, structure: Structure, mlip: str, config: PhononConfig) -> PhononResult:
    """Phonon stability of one relaxed candidate; cached by candidate id, potential and settings."""
    result = phonon_stability(structure, get_calculator(mlip), config)
    result.phonon = None  # the Phonopy object stays out of the persisted result
    return result


@task(name="save-screening-result", task_run_name="save-{item.formula}-{item.candidate_id}", tags=["db"],
      retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)  # fmt: skip
def save_screening_result_task(item: ScreenItem, mlip: str, relax: RelaxResult, hull: HullResult | None = None,
                               phonon: PhononResult | None = None, ehull_threshold: float = 0.1,
                               error: str | None = None) -> str:  # fmt: skip
    """Upsert the ``ScreeningResult`` of one candidate; any ``error`` (or a failed relaxation) marks it failed.

    A relaxation that hit its step limit is ``unconverged``. ``stable`` means within ``ehull_threshold`` of the
    hull (metastable window), not strictly on it, and is None (unknown) for an uncovered system or a result
    that is not ``ok``.
    """
    status = "failed" if error or relax.status == "failed" else relax.status
    error = error or (None if relax.ok else f"relaxation: {relax.error}")
    known = hull is not None and hull.covered and status == "ok"
    fields = {
        "campaign": item.campaign,
        "formula": item.formula,
        "chemsys": item.chemsys,
        "status": status,
        "error": error,
        "converged": relax.converged,
        "steps": relax.steps,
        "energy_per_atom": relax.energy_per_atom,
        "relaxed_structure": relax.structure.as_dict() if relax.ok else {},
        "formation_energy_per_atom": hull.formation_energy_per_atom if hull else None,
        "e_above_hull": hull.e_above_hull if hull else None,
        "hull_source": hull.source if hull else None,
        "hull_compounds": hull.n_compounds if hull else None,
        "hull_covered": hull.covered if hull else None,
        "stable": (hull.e_above_hull <= ehull_threshold) if known else None,
        "phonon_stable": phonon.stable if phonon else None,
        "min_frequency_thz": phonon.min_frequency_thz if phonon else None,
        "wall_time_s": relax.wall_time_s + (phonon.wall_time_s if phonon else 0.0),
        "created_at": utcnow(),
    }
    candidate = Candidate.objects(pk=item.candidate_id).first()
    ScreeningResult.objects(candidate=candidate, mlip=mlip).update_one(
        upsert=True, **{f"set__{k}": v for k, v in fields.items()}
    )
    return fields["status"]
