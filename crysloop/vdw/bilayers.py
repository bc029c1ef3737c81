"""Bilayers of two monolayers: Janus flips, 0/60 degree rotations, AA/AB/BA registries and commensurate twists.

The in-plane lattice is the mean of the two layers' (each layer is strained onto it), the layers start
``gap`` A apart, the cell has at least ``vacuum`` A of empty space along c, and c lies along z. Symmetry-equivalent
stackings (a flipped symmetric layer, a bilayer turned upside down, ...) are removed with pymatgen's StructureMatcher.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from crysloop.errors import InputError

REGISTRIES = {"AA": (0.0, 0.0), "AB": (1.0 / 3.0, 2.0 / 3.0), "BA": (2.0 / 3.0, 1.0 / 3.0)}
ROTATIONS = (0, 60)
# Commensurate twisted cells of two equal hexagonal lattices: lower layer in the (m, n) supercell, upper in (n, m).
# sqrt3 has a single (1, 1) vector, so its only "twists" are the 0/60 degree stackings of the 1x1 cell.
TWISTS = {"sqrt7": (2, 1), "sqrt13": (3, 1), "sqrt19": (3, 2)}
DEFAULT_GAP = 3.2
DEFAULT_VACUUM = 15.0


@dataclass(frozen=True)
class Stacking:
    """How two layers are stacked: monolayer names (unflipped), flips, upper-layer rotation, registry and twist."""

    lower: str
    upper: str
    lower_flipped: bool
    upper_flipped: bool
    rotation: int  # degrees, upper layer about the metal column: 0 or 60
    registry: str  # AA, AB or BA: in-plane shift of the upper layer
    twist: str = "1x1"  # 1x1 or a TWISTS key
    twist_angle: float = 0.0  # degrees

    @property
    def key(self) -> str:
        flips = f"{'f' if self.lower_flipped else 'u'}{'f' if self.upper_flipped else 'u'}"
        return f"{self.lower}/{self.upper}/{flips}/r{self.rotation}/{self.registry}/{self.twist}"

    def as_dict(self) -> dict:
        return asdict(self)


def _layer_geometry(structure: Structure, flipped: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """In-plane fractional coordinates, heights (A, lowest atom at 0) and species of a (flipped) monolayer."""
    frac = np.mod(structure.frac_coords[:, :2], 1.0)
    z = structure.cart_coords[:, 2].copy()
    species = [site.specie.symbol for site in structure]
    if flipped:  # turn the layer upside down (z -> -z) and list atoms bottom first again
        z = -z
    order = np.argsort(z, kind="stable")
    z = z[order] - z[order].min()
    return frac[order], z, [species[i] for i in order]


def _supercell(
    frac: np.ndarray, z: np.ndarray, species: list[str], m: int, n: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A 1x1 layer's atoms in its (m, n) supercell (first vector m a1 + n a2 in the 60-degree basis)."""
    matrix = np.array([[m + n, n], [-n, m]], dtype=float)  # rows: supercell vectors in pymatgen's 120-degree basis
    inverse = np.linalg.inv(matrix)
    reach = range(-(m + n) - 1, m + n + 2)
    out_frac, out_z, out_species = [], [], []
    for i, j in itertools.product(reach, reach):
        points = (frac + np.array([i, j])) @ inverse
        for point, height, symbol in zip(points, z, species, strict=True):
            if np.all((point > -1e-8) & (point < 1 - 1e-8)):
                out_frac.append(point)
                out_z.append(height)
                out_species.append(symbol)
    return np.mod(np.array(out_frac), 1.0), np.array(out_z), out_species


def twist_angle(m: int, n: int) -> float:
    """Angle (degrees) between the (m, n) and (n, m) supercell vectors of a hexagonal lattice."""
    angle = lambda p, q: math.atan2(q * math.sqrt(3) / 2, p + q / 2)  # noqa: E731 - 60-degree basis
    return abs(math.degrees(angle(m, n) - angle(n, m)))


def make_bilayer(
    lower: Structure, upper: Structure, stacking: Stacking, gap: float = DEFAULT_GAP, vacuum: float = DEFAULT_VACUUM
) -> Structure:
    """The bilayer of relaxed monolayer cells ``lower`` and ``upper`` stacked as ``stacking`` says.

    Atoms of the lower layer come first; site properties ``layer`` (0 lower, 1 upper) record which is which.
    """
    if gap <= 0 or vacuum <= 0:
        raise InputError("gap and vacuum must be positive")
    if stacking.registry not in REGISTRIES or stacking.rotation not in ROTATIONS:
        raise InputError(f"unknown registry {stacking.registry!r} or rotation {stacking.rotation}")
    a = 0.5 * (lower.lattice.a + upper.lattice.a)
    f_low, z_low, s_low = _layer_geometry(lower, stacking.lower_flipped)
    f_up, z_up, s_up = _layer_geometry(upper, stacking.upper_flipped)
    if stacking.rotation == 60:  # 60 degrees about the metal column = in-plane inversion of this D3h layer
        f_up = -f_up
    f_up = f_up + np.array(REGISTRIES[stacking.registry])
    factor = 1
    if stacking.twist != "1x1":
        if stacking.twist not in TWISTS:
            raise InputError(f"unknown twist {stacking.twist!r}; choose one of {', '.join(TWISTS)}")
        m, n = TWISTS[stacking.twist]
        factor = math.sqrt(m * m + m * n + n * n)
        f_low, z_low, s_low = _supercell(f_low, z_low, s_low, m, n)
        f_up, z_up, s_up = _supercell(f_up, z_up, s_up, n, m)
    z_up = z_up + z_low.max() + gap
    thickness = z_up.max()
    c = thickness + vacuum
    z = np.concatenate([z_low, z_up]) + 0.5 * (c - thickness)
    frac = np.concatenate([f_low, f_up])
    coords = np.column_stack([np.mod(frac, 1.0), z / c])
    layer = [0] * len(z_low) + [1] * len(z_up)
    return Structure(Lattice.hexagonal(a * factor, c), s_low + s_up, coords, site_properties={"layer": layer})


def check_twists(twists: Sequence[str]) -> None:
    """An unknown twist cell is an ``InputError``; sqrt3 gets the reason it has no twist."""
    for twist in twists:
        if twist == "sqrt3":
            raise InputError(
                "sqrt3: two equal hexagonal lattices share no twisted sqrt3 cell (its 0 and 60 degree "
                f"stackings are the 1x1 ones); choose from {', '.join(TWISTS)}"
            )
        if twist not in TWISTS:
            raise InputError(f"unknown twist {twist!r}; choose one of {', '.join(TWISTS)}")


def stackings(lower: str, upper: str, twists: Sequence[str] = ()) -> list[Stacking]:
    """Every stacking of ``upper`` on ``lower``: 4 flips x 2 rotations x 3 registries, plus each twist (AA, 8 each)."""
    flips = list(itertools.product((False, True), repeat=2))
    out = [
        Stacking(lower, upper, fl, fu, rotation, registry)
        for (fl, fu), rotation, registry in itertools.product(flips, ROTATIONS, REGISTRIES)
    ]
    check_twists(twists)
    for twist in twists:
        angle = round(twist_angle(*TWISTS[twist]), 2)
        out += [
            Stacking(lower, upper, fl, fu, rotation, "AA", twist, angle)
            for (fl, fu), rotation in itertools.product(flips, ROTATIONS)
        ]
    return out


def _matcher() -> StructureMatcher:
    # The geometries of equivalent stackings are identical, so tight tolerances suffice; the vacuum inflates the
    # volume per atom that StructureMatcher scales ``stol`` by, which loose tolerances would turn into false matches.
    return StructureMatcher(
        ltol=0.05, stol=0.05, angle_tol=1.0, primitive_cell=False, scale=False, attempt_supercell=False
    )


def _profile(structure: Structure) -> tuple:
    """Species and heights from the slab centre, sorted: equal for equivalent bilayers (cheap pre-filter)."""
    z = structure.cart_coords[:, 2]
    centre = 0.5 * (z.min() + z.max())
    return tuple(sorted((site.specie.symbol, round(abs(h - centre), 2)) for site, h in zip(structure, z, strict=True)))


def unique_bilayers(items: Sequence[tuple[Stacking, Structure]]) -> list[tuple[Stacking, Structure]]:
    """Keep the first of each set of equivalent bilayers (StructureMatcher), in input order."""
    matcher = _matcher()
    kept: dict[tuple, list[Structure]] = {}
    out: list[tuple[Stacking, Structure]] = []
    for stacking, structure in items:
        same_profile = kept.setdefault(_profile(structure), [])
        if not any(matcher.fit(s, structure) for s in same_profile):
            same_profile.append(structure)
            out.append((stacking, structure))
    return out


def pair_bilayers(
    monolayers: dict[str, Structure],
    first: str,
    second: str,
    twists: Sequence[str] = (),
    gap: float = DEFAULT_GAP,
    vacuum: float = DEFAULT_VACUUM,
) -> list[tuple[Stacking, Structure]]:
    """The distinct bilayers of two monolayers in either order (both orders can give the same bilayer upside down)."""
    orders = [(first, second)] if first == second else [(first, second), (second, first)]
    items = [
        (s, make_bilayer(monolayers[s.lower], monolayers[s.upper], s, gap, vacuum))
        for lower, upper in orders
        for s in stackings(lower, upper, twists)
    ]
    return unique_bilayers(items)
