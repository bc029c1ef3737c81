"""Electronic configuration of an ion (element in an oxidation state) as a feature vector scaled to [0, 1].

Cations lose electrons from the orbital with the highest principal quantum number first, and within one shell
from the highest angular momentum first (4s before 3d, 6p before 6s before 5d); anions gain electrons in the
first unfilled orbital of the Madelung order. The valence shell is that of the neutral atom's period n:
ns and np, (n-1)d and (n-2)f.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from pymatgen.core import Element

from crysloop.chemistry.oxidation import MAX_Z

ORBITALS: tuple[tuple[int, str], ...] = (
    (1, "s"),
    (2, "s"),
    (2, "p"),
    (3, "s"),
    (3, "p"),
    (4, "s"),
    (3, "d"),
    (4, "p"),
    (5, "s"),
    (4, "d"),
    (5, "p"),
    (6, "s"),
    (4, "f"),
    (5, "d"),
    (6, "p"),
)  # fmt: skip  Madelung (filling) order up to Bi
CAPACITY = {"s": 2, "p": 6, "d": 10, "f": 14}
L_NUMBER = {"s": 0, "p": 1, "d": 2, "f": 3}
FEATURE_NAMES: tuple[str, ...] = (
    "Z",
    *tuple(f"{n}{l}" for n, l in ORBITALS),
    "valence_s",
    "valence_p",
    "valence_d",
    "valence_f",
)
N_FEATURES = len(FEATURE_NAMES)


@cache
def ion_occupations(symbol: str, oxidation_state: int) -> dict[tuple[int, str], int]:
    """Orbital occupations {(n, l): electrons} of the element in the given oxidation state."""
    element = Element(symbol)
    occupation = dict.fromkeys(ORBITALS, 0)
    for n, l, electrons in element.full_electronic_structure:
        occupation[(n, l)] = electrons
    if oxidation_state > 0:
        removal_order = sorted(occupation, key=lambda o: (o[0], L_NUMBER[o[1]]), reverse=True)
        to_remove = oxidation_state
        for orbital in removal_order:
            taken = min(occupation[orbital], to_remove)
            occupation[orbital] -= taken
            to_remove -= taken
        if to_remove:
            raise ValueError(f"{symbol}{oxidation_state:+d}: more electrons removed than the atom has")
    elif oxidation_state < 0:
        to_add = -oxidation_state
        for orbital in ORBITALS:
            room = CAPACITY[orbital[1]] - occupation[orbital]
            added = min(room, to_add)
            occupation[orbital] += added
            to_add -= added
            if not to_add:
                break
    return occupation


@cache
def electronic_features(symbol: str, oxidation_state: int) -> tuple[float, ...]:
    """Z, orbital occupations and valence-shell s/p/d/f counts of the ion, each divided by its maximum."""
    occupation = ion_occupations(symbol, oxidation_state)
    n = Element(symbol).row
    valence = (
        occupation.get((n, "s"), 0) / 2,
        occupation.get((n, "p"), 0) / 6,
        occupation.get((n - 1, "d"), 0) / 10,
        occupation.get((n - 2, "f"), 0) / 14,
    )
    orbitals = tuple(occupation[o] / CAPACITY[o[1]] for o in ORBITALS)
    return (Element(symbol).Z / MAX_Z, *orbitals, *valence)


def feature_matrix(species: list[tuple[str, int]]) -> np.ndarray:
    """Stack :func:`electronic_features` for a list of (element, oxidation state) into a float32 array."""
    return np.asarray([electronic_features(el, ox) for el, ox in species], dtype=np.float32).reshape(-1, N_FEATURES)
