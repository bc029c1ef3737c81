"""The queries users run on the results database: filter candidates by campaign, chemistry, stability and DFT state."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pymatgen.core import Composition, Element, Structure

from crysloop.errors import InputError
from crysloop.infra.documents import ALL_DOCUMENTS, DFT_TRANSITIONS, Candidate, DFTJob, KappaResult, ScreeningResult


@dataclass(frozen=True)
class CandidateFilter:
    """Filters of ``crysloop db query``; ``None`` means "any"."""

    campaign: str | None = None
    formula: str | None = None
    elements: tuple[str, ...] = ()
    ehull_max: float | None = None
    phonon_stable: bool | None = None
    dft_state: str | None = None
    mlip: str | None = None
    source: str | None = None
    limit: int | None = 50


@dataclass
class CandidateRow:
    """One candidate joined with its screening, DFT and kappa results."""

    structure_hash: str
    formula: str
    chemsys: str
    nsites: int
    source: str
    campaign: str | None
    round: int | None
    material_id: str | None
    mlip: str | None = None
    e_above_hull: float | None = None
    formation_energy_per_atom: float | None = None
    phonon_stable: bool | None = None
    dft_state: str | None = None
    dft_energy_per_atom: float | None = None
    kappa_300k: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def normalise_formula(formula: str) -> str:
    try:
        return Composition(formula).reduced_formula
    except Exception:
        raise InputError(f"cannot parse formula {formula!r}") from None


def normalise_elements(elements: tuple[str, ...] | list[str]) -> list[str]:
    symbols = []
    for symbol in elements:
        if not Element.is_valid_symbol(symbol.strip()):
            raise InputError(f"unknown element {symbol!r}")
        symbols.append(symbol.strip())
    return sorted(set(symbols))


def _intersect(ids: set | None, new: set) -> set:
    return new if ids is None else ids & new


def find_candidates(flt: CandidateFilter):
    """A Candidate queryset for the filter (screening and DFT filters joined through candidate ids)."""
    if flt.dft_state is not None and flt.dft_state not in DFT_TRANSITIONS:
        raise InputError(f"unknown DFT state {flt.dft_state!r}; expected one of {', '.join(DFT_TRANSITIONS)}")
    query: dict = {}
    if flt.campaign:
        query["campaign"] = flt.campaign
    if flt.formula:
        query["formula"] = normalise_formula(flt.formula)
    if flt.elements:
        query["elements__all"] = normalise_elements(flt.elements)
    if flt.source:
        query["source"] = flt.source
    ids: set | None = None
    if flt.ehull_max is not None or flt.phonon_stable is not None:
        screening: dict = {"status": "ok"}
        if flt.mlip:
            screening["mlip"] = flt.mlip
        if flt.ehull_max is not None:  # an uncovered system's energy above hull means nothing: its stability is unknown
            screening.update(e_above_hull__lte=flt.ehull_max, hull_covered__ne=False)
        if flt.phonon_stable is not None:
            screening["phonon_stable"] = flt.phonon_stable
        ids = _intersect(ids, {ref.id for ref in ScreeningResult.objects(**screening).scalar("candidate")})
    if flt.dft_state:
        ids = _intersect(ids, {ref.id for ref in DFTJob.objects(state=flt.dft_state).scalar("candidate")})
    if ids is not None:
        query["id__in"] = list(ids)
    queryset = Candidate.objects(**query).order_by("campaign", "round", "formula")
    return queryset.limit(flt.limit) if flt.limit else queryset


def candidate_rows(candidates, mlip: str | None = None) -> list[CandidateRow]:
    """Join candidates with their latest screening, DFT job and 300 K kappa."""
    candidates = list(candidates)
    ids = [c.id for c in candidates]
    screening_query = {"candidate__in": ids, **({"mlip": mlip} if mlip else {})}
    screening = {s.candidate.id: s for s in ScreeningResult.objects(**screening_query).no_dereference()}
    dft = {j.candidate.id: j for j in DFTJob.objects(candidate__in=ids).no_dereference()}
    kappa = {k.candidate.id: k for k in KappaResult.objects(candidate__in=ids, status="ok").no_dereference()}
    rows = []
    for c in candidates:
        s, j, k = screening.get(c.id), dft.get(c.id), kappa.get(c.id)
        k300 = None
        if k is not None and 300.0 in k.temperatures:
            k300 = k.kappa_average[k.temperatures.index(300.0)]
        rows.append(
            CandidateRow(
                structure_hash=c.structure_hash,
                formula=c.formula,
                chemsys=c.chemsys,
                nsites=c.nsites or 0,
                source=c.source,
                campaign=c.campaign,
                round=c.round,
                material_id=c.material_id,
                mlip=s.mlip if s else None,
                e_above_hull=s.e_above_hull if s else None,
                formation_energy_per_atom=s.formation_energy_per_atom if s else None,
                phonon_stable=s.phonon_stable if s else None,
                dft_state=j.state if j else None,
                dft_energy_per_atom=j.final_energy_per_atom if j else None,
                kappa_300k=k300,
            )
        )
    return rows


def query(flt: CandidateFilter) -> list[CandidateRow]:
    """Rows for ``crysloop db query``."""
    return candidate_rows(find_candidates(flt), mlip=flt.mlip)


def best_structure(candidate: Candidate, mlip: str | None = None) -> Structure:
    """The most refined structure of a candidate: DFT-relaxed, else MLIP-relaxed, else as generated."""
    job = DFTJob.objects(candidate=candidate, state="completed").first()
    if job and job.final_structure:
        return Structure.from_dict(job.final_structure)
    screening = ScreeningResult.objects(candidate=candidate, status="ok", **({"mlip": mlip} if mlip else {})).first()
    if screening and screening.relaxed_structure:
        return Structure.from_dict(screening.relaxed_structure)
    return Structure.from_dict(candidate.structure)


def status() -> dict:
    """Document counts per collection, candidates per campaign and DFT jobs per state."""
    counts = {doc._get_collection_name(): doc.objects.count() for doc in ALL_DOCUMENTS}
    per_campaign: dict = {}
    for row in Candidate.objects.aggregate([{"$group": {"_id": "$campaign", "n": {"$sum": 1}}}]):
        per_campaign[row["_id"] or "(none)"] = row["n"]
    dft_states = {
        row["_id"]: row["n"] for row in DFTJob.objects.aggregate([{"$group": {"_id": "$state", "n": {"$sum": 1}}}])
    }
    return {"collections": counts, "candidates_per_campaign": per_campaign, "dft_states": dft_states}
