"""The 45 III-VI quadruple-layer monolayers X-M-M'-X' (M in Al, Ga, In; X in S, Se, Te), as in the J2DH-8 set.

A monolayer is two half-layers (metal, chalcogen) joined by a vertical metal-metal bond: the GaSe-type D3h layer
with both metals on one in-plane site and both chalcogens on the other. The 9 half-layers pair up into
9 * 10 / 2 = 45 unordered pairs (flipping a layer swaps its halves): 9 MX, 9 MM'X2, 9 M2XX' and 18 MM'XX'
(for two metals and two chalcogens, M-X with M'-X' differs from M-X' with M'-X). Janus = the halves differ.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Lattice, Structure

from crysloop.errors import InputError

METALS = ("Al", "Ga", "In")
CHALCOGENS = ("S", "Se", "Te")
HALVES = tuple(itertools.product(METALS, CHALCOGENS))

# Covalent radii (A) of Cordero et al., Dalton Trans. 2008, 2832: they set the starting bond lengths.
COVALENT_RADII = {"Al": 1.21, "Ga": 1.22, "In": 1.42, "S": 1.05, "Se": 1.20, "Te": 1.38}
BOND_TILT = math.radians(61.0)  # angle of an M-X bond from the layer normal in GaSe (a = 3.75 A, d = 2.47 A)
METAL_SITE = np.array([0.0, 0.0])
CHALCOGEN_SITE = np.array([1.0 / 3.0, 2.0 / 3.0])
DEFAULT_C = 25.0  # A; a single layer is ~5 A thick, leaving ~20 A of vacuum


@dataclass(frozen=True)
class Monolayer:
    """A quadruple layer X-M-M'-X' from bottom to top: ``bottom`` = (M, X), ``top`` = (M', X')."""

    bottom: tuple[str, str]
    top: tuple[str, str]

    @property
    def janus(self) -> bool:
        return self.bottom != self.top

    @property
    def name(self) -> str:
        """Stacking from bottom to top, e.g. ``S-Ga-In-Se``; the flipped layer has the reversed name."""
        (m1, x1), (m2, x2) = self.bottom, self.top
        return f"{x1}-{m1}-{m2}-{x2}"

    @property
    def formula(self) -> str:
        return self.structure(self.start_a).composition.reduced_formula

    @property
    def family(self) -> str:
        """MX, MM'X2, M2XX' or MM'XX'."""
        same_metal, same_chalcogen = self.bottom[0] == self.top[0], self.bottom[1] == self.top[1]
        return {(True, True): "MX", (False, True): "MM'X2", (True, False): "M2XX'", (False, False): "MM'XX'"}[
            (same_metal, same_chalcogen)
        ]

    def flipped(self) -> Monolayer:
        return Monolayer(self.top, self.bottom)

    @property
    def start_a(self) -> float:
        """Starting in-plane constant (A): mean over the halves of sqrt(3) x the in-plane M-X bond projection."""
        return float(np.mean([math.sqrt(3.0) * _bond(m, x) * math.sin(BOND_TILT) for m, x in (self.bottom, self.top)]))

    def structure(self, a: float | None = None, c: float = DEFAULT_C) -> Structure:
        """The hexagonal cell (c along z) with the layer centred in it; heights from covalent-radius bonds."""
        a = a or self.start_a
        heights = layer_heights(self, a)
        species = [self.bottom[1], self.bottom[0], self.top[0], self.top[1]]
        sites = [CHALCOGEN_SITE, METAL_SITE, METAL_SITE, CHALCOGEN_SITE]
        z = np.array(heights) - 0.5 * (heights[0] + heights[-1]) + 0.5 * c
        coords = [[s[0], s[1], zi / c] for s, zi in zip(sites, z, strict=True)]
        return Structure(Lattice.hexagonal(a, c), species, coords)


def layer_heights(layer: Monolayer, a: float) -> list[float]:
    """z of X, M, M', X' (A): M-X bonds of covalent-radius length across the in-plane offset a/sqrt(3)."""
    offset = a / math.sqrt(3.0)

    def drop(metal: str, chalcogen: str) -> float:
        bond = _bond(metal, chalcogen)
        return math.sqrt(max(bond**2 - offset**2, 0.8**2))

    (m1, x1), (m2, x2) = layer.bottom, layer.top
    z_m1 = drop(m1, x1)
    z_m2 = z_m1 + _bond(m1, m2)
    return [0.0, z_m1, z_m2, z_m2 + drop(m2, x2)]


def _bond(a: str, b: str) -> float:
    return COVALENT_RADII[a] + COVALENT_RADII[b]


def all_monolayers() -> list[Monolayer]:
    """The 45 distinct monolayers: each unordered pair of half-layers once, with the lower-sorted half at the bottom."""
    return [Monolayer(bottom, top) for bottom, top in itertools.combinations_with_replacement(HALVES, 2)]


def select_monolayers(elements: list[str] | None = None) -> list[Monolayer]:
    """The monolayers made only of ``elements`` (all 45 when None); an element outside Al, Ga, In, S, Se, Te is an
    error."""
    layers = all_monolayers()
    if not elements:
        return layers
    allowed = set(METALS + CHALCOGENS)
    bad = sorted(set(elements) - allowed)
    if bad:
        raise InputError(
            f"element(s) {', '.join(bad)} are not III-VI layer elements; choose from {', '.join(METALS + CHALCOGENS)}"
        )
    chosen = set(elements)
    picked = [m for m in layers if {m.bottom[0], m.bottom[1], m.top[0], m.top[1]} <= chosen]
    if not picked:
        raise InputError(
            f"no III-VI monolayer uses only {', '.join(sorted(chosen))}: give at least one metal and one chalcogen"
        )
    return picked
