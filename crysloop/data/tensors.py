"""Crystal structures as tensors: pymatgen Structure <-> (Z, frac_coords, lattice) and torch-geometric batches.

A lattice is a 3x3 matrix whose rows are the lattice vectors (pymatgen's convention), or equivalently its
lengths (a, b, c in Angstrom) and angles (alpha, beta, gamma in degrees). Both conversions are batched torch
code. ``structure_to_data`` stores the lattice in the canonical orientation of its lengths and angles (c along
z, a in the xz plane, as pymatgen's Lattice.from_parameters), so that matrix and parameters always agree;
fractional coordinates do not depend on the orientation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch_geometric.data import Batch, Data

if TYPE_CHECKING:
    from pymatgen.core import Structure


def lattice_params_to_matrix(lengths: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Lattice matrices (..., 3, 3), rows a, b, c, from lengths (..., 3) in Angstrom and angles (..., 3) in degrees.

    Uses pymatgen's ``Lattice.from_parameters`` orientation: c along z, a in the xz plane (vesta convention).
    """
    lengths = torch.as_tensor(lengths)
    angles = torch.deg2rad(torch.as_tensor(angles, dtype=lengths.dtype))
    cos_a, cos_b, cos_g = torch.cos(angles).unbind(-1)
    sin_a, sin_b = torch.sin(angles[..., 0]), torch.sin(angles[..., 1])
    val = ((cos_a * cos_b - cos_g) / (sin_a * sin_b)).clamp(-1.0, 1.0)
    gamma_star = torch.arccos(val)
    a, b, c = lengths.unbind(-1)
    zero = torch.zeros_like(a)
    vec_a = torch.stack([a * sin_b, zero, a * cos_b], dim=-1)
    vec_b = torch.stack([-b * sin_a * torch.cos(gamma_star), b * sin_a * torch.sin(gamma_star), b * cos_a], dim=-1)
    vec_c = torch.stack([zero, zero, c], dim=-1)
    return torch.stack([vec_a, vec_b, vec_c], dim=-2)


def matrix_to_lattice_params(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lengths (..., 3) in Angstrom and angles (..., 3) in degrees of lattice matrices (..., 3, 3) with rows a, b, c."""
    matrix = torch.as_tensor(matrix)
    lengths = matrix.norm(dim=-1)
    pairs = ((1, 2), (0, 2), (0, 1))  # alpha = angle(b, c), beta = angle(a, c), gamma = angle(a, b)
    cosines = [
        (matrix[..., i, :] * matrix[..., j, :]).sum(-1) / (lengths[..., i] * lengths[..., j]) for i, j in pairs
    ]
    angles = torch.rad2deg(torch.arccos(torch.stack(cosines, dim=-1).clamp(-1.0, 1.0)))
    return lengths, angles


def wrap_frac_coords(frac_coords: np.ndarray) -> np.ndarray:
    """Fractional coordinates wrapped into [0, 1), with values that round to 1.0 sent to 0.0."""
    wrapped = np.mod(frac_coords, 1.0)
    wrapped[wrapped >= 1.0 - 1e-12] = 0.0
    return wrapped


def canonical_structure(structure: Structure) -> Structure:
    """The primitive, Niggli-reduced cell of a structure with fractional coordinates wrapped into [0, 1)."""
    from pymatgen.core import Structure

    reduced = structure.get_primitive_structure().get_reduced_structure("niggli")
    return Structure(
        reduced.lattice, reduced.species, wrap_frac_coords(reduced.frac_coords), site_properties=reduced.site_properties
    )


def structure_to_data(structure: Structure, properties: Mapping[str, float] | None = None) -> Data:
    """One crystal as a torch-geometric ``Data``: atom_types (Z), frac_coords, lattice (1, 3, 3), lengths, angles.

    ``properties`` become ``data.properties``, a dict of one-element float tensors (NaN for a missing value),
    which ``Batch`` collates into per-crystal vectors when every crystal carries the same names.
    """
    if structure.is_ordered is False:
        from crysloop.errors import InputError

        raise InputError(f"{structure.composition.reduced_formula}: disordered structures cannot become tensors")
    lengths = torch.tensor([structure.lattice.abc], dtype=torch.float32)
    angles = torch.tensor([structure.lattice.angles], dtype=torch.float32)
    data = Data(
        atom_types=torch.tensor([site.specie.Z for site in structure], dtype=torch.long),
        frac_coords=torch.tensor(wrap_frac_coords(structure.frac_coords), dtype=torch.float32),
        lattice=lattice_params_to_matrix(lengths.double(), angles.double()).float(),
        lengths=lengths,
        angles=angles,
        num_atoms=torch.tensor([len(structure)], dtype=torch.long),
        num_nodes=len(structure),
    )
    if properties:
        data.properties = {
            name: torch.tensor([float("nan") if value is None else float(value)], dtype=torch.float32)
            for name, value in properties.items()
        }
    return data


def collate(datas: Sequence[Data]) -> Batch:
    """A ``Batch`` of crystals; ``batch.batch`` maps each atom to its crystal."""
    return Batch.from_data_list(list(datas))


def _field(source: Any, name: str) -> Any:
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def batch_to_structures(batch: Batch | Data | Mapping[str, torch.Tensor]) -> list[Structure]:
    """Split a batch (``Batch``, ``Data`` or a dict of tensors) into pymatgen Structures.

    Needs ``atom_types`` (Z), ``frac_coords``, ``num_atoms`` and either ``lattice`` (B, 3, 3) or ``lengths`` and
    ``angles`` (B, 3).
    """
    from pymatgen.core import Lattice, Structure

    atom_types = torch.as_tensor(_field(batch, "atom_types")).detach().cpu()
    frac_coords = torch.as_tensor(_field(batch, "frac_coords")).detach().cpu().double()
    num_atoms = torch.as_tensor(_field(batch, "num_atoms")).detach().cpu().reshape(-1)
    lattice = _field(batch, "lattice")
    if lattice is None:
        lattice = lattice_params_to_matrix(
            torch.as_tensor(_field(batch, "lengths")).double(), torch.as_tensor(_field(batch, "angles")).double()
        )
    lattice = torch.as_tensor(lattice).detach().cpu().double().reshape(-1, 3, 3)
    if lattice.shape[0] != num_atoms.shape[0] or int(num_atoms.sum()) != atom_types.shape[0]:
        raise ValueError("batch_to_structures: lattice, num_atoms and atom_types disagree in size")
    structures = []
    sizes = num_atoms.tolist()
    for lat, z, x in zip(lattice, atom_types.split(sizes), frac_coords.split(sizes), strict=True):
        structures.append(Structure(Lattice(lat.numpy()), z.tolist(), wrap_frac_coords(x.numpy())))
    return structures
