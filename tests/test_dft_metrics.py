"""ConditionCDVAE+ DFT metrics over a mix of job states."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from crysloop.dft.metrics import dft_metrics


def _job(state, converged=None, steps=None, diff=None):
    return SimpleNamespace(state=state, converged=converged, ionic_steps=steps, energy_diff_per_atom=diff)


def test_metrics_over_finished_jobs():
    jobs = [
        _job("completed", True, 4, 0.02),
        _job("completed", True, 10, 0.06),
        _job("completed", False, 99, 0.30),  # NSW exhausted: finished, not converged
        _job("failed", False, 12),
        _job("pending"),
        _job("running"),
    ]
    metrics = dft_metrics(jobs)
    assert metrics.n_jobs == 6 and metrics.n_finished == 4 and metrics.n_converged == 2
    assert metrics.convergence_rate == pytest.approx(0.5)
    assert metrics.mean_ionic_steps == pytest.approx(7.0)
    assert metrics.mean_energy_diff_per_atom == pytest.approx((0.02 + 0.06 + 0.30) / 3)
    assert metrics.states == {"completed": 3, "failed": 1, "pending": 1, "running": 1}


def test_metrics_without_finished_jobs():
    metrics = dft_metrics([_job("pending")])
    assert metrics.convergence_rate is None and metrics.mean_ionic_steps is None
    assert metrics.mean_energy_diff_per_atom is None
