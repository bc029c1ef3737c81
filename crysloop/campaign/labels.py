"""Screening results -> the labels the conditional models are fine-tuned on (CrysVCD's concurrent learning)."""

from __future__ import annotations

from crysloop.campaign.config import LabelConfig


def stability_labels(e_above_hull: float | None, phonon_stable: bool | None, config: LabelConfig) -> dict[str, float]:
    """{stable, phonon_stable} as 0/1 from one screening result; empty when nothing was measured.

    ``stable`` means energy above hull within ``ehull_stable`` (and phonon-stable, if the config asks for it);
    ``phonon_stable`` is given only when phonons were computed.
    """
    if e_above_hull is None:
        return {}
    stable = e_above_hull <= config.ehull_stable
    if config.require_phonon_stable and phonon_stable is not True:
        stable = False
    labels = {"stable": float(stable)}
    if phonon_stable is not None:
        labels["phonon_stable"] = float(phonon_stable)
    return labels
