"""Relaxation of cell and positions with an ML potential, one structure at a time or many per forward pass.

A relaxation that produces non-finite energies or forces, lets the cell explode or collapse, puts atoms on
top of each other or runs past its time limit is recorded as failed with the reason; the batch goes on. One that
reaches its step limit before the force threshold is ``unconverged``: its energy is kept for inspection, but it is
not ``ok`` (never stable, never a hull reference).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixSymmetry
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS, FIRE
from ase.optimize.optimize import Optimizer
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from crysloop.errors import InputError
from crysloop.screening.config import ScreeningConfig
from crysloop.screening.potentials import Prediction, get_calculator, predict_batch

OPTIMIZERS: dict[str, type[Optimizer]] = {"FIRE": FIRE, "BFGS": BFGS}
_SCREENING = ScreeningConfig.model_fields  # the defaults of force threshold, step limit and batch size


@dataclass(frozen=True)
class RelaxConfig:
    """How to relax: force threshold (eV/A, stress scaled alike by the cell filter), step limit and sanity limits.

    Force threshold and step limit default to the screening stage's (:class:`ScreeningConfig`).
    """

    fmax: float = _SCREENING["fmax"].default
    steps: int = _SCREENING["steps"].default
    optimizer: str = "FIRE"
    relax_cell: bool = True
    cell_mask: tuple[int, ...] | None = None  # Voigt strain components the cell filter may change; None = all
    timeout_s: float = 600.0  # per structure: its own steps plus its share of each batched evaluation
    max_volume_ratio: float = 4.0  # final / initial volume beyond this (or below its inverse) is an explosion
    min_distance: float = 0.5  # A; closer atoms mean a collapsed structure
    min_volume_per_atom: float = (
        4.0  # A^3; below diamond's 5.7, so a denser cell has collapsed (and its graph explodes)
    )
    fix_symmetry: bool = False  # keep the starting space group (ASE FixSymmetry), as phonon/kappa protocols do

    def __post_init__(self) -> None:
        if self.optimizer.upper() not in OPTIMIZERS:
            raise InputError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.fmax <= 0 or self.steps < 0:
            raise InputError("fmax must be positive and steps non-negative")

    @classmethod
    def of(cls, config: ScreeningConfig) -> RelaxConfig:
        """The relaxation a screening run asks for."""
        return cls(fmax=config.fmax, steps=config.steps)


@dataclass
class RelaxResult:
    """Outcome of one relaxation: final structure and energy, convergence, steps, or the reason it failed."""

    structure: Structure
    energy: float | None = None  # eV, whole cell
    converged: bool = False
    steps: int = 0
    status: str = "ok"  # ok | unconverged (step limit reached) | failed
    error: str | None = None
    wall_time_s: float = 0.0
    stress: list[float] = field(default_factory=list)  # eV/A^3, Voigt, final

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def energy_per_atom(self) -> float | None:
        return None if self.energy is None else self.energy / len(self.structure)


class RelaxationFailed(RuntimeError):
    """A relaxation went unphysical or ran out of time; the message is the recorded reason."""


def _sanity_check(atoms: Atoms, prediction: Prediction, initial_volume: float, config: RelaxConfig) -> None:
    if not (
        np.isfinite(prediction.energy)
        and np.all(np.isfinite(prediction.forces))
        and np.all(np.isfinite(prediction.stress))
    ):
        raise RelaxationFailed("non-finite energy, forces or stress")
    ratio = atoms.get_volume() / initial_volume
    if not (1 / config.max_volume_ratio < ratio < config.max_volume_ratio):
        raise RelaxationFailed(f"cell {'exploded' if ratio > 1 else 'collapsed'} (volume ratio {ratio:.2f})")
    if atoms.get_volume() / len(atoms) < config.min_volume_per_atom:
        raise RelaxationFailed(f"cell collapsed ({atoms.get_volume() / len(atoms):.1f} A^3 per atom)")
    if len(atoms) > 1:
        distances = atoms.get_all_distances(mic=True)
        np.fill_diagonal(distances, np.inf)
        if distances.min() < config.min_distance:
            raise RelaxationFailed(f"atoms closer than {config.min_distance} A ({distances.min():.2f} A)")


class _Relaxation:
    """One structure's optimizer state, advanced one step per new energy/forces/stress evaluation."""

    def __init__(self, structure: Structure, config: RelaxConfig) -> None:
        self.config = config
        self.atoms = AseAtomsAdaptor.get_atoms(structure)
        self.atoms.calc = None
        if config.fix_symmetry:
            self.atoms.set_constraint(FixSymmetry(self.atoms, symprec=1e-4))
        self.initial_volume = self.atoms.get_volume()
        target = FrechetCellFilter(self.atoms, mask=config.cell_mask) if config.relax_cell else self.atoms
        self.optimizer = OPTIMIZERS[config.optimizer.upper()](target, logfile=None)
        self.optimizer.fmax = config.fmax
        self.elapsed = 0.0  # own share of wall time: batch evaluations split among their members, plus own steps
        self.result: RelaxResult | None = None
        self.last: Prediction | None = None

    def structure(self) -> Structure:
        atoms = self.atoms.copy()
        atoms.set_constraint()
        return AseAtomsAdaptor.get_structure(atoms)

    def fail(self, reason: str) -> None:
        self.result = RelaxResult(
            self.structure(), status="failed", error=reason, steps=self.optimizer.nsteps, wall_time_s=self.elapsed
        )

    def advance(self, prediction: Prediction) -> None:
        """Take the evaluation at the current geometry; finish if converged or out of steps, else step."""
        try:
            _sanity_check(self.atoms, prediction, self.initial_volume, self.config)
            self.atoms.calc = SinglePointCalculator(
                self.atoms,
                energy=prediction.energy,
                free_energy=prediction.energy,
                forces=prediction.forces,
                stress=prediction.stress,
            )
            gradient = self.optimizer.optimizable.get_gradient()
            converged = bool(self.optimizer.gradient_converged(gradient))
            if converged or self.optimizer.nsteps >= self.config.steps:
                self.result = RelaxResult(
                    self.structure(),
                    energy=float(prediction.energy),
                    converged=converged,
                    steps=self.optimizer.nsteps,
                    wall_time_s=self.elapsed,
                    stress=[float(s) for s in prediction.stress],
                    status="ok" if converged else "unconverged",
                    error=None
                    if converged
                    else f"step limit {self.config.steps} reached before fmax {self.config.fmax}",
                )
                return
            if self.elapsed > self.config.timeout_s:
                raise RelaxationFailed(f"timed out after {self.config.timeout_s:.0f} s ({self.optimizer.nsteps} steps)")
            started = time.perf_counter()
            self.optimizer.step()
            self.optimizer.nsteps += 1
            self.elapsed += time.perf_counter() - started
        except RelaxationFailed as exc:
            self.fail(str(exc))


def _evaluate(relaxations: list[_Relaxation], calculator: Calculator, batch_size: int) -> None:
    """Evaluate all geometries in one batched call; on an error, fall back one by one to isolate the culprit."""
    started = time.perf_counter()
    try:
        predictions = predict_batch([r.atoms for r in relaxations], calculator, batch_size)
    except Exception:
        for relaxation in relaxations:
            try:
                prediction = predict_batch([relaxation.atoms], calculator, 1)[0]
            except Exception as exc:
                relaxation.fail(f"potential failed: {type(exc).__name__}: {exc}")
                continue
            relaxation.advance(prediction)
        return
    share = (time.perf_counter() - started) / len(relaxations)
    for relaxation, prediction in zip(relaxations, predictions, strict=True):
        relaxation.elapsed += share
        relaxation.advance(prediction)


def relax_structures(
    structures: Sequence[Structure],
    calculator: Calculator | str | None = None,
    fmax: float | None = None,
    steps: int | None = None,
    batch_size: int = _SCREENING["batch_size"].default,
    config: RelaxConfig | None = None,
) -> list[RelaxResult]:
    """Relax cells and positions of ``structures`` with one potential (a calculator or an MLIP name).

    ``batch_size`` structures share each forward pass (1 = one at a time); results keep the input order.
    ``config`` overrides ``fmax`` and ``steps`` when given; unset, they are :class:`RelaxConfig`'s.
    """
    config = config or RelaxConfig(**{k: v for k, v in (("fmax", fmax), ("steps", steps)) if v is not None})
    if calculator is None or isinstance(calculator, str):
        calculator = get_calculator(calculator)
    batch_size = max(1, batch_size)
    results: list[RelaxResult | None] = [None] * len(structures)
    pending = list(enumerate(structures))
    active: list[tuple[int, _Relaxation]] = []
    while pending or active:
        while pending and len(active) < batch_size:
            index, structure = pending.pop(0)
            active.append((index, _Relaxation(structure, config)))
        _evaluate([r for _, r in active], calculator, batch_size)
        for index, relaxation in active:
            if relaxation.result is not None:
                results[index] = relaxation.result
        active = [(i, r) for i, r in active if r.result is None]
    return [r for r in results if r is not None]


def relax_structure(
    structure: Structure,
    calculator: Calculator | str | None = None,
    fmax: float | None = None,
    steps: int | None = None,
    config: RelaxConfig | None = None,
) -> RelaxResult:
    """Relax one structure; see :func:`relax_structures`."""
    return relax_structures([structure], calculator, fmax=fmax, steps=steps, batch_size=1, config=config)[0]
