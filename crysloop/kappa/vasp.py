"""DFT verification of kappa: the same phono3py displacement set evaluated by VASP statics through atomate2.

The flow has one ``StaticMaker`` job per displaced supercell and a final job that assembles their forces and runs
the same force-constant and conductivity code as the MLIP path, so MLIP and DFT kappa differ only in the forces.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
from atomate2.vasp.jobs.core import StaticMaker
from atomate2.vasp.sets.core import StaticSetGenerator
from jobflow import Flow, Response, job
from pymatgen.core import Structure
from pymatgen.io.phonopy import get_pmg_structure

from crysloop.kappa.conductivity import KappaConfig, build_phono3py, conductivity_from_forces, displaced_supercells

# Accurate forces on displaced cells: tight electronic convergence, no ionic steps, no symmetrisation of the
# displaced cell (ISYM = 0), real-space projection off and a finer augmentation grid for smooth forces.
FORCE_INCAR: dict = {
    "PREC": "Accurate",
    "EDIFF": 1e-8,
    "ISYM": 0,
    "IBRION": -1,
    "NSW": 0,
    "LREAL": False,
    "ADDGRID": True,
    "ALGO": "Normal",
    "ISMEAR": 0,
    "SIGMA": 0.01,
    "LCHARG": False,
    "LWAVE": False,
    "LAECHG": False,
    "LVTOT": False,
}


def force_static_maker(user_incar_settings: dict | None = None, name: str = "kappa static") -> StaticMaker:
    """An atomate2 ``StaticMaker`` for forces on displaced supercells (site order kept so forces map back)."""
    incar = {**FORCE_INCAR, **(user_incar_settings or {})}
    generator = StaticSetGenerator(user_incar_settings=incar, sort_structure=False)
    return StaticMaker(name=name, input_set_generator=generator)


def _config_dict(config: KappaConfig) -> dict:
    data = asdict(config)
    data["temperatures"] = list(config.temperatures)
    data["mesh"] = config.mesh if isinstance(config.mesh, (int, float)) else list(config.mesh)
    return data


@job
def kappa_from_dft_forces(
    structure: Structure, config: dict, fc3_forces: list, fc2_forces: list | None = None
) -> Response:
    """Kappa from the VASP forces of every displaced supercell, in the order the displacements were generated."""
    kappa_config = KappaConfig(**{**config, "temperatures": tuple(config["temperatures"])})
    ph3 = build_phono3py(structure, kappa_config)
    fc2 = np.asarray(fc2_forces, dtype=float) if fc2_forces else None
    result = conductivity_from_forces(ph3, np.asarray(fc3_forces, dtype=float), fc2, kappa_config)
    result.update(
        calculator="vasp",
        method=kappa_config.method,
        formula=structure.composition.reduced_formula,
        primitive=get_pmg_structure(ph3.unitcell).as_dict(),
    )
    return Response(output=result)


def dft_kappa_flow(
    structure: Structure,
    config: KappaConfig | None = None,
    static_maker: StaticMaker | None = None,
    name: str = "kappa dft",
) -> Flow:
    """A jobflow ``Flow``: VASP statics on every fc3 (and fc2) displaced supercell, then the kappa job.

    The displacements are phono3py's for the standardised primitive cell of ``structure`` and ``config`` — the set
    :func:`crysloop.kappa.conductivity.compute_kappa` evaluates with an MLIP.
    """
    config = config or KappaConfig()
    maker = static_maker or force_static_maker()
    ph3 = build_phono3py(structure, config)
    fc3_cells, fc2_cells = displaced_supercells(ph3)
    from pymatgen.io.ase import AseAtomsAdaptor

    jobs, outputs = [], {"fc3": [], "fc2": []}
    for kind, cells in (("fc3", fc3_cells), ("fc2", fc2_cells)):
        for index, atoms in enumerate(cells, start=1):
            static = maker.make(AseAtomsAdaptor.get_structure(atoms))
            static.name = f"{maker.name} {kind} {index}/{len(cells)}"
            jobs.append(static)
            outputs[kind].append(static.output.output.forces)
    collect = kappa_from_dft_forces(structure, _config_dict(config), outputs["fc3"], outputs["fc2"] or None)
    collect.name = "kappa from dft forces"
    return Flow([*jobs, collect], output=collect.output, name=name)
