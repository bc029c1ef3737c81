"""Cost control before a kappa calculation: skip metals (band gap or a composition proxy), cells that are too big and
low-symmetry cells that need too many displaced supercells."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pymatgen.core import Composition, Structure

from crysloop.kappa.conductivity import KappaConfig, displacement_count
from crysloop.kappa.config import KappaStageConfig


def looks_metallic(composition: Composition) -> bool:
    """Composition proxy for a metal when no band gap is known.

    Metallic when every element is a metal, or when metals are present and no charge-balanced oxidation-state
    assignment exists (intermetallics, suboxides). Elemental metalloids and non-metals (Si, Ge, C) count as
    non-metals. A proxy, not a band structure: a band gap or a user label overrides it.
    """
    elements = composition.elements
    metals = [el for el in elements if el.is_metal and not el.is_metalloid]
    if not metals:
        return False
    if len(metals) == len(elements):
        return True
    return not composition.oxi_state_guesses(max_sites=-50)


def skip_reason(
    structure: Structure,
    max_atoms: int,
    band_gap: float | None = None,
    is_metal: bool | None = None,
    min_band_gap: float = 0.0,
) -> str | None:
    """Why a kappa calculation on ``structure`` should be skipped, or None to go ahead.

    The primitive cell must hold at most ``max_atoms`` sites (the displacement count grows steeply with it).
    A metal is skipped (phonon-only kappa misses the electronic part): a user label ``is_metal`` wins, then a
    known ``band_gap`` (metal when <= ``min_band_gap`` eV), then :func:`looks_metallic`.
    """
    nsites = len(structure.get_primitive_structure())
    if nsites > max_atoms:
        return f"primitive cell has {nsites} atoms > max_atoms={max_atoms}"
    if is_metal is None:
        is_metal = band_gap <= min_band_gap if band_gap is not None else looks_metallic(structure.composition)
        source = "band gap" if band_gap is not None else "composition proxy"
    else:
        source = "user label"
    return f"metal ({source})" if is_metal else None


def displacement_skip_reason(structure: Structure, config: KappaConfig, max_displacements: int | None) -> str | None:
    """Why kappa of ``structure`` is too costly (more displaced supercells than ``max_displacements``), or None."""
    if max_displacements is None:
        return None
    count = displacement_count(structure, config)
    if count > max_displacements:
        return f"needs {count} displaced supercells > max_displacements={max_displacements} (low symmetry)"
    return None


def metal_label(keys: Iterable[str], labels: Mapping[str, bool] | None) -> bool | None:
    """The user's metal label under the first of ``keys`` it has (candidate id, structure hash, reduced formula)."""
    for key in keys:
        if key in (labels or {}):
            return bool(labels[key])
    return None


def stage_skip_reason(
    structure: Structure, stage: KappaStageConfig, band_gap: float | None = None, is_metal: bool | None = None
) -> str | None:
    """Cost control of the kappa stage for one candidate: cell size, metal (label, band gap or composition), then the
    displaced-supercell count of the stage's calculation."""
    reason = skip_reason(structure, max_atoms=stage.max_atoms, band_gap=band_gap, is_metal=is_metal)
    return reason or displacement_skip_reason(structure, KappaConfig.of(stage), stage.max_displacements)
