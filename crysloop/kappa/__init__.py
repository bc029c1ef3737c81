"""Lattice thermal conductivity: phono3py with MLIP (or VASP) forces, cached force sets, cost control, labels."""

from crysloop.kappa.conductivity import KappaConfig, KappaOutcome, build_phono3py, compute_kappa
from crysloop.kappa.cost import looks_metallic, skip_reason
from crysloop.kappa.targets import kappa_at, kappa_labels

__all__ = [
    "KappaConfig",
    "KappaOutcome",
    "build_phono3py",
    "compute_kappa",
    "kappa_at",
    "kappa_labels",
    "looks_metallic",
    "skip_reason",
]
