"""The screening stage's settings, the one home of their defaults: ``crysloop screen`` and campaigns build this class.

How the defaults were chosen, with the measurements behind them: docs/defaults.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from crysloop.errors import InputError
from crysloop.strict import StrictConfig


def checked_mlip(value: str) -> str:
    """A potential name in canonical form, or the ValueError pydantic reports (with the field) for an unknown one."""
    from crysloop.screening.potentials import check_mlip_name

    try:
        return check_mlip_name(value)
    except InputError as exc:
        raise ValueError(str(exc)) from None


def settings_mlip() -> str:
    """The potential ``CRYSLOOP_MLIP`` names (MatterSim falls back to the offline default without its weights); an
    unknown name is the ``InputError`` every command reports alike."""
    from crysloop.screening.potentials import default_mlip_name

    return default_mlip_name()


class ScreeningConfig(StrictConfig):
    """MLIP screening: relax each candidate, place it on a hull, check the phonons of those near it."""

    mlip: str = Field(
        default_factory=settings_mlip,
        description="Potential: sevenn-l3i5, sevenn-0, chgnet, mattersim-1m or mattersim-5m, '+d3' adds D3 "
        "dispersion. Unset: CRYSLOOP_MLIP (mattersim-1m; sevenn-l3i5 when the MatterSim weights are absent).",
    )
    fmax: float = Field(0.05, gt=0, description="Force threshold of the relaxation (eV/A; stress scaled alike).")
    steps: int = Field(500, ge=1, description="Step limit of the relaxation; a relaxation reaching it is unconverged.")
    batch_size: int = Field(16, ge=1, description="Structures per forward pass of the potential.")
    hull: Literal["mp", "mlip"] = Field(
        "mp",
        description="Hull references: mp (Materials Project phases, MP2020-corrected energies: the shipped "
        "table, or mp-api with MP_API_KEY) or mlip (references relaxed with the same potential).",
    )
    phonons: bool = Field(True, description="Check the phonon stability of converged candidates near the hull.")
    phonon_min_length: float = Field(10.0, gt=0, description="Minimum plane spacing of the phonon supercell (A).")
    phonon_tolerance_thz: float = Field(
        0.5, gt=0, description="A mode below minus this (THz) makes a candidate phonon-unstable."
    )

    @field_validator("mlip")
    @classmethod
    def _mlip(cls, value: str) -> str:
        return checked_mlip(value)
