"""The kappa stage's settings, the one home of their defaults: ``crysloop kappa`` and campaigns build this class.

How the defaults were chosen, with the measurements behind them: docs/defaults.md.
"""

from __future__ import annotations

import math

from pydantic import Field, field_validator

from crysloop.strict import StrictConfig


class KappaStageConfig(StrictConfig):
    """Lattice thermal conductivity (phono3py) of the best screened candidates: potential, how many, cost limits and
    the calculation's supercells, mesh, temperatures and method."""

    mlip: str = Field(
        "sevenn-0",
        description="Potential that relaxes each candidate again (space group kept) and "
        "gives the phono3py forces, whatever potential screened it.",
    )
    top_n: int = Field(3, ge=1, description="Compute kappa for at most this many candidates (lowest E_hull first).")
    max_atoms: int = Field(20, ge=1, description="Skip candidates whose primitive cell has more atoms.")
    max_displacements: int = Field(
        1500,
        ge=1,
        description="Skip candidates whose phono3py setup needs more displaced supercells (fc3 and fc2; low symmetry).",
    )
    temperatures: tuple[float, ...] = Field(
        (300.0,), min_length=1, description="Temperatures (K), comma-separated on the command line."
    )
    mesh: tuple[int, int, int] | float = Field(
        40.0, description="q-mesh: three integers, or one length (A) for phono3py's automatic mesh."
    )
    fc3_min_length: float = Field(6.0, gt=0, description="Minimum perpendicular width (A) of the fc3 supercell.")
    fc2_min_length: float = Field(12.0, gt=0, description="Minimum perpendicular width (A) of the fc2 supercell.")
    lbte: bool = Field(False, description="Solve the linearised BTE exactly instead of the RTA.")

    @field_validator("mlip")
    @classmethod
    def _mlip(cls, value: str) -> str:
        from crysloop.screening.config import checked_mlip

        return checked_mlip(value)

    @field_validator("temperatures")
    @classmethod
    def _temperatures(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(t < 0 for t in value):
            raise ValueError(f"temperatures must be >= 0 K, got {list(value)}")
        return value

    @field_validator("mesh")
    @classmethod
    def _mesh(cls, value: tuple[int, int, int] | float) -> tuple[int, int, int] | float:
        if isinstance(value, tuple) and min(value) < 1:
            raise ValueError(f"mesh must be three positive integers or one positive length, got {list(value)}")
        if not isinstance(value, tuple) and not (math.isfinite(value) and value > 0):
            raise ValueError(f"a mesh length must be positive, got {value}")
        return value

    @property
    def method(self) -> str:
        """RTA or LBTE, as results are stored."""
        return "LBTE" if self.lbte else "RTA"
