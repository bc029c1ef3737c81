"""Writing candidates to the results database: idempotent by canonical structure hash."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pymatgen.core import Structure
from pymongo.errors import BulkWriteError

from crysloop.data.canonical import structure_hash
from crysloop.infra.documents import Candidate, OxidationState


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
    """How many candidates were new and which hashes they map to, in input order."""

    inserted: int
    existing: int
    hashes: list[str]


def candidate_document(item: NewCandidate, campaign: str | None = None, round_index: int | None = None) -> Candidate:
    """Build (not save) the Candidate document of a structure."""
    structure = item.structure
    composition = structure.composition.remove_charges()
    elements = sorted(el.symbol for el in composition.elements)
    return Candidate(
        structure_hash=structure_hash(structure),
        structure=structure.as_dict(),
        formula=composition.reduced_formula,
        composition={el.symbol: amount for el, amount in composition.items()},
        elements=elements,
        chemsys="-".join(elements),
        nsites=len(structure),
        oxidation_states=[OxidationState(element=e, oxidation_state=int(v), count=float(n))
                          for e, v, n in item.oxidation_states],  # fmt: skip
        source=item.source,
        dataset=item.dataset,
        material_id=item.material_id,
        origin=item.origin,
        campaign=campaign,
        round=round_index,
        properties=item.properties,
    )


def add_candidates(items: Iterable[NewCandidate], campaign: str | None = None, round_index: int | None = None,
                   batch_size: int = 500) -> InsertReport:  # fmt: skip
    """Insert candidates, skipping any whose structure hash is already stored (re-inserting is a no-op)."""
    docs = [candidate_document(item, campaign, round_index) for item in items]
    hashes = [doc.structure_hash for doc in docs]
    known = set(Candidate.objects(structure_hash__in=list(set(hashes))).distinct("structure_hash"))
    fresh, seen = [], set(known)
    for doc in docs:
        if doc.structure_hash not in seen:
            seen.add(doc.structure_hash)
            fresh.append(doc)
    inserted = 0
    for start in range(0, len(fresh), batch_size):
        chunk = fresh[start : start + batch_size]
        try:
            Candidate.objects.insert(chunk, load_bulk=False)
            inserted += len(chunk)
        except BulkWriteError as exc:  # another writer stored some of them meanwhile
            inserted += exc.details.get("nInserted", 0)
    return InsertReport(inserted=inserted, existing=len(docs) - inserted, hashes=hashes)
