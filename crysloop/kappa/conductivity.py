"""Lattice thermal conductivity with phono3py: displacements, forces from a calculator, force constants, RTA/LBTE."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator
from phono3py import Phono3py
from pymatgen.core import Structure
from pymatgen.io.phonopy import get_pmg_structure

from crysloop.errors import InputError
from crysloop.kappa.cache import ForceFunction, evaluate_force_set, force_set_key
from crysloop.kappa.cells import (
    standard_primitive,
    supercell_diagonal,
    to_ase,
    to_phonopy,
)
from crysloop.kappa.config import KappaStageConfig

_STAGE = KappaStageConfig.model_fields  # the defaults of supercells, mesh, temperatures and method


@dataclass(frozen=True)
class KappaConfig:
    """How to compute kappa: supercell sizes, displacement, force-constant solver, q-mesh, temperatures, method.

    ``mesh`` is three integers or one length (phono3py's automatic mesh from a length in Angstrom).
    ``fc2_min_length`` <= ``fc3_min_length`` means fc2 comes from the fc3 supercell (no separate set).
    Supercells, mesh, temperatures and method default to the kappa stage's (:class:`KappaStageConfig`).
    """

    fc3_min_length: float = _STAGE["fc3_min_length"].default
    fc2_min_length: float = _STAGE["fc2_min_length"].default
    displacement: float = 0.03
    mesh: tuple[int, int, int] | float = _STAGE["mesh"].default
    temperatures: tuple[float, ...] = _STAGE["temperatures"].default
    lbte: bool = _STAGE["lbte"].default
    fc_calculator: str | None = "symfc"
    is_isotope: bool = True  # natural isotope scattering, as Matbench Discovery's kappa protocol
    symprec: float = 1e-5
    batch_size: int = 16
    chunk_size: int = 16

    def __post_init__(self) -> None:
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise InputError(f"temperatures must be a non-empty list of values >= 0 K, got {self.temperatures}")
        if self.displacement <= 0:
            raise InputError(f"displacement must be positive, got {self.displacement}")
        if not isinstance(self.mesh, (int, float)) and (len(self.mesh) != 3 or min(self.mesh) < 1):
            raise InputError(f"mesh must be three positive integers or one length, got {self.mesh}")

    @property
    def method(self) -> str:
        return "LBTE" if self.lbte else "RTA"

    @classmethod
    def of(cls, stage: KappaStageConfig) -> KappaConfig:
        """The calculation a kappa stage asks for."""
        return cls(
            fc3_min_length=stage.fc3_min_length,
            fc2_min_length=stage.fc2_min_length,
            mesh=stage.mesh,
            temperatures=tuple(stage.temperatures),
            lbte=stage.lbte,
        )


@dataclass
class KappaOutcome:
    """Kappa tensors (Voigt xx yy zz yz xz xy, W/m/K) per temperature and how they were obtained."""

    formula: str
    temperatures: list[float]
    kappa: list[list[float]]
    kappa_average: list[float]
    mesh: list[int]
    fc3_supercell: list[list[int]]
    fc2_supercell: list[list[int]]
    method: str
    n_displacements: int
    n_evaluated: int
    min_frequency_thz: float
    wall_time_s: float
    primitive: Structure = field(repr=False)

    def as_dict(self) -> dict:
        """Plain-JSON fields (the primitive cell as a pymatgen dict)."""
        data = asdict(self)
        data["primitive"] = self.primitive.as_dict()
        return data


def kappa_fields(config: KappaConfig, outcome: KappaOutcome | None = None) -> dict:
    """The stored fields of one kappa result: the outcome's, or empty values at the asked temperatures (a candidate
    skipped or failed)."""
    if outcome is None:
        return {
            "temperatures": [float(t) for t in config.temperatures],
            "kappa": [],
            "kappa_average": [],
            "mesh": [],
            "fc3_supercell": [],
            "fc2_supercell": [],
            "min_frequency_thz": None,
            "wall_time_s": None,
        }
    return {
        "temperatures": outcome.temperatures,
        "kappa": outcome.kappa,
        "kappa_average": outcome.kappa_average,
        "mesh": outcome.mesh,
        "fc3_supercell": outcome.fc3_supercell,
        "fc2_supercell": outcome.fc2_supercell,
        "min_frequency_thz": outcome.min_frequency_thz,
        "wall_time_s": outcome.wall_time_s,
    }


def build_phono3py(structure: Structure, config: KappaConfig) -> Phono3py:
    """Phono3py on the standardised primitive cell with fc3/fc2 supercells of the configured widths, displaced."""
    primitive = standard_primitive(structure)
    fc3_dim = supercell_diagonal(primitive, config.fc3_min_length)
    fc2_dim = supercell_diagonal(primitive, max(config.fc2_min_length, config.fc3_min_length))
    ph3 = Phono3py(
        to_phonopy(primitive),
        supercell_matrix=np.diag(fc3_dim),
        phonon_supercell_matrix=np.diag(fc2_dim) if fc2_dim != fc3_dim else None,
        primitive_matrix="P",  # the standardised primitive cell as given, not re-derived by phono3py
        symprec=config.symprec,
        log_level=0,
    )
    ph3.generate_displacements(distance=config.displacement)
    return ph3


def _has_phonon_set(ph3: Phono3py) -> bool:
    return ph3.phonon_supercell_matrix is not None and ph3.phonon_dataset is not None


def displacement_count(structure: Structure, config: KappaConfig) -> int:
    """How many displaced supercells kappa of ``structure`` needs under ``config`` (fc3 plus any separate fc2 set):
    its cost, known before any force is evaluated."""
    ph3 = build_phono3py(structure, config)
    fc2 = len(ph3.phonon_supercells_with_displacements) if _has_phonon_set(ph3) else 0
    return len(ph3.supercells_with_displacements) + fc2


def displaced_supercells(ph3: Phono3py) -> tuple[list, list]:
    """The displaced fc3 supercells and (when a separate fc2 supercell is used) the fc2 ones, as ASE Atoms."""
    fc3 = [to_ase(cell) for cell in ph3.supercells_with_displacements]
    fc2 = [to_ase(cell) for cell in ph3.phonon_supercells_with_displacements] if _has_phonon_set(ph3) else []
    return fc3, fc2


def conductivity_from_forces(
    ph3: Phono3py, fc3_forces: np.ndarray, fc2_forces: np.ndarray | None, config: KappaConfig
) -> dict:
    """Force constants from the force sets, then kappa on the mesh: the phono3py part shared by the MLIP and DFT
    paths."""
    ph3.forces = np.asarray(fc3_forces, dtype=float)
    if _has_phonon_set(ph3):
        if fc2_forces is None or len(fc2_forces) == 0:
            raise InputError("this setup has a separate fc2 supercell but no fc2 forces were given")
        ph3.phonon_forces = np.asarray(fc2_forces, dtype=float)
    ph3.produce_fc3(fc_calculator=config.fc_calculator)
    ph3.produce_fc2(fc_calculator=config.fc_calculator)
    ph3.mesh_numbers = config.mesh if isinstance(config.mesh, (int, float)) else list(config.mesh)
    ph3.init_phph_interaction()
    ph3.run_thermal_conductivity(
        is_LBTE=config.lbte, temperatures=list(config.temperatures), is_isotope=config.is_isotope, log_level=0
    )
    conductivity = ph3.thermal_conductivity
    kappa = np.asarray(conductivity.kappa)[0]  # first (only) smearing width: (temperatures, 6)
    return {
        "temperatures": [float(t) for t in conductivity.temperatures],
        "kappa": kappa.tolist(),
        "kappa_average": kappa[:, :3].mean(axis=1).tolist(),
        "mesh": [int(n) for n in ph3.mesh_numbers],
        "min_frequency_thz": float(np.min(conductivity.frequencies)),
    }


def mlip_force_function(calculator: Calculator, batch_size: int = 16) -> ForceFunction:
    """Forces on a list of supercells from an ASE calculator, batched through CHGNet/MatterSim when possible."""
    from crysloop.screening.potentials import batch_forces

    def forces_of(supercells):
        return batch_forces(list(supercells), calculator, batch_size=batch_size)

    return forces_of


def relax_for_kappa(
    structure: Structure, calculator: Calculator | str, fmax: float = 0.005, steps: int = 300
) -> Structure:
    """Cell and positions relaxed tightly by the kappa potential itself, space group kept (ASE FixSymmetry).

    Finite-difference force constants are taken about the potential's own equilibrium: a cell relaxed by another
    potential, or only to a screening threshold, leaves residual forces and strain that distort fc2 and fc3.
    """
    from crysloop.screening.relax import RelaxConfig, relax_structure

    result = relax_structure(structure, calculator, config=RelaxConfig(fmax=fmax, steps=steps, fix_symmetry=True))
    if not result.ok:
        reason = result.error or f"not converged to fmax {fmax} eV/A in {steps} steps"
        raise RuntimeError(f"relaxation before kappa failed ({result.status}): {reason}")
    return result.structure


def compute_kappa(
    structure: Structure,
    calculator: Calculator | str | None = None,
    config: KappaConfig | None = None,
    calculator_name: str | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> KappaOutcome:
    """Kappa of a relaxed ``structure`` with forces from ``calculator`` (an ASE calculator or an MLIP name).

    Force sets are cached per chunk in ``cache_dir`` (None: no cache) under a key made of ``calculator_name``
    and the displaced cells, so a rerun after an interruption evaluates only the missing supercells.
    """
    from crysloop.screening.potentials import check_mlip_name, get_calculator

    config = config or KappaConfig()
    start = time.perf_counter()
    if calculator is None or isinstance(calculator, str):
        name = check_mlip_name(calculator)
        calculator_name = calculator_name or name
        calculator = get_calculator(name)
    calculator_name = calculator_name or type(calculator).__name__
    forces_of = mlip_force_function(calculator, config.batch_size)
    ph3 = build_phono3py(structure, config)
    fc3_cells, fc2_cells = displaced_supercells(ph3)
    evaluated = 0
    force_sets = []
    for kind, cells in (("fc3", fc3_cells), ("fc2", fc2_cells)):
        if not cells:
            force_sets.append(None)
            continue
        path = cache_dir / f"{force_set_key(calculator_name, cells, kind)}.npz" if cache_dir else None
        forces, n_new = evaluate_force_set(
            cells, forces_of, path, chunk_size=config.chunk_size, description=f"{kind} forces", progress=progress
        )
        force_sets.append(forces)
        evaluated += n_new
    result = conductivity_from_forces(ph3, force_sets[0], force_sets[1], config)
    return KappaOutcome(
        formula=structure.composition.reduced_formula,
        fc3_supercell=np.asarray(ph3.supercell_matrix).astype(int).tolist(),
        fc2_supercell=np.asarray(
            ph3.supercell_matrix if ph3.phonon_supercell_matrix is None else ph3.phonon_supercell_matrix
        )
        .astype(int)
        .tolist(),
        method=config.method,
        n_displacements=len(fc3_cells) + len(fc2_cells),
        n_evaluated=evaluated,
        wall_time_s=time.perf_counter() - start,
        primitive=get_pmg_structure(ph3.unitcell),
        **result,
    )
