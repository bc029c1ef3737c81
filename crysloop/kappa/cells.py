"""Cells for phono3py: the spglib-standardised primitive cell and diagonal supercells of a minimum width."""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms
from phonopy.structure.atoms import PhonopyAtoms
from pymatgen.core import Structure
from pymatgen.io.phonopy import get_phonopy_structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from crysloop.errors import InputError


def standard_primitive(structure: Structure, symprec: float = 0.01) -> Structure:
    """The standardised primitive cell (spglib), so equal crystals give the same phono3py setup and cache keys."""
    clean = structure.copy().remove_oxidation_states()
    try:
        return SpacegroupAnalyzer(clean, symprec=symprec).get_primitive_standard_structure()
    except Exception as exc:
        raise InputError(f"cannot find the symmetry of {structure.composition.reduced_formula}: {exc}") from exc


def supercell_diagonal(structure: Structure, min_length: float) -> list[int]:
    """Smallest repeats ``[n1, n2, n3]`` making every perpendicular width of the supercell at least ``min_length``.

    The perpendicular width (distance between opposite faces) is what limits the interaction range a periodic
    supercell can hold; for a skewed primitive cell it is shorter than the lattice vector.
    """
    if min_length <= 0:
        raise InputError(f"supercell minimum length must be positive, got {min_length}")
    matrix = structure.lattice.matrix
    volume = abs(np.linalg.det(matrix))
    widths = [volume / np.linalg.norm(np.cross(matrix[(i + 1) % 3], matrix[(i + 2) % 3])) for i in range(3)]
    return [max(1, math.ceil(min_length / w - 1e-6)) for w in widths]


def to_phonopy(structure: Structure) -> PhonopyAtoms:
    """pymatgen Structure -> PhonopyAtoms."""
    return get_phonopy_structure(structure)


def to_ase(cell: PhonopyAtoms) -> Atoms:
    """PhonopyAtoms (a displaced supercell) -> periodic ASE Atoms for a force calculator."""
    return Atoms(symbols=list(cell.symbols), cell=np.array(cell.cell), scaled_positions=cell.scaled_positions, pbc=True)
