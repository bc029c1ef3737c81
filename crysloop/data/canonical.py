"""A canonical hash of a crystal structure, so the same crystal stored twice is recognised as one."""

from __future__ import annotations

import hashlib

import numpy as np
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer


def _standard_primitive(structure: Structure, symprec: float) -> Structure:
    try:
        return SpacegroupAnalyzer(structure, symprec=symprec).get_primitive_standard_structure()
    except Exception:
        return structure.get_reduced_structure("niggli")


def structure_hash(structure: Structure, symprec: float = 0.01, decimals: int = 2) -> str:
    """SHA-1 of the spglib-standardised primitive cell, lattice and coordinates rounded.

    Equal for the same crystal under rotation, translation, supercells and site order (within ``symprec``);
    fine enough that distinct relaxations of one composition rarely collide. StructureMatcher remains the
    tolerant test for "same crystal" in the evaluation suite.
    """
    std = _standard_primitive(structure.copy().remove_oxidation_states(), symprec)
    lattice = np.round(std.lattice.abc + std.lattice.angles, decimals - 1 if decimals > 1 else decimals)
    sites = sorted(
        (site.specie.symbol, *(np.round(np.mod(np.round(site.frac_coords, decimals), 1.0), decimals) + 0.0))
        for site in std
    )
    payload = f"{std.composition.reduced_formula}|{len(std)}|{lattice.tolist()}|{sites}"
    return hashlib.sha1(payload.encode()).hexdigest()
