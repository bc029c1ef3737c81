"""Oxidation-state vocabulary of the composition model: elements, their ionic states and the metallic state 0.

Two vocabularies (``vocabulary=``):

* ``"common"`` (default; CrysVCD uses a curated set of 217 common species), in two tiers:

  - *established* states: pymatgen's ``common_oxidation_states`` united with the states that make up at least
    ``ICSD24_MIN_SHARE`` (3 %) of an element's reports in SMACT's ICSD-24 oxidation-state counts
    (``smact/data/oxidation_states_icsd24_counts.json``, ICSD 2024), which brings in e.g. Cu+, Mn3+, Ti3+, S-
    (pyrite) and B3- (borides). Carbon keeps only C4- and C4+: pymatgen calls every state -4..+4 common and the
    ICSD lists C3+ (oxalate) and C2+ (cyanide, carbonyls), which are states of carbon in molecular anions, not
    of a carbon ion.
  - *occasional* states: cation states of metals with at least ``OCCASIONAL_MIN_SHARE`` (1 %) of the element's
    ICSD-24 reports (Cu3+ cuprates, Co4+ and Ni4+ of delithiated cathodes and perovskites, Fe4+ ferrates, Ag2+
    in AgF2, Ti2+ in TiO, Zr3+ in ZrCl3, W5+ bronzes ...), less ``AVERAGED_STATES`` and plus
    ``TEXTBOOK_STATES`` (both below, each with its reason). The labeller uses them only for a composition that
    has neither an ionic assignment in established states nor the alloy label (see
    :mod:`crysloop.chemistry.valence`), so they label oxides, nitrides and halides that were unlabelled before
    and turn no intermetallic into a salt; an established label changes only where an occasional state sits
    between two established ones and so forbids their mixture (CrF5: Cr4+/Cr6+ becomes Cr5+). Non-metal states
    below 3 % stay out: they are per-atom charges of homonuclear or molecular anions (N2- of pernitrides and
    hydrazine, P- and Sb- of Zintl chains, O- of peroxides, which as a state of single atoms would also label
    every hole-doped oxide such as CoO2 as a Co2+ peroxide).

  No state of the common vocabulary is *exotic* (:func:`is_exotic`): below ``EXOTIC_MAX_SHARE`` (1 %) of the
  element's ICSD-24 reports and in neither of pymatgen's tables of common and ICSD (bond-valence) states, as
  Mg+, B+, O- or Mn5+ are. N2- and C3+ are not exotic by that rule but are molecular-anion states (above).
* ``"full"`` (crysloop's earlier vocabulary, 311 species): everything pymatgen knows, as below.

Choices common to both (documented because they decide which compositions can be labelled and generated):

* Elements: H to Bi (Z <= 83) without the noble gases, the lanthanides (La-Lu) and the radioactive Tc and Pm,
  as CrysVCD does; everything heavier than Bi (Po, At, Rn, Fr, Ra, actinides) is radioactive and excluded too.
* Ionic states: pymatgen's ``common_oxidation_states``, ``icsd_oxidation_states`` (seen in the ICSD bond-valence
  analysis) and ``oxidation_states`` (all known) united. The ICSD states are needed for e.g. Cu+ (Cu2O) and Mn3+
  (Mn3O4), the rarer ones for peroxides (O-), subvalent nitrides and carbides, OF2 (O2+). Negative states are kept
  only for non-metals and metalloids: pymatgen lists Sn4-, Pb4- or Au-
  (Zintl and auride phases), but treating Mg2Sn or CuAu as ionic would call most intermetallics salts.
* State 0 (metal or alloy constituent) for every element except N, O and the halogens: metals, metalloids and
  H, B, C, P, S, Se all occur in intermetallic borides, carbides, phosphides, chalcogenide alloys and hydrides;
  N, O and the halogens never form alloys.
* States pymatgen calls common cost nothing in labelling, ICSD states cost 1 and the other known states 2, so
  the labeller prefers the textbook assignment when several are neutral.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from importlib.resources import files
from typing import Literal

from pymatgen.core import Element

from crysloop.errors import InputError

Vocabulary = Literal["common", "full"]
VOCABULARIES = ("common", "full")
ICSD24_MIN_SHARE = 0.03  # a state is established with at least this share of the element's ICSD-24 reports
OCCASIONAL_MIN_SHARE = 0.01  # a metal's cation state with at least this share is an occasional state
EXOTIC_MAX_SHARE = 0.01  # below this share, and in neither of pymatgen's tables, a state is exotic
CARBON_COMMON_STATES = frozenset({-4, 4})
# Intermediate states that the textbooks assign as a mixture of the two established states around them; as a state
# of the vocabulary they would also forbid that mixture (the comproportionation rule of the labeller).
AVERAGED_STATES: dict[tuple[str, int], str] = {
    ("Sn", 3): "Sn2S3 is Sn(II)Sn(IV)S3; tin(III) compounds are Sn(II)/Sn(IV) mixtures",
    ("Pd", 3): "PdF3 is Pd(II)[Pd(IV)F6]",
    ("Bi", 4): "BaBiO3 is Ba2Bi(III)Bi(V)O6 (charge disproportionation)",
}
# Occasional states below OCCASIONAL_MIN_SHARE: textbook states of an element whose main state dominates its counts.
TEXTBOOK_STATES: dict[tuple[str, int], str] = {
    ("Ag", 3): "silver(III): KAgF4, CsAgF4, Ag2O3 (AgF4- and periodate complexes); in pymatgen's ICSD states",
    ("Nb", 2): "niobium(II): NbO (Nb6O12 clusters), just below the threshold; in pymatgen's ICSD states",
}

NOBLE_GASES = frozenset({"He", "Ne", "Ar", "Kr", "Xe", "Rn"})
RADIOACTIVE = frozenset({"Tc", "Pm"})
NO_METALLIC_STATE = frozenset({"N", "O", "F", "Cl", "Br", "I"})
MAX_Z = 83


def is_supported_element(symbol: str) -> bool:
    """True for an element of the vocabulary (not a noble gas, lanthanide, actinide or radioactive element)."""
    try:
        element = Element(symbol)
    except (ValueError, KeyError):
        return False
    return (
        element.Z <= MAX_Z
        and symbol not in NOBLE_GASES
        and symbol not in RADIOACTIVE
        and not element.is_lanthanoid
        and not element.is_actinoid
    )


@lru_cache(maxsize=1)
def supported_elements() -> tuple[str, ...]:
    """Symbols of the vocabulary's elements, ordered by atomic number."""
    return tuple(
        Element.from_Z(z).symbol for z in range(1, MAX_Z + 1) if is_supported_element(Element.from_Z(z).symbol)
    )


def check_vocabulary(vocabulary: str) -> str:
    """The vocabulary name, or :class:`InputError` for an unknown one."""
    if vocabulary not in VOCABULARIES:
        raise InputError(f"unknown oxidation-state vocabulary {vocabulary!r}; choose one of {', '.join(VOCABULARIES)}")
    return vocabulary


@lru_cache(maxsize=1)
def icsd24_state_shares() -> dict[str, dict[int, float]]:
    """Share of each non-zero oxidation state among an element's ICSD-24 reports (SMACT's counts file)."""
    rows = json.loads((files("smact") / "data" / "oxidation_states_icsd24_counts.json").read_text())
    counts: dict[str, dict[int, int]] = {}
    for row in rows:
        if row["oxidation_state"] != 0 and row["results_count"] > 0:
            counts.setdefault(row["element"], {})[int(row["oxidation_state"])] = int(row["results_count"])
    return {el: {s: n / sum(c.values()) for s, n in c.items()} for el, c in counts.items()}


def _established_states(element: Element) -> set[int]:
    if element.symbol == "C":
        return set(CARBON_COMMON_STATES)
    shares = icsd24_state_shares().get(element.symbol, {})
    return set(element.common_oxidation_states) | {s for s, share in shares.items() if share >= ICSD24_MIN_SHARE}


def _occasional_states(element: Element) -> set[int]:
    shares = icsd24_state_shares().get(element.symbol, {})
    frequent = {s for s, share in shares.items() if share >= OCCASIONAL_MIN_SHARE and s > 0 and element.is_metal}
    textbook = {s for symbol, s in TEXTBOOK_STATES if symbol == element.symbol}
    averaged = {s for symbol, s in AVERAGED_STATES if symbol == element.symbol}
    return (frequent | textbook) - averaged - _established_states(element)


def is_exotic(symbol: str, oxidation_state: int) -> bool:
    """A non-zero state below ``EXOTIC_MAX_SHARE`` of the element's ICSD-24 reports and in neither of pymatgen's
    tables of common and ICSD states (e.g. Mg+, B+, O-); no state of the common vocabulary is exotic."""
    element = Element(symbol)
    return (
        oxidation_state != 0
        and oxidation_state not in element.common_oxidation_states
        and oxidation_state not in element.icsd_oxidation_states
        and icsd24_state_shares().get(symbol, {}).get(oxidation_state, 0.0) < EXOTIC_MAX_SHARE
    )


@cache
def ionic_states(symbol: str, vocabulary: Vocabulary = "common") -> tuple[int, ...]:
    """Allowed non-zero oxidation states of an element in a vocabulary, ascending (empty if unsupported)."""
    check_vocabulary(vocabulary)
    if not is_supported_element(symbol):
        return ()
    element = Element(symbol)
    if vocabulary == "common":
        states = _established_states(element) | _occasional_states(element)
    else:
        states = (
            set(element.common_oxidation_states) | set(element.icsd_oxidation_states) | set(element.oxidation_states)
        )
    states.discard(0)
    if element.is_metal:
        states = {s for s in states if s > 0}
    return tuple(sorted(states))


@cache
def occasional_states(symbol: str, vocabulary: Vocabulary = "common") -> frozenset[int]:
    """The element's occasional states in a vocabulary: used in labelling only when nothing else labels a
    composition (empty for the full vocabulary and for unsupported elements)."""
    check_vocabulary(vocabulary)
    if vocabulary != "common" or not is_supported_element(symbol):
        return frozenset()
    return frozenset(_occasional_states(Element(symbol)) & set(ionic_states(symbol, vocabulary)))


@cache
def state_cost(symbol: str, oxidation_state: int) -> float:
    """Labelling cost of a state: 0 if pymatgen calls it common, 1 if seen in the ICSD, 2 if only known."""
    element = Element(symbol)
    if oxidation_state in element.common_oxidation_states:
        return 0.0
    if oxidation_state in element.icsd_oxidation_states:
        return 1.0
    return 2.0


def has_metallic_state(symbol: str) -> bool:
    """Whether the element takes oxidation state 0 (may be part of an alloy or intermetallic)."""
    return is_supported_element(symbol) and symbol not in NO_METALLIC_STATE


@lru_cache(maxsize=2)
def species_vocabulary(vocabulary: Vocabulary = "common") -> tuple[tuple[str, int], ...]:
    """Every (element, oxidation state) of a vocabulary, ordered by atomic number then state."""
    species: list[tuple[str, int]] = []
    for symbol in supported_elements():
        states = set(ionic_states(symbol, vocabulary)) | ({0} if has_metallic_state(symbol) else set())
        species.extend((symbol, s) for s in sorted(states))
    return tuple(species)


def electronegativity(symbol: str) -> float:
    """Pauling electronegativity, used to order cations below anions."""
    return float(Element(symbol).X)
