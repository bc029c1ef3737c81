"""Screening results -> the labels the conditional models are fine-tuned on (CrysVCD's concurrent learning).

A stability verdict needs a converged relaxation and a hull that knows the chemistry: a candidate whose chemical
system has no known compound in any binary or higher sub-system is ``unknown`` (its hull holds only the elements,
so any compound looks stable), and an unconverged relaxation is ``unconverged``; neither gets a ``stable`` label.
"""

from __future__ import annotations

from crysloop.campaign.config import LabelConfig

STABILITY_CLASSES = ("stable", "unstable", "unknown", "unconverged", "failed", "unscreened")


def stability_class(
    status: str | None,
    e_above_hull: float | None,
    covered: bool | None,
    phonon_stable: bool | None,
    config: LabelConfig,
) -> str:
    """One of ``STABILITY_CLASSES`` for one screening result (``status`` None: not screened)."""
    if status is None:
        return "unscreened"
    if status != "ok":
        return status if status in STABILITY_CLASSES else "failed"
    if e_above_hull is None:
        return "failed"
    if covered is False:
        return "unknown"
    stable = e_above_hull <= config.ehull_stable
    if config.require_phonon_stable and phonon_stable is not True:
        stable = False
    return "stable" if stable else "unstable"


def stability_labels(
    e_above_hull: float | None, phonon_stable: bool | None, config: LabelConfig, covered: bool | None = True
) -> dict[str, float]:
    """{stable, phonon_stable} as 0/1 from one converged screening result; empty when nothing was measured.

    ``stable`` means energy above hull within ``ehull_stable`` (and phonon-stable, if the config asks for it),
    and is left out for an uncovered system (``covered`` False); ``phonon_stable`` is given only when phonons
    were computed.
    """
    if e_above_hull is None:
        return {}
    labels = {}
    verdict = stability_class("ok", e_above_hull, covered, phonon_stable, config)
    if verdict != "unknown":
        labels["stable"] = float(verdict == "stable")
    if phonon_stable is not None:
        labels["phonon_stable"] = float(phonon_stable)
    return labels
