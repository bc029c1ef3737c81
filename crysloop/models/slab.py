"""Semi-periodic (slab) geometry for generative models trained on layered crystals (issue 14, item 3).

A slab cell keeps its out-of-plane lattice vector fixed: c perpendicular to the layers (along z in crysloop's
lattice orientation) and of one length for the whole data set, with every slab centred at fractional z = 0.5.
Atoms stay inside the slab region |z - c/2| <= half_width: noise and updates along c are reflected at its bounds
instead of wrapped across the vacuum, so no atom can cross the vacuum and the periodic radius graph, whose cut-off
is below the vacuum, never links a slab to its image along c.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from crysloop.errors import InputError

if TYPE_CHECKING:
    from crysloop.data.tensors import CrystalTensors

SLAB_MARGIN = 1.0  # A added on each side of the thickest training slab: room for the layers to move apart
MIN_VACUUM = 7.0  # A of vacuum a slab needs at least, for models without a graph cut-off (crysloop's usual 7 A)


@dataclass(frozen=True)
class SlabGeometry:
    """The fixed out-of-plane length ``c`` (A) and the half-width (A) of the region the atoms stay in."""

    c: float
    half_width: float

    def bounds(self) -> tuple[float, float]:
        """Fractional z bounds of the slab region."""
        return 0.5 - self.half_width / self.c, 0.5 + self.half_width / self.c


def _vacuum_unwrapped(z: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Fractional z of one crystal made contiguous across the widest empty interval (the vacuum), and that width."""
    order = z.sort().values
    gaps = torch.cat([order[1:] - order[:-1], (order[:1] + 1.0 - order[-1:])])
    widest = int(gaps.argmax())
    start = order[(widest + 1) % len(order)]  # the first atom above the vacuum
    return (z - start) % 1.0, float(gaps[widest])


def _extents(data: CrystalTensors) -> list[tuple[bool, float, float, float]]:
    """Per crystal: is c perpendicular to a and b, the slab thickness (A), the vacuum along c (A) and c (A)."""
    out = []
    start = 0
    for b, n in enumerate(data.num_atoms.tolist()):
        lattice = data.lattice[b].double()
        c_vec = lattice[2]
        cosines = torch.stack([lattice[0] @ c_vec, lattice[1] @ c_vec]) / (lattice[:2].norm(dim=1) * c_vec.norm())
        unwrapped, vacuum = _vacuum_unwrapped(data.frac_coords[start : start + n, 2].double())
        length = float(c_vec.norm())
        out.append((bool(cosines.abs().max() <= 1e-3), float(unwrapped.max()) * length, vacuum * length, length))
        start += n
    return out


def slab_geometry(data: CrystalTensors, cutoff: float = MIN_VACUUM) -> SlabGeometry:
    """The slab geometry of layered training data: c = the longest c of the data, half-width = half the thickest
    slab plus ``SLAB_MARGIN``. Raises InputError for a crystal with c not perpendicular to a and b, or whose vacuum
    along c is not wider than the graph ``cutoff`` (not a slab)."""
    extents = _extents(data)
    if not extents:
        raise InputError("no crystals to take the slab geometry from")
    for b, (perpendicular, _, vacuum, _) in enumerate(extents):
        if not perpendicular:
            raise InputError(
                "semi-periodic training needs layered cells with c perpendicular to the layers "
                f"(crystal {b} has alpha/beta away from 90 degrees)"
            )
        if vacuum <= cutoff:
            raise InputError(
                f"semi-periodic training needs slabs: crystal {b} has {vacuum:.1f} A of vacuum along c, "
                f"not more than the {cutoff} A graph cut-off"
            )
    half_width = max(e[1] for e in extents) / 2 + SLAB_MARGIN
    c = max(max(e[3] for e in extents), 2 * half_width + cutoff + 1.0)  # slab regions further apart than the cut-off
    return SlabGeometry(c=c, half_width=half_width)


def fits_slab(data: CrystalTensors, geometry: SlabGeometry, min_vacuum: float = MIN_VACUUM) -> torch.Tensor:
    """(B,) booleans: which crystals are slabs (c perpendicular to the layers, more than ``min_vacuum`` A of vacuum)
    thin enough for ``geometry``."""
    return torch.tensor(
        [
            perpendicular and thickness / 2 <= geometry.half_width and vacuum > min_vacuum
            for perpendicular, thickness, vacuum, _ in _extents(data)
        ],
        dtype=torch.bool,
    )


def to_slab_cells(data: CrystalTensors, geometry: SlabGeometry) -> CrystalTensors:
    """The same crystals with c set to ``geometry.c`` (Cartesian layer geometry kept) and each slab centred at
    fractional z = 0.5; InputError if a slab is thicker than the geometry's region."""
    frac = data.frac_coords.clone()
    lattice = data.lattice.clone()
    start = 0
    for b, n in enumerate(data.num_atoms.tolist()):
        length = float(lattice[b, 2].norm())
        unwrapped, _ = _vacuum_unwrapped(frac[start : start + n, 2].double())
        cart = unwrapped * length
        if float(cart.max()) / 2 > geometry.half_width:
            raise InputError(
                f"crystal {b}: a {float(cart.max()):.1f} A thick slab does not fit the model's "
                f"{2 * geometry.half_width:.1f} A slab region"
            )
        centred = (cart - float(cart.max()) / 2) / geometry.c + 0.5
        frac[start : start + n, 2] = centred.to(frac.dtype)
        lattice[b, 2] = lattice[b, 2] * (geometry.c / length)
        start += n
    return replace(data, frac_coords=frac, lattice=lattice)


def reflect(z: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``z`` folded back into [low, high] by reflection at the bounds (any distance outside)."""
    width = high - low
    phase = torch.remainder(z - low, 2 * width)
    return low + width - (phase - width).abs()


def confine(frac_coords: torch.Tensor, geometry: SlabGeometry) -> torch.Tensor:
    """Fractional coordinates with x and y wrapped into [0, 1) and z reflected into the slab region."""
    low, high = geometry.bounds()
    return torch.cat([frac_coords[:, :2] % 1.0, reflect(frac_coords[:, 2:], low, high)], dim=1)


def random_slab_coords(
    n: int, geometry: SlabGeometry, device: torch.device | str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``n`` uniform random fractional positions inside the slab region (the start of sampling)."""
    low, high = geometry.bounds()
    frac = torch.rand(n, 3, device=device, generator=generator)
    return torch.cat([frac[:, :2], low + (high - low) * frac[:, 2:]], dim=1)


def in_plane_mask(device: torch.device | str | None = None) -> torch.Tensor:
    """(3, 3) booleans: the lattice entries a semi-periodic model learns (x and y of a and b)."""
    mask = torch.zeros(3, 3, dtype=torch.bool, device=device)
    mask[:2, :2] = True
    return mask


def fix_out_of_plane(lattice: torch.Tensor, geometry: SlabGeometry) -> torch.Tensor:
    """Lattices (B, 3, 3) with c = (0, 0, geometry.c) and a, b in the xy plane."""
    fixed = lattice.clone()
    fixed[:, :2, 2] = 0.0
    fixed[:, 2] = torch.tensor([0.0, 0.0, geometry.c], dtype=lattice.dtype, device=lattice.device)
    return fixed
