"""Dynamical stability from harmonic phonons: phonopy finite displacements with forces from an ML potential.

Supercell: the smallest diagonal multiple of the cell whose three plane spacings (perpendicular heights) are at
least ``min_length`` (a screening compromise; CrysVCD uses 20 A, see docs/defaults.md).

Stability rule: frequencies are evaluated on a Gamma-centred q-mesh and along the seekpath band path, after
subtracting the residual forces of the undisplaced supercell and enforcing translational invariance (acoustic
sum rule) on the force constants. A structure is unstable when any mode is below ``-tolerance_thz``, except the
three acoustic branches at q-points closer than ``gamma_radius`` (1/A, no 2*pi) to Gamma, where small negative
values are numerical noise of the long-wavelength limit. A real elastic instability makes the acoustic branches
imaginary beyond that radius as well, so it is still caught. Supercell length and tolerance default to the
screening stage's (:class:`crysloop.screening.config.ScreeningConfig`; docs/defaults.md says how they were chosen).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from ase.calculators.calculator import Calculator
from phonopy import Phonopy
from phonopy.structure.cells import PrimitiveMatrixAutoDefaultWarning
from pymatgen.core import Lattice, Structure
from pymatgen.io.phonopy import get_phonopy_structure, get_pmg_structure

from crysloop.screening.config import ScreeningConfig
from crysloop.screening.potentials import MAX_BATCH_ATOMS, batch_forces

_SCREENING = ScreeningConfig.model_fields


@dataclass(frozen=True)
class PhononConfig:
    """Finite-displacement and stability-test settings; see the module docstring for the rule."""

    displacement: float = 0.01  # A
    min_length: float = _SCREENING["phonon_min_length"].default  # A, minimum plane spacing of the supercell
    mesh: float | tuple[int, int, int] = 20.0  # phonopy mesh length (A) or explicit mesh numbers
    band_points: int = 31  # per band-path segment
    tolerance_thz: float = _SCREENING["phonon_tolerance_thz"].default
    gamma_radius: float = 0.05  # 1/A (no 2*pi), where acoustic branches are exempt
    symprec: float = 1e-4
    batch_size: int = _SCREENING["batch_size"].default  # displaced supercells per MLIP call, at most ...
    max_batch_atoms: int = MAX_BATCH_ATOMS  # ... and at most this many atoms in all: memory grows with atoms

    @classmethod
    def of(cls, config: ScreeningConfig) -> PhononConfig:
        """The phonon check a screening run asks for."""
        return cls(min_length=config.phonon_min_length, tolerance_thz=config.phonon_tolerance_thz)


@dataclass
class PhononResult:
    """Outcome of the stability test: verdict, lowest counted frequency and where it sits."""

    stable: bool
    min_frequency_thz: float  # lowest frequency that counts under the rule (negative = imaginary)
    min_qpoint: list[float]  # reduced coordinates of the primitive reciprocal lattice
    n_imaginary: int  # counted modes below -tolerance (mesh and path together)
    max_frequency_thz: float
    supercell_matrix: list[list[int]]
    n_displacements: int
    wall_time_s: float
    phonon: Phonopy | None = field(default=None, repr=False)  # for plots and further analysis


def supercell_matrix_for(structure: Structure, min_length: float) -> list[list[int]]:
    """Diagonal supercell whose plane spacings all reach ``min_length``."""
    matrix = structure.lattice.matrix
    volume = abs(np.linalg.det(matrix))
    heights = [volume / np.linalg.norm(np.cross(matrix[(i + 1) % 3], matrix[(i + 2) % 3])) for i in range(3)]
    return np.diag([max(1, math.ceil(min_length / h - 1e-6)) for h in heights]).tolist()


def right_handed(structure: Structure) -> Structure:
    """The same crystal on a right-handed cell (all three lattice vectors negated if needed).

    Generated and relaxed cells can be left-handed; phonopy's automatic primitive matrix then has a negative
    determinant and phonopy refuses it.
    """
    if np.linalg.det(structure.lattice.matrix) > 0:
        return structure
    return Structure(
        Lattice(-structure.lattice.matrix),
        structure.species,
        -structure.frac_coords,
        site_properties=structure.site_properties,
    )


def _counted_frequencies(phonon: Phonopy, qpoints: np.ndarray, frequencies: np.ndarray, config: PhononConfig):
    """Frequencies that count under the rule: all except the three lowest branches near Gamma."""
    reciprocal = np.linalg.inv(phonon.primitive.cell)  # columns are reciprocal vectors, no 2*pi
    q_cart = np.asarray(qpoints) @ reciprocal.T
    near_gamma = np.linalg.norm(q_cart, axis=1) < config.gamma_radius
    counted = np.array(frequencies, dtype=float, copy=True)
    counted[near_gamma, :3] = np.inf
    return counted


def phonon_stability(
    structure: Structure, calculator: Calculator, config: PhononConfig | None = None, **overrides
) -> PhononResult:
    """Harmonic phonons of a relaxed ``structure`` with forces from ``calculator``; unstable on imaginary modes.

    Keyword ``overrides`` replace fields of ``config`` (e.g. ``min_length=20``).
    """
    config = config or PhononConfig()
    if overrides:
        config = PhononConfig(**{**config.__dict__, **overrides})
    started = time.perf_counter()
    structure = right_handed(structure)
    supercell_matrix = supercell_matrix_for(structure, config.min_length)
    with warnings.catch_warnings():  # 'auto' (find the primitive cell) is our choice, not phonopy's old default
        warnings.simplefilter("ignore", PrimitiveMatrixAutoDefaultWarning)
        phonon = Phonopy(
            get_phonopy_structure(structure),
            supercell_matrix=supercell_matrix,
            primitive_matrix="auto",
            symprec=config.symprec,
        )
    phonon.generate_displacements(distance=config.displacement)
    supercells = [get_pmg_structure(phonon.supercell)]
    supercells += [get_pmg_structure(cell) for cell in phonon.supercells_with_displacements]
    forces = batch_forces(supercells, calculator, config.batch_size, config.max_batch_atoms)
    residual = forces[0]
    phonon.forces = np.array([f - residual for f in forces[1:]])
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()

    mesh = config.mesh if isinstance(config.mesh, (int, float)) else list(config.mesh)
    phonon.run_mesh(mesh, is_gamma_center=True)
    qpoints = [np.asarray(phonon.mesh.qpoints)]
    frequencies = [np.asarray(phonon.mesh.frequencies)]
    phonon.auto_band_structure(npoints=config.band_points, write_yaml=False)
    bands = phonon.band_structure
    qpoints += [np.asarray(q) for q in bands.qpoints]
    frequencies += [np.asarray(f) for f in bands.frequencies]
    all_q = np.concatenate(qpoints)
    all_f = np.concatenate(frequencies)

    counted = _counted_frequencies(phonon, all_q, all_f, config)
    index = np.unravel_index(np.argmin(counted), counted.shape)
    min_frequency = float(counted[index])
    n_imaginary = int(np.sum(counted < -config.tolerance_thz))
    return PhononResult(
        stable=n_imaginary == 0,
        min_frequency_thz=min_frequency,
        min_qpoint=[float(x) for x in all_q[index[0]]],
        n_imaginary=n_imaginary,
        max_frequency_thz=float(all_f.max()),
        supercell_matrix=supercell_matrix,
        n_displacements=len(supercells) - 1,
        wall_time_s=time.perf_counter() - started,
        phonon=phonon,
    )
