"""Expected cell volume of a composition from additive per-element volumes, and isotropic rescaling to it.

Volume per atom is close to additive over the elements (Vegard-like): ``V / N = sum_e x_e v_e`` with ``x_e`` the
atomic fractions. The ``v_e`` shipped in ``assets/chemistry/element_volumes.json`` are a non-negative least-squares
fit to the 7,987 crystals the shipped DiffCSP model was trained on (the MP-20 binary/ternary val rows plus the
MP-20 sample train rows); on them the ratio of true to predicted volume has median 0.99 and 90 % of crystals
within 0.83-1.22. Rebuild with ``fit_element_volumes(read_structures(...))`` and ``write_element_volumes``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Structure

from crysloop.resources import asset_path

VOLUMES_PATH = asset_path("chemistry", "element_volumes.json")


@lru_cache(maxsize=1)
def element_volumes() -> dict[str, float]:
    """The shipped per-element volumes (A^3 per atom)."""
    return json.loads(VOLUMES_PATH.read_text())["volumes"]


def expected_volume_per_atom(composition: Composition | str, volumes: dict[str, float] | None = None) -> float | None:
    """Additive volume per atom (A^3) of ``composition``; None when an element has no fitted volume."""
    volumes = volumes or element_volumes()
    composition = Composition(composition)
    if any(element.symbol not in volumes for element in composition):
        return None
    return sum(volumes[e.symbol] * x for e, x in composition.fractional_composition.items())


def fit_element_volumes(structures: Iterable[Structure]) -> dict[str, float]:
    """Per-element volumes minimising the squared error of the additive volume per atom (non-negative)."""
    from scipy.optimize import nnls

    rows = [(s.composition.fractional_composition, s.volume / len(s)) for s in structures]
    symbols = sorted({e.symbol for c, _ in rows for e in c}, key=lambda s: Composition(s).elements[0].Z)
    index = {s: i for i, s in enumerate(symbols)}
    a = np.zeros((len(rows), len(symbols)))
    for k, (fractions, _) in enumerate(rows):
        for element, x in fractions.items():
            a[k, index[element.symbol]] = x
    solution, _ = nnls(a, np.array([v for _, v in rows]))
    return {s: round(float(solution[i]), 3) for s, i in index.items()}


def write_element_volumes(volumes: dict[str, float], source: str, path: Path = VOLUMES_PATH) -> None:
    """Store fitted volumes with a note on the data they come from."""
    path.write_text(json.dumps({"source": source, "units": "A^3 per atom", "volumes": volumes}, indent=1) + "\n")


def rescale_to_expected_volume(structure: Structure) -> Structure:
    """A copy of ``structure`` scaled isotropically (fractional coordinates kept) to its composition's expected
    volume; unchanged when an element has no fitted volume."""
    per_atom = expected_volume_per_atom(structure.composition)
    scaled = structure.copy()
    if per_atom is not None and per_atom > 0:
        scaled.scale_lattice(per_atom * len(structure))
    return scaled
