"""Oxidation-state vocabulary of the composition model: elements, their ionic states and the metallic state 0.

Choices (documented because they decide which compositions can be labelled and generated):

* Elements: H to Bi (Z <= 83) without the noble gases, the lanthanides (La-Lu) and the radioactive Tc and Pm,
  as CrysVCD does; everything heavier than Bi (Po, At, Rn, Fr, Ra, actinides) is radioactive and excluded too.
* Ionic states: pymatgen's ``common_oxidation_states``, ``icsd_oxidation_states`` (seen in the ICSD bond-valence
  analysis) and ``oxidation_states`` (all known) united. The ICSD states are needed for e.g. Cu+ (Cu2O) and Mn3+
  (Mn3O4), the rarer ones for peroxides (O-), subvalent nitrides and carbides, OF2 (O2+). Negative states are kept only for non-metals and metalloids: pymatgen lists Sn4-, Pb4- or Au-
  (Zintl and auride phases), but treating Mg2Sn or CuAu as ionic would call most intermetallics salts.
* State 0 (metal or alloy constituent) for every element except N, O and the halogens: metals, metalloids and
  H, B, C, P, S, Se all occur in intermetallic borides, carbides, phosphides, chalcogenide alloys and hydrides;
  N, O and the halogens never form alloys.
* States pymatgen calls common cost nothing in labelling, ICSD states cost 1 and the other known states 2, so
  the labeller prefers the textbook assignment when several are neutral.
"""

from __future__ import annotations

from functools import lru_cache

from pymatgen.core import Element

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
    return tuple(Element.from_Z(z).symbol for z in range(1, MAX_Z + 1) if is_supported_element(Element.from_Z(z).symbol))


@lru_cache(maxsize=None)
def ionic_states(symbol: str) -> tuple[int, ...]:
    """Allowed non-zero oxidation states of an element, ascending (empty for an unsupported element)."""
    if not is_supported_element(symbol):
        return ()
    element = Element(symbol)
    states = set(element.common_oxidation_states) | set(element.icsd_oxidation_states) | set(element.oxidation_states)
    states.discard(0)
    if element.is_metal:
        states = {s for s in states if s > 0}
    return tuple(sorted(states))


@lru_cache(maxsize=None)
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


@lru_cache(maxsize=1)
def species_vocabulary() -> tuple[tuple[str, int], ...]:
    """Every (element, oxidation state) of the vocabulary, ordered by atomic number then state."""
    species: list[tuple[str, int]] = []
    for symbol in supported_elements():
        states = set(ionic_states(symbol)) | ({0} if has_metallic_state(symbol) else set())
        species.extend((symbol, s) for s in sorted(states))
    return tuple(species)


def electronegativity(symbol: str) -> float:
    """Pauling electronegativity, used to order cations below anions."""
    return float(Element(symbol).X)
