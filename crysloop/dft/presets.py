"""VASP relaxation presets of the papers crysloop follows, as atomate2 ``RelaxMaker`` objects.

``condition-cdvae-plus``: PBE, PAW, ENCUT 550 eV, EDIFF 1e-6, EDIFFG -0.05, zero-damping DFT-D3 (IVDW = 11),
cell and ions relaxed (ISIF = 3). ``crysvcd``: PBE, ENCUT = 1.2 x the largest ENMAX of the POTCARs, Gamma-centred
k-mesh with spacing 0.03 x 2pi 1/A, cell and ions relaxed. atomate2's default input set is PBEsol, so both presets
set ``GGA = PE`` explicitly. A lattice direction crossed by a vacuum gap gets a single k-point.

Slabs (one lattice direction crossed by vacuum, e.g. a van der Waals bilayer with c along the normal) keep that
direction fixed: VASP 6.4+ relaxes the other cell vectors (``LATTICE_CONSTRAINTS``, ISIF = 3); older versions relax
the ions only (ISIF = 2, with a warning). A polar slab (a Janus stack: no mirror of its height profile) gets the dipole
correction along the vacuum direction, centred on the slab (IDIPOL, LDIPOL, DIPOL).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pymatgen.core import Structure
from pymatgen.io.vasp.inputs import Kpoints, PotcarSingle

from crysloop.dft.config import PRESETS, DFTStageConfig
from crysloop.errors import InputError
from crysloop.settings import Settings, get_settings

POTCAR_FUNCTIONAL = "PBE_54"
_STAGE = DFTStageConfig.model_fields
_MACHINE = Settings.model_fields

_CONDITION_CDVAE_PLUS_INCAR = {
    "GGA": "PE",
    "ENCUT": 550,
    "EDIFF": 1e-6,
    "EDIFFG": -0.05,
    "IVDW": 11,
    "ISIF": 3,
    "IBRION": 2,
    "NSW": 99,
}
_CRYSVCD_INCAR = {"GGA": "PE", "ISIF": 3, "IBRION": 2, "NSW": 99}
_CRYSVCD_ENCUT_FACTOR = 1.2
_CRYSVCD_KSPACING = 0.03  # in units of 2pi 1/A, i.e. 1/A in crystallographic reciprocal lengths
_CONDITION_CDVAE_PLUS_KPPVOL = 64  # atomate2's default k-point density, k-points per reciprocal atom volume


@dataclass(frozen=True)
class RunSettings:
    """How VASP is started: the command custodian runs, its handlers and validators, and POTCAR handling.

    ``handlers``/``validators`` of None mean atomate2's defaults. ``potcar_spec`` writes POTCAR.spec (the
    symbols) instead of POTCAR, for machines without the licensed POTCAR files. ``enmax`` overrides the ENMAX
    (eV) read from the POTCARs, per element symbol; without it the POTCARs must be configured in pymatgen
    (``PMG_VASP_PSP_DIR``).
    """

    vasp_cmd: str = _MACHINE["vasp_cmd"].default
    max_errors: int = _STAGE["max_errors"].default
    handlers: Sequence | None = None
    validators: Sequence | None = None
    potcar_spec: bool = False
    enmax: Mapping[str, float] = field(default_factory=dict)
    vacuum_gap: float = 7.0  # A; a gap at least this wide along a lattice direction counts as vacuum
    polling_time_step: float = _STAGE["poll_seconds"].default  # s between custodian's checks of a running VASP
    vasp_version: str = _MACHINE["vasp_version"].default  # LATTICE_CONSTRAINTS needs 6.4 or later

    @classmethod
    def of(cls, config: DFTStageConfig) -> RunSettings:
        """How the stage's jobs run on this machine: the configured VASP command and version, the stage's limits."""
        settings = get_settings()
        return cls(
            vasp_cmd=settings.vasp_cmd,
            vasp_version=settings.vasp_version,
            max_errors=config.max_errors,
            polling_time_step=config.poll_seconds,
        )


def check_vasp_setup(run: RunSettings) -> None:
    """Refuse to queue jobs that would fail at once: the VASP command must exist and POTCARs must be configured.

    POTCARs are needed unless ``run.potcar_spec`` (symbols only) is set; they are found through pymatgen's
    ``PMG_VASP_PSP_DIR`` setting (environment or ``~/.config/.pmgrc.yaml``).
    """
    import shlex
    import shutil

    from pymatgen.core import SETTINGS

    words = shlex.split(run.vasp_cmd)
    for word in dict.fromkeys((words[0], words[-1])) if words else ("",):  # launcher (mpirun, srun) and binary
        if shutil.which(word) is None:
            raise InputError(
                f"VASP command {run.vasp_cmd!r}: {word!r} is not an executable on PATH; set "
                f"CRYSLOOP_VASP_CMD to the command that runs VASP (e.g. 'mpirun -n 8 vasp_std')"
            )
    if not run.potcar_spec:
        psp_dir = os.environ.get("PMG_VASP_PSP_DIR") or SETTINGS.get("PMG_VASP_PSP_DIR")
        if not psp_dir or not Path(psp_dir).expanduser().is_dir():
            raise InputError(
                f"VASP POTCARs are not configured (PMG_VASP_PSP_DIR is {psp_dir or 'unset'}); point "
                f"PMG_VASP_PSP_DIR at the folder of POTCAR sets, see 'pmg config --help'"
            )


def potcar_symbols(structure: Structure) -> list[str]:
    """POTCAR symbols (e.g. ``Si``, ``Fe_pv``) atomate2's base input set picks for the elements of ``structure``."""
    from atomate2.vasp.sets.core import RelaxSetGenerator

    choices = RelaxSetGenerator().config_dict["POTCAR"]
    return [choices.get(el.symbol, el.symbol) for el in structure.composition.elements]


def potcar_enmax(symbols: Sequence[str], overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """ENMAX (eV) of each POTCAR symbol, from ``overrides`` (keyed by symbol or element) or the POTCAR files.

    pymatgen's bundled POTCAR summary statistics (``potcar-summary-stats.json.bz2``) keep only aggregate
    statistics of the header values, not ENMAX itself, so the value comes from the POTCAR headers.
    """
    overrides = dict(overrides or {})
    enmax = {}
    for symbol in symbols:
        element = symbol.split("_")[0]
        if symbol in overrides or element in overrides:
            enmax[symbol] = float(overrides.get(symbol, overrides.get(element)))
            continue
        try:
            enmax[symbol] = float(PotcarSingle.from_symbol_and_functional(symbol, POTCAR_FUNCTIONAL).enmax)
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(
                f"ENMAX of POTCAR {symbol} ({POTCAR_FUNCTIONAL}) is unknown: configure PMG_VASP_PSP_DIR or give "
                f"enmax={{'{element}': ...}} ({exc})"
            ) from None
    return enmax


def vacuum_directions(structure: Structure, min_gap: float = 7.0) -> list[int]:
    """Lattice directions (0, 1, 2) along which the atoms leave an empty slab at least ``min_gap`` A thick."""
    directions = []
    inv_lengths = np.linalg.norm(structure.lattice.reciprocal_lattice_crystallographic.matrix, axis=1)
    for axis in range(3):
        frac = np.sort(np.mod(structure.frac_coords[:, axis], 1.0))
        gaps = np.diff(np.concatenate([frac, [frac[0] + 1.0]]))
        if gaps.max() / inv_lengths[axis] >= min_gap:  # interplanar spacing of the lattice planes = 1/|b_i|
            directions.append(axis)
    return directions


def gamma_mesh(structure: Structure, spacing: float, vacuum: Sequence[int] = ()) -> Kpoints:
    """Gamma-centred mesh with ``ceil(|b_i| / spacing)`` divisions (|b_i| crystallographic, 1/A), 1 along vacuum."""
    inv_lengths = np.linalg.norm(structure.lattice.reciprocal_lattice_crystallographic.matrix, axis=1)
    divisions = [1 if axis in vacuum else max(1, math.ceil(inv_lengths[axis] / spacing - 1e-9)) for axis in range(3)]
    return Kpoints.gamma_automatic(tuple(divisions))


def _density_mesh(structure: Structure, kppvol: int, vacuum: Sequence[int]) -> Kpoints:
    mesh = Kpoints.automatic_density_by_vol(structure, kppvol, force_gamma=True)
    divisions = [1 if axis in vacuum else int(n) for axis, n in enumerate(mesh.kpts[0])]
    return Kpoints.gamma_automatic(tuple(divisions))


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.strip().split(".")[:2])
    except ValueError:
        raise InputError(f"VASP version {text!r}: expected a version like 6.4 or 5.4.4") from None


def slab_centre(structure: Structure, axis: int) -> float:
    """Fractional coordinate along ``axis`` of the middle of the slab (across the cell boundary if it wraps)."""
    frac = np.sort(np.mod(structure.frac_coords[:, axis], 1.0))
    gaps = np.diff(np.concatenate([frac, [frac[0] + 1.0]]))
    widest = int(np.argmax(gaps))  # the vacuum lies after frac[widest]; the slab runs from the next atom around
    bottom, top = frac[(widest + 1) % len(frac)], frac[widest]
    top = top + 1.0 if top < bottom else top
    return float(np.mod(0.5 * (bottom + top), 1.0))


def is_polar_slab(structure: Structure, axis: int, tol: float = 0.1) -> bool:
    """True when the slab's species-height profile along ``axis`` is not its own mirror image (a Janus stack).

    Any operation turning a slab over (mirror, in-plane two-fold axis, inversion) mirrors this profile, so an
    asymmetric profile means a net dipole along ``axis``.
    """
    centre = slab_centre(structure, axis)
    height = structure.lattice.abc[axis]
    offsets = (np.mod(structure.frac_coords[:, axis] - centre + 0.5, 1.0) - 0.5) * height
    species = [site.specie.symbol for site in structure]
    profile = sorted(zip(species, np.round(offsets / tol).astype(int).tolist(), strict=True))
    mirrored = sorted(zip(species, np.round(-offsets / tol).astype(int).tolist(), strict=True))
    return profile != mirrored


def slab_incar(structure: Structure, vacuum: Sequence[int], run: RunSettings) -> dict:
    """INCAR changes for a slab (exactly one vacuum direction): fixed out-of-plane cell, dipole correction if polar."""
    if len(vacuum) != 1:
        return {} if not vacuum else {"ISIF": 2}  # wires and molecules: ions only
    axis = vacuum[0]
    if _version(run.vasp_version) >= (6, 4):
        incar: dict = {"ISIF": 3, "LATTICE_CONSTRAINTS": [a != axis for a in range(3)]}
    else:
        warnings.warn(
            f"VASP {run.vasp_version} has no LATTICE_CONSTRAINTS (6.4+): relaxing the ions only (ISIF = 2) so the "
            "vacuum of the slab is not relaxed away",
            stacklevel=3,
        )
        incar = {"ISIF": 2}
    if is_polar_slab(structure, axis):
        dipol = [0.5, 0.5, 0.5]
        dipol[axis] = round(slab_centre(structure, axis), 6)
        incar.update(IDIPOL=axis + 1, LDIPOL=True, DIPOL=dipol)
    return incar


def preset_inputs(preset: str, structure: Structure, run: RunSettings | None = None) -> tuple[dict, Kpoints]:
    """INCAR settings and k-points that ``preset`` prescribes for ``structure`` (slab settings when it is one)."""
    run = run or RunSettings()
    vacuum = vacuum_directions(structure, run.vacuum_gap)
    if preset == "condition-cdvae-plus":
        incar, kpoints = (
            dict(_CONDITION_CDVAE_PLUS_INCAR),
            _density_mesh(structure, _CONDITION_CDVAE_PLUS_KPPVOL, vacuum),
        )
    elif preset == "crysvcd":
        enmax = potcar_enmax(potcar_symbols(structure), run.enmax)
        incar = dict(_CRYSVCD_INCAR, ENCUT=round(_CRYSVCD_ENCUT_FACTOR * max(enmax.values()), 3))
        kpoints = gamma_mesh(structure, _CRYSVCD_KSPACING, vacuum)
    else:
        raise InputError(f"unknown DFT preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return incar | slab_incar(structure, vacuum, run), kpoints


def relax_maker(
    preset: str,
    structure: Structure,
    run: RunSettings | None = None,
    incar_overrides: Mapping[str, object] | None = None,
):
    """An atomate2 ``RelaxMaker`` for ``structure`` under ``preset``, run through custodian as ``run`` says.

    ``incar_overrides`` (e.g. corrections custodian made in a failed attempt) take precedence over the preset;
    a value of None removes the key.
    """
    from atomate2.vasp.jobs.core import RelaxMaker
    from atomate2.vasp.sets.core import RelaxSetGenerator

    run = run or RunSettings()
    incar, kpoints = preset_inputs(preset, structure, run)
    incar.update(incar_overrides or {})
    generator = RelaxSetGenerator(
        user_incar_settings=incar,
        user_kpoints_settings=kpoints,
        user_potcar_functional=POTCAR_FUNCTIONAL,
    )
    run_vasp_kwargs: dict = {
        "vasp_cmd": run.vasp_cmd,
        "max_errors": run.max_errors,
        "custodian_kwargs": {"polling_time_step": run.polling_time_step},
    }
    if run.handlers is not None:
        run_vasp_kwargs["handlers"] = tuple(run.handlers)
    if run.validators is not None:
        run_vasp_kwargs["validators"] = tuple(run.validators)
    return RelaxMaker(
        name=f"{preset} relax",
        input_set_generator=generator,
        run_vasp_kwargs=run_vasp_kwargs,
        write_input_set_kwargs={"potcar_spec": run.potcar_spec},
    )


def write_preset_inputs(preset: str, structure: Structure, directory: Path, run: RunSettings | None = None) -> Path:
    """Write the INCAR, KPOINTS, POSCAR and POTCAR (or POTCAR.spec) of ``preset`` into ``directory``."""
    from atomate2.vasp.files import write_vasp_input_set

    maker = relax_maker(preset, structure, run)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_vasp_input_set(  # clean_prev would delete files in the working directory, not in ``directory``
        structure, maker.input_set_generator, directory=directory, clean_prev=False, **maker.write_input_set_kwargs
    )
    return directory
