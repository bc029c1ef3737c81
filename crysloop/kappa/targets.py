"""Turn stored kappa results into continuous labels for conditioning a generator on high thermal conductivity."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def kappa_at(result: Any, temperature: float = 300.0, tolerance: float = 1e-6) -> float | None:
    """Average kappa (W/m/K) of one ``KappaResult``-like object at ``temperature``; None when not computed there."""
    if getattr(result, "status", "ok") != "ok":
        return None
    for t, value in zip(result.temperatures, result.kappa_average, strict=True):
        if abs(t - temperature) <= tolerance:
            return float(value) if math.isfinite(value) else None
    return None


def kappa_labels(
    results: Iterable[Any], temperature: float = 300.0, log10: bool = True, floor: float = 1e-3
) -> dict[str, float]:
    """Candidate id -> kappa label at ``temperature`` from ``KappaResult`` documents (or objects with their fields).

    Kappa spans orders of magnitude, so the default label is log10(kappa / W/m/K), with kappa clipped at ``floor``.
    Results that failed, were skipped or lack the temperature are left out. Candidate ids are read from the
    stored reference (``result.to_mongo()``) so no candidate is loaded from the database.
    """
    labels: dict[str, float] = {}
    for result in results:
        value = kappa_at(result, temperature)
        if value is None:
            continue
        candidate = result.to_mongo()["candidate"] if hasattr(result, "to_mongo") else result.candidate
        labels[str(getattr(candidate, "id", candidate))] = math.log10(max(value, floor)) if log10 else value
    return labels
