"""Writing candidates to the results database: deduplicated by structure matching, idempotent, safe under concurrency.

A structure is the same crystal as a stored one when StructureMatcher fits them within :data:`DEDUP_TOLERANCES`
(no volume scaling: NaCl at 5.60 and 5.64 A are two crystals). Stored candidates are bucketed by reduced formula and
volume per atom, so only a few are compared. Writes are one unordered insert under a unique index on a fine canonical
hash, so concurrent writers (a MongoDB server) store each structure once and a duplicate never stops a batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from pymongo.errors import BulkWriteError

from crysloop.data.canonical import structure_hash
from crysloop.infra.documents import Candidate, OxidationState, RoundSample

HASH_DECIMALS = 3  # the stored identity: lattice to 0.01 A, fractional coordinates to 0.001


@dataclass(frozen=True)
class DedupTolerances:
    """StructureMatcher tolerances for "already stored": tight enough that a 0.7 % longer cell is a new crystal."""

    ltol: float = 0.005
    stol: float = 0.05
    angle_tol: float = 0.5

    def matcher(self) -> StructureMatcher:
        return StructureMatcher(ltol=self.ltol, stol=self.stol, angle_tol=self.angle_tol, scale=False)


DEDUP_TOLERANCES = DedupTolerances()
_DUPLICATE_KEY = 11000


@dataclass
class NewCandidate:
    """A structure about to be stored, with where it came from."""

    structure: Structure
    source: str = "generated"
    dataset: str | None = None
    material_id: str | None = None
    origin: dict = field(default_factory=dict)
    properties: dict = field(default_factory=dict)
    oxidation_states: Sequence[tuple[str, int, float]] = ()


@dataclass
class InsertReport:
    """How many candidates were new and which stored hashes they map to, in input order."""

    inserted: int
    existing: int
    hashes: list[str]


def candidate_document(item: NewCandidate, campaign: str | None = None, round_index: int | None = None) -> Candidate:
    """Build (not save) the Candidate document of a structure."""
    structure = item.structure
    composition = structure.composition.remove_charges()
    elements = sorted(el.symbol for el in composition.elements)
    return Candidate(
        structure_hash=structure_hash(structure, decimals=HASH_DECIMALS),
        structure=structure.as_dict(),
        formula=composition.reduced_formula,
        composition={el.symbol: amount for el, amount in composition.items()},
        elements=elements,
        chemsys="-".join(elements),
        nsites=len(structure),
        oxidation_states=[
            OxidationState(element=e, oxidation_state=int(v), count=float(n)) for e, v, n in item.oxidation_states
        ],
        source=item.source,
        dataset=item.dataset,
        material_id=item.material_id,
        origin=item.origin,
        campaign=campaign,
        round=round_index,
        properties=item.properties,
    )


def _volume_per_atom(structure: dict) -> float:
    return abs(float(np.linalg.det(np.array(structure["lattice"]["matrix"])))) / len(structure["sites"])


class _Known:
    """Stored (and just-accepted) structures by reduced formula, for tolerance-based matching."""

    def __init__(self, formulas: set[str], tolerances: DedupTolerances):
        self.matcher = tolerances.matcher()
        self.volume_tol = 3 * tolerances.ltol + 1e-6  # relative volume change the length tolerance allows
        self.by_formula: dict[str, list[tuple[str, float, dict, list]]] = {}
        for row in Candidate.objects(formula__in=sorted(formulas)).only("structure_hash", "formula", "structure"):
            self.add(row.formula, row.structure_hash, row.structure)

    def add(self, formula: str, key: str, structure: dict) -> None:
        self.by_formula.setdefault(formula, []).append((key, _volume_per_atom(structure), structure, []))

    def match(self, doc: Candidate) -> str | None:
        """The stored hash of the crystal ``doc`` is, or ``None`` when it is new."""
        volume = _volume_per_atom(doc.structure)
        structure = None
        for key, stored_volume, stored, parsed in self.by_formula.get(doc.formula, []):
            if key == doc.structure_hash:
                return key
            if abs(stored_volume - volume) > self.volume_tol * max(volume, stored_volume):
                continue
            structure = structure or Structure.from_dict(doc.structure)
            if not parsed:
                parsed.append(Structure.from_dict(stored))
            if self.matcher.fit(parsed[0], structure):
                return key
        return None


def _insert_unordered(docs: list[Candidate]) -> set[str]:
    """Insert the documents in one unordered bulk (every one is tried); the hashes stored by this call.

    Goes to the driver's collection, so the error is pymongo's BulkWriteError on a server and in the embedded store
    alike (mongoengine would turn it into NotUniqueError, and an ordered insert stops at the first duplicate).
    """
    for doc in docs:
        doc.validate()
    try:
        Candidate._get_collection().insert_many([doc.to_mongo() for doc in docs], ordered=False)
        return {doc.structure_hash for doc in docs}
    except BulkWriteError as exc:  # a concurrent writer stored the same hash first: it is stored, once
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != _DUPLICATE_KEY for error in errors):
            raise
        failed = {error["index"] for error in errors}
        return {doc.structure_hash for index, doc in enumerate(docs) if index not in failed}


def add_candidates(
    items: Iterable[NewCandidate],
    campaign: str | None = None,
    round_index: int | None = None,
    batch_size: int = 500,
    tolerances: DedupTolerances = DEDUP_TOLERANCES,
) -> InsertReport:
    """Store the candidates that match no stored crystal; re-inserting (or a near-identical copy) is a no-op.

    ``hashes`` gives, for each item, the hash of the stored candidate it is (new or existing), so callers can link
    every item to its candidate.
    """
    docs = [candidate_document(item, campaign, round_index) for item in items]
    known = _Known({doc.formula for doc in docs}, tolerances)
    hashes, fresh = [], []
    for doc in docs:
        key = known.match(doc)
        if key is None:
            key = doc.structure_hash
            known.add(doc.formula, key, doc.structure)
            fresh.append(doc)
        hashes.append(key)
    inserted = 0
    for start in range(0, len(fresh), batch_size):
        inserted += len(_insert_unordered(fresh[start : start + batch_size]))
    return InsertReport(inserted=inserted, existing=len(docs) - inserted, hashes=hashes)


def record_round_samples(
    campaign: str, round_index: int, items: Sequence[NewCandidate], valid: Sequence[bool], hashes: Sequence[str | None]
) -> None:
    """Link everything a round's generator sampled to the round, in sample order (idempotent per sample index).

    Valid samples point at their stored candidate (new, or already known from an earlier round or campaign);
    invalid ones keep their structure, so round statistics cover all that was sampled.
    """
    ids = {
        c.structure_hash: c.id
        for c in Candidate.objects(structure_hash__in=[h for h in hashes if h]).only("structure_hash")
    }
    collection = RoundSample._get_collection()
    for index, (item, ok, key) in enumerate(zip(items, valid, hashes, strict=True)):
        collection.update_one(
            {"campaign": campaign, "round": round_index, "index": index},
            {
                "$set": {
                    "valid": bool(ok),
                    "structure_hash": key,
                    "candidate": ids.get(key) if key else None,
                    "structure": item.structure.as_dict(),
                }
            },
            upsert=True,
        )
