"""Crystal structures as tensors: pymatgen Structures <-> ``CrystalTensors`` (Z, frac_coords, lattice, counts).

A lattice is a 3x3 matrix whose rows are the lattice vectors (pymatgen's convention), or equivalently its
lengths (a, b, c in Angstrom) and angles (alpha, beta, gamma in degrees). Both conversions are batched torch
code. ``records_to_tensors`` stores each Niggli-reduced lattice in the canonical orientation of its lengths and
angles (c along z, a in the xz plane, as pymatgen's Lattice.from_parameters), so that matrix and parameters always
agree; fractional coordinates do not depend on the orientation. Every generative model trains on these tensors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from crysloop.errors import InputError

if TYPE_CHECKING:
    from pymatgen.core import Structure


@dataclass
class CrystalTensors:
    """A batch of crystals as flat tensors (what the models consume; no torch-geometric or pymatgen needed).

    ``properties`` (B, P) follows the model's property order, NaN where a value is missing.
    """

    atom_types: torch.Tensor  # (N,) atomic numbers
    frac_coords: torch.Tensor  # (N, 3)
    lattice: torch.Tensor  # (B, 3, 3), rows are lattice vectors
    num_atoms: torch.Tensor  # (B,)
    properties: torch.Tensor  # (B, P)

    @property
    def atom_crystal(self) -> torch.Tensor:
        """Index of each atom's crystal."""
        return torch.repeat_interleave(torch.arange(len(self.num_atoms), device=self.num_atoms.device), self.num_atoms)

    def to(self, device: torch.device | str) -> CrystalTensors:
        """The same batch on another device."""
        return CrystalTensors(*(getattr(self, k).to(device) for k in self.__dataclass_fields__))

    def select(self, indices: torch.Tensor) -> CrystalTensors:
        """The sub-batch of the crystals at ``indices`` (in that order)."""
        first = torch.cumsum(self.num_atoms, 0) - self.num_atoms
        counts = self.num_atoms[indices]
        starts = torch.repeat_interleave(first[indices], counts)
        offsets = torch.arange(int(counts.sum()), device=counts.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        atoms = starts + offsets
        return CrystalTensors(
            self.atom_types[atoms], self.frac_coords[atoms], self.lattice[indices], counts, self.properties[indices]
        )


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
    cosines = [(matrix[..., i, :] * matrix[..., j, :]).sum(-1) / (lengths[..., i] * lengths[..., j]) for i, j in pairs]
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


def _structure_and_properties(record: Any) -> tuple[Structure, dict]:
    if hasattr(record, "structure"):
        return record.structure, dict(getattr(record, "properties", None) or {})
    if isinstance(record, tuple):
        return record[0], dict(record[1] or {})
    return record, {}


def records_to_tensors(
    records: Iterable[Any], properties: Sequence[str] = (), max_atoms: int | None = None
) -> CrystalTensors:
    """Niggli-reduced crystals as flat tensors; ``records`` hold CrystalRecords, (Structure, dict) pairs or
    Structures. Missing property values become NaN (and are never used as conditions)."""
    types, coords, params, counts, values = [], [], [], [], []
    for record in records:
        structure, props = _structure_and_properties(record)
        if not structure.is_ordered:
            raise InputError(f"{structure.composition.reduced_formula}: disordered structures cannot be trained on")
        if max_atoms is not None and len(structure) > max_atoms:
            raise InputError(f"{structure.composition.reduced_formula}: more than {max_atoms} atoms in the cell")
        reduced = structure.get_reduced_structure("niggli")
        types += [site.specie.Z for site in reduced]
        coords.append(torch.tensor(wrap_frac_coords(reduced.frac_coords), dtype=torch.float32))
        params.append(list(reduced.lattice.abc) + list(reduced.lattice.angles))
        counts.append(len(reduced))
        values.append([float("nan") if props.get(name) is None else float(props[name]) for name in properties])
    if not counts:
        raise InputError("no crystals to train on")
    params_t = torch.tensor(params, dtype=torch.float64)
    lattice = lattice_params_to_matrix(params_t[:, :3], params_t[:, 3:]).float()
    return CrystalTensors(
        torch.tensor(types, dtype=torch.long),
        torch.cat(coords),
        lattice,
        torch.tensor(counts, dtype=torch.long),
        torch.tensor(values, dtype=torch.float32).reshape(len(counts), len(properties)),
    )


def _field(source: Any, name: str) -> Any:
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def batch_to_structures(batch: CrystalTensors | Mapping[str, torch.Tensor]) -> list[Structure]:
    """Split a batch (``CrystalTensors`` or a dict of tensors) into pymatgen Structures.

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
