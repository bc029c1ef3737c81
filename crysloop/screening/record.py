"""One candidate's screening outcome (relaxation, hull, phonons) as the verdict and fields stored for it."""

from __future__ import annotations

from crysloop.screening.hull import HullResult
from crysloop.screening.phonons import PhononResult
from crysloop.screening.relax import RelaxResult


def result_status(relax: RelaxResult, error: str | None) -> str:
    """ok | unconverged (the relaxation hit its step limit) | failed (any ``error``, or a failed relaxation)."""
    return "failed" if error or relax.status == "failed" else relax.status


def stability(status: str, hull: HullResult | None, ehull_stable: float) -> str:
    """stable | unstable | unknown (uncovered system) | unconverged | failed, as the results table shows it."""
    if status != "ok" or hull is None:
        return status if status != "ok" else "failed"
    if not hull.covered:
        return "unknown"
    return "stable" if hull.e_above_hull <= ehull_stable else "unstable"


def result_fields(
    relax: RelaxResult,
    hull: HullResult | None,
    phonon: PhononResult | None,
    ehull_stable: float,
    error: str | None = None,
) -> dict:
    """The stored fields of one screening result; a candidate whose result is not ``ok`` is never ``stable``.

    ``stable`` means within ``ehull_stable`` of the hull (a metastable window, not strictly on it) and is None
    (unknown) for an uncovered system or a result that is not ``ok``.
    """
    status = result_status(relax, error)
    known = hull is not None and hull.covered and status == "ok"
    return {
        "status": status,
        "error": error or (None if relax.ok else f"relaxation: {relax.error}"),
        "converged": relax.converged,
        "steps": relax.steps,
        "energy_per_atom": relax.energy_per_atom,
        "relaxed_structure": relax.structure.as_dict() if relax.ok else {},
        "formation_energy_per_atom": hull.formation_energy_per_atom if hull else None,
        "e_above_hull": hull.e_above_hull if hull else None,
        "hull_source": hull.source if hull else None,
        "hull_compounds": hull.n_compounds if hull else None,
        "hull_covered": hull.covered if hull else None,
        "stable": (hull.e_above_hull <= ehull_stable) if known else None,
        "phonon_stable": phonon.stable if phonon else None,
        "min_frequency_thz": phonon.min_frequency_thz if phonon else None,
        "wall_time_s": relax.wall_time_s + (phonon.wall_time_s if phonon else 0.0),
    }
