"""The vdW dataset build's settings, the one home of their defaults: ``crysloop data build-vdw`` builds this class."""

from __future__ import annotations

from pydantic import ConfigDict, Field, field_validator

from crysloop.infra.executors import ExecutorConfig
from crysloop.screening.config import checked_mlip, settings_mlip
from crysloop.screening.dispersion import D3_DAMPINGS
from crysloop.screening.relax import RelaxConfig
from crysloop.strict import StrictConfig
from crysloop.vdw.bilayers import DEFAULT_GAP, DEFAULT_VACUUM

IN_PLANE_MASK = (1, 1, 0, 0, 0, 1)  # Voigt xx, yy, xy: the in-plane cell relaxes, c stays fixed


class BuildConfig(StrictConfig):
    """What to build and how: potential + D3 damping, relaxation thresholds, geometry, subset size and executor."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    mlip: str = Field(
        default_factory=settings_mlip,
        validate_default=True,
        description="Potential the build adds D3 to: chgnet, mattersim-1m, ... Unset: CRYSLOOP_MLIP.",
    )
    damping: str = Field("zero", description=f"D3 damping: {', '.join(D3_DAMPINGS)} (zero as the paper's DFT-D3).")
    fmax: float = Field(0.05, gt=0, description="Force threshold of every relaxation (eV/A).")
    steps: int = Field(300, ge=1, description="Step limit of every relaxation.")
    gap: float = Field(DEFAULT_GAP, gt=0, description="Starting interlayer gap (A).")
    vacuum: float = Field(DEFAULT_VACUUM, ge=DEFAULT_VACUUM, description="Vacuum along c (A).")
    twists: tuple[str, ...] = Field((), description="Commensurate twisted cells to add, e.g. sqrt7,sqrt13.")
    elements: tuple[str, ...] = Field((), description="Only monolayers of these elements, e.g. Ga,In,Se (none: all).")
    max_bilayers: int | None = Field(None, ge=1, description="Stop after this many distinct bilayers.")
    per_pair: int | None = Field(
        None,
        ge=1,
        description="Random distinct stackings kept per monolayer pair (spreads a small subset over the pairs).",
    )
    seed: int = Field(0, description="Seed of the pair order, the per-pair choice and the 6:2:2 split.")
    device: str | None = Field(None, description="torch device (unset: settings).")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @field_validator("mlip")
    @classmethod
    def _mlip(cls, value: str) -> str:
        return checked_mlip(value).removesuffix("+d3")  # the build adds D3 itself, with its own damping

    @field_validator("damping")
    @classmethod
    def _damping(cls, value: str) -> str:
        if value not in D3_DAMPINGS:
            raise ValueError(f"unknown D3 damping {value!r}; choose one of {', '.join(D3_DAMPINGS)}")
        return value

    @field_validator("twists")
    @classmethod
    def _twists(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from crysloop.vdw.bilayers import check_twists

        check_twists(value)
        return value

    @field_validator("elements")
    @classmethod
    def _elements(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from crysloop.vdw.monolayers import select_monolayers

        select_monolayers(list(value))  # an element outside III-VI fails here, before any work
        return value

    @property
    def key(self) -> str:
        """Identifies the relaxations this build shares with another build (subset size and executor excluded)."""
        return (
            f"{self.mlip}+d3-{self.damping}|fmax={self.fmax:g}|steps={self.steps}|gap={self.gap:g}"
            f"|vacuum={self.vacuum:g}"
        )

    def relax_config(self, in_plane: bool) -> RelaxConfig:
        """Relaxation of a bulk reference (cell and positions) or of a layer (``in_plane``: c fixed)."""
        return RelaxConfig(fmax=self.fmax, steps=self.steps, cell_mask=IN_PLANE_MASK if in_plane else None)
