"""DFT-verification metrics as ConditionCDVAE+ reports them: convergence rate, mean ionic steps, mean |dE| per atom."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class DFTMetrics:
    """Figures over finished DFT jobs (completed or failed); pending and running jobs are only counted."""

    n_jobs: int
    n_finished: int
    n_converged: int
    convergence_rate: float | None  # converged / finished
    mean_ionic_steps: float | None  # over converged jobs, steps of the final attempt
    mean_energy_diff_per_atom: float | None  # eV/atom, |E_DFT - E_initial| over jobs with both energies
    states: dict[str, int]

    def as_dict(self) -> dict:
        """Plain dict for JSON output and Prefect artifacts."""
        return asdict(self)


def dft_metrics(jobs: Iterable) -> DFTMetrics:
    """Metrics of ``jobs``: objects with ``state``, ``converged``, ``ionic_steps`` and ``energy_diff_per_atom``."""
    jobs = list(jobs)
    states: dict[str, int] = {}
    for job in jobs:
        states[job.state] = states.get(job.state, 0) + 1
    finished = [job for job in jobs if job.state in ("completed", "failed")]
    converged = [job for job in finished if job.state == "completed" and job.converged]
    steps = [job.ionic_steps for job in converged if job.ionic_steps is not None]
    diffs = [job.energy_diff_per_atom for job in finished if job.energy_diff_per_atom is not None]
    return DFTMetrics(
        n_jobs=len(jobs),
        n_finished=len(finished),
        n_converged=len(converged),
        convergence_rate=len(converged) / len(finished) if finished else None,
        mean_ionic_steps=float(np.mean(steps)) if steps else None,
        mean_energy_diff_per_atom=float(np.mean(diffs)) if diffs else None,
        states=states,
    )


def generator_of(origin: Mapping, source: str) -> str:
    """The generator that made a candidate: ``origin["generator"]`` when a sampler recorded it, ``diffcsp`` for the
    CrysVCD pipeline (it records a structure checkpoint), otherwise the candidate's source (dataset, user)."""
    if origin.get("generator"):
        return str(origin["generator"])
    return "diffcsp" if "structure_checkpoint" in origin else source


def dft_metrics_by_generator(jobs: Iterable, generators: Sequence[str]) -> dict[str, DFTMetrics]:
    """:func:`dft_metrics` per generator (``generators`` parallel to ``jobs``), so generators can be compared."""
    grouped: dict[str, list] = {}
    for job, generator in zip(jobs, generators, strict=True):
        grouped.setdefault(generator, []).append(job)
    return {generator: dft_metrics(group) for generator, group in sorted(grouped.items())}
