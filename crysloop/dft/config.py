"""The DFT stage's settings, the one home of their defaults: ``crysloop dft`` and campaigns build this class.

The VASP command and version are machine settings (``CRYSLOOP_VASP_CMD``, ``CRYSLOOP_VASP_VERSION``).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from crysloop.strict import StrictConfig

PRESETS = ("condition-cdvae-plus", "crysvcd")


class DFTStageConfig(StrictConfig):
    """VASP relaxation of the best screened candidates: preset, how many, and how custodian runs and resumes them."""

    preset: str = Field("crysvcd", description=f"VASP input preset: {', '.join(PRESETS)} (docs/dft.md).")
    top_n: int = Field(5, ge=1, description="How many screened candidates (lowest energy above hull) go to DFT.")
    max_errors: int = Field(5, ge=0, description="Errors custodian may correct within one attempt.")
    poll_seconds: float = Field(10.0, gt=0, description="Seconds between custodian's checks of a running VASP.")
    max_attempts: int = Field(3, ge=1, description="Attempts a job may have in all when failed jobs are resumed.")

    @field_validator("preset")
    @classmethod
    def _preset(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"unknown DFT preset {value!r}; choose one of {', '.join(PRESETS)}")
        return value
