"""Reading a VASP relaxation folder: final energy and structure, ionic steps, convergence, custodian corrections."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from monty.os.path import zpath
from monty.serialization import loadfn
from pymatgen.core import Structure
from pymatgen.io.vasp import Poscar, Vasprun


@dataclass
class RelaxOutcome:
    """How one VASP relaxation ended; energies in eV, ``corrections`` as custodian logged them."""

    run_dir: str
    completed: bool
    error: str | None = None
    converged: bool | None = None
    ionic_steps: int | None = None
    final_energy: float | None = None
    final_energy_per_atom: float | None = None
    final_structure: Structure | None = None
    last_structure: Structure | None = None  # CONTCAR, for a restart
    corrections: list[dict] = field(default_factory=list)


def _existing(path: Path) -> Path | None:
    candidate = Path(zpath(str(path)))
    return candidate if candidate.is_file() else None


def read_corrections(run_dir: Path) -> list[dict]:
    """Custodian's corrections in ``run_dir`` (custodian.json): handler name, errors and actions, in order."""
    path = _existing(Path(run_dir) / "custodian.json")
    if path is None:
        return []
    corrections = []
    for entry in loadfn(path, cls=None):
        for correction in entry.get("corrections", []):
            handler = correction.get("handler")
            name = handler.get("@class") if isinstance(handler, Mapping) else type(handler).__name__
            errors = list(correction.get("errors", []))
            corrections.append({"handler": name, "errors": errors, "actions": correction.get("actions", [])})
    return corrections


def incar_overrides(corrections: Iterable[Mapping]) -> dict:
    """The INCAR changes custodian's actions made (``_set`` and ``_unset`` on INCAR), applied in order.

    File actions (e.g. CONTCAR -> POSCAR) are not carried: a restart starts from the last CONTCAR anyway.
    """
    overrides: dict = {}
    for correction in corrections:
        for action in correction.get("actions", []):
            if action.get("dict") != "INCAR":
                continue
            for key, value in action.get("action", {}).get("_set", {}).items():
                overrides[key] = value
            for key in action.get("action", {}).get("_unset", {}):
                overrides[key] = None
    return overrides


def read_contcar(run_dir: Path) -> Structure | None:
    """The last ionic configuration VASP wrote (CONTCAR), or None when there is none or it is unreadable."""
    path = _existing(Path(run_dir) / "CONTCAR")
    if path is None or path.stat().st_size == 0:
        return None
    try:
        return Poscar.from_file(path, check_for_potcar=False).structure
    except (ValueError, IndexError, OSError):
        return None


def parse_run_dir(run_dir: Path, error: str | None = None) -> RelaxOutcome:
    """Parse ``run_dir`` after a run; ``error`` is the exception that ended it, if any."""
    run_dir = Path(run_dir)
    outcome = RelaxOutcome(
        run_dir=str(run_dir),
        completed=error is None,
        error=error,
        corrections=read_corrections(run_dir),
        last_structure=read_contcar(run_dir),
    )
    vasprun_path = _existing(run_dir / "vasprun.xml")
    if vasprun_path is None:
        return outcome
    try:
        vasprun = Vasprun(
            str(vasprun_path), parse_dos=False, parse_eigen=False, parse_projected_eigen=False, parse_potcar_file=False
        )
    except Exception as exc:
        outcome.error = outcome.error or f"unreadable vasprun.xml: {exc}"
        outcome.completed = False
        return outcome
    outcome.converged = bool(vasprun.converged)
    outcome.ionic_steps = len(vasprun.ionic_steps)
    if outcome.completed:
        outcome.final_energy = float(vasprun.final_energy)
        outcome.final_structure = vasprun.final_structure
        outcome.final_energy_per_atom = outcome.final_energy / len(vasprun.final_structure)
    return outcome
