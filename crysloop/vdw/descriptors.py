"""Labels of a relaxed bilayer: formation energy, interlayer binding energy, interlayer distance and strain."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pymatgen.core import Lattice, Structure

from crysloop.errors import InputError


def in_plane_area(lattice: Lattice) -> float:
    """Area (A^2) spanned by the a and b lattice vectors."""
    return float(np.linalg.norm(np.cross(lattice.matrix[0], lattice.matrix[1])))


def formation_energy_per_atom(structure: Structure, energy: float, chemical_potentials: Mapping[str, float]) -> float:
    """(E - sum_i n_i mu_i) / N in eV/atom, with mu_i the energy per atom of element i's reference (same potential)."""
    missing = [el.symbol for el in structure.composition.elements if el.symbol not in chemical_potentials]
    if missing:
        raise InputError(f"no elemental reference energy for {', '.join(missing)}")
    reference = sum(chemical_potentials[el.symbol] * n for el, n in structure.composition.items())
    return (energy - reference) / len(structure)


def binding_energy_per_area(energy: float, lower_alone: float, upper_alone: float, area: float) -> float:
    """Interlayer binding energy (meV/A^2): bilayer minus its two layers computed alone in the same cell; < 0 is
    bound."""
    return 1000.0 * (energy - lower_alone - upper_alone) / area


def layer_parts(structure: Structure, layer: list[int] | np.ndarray) -> tuple[Structure, Structure]:
    """The lower (``layer`` 0) and upper (``layer`` 1) layers of a bilayer, each alone in the bilayer's cell."""
    layer = np.asarray(layer)
    lower = Structure.from_sites([s for s, i in zip(structure, layer, strict=True) if i == 0])
    upper = Structure.from_sites([s for s, i in zip(structure, layer, strict=True) if i == 1])
    return lower, upper


def interlayer_distance(structure: Structure, layer: list[int] | np.ndarray) -> float:
    """Vertical gap (A) between the highest atom of the lower layer and the lowest of the upper (c along z)."""
    layer = np.asarray(layer)
    z = structure.cart_coords[:, 2]
    return float(z[layer == 1].min() - z[layer == 0].max())


def layer_strain(bilayer: Structure, layer_atoms: int, monolayer: Structure) -> float:
    """Isotropic in-plane strain of a layer of ``layer_atoms`` atoms on the bilayer's cell (positive = tensile).

    Areas per atom are compared, so twisted supercells and 1x1 cells are treated alike.
    """
    stretched = in_plane_area(bilayer.lattice) / layer_atoms
    own = in_plane_area(monolayer.lattice) / len(monolayer)
    return float(np.sqrt(stretched / own) - 1.0)
