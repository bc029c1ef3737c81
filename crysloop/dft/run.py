"""Running one VASP relaxation through atomate2 and custodian, locally, in its own folder and process.

jobflow's ``run_locally`` changes the working directory of the whole process while a job runs, so
:func:`relax_in_subprocess` runs :func:`relax` in a child process; the parent's directory never moves.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pymatgen.core import Structure

from crysloop.dft.parse import RelaxOutcome, parse_run_dir
from crysloop.dft.presets import RunSettings, relax_maker


def relax(
    structure: Structure,
    preset: str,
    run_dir: Path,
    run: RunSettings | None = None,
    incar_overrides: Mapping[str, object] | None = None,
) -> RelaxOutcome:
    """Relax ``structure`` with VASP under ``preset`` in ``run_dir``; failures come back as a failed outcome."""
    from jobflow import JobStore, run_locally
    from maggma.stores import MemoryStore

    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    maker = relax_maker(preset, structure, run, incar_overrides)
    job = maker.make(structure)
    error = None
    try:
        store = JobStore(MemoryStore())
        run_locally(job, store=store, root_dir=run_dir, create_folders=False, raise_immediately=True, log=False)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}".strip()
    return parse_run_dir(run_dir, error=error)


def _start_method() -> str:
    # fork keeps the parent's imports (fast) and its in-memory configuration; spawn where fork is unavailable
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def relax_in_subprocess(
    structure: Structure,
    preset: str,
    run_dir: Path,
    run: RunSettings | None = None,
    incar_overrides: Mapping[str, object] | None = None,
) -> RelaxOutcome:
    """:func:`relax` in a child process, so that jobflow's change of directory stays out of the caller."""
    context = multiprocessing.get_context(_start_method())
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(relax, structure, preset, Path(run_dir), run, dict(incar_overrides or {}))
        return future.result()
