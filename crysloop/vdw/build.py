"""The science of the Janus III-VI bilayer dataset: references, relaxation records, labelled rows, split CSVs.

:mod:`crysloop.flows.vdw` runs the build as a Prefect flow (relaxations on the campaign task runners, each stored in
the database as it finishes, so a killed build resumes); here are the plain functions it calls. The result is a
CDVAE-format CSV per split (random 6:2:2) and a ``manifest.json`` with the settings, counts, label ranges and timing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from ase.build import bulk
from ase.calculators.calculator import Calculator
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter
from tqdm.auto import tqdm

from crysloop.errors import CrysloopError, InputError
from crysloop.screening.dispersion import with_d3
from crysloop.screening.potentials import get_calculator, predict_batch
from crysloop.screening.relax import RelaxResult, relax_structures
from crysloop.vdw.bilayers import Stacking, pair_bilayers
from crysloop.vdw.config import BuildConfig
from crysloop.vdw.descriptors import (
    binding_energy_per_area,
    formation_energy_per_atom,
    in_plane_area,
    interlayer_distance,
    layer_parts,
    layer_strain,
)
from crysloop.vdw.monolayers import CHALCOGENS, COVALENT_RADII

SPLIT_FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
# Elemental references at their ground-state structure types, from experimental lattice data (Donohue, The
# Structures of the Elements): fcc Al, body-centred tetragonal In (ASE's reference states), alpha-Ga (Cmce) and the
# trigonal chains (A8, P3_121) of Se and Te; S on the Se chain scaled by the covalent radii, as alpha-S8 (128 atoms
# per cell) is too large for a CPU build; the chain lies a few tens of meV/atom above it.
_ALPHA_GA = (4.5197, 7.6633, 4.5260, (0.0, 0.1549, 0.0810))
_CHAINS = {"Se": (4.366, 4.954, 0.2254), "Te": (4.457, 5.929, 0.2636)}


@dataclass
class BuildSummary:
    """What a build produced: counts, label ranges, timing and where the files are."""

    bilayers: int = 0
    failed: int = 0
    relaxed_now: int = 0
    seconds_per_bilayer: float | None = None
    label_ranges: dict = field(default_factory=dict)
    splits: dict = field(default_factory=dict)  # split -> {"path", "rows"}
    manifest: str = ""


def potential(mlip: str, damping: str = "zero", device: str | None = None) -> Calculator:
    """The build's calculator: the MLIP plus D3 dispersion (zero damping by default, PBE parameters)."""
    return with_d3(get_calculator(mlip, device), damping=damping, device=device)


def reference_structure(element: str) -> Structure:
    """Starting structure of an element's reference (its ground-state structure type; see ``_CHAINS``)."""
    if element in ("Al", "In"):
        return AseAtomsAdaptor.get_structure(bulk(element))
    if element == "Ga":
        a, b, c, site = _ALPHA_GA
        return Structure.from_spacegroup(64, Lattice.orthorhombic(a, b, c), [element], [site]).get_primitive_structure()
    if element in CHALCOGENS:
        a, c, x = _CHAINS["Se"]
        scale = COVALENT_RADII[element] / COVALENT_RADII["Se"]
        a, c, x = _CHAINS.get(element, (a * scale, c * scale, x))
        return Structure.from_spacegroup(152, Lattice.hexagonal(a, c), [element], [[x, 0, 1 / 3]])
    raise InputError(f"no III-VI reference structure for {element}")


def relax_record(structure: Structure, config: BuildConfig, in_plane: bool) -> dict:
    """Relax one reference (cell and positions) or monolayer (``in_plane``: c fixed) with the build's potential.

    Each call has a calculator of its own (models are loaded once per process), so relaxations may share threads.
    """
    calculator = potential(config.mlip, config.damping, config.device)
    return _record(relax_structures([structure], calculator, batch_size=1, config=config.relax_config(in_plane))[0])


def relax_bilayer(structure: dict, layer: list[int], config: BuildConfig) -> dict:
    """Relax one bilayer (positions + in-plane cell) and evaluate its two layers alone at the relaxed geometry."""
    calculator = potential(config.mlip, config.damping, config.device)
    start = Structure.from_dict(structure)
    result = relax_structures([start], calculator, batch_size=1, config=config.relax_config(True))[0]
    record = _record(result)
    if result.ok:
        lower, upper = layer_parts(result.structure, layer)
        e_lower, e_upper = (p.energy for p in predict_batch([lower, upper], calculator, 1))
        record["extra"] = {"lower_alone": float(e_lower), "upper_alone": float(e_upper), "layer": list(layer)}
    return record


def _record(result: RelaxResult) -> dict:
    return {
        "formula": result.structure.composition.reduced_formula,
        "status": result.status,
        "error": result.error,
        "converged": result.converged,
        "steps": result.steps,
        "energy": result.energy,
        "structure": result.structure.as_dict(),
        "wall_time_s": result.wall_time_s,
    }


def chemical_potentials(config: BuildConfig, records: dict[str, dict]) -> dict[str, float]:
    """Energy per atom of each element's relaxed reference under the build's potential (eV/atom)."""
    failed = [el for el, r in records.items() if r["status"] != "ok"]
    if failed:
        raise CrysloopError(f"the reference relaxation of {', '.join(failed)} failed under {config.mlip}")
    return {el: r["energy"] / len(r["structure"]["sites"]) for el, r in records.items()}


def relaxed_monolayers(records: dict[str, dict]) -> dict[str, Structure]:
    """The monolayers relaxed in-plane (c fixed), by name; failed ones left out."""
    return {name: Structure.from_dict(r["structure"]) for name, r in records.items() if r["status"] == "ok"}


def candidate_bilayers(
    config: BuildConfig, monolayers: dict[str, Structure], progress: bool = True
) -> list[tuple[Stacking, Structure]]:
    """Distinct bilayers of the monolayer pairs, pairs taken in a seeded random order until ``max_bilayers``.

    With ``per_pair``, a seeded random choice of that many distinct stackings of each pair.
    """
    names = sorted(monolayers)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i:]]
    rng = random.Random(config.seed)
    rng.shuffle(pairs)
    chosen: list[tuple[Stacking, Structure]] = []
    for first, second in tqdm(pairs, desc="stacking pairs", unit="pair", disable=not progress):
        distinct = pair_bilayers(monolayers, first, second, config.twists, config.gap, config.vacuum)
        chosen += distinct if config.per_pair is None else rng.sample(distinct, min(config.per_pair, len(distinct)))
        if config.max_bilayers is not None and len(chosen) >= config.max_bilayers:
            return chosen[: config.max_bilayers]
    return chosen


def bilayer_row(record: dict, mu: dict[str, float], monolayers: dict[str, Structure]) -> dict:
    """One CSV row: the relaxed CIF, the labels and the stacking descriptors of a bilayer record."""
    structure = Structure.from_dict(record["structure"])
    stacking = record["stacking"]
    layer = record["extra"]["layer"]
    n_lower = layer.count(0)
    return {
        "cif": str(CifWriter(structure)),
        "formula": structure.composition.reduced_formula,
        "formation_energy_per_atom": formation_energy_per_atom(structure, record["energy"], mu),
        "binding_energy": binding_energy_per_area(
            record["energy"],
            record["extra"]["lower_alone"],
            record["extra"]["upper_alone"],
            in_plane_area(structure.lattice),
        ),
        "interlayer_distance": interlayer_distance(structure, layer),
        "strain_lower": layer_strain(structure, n_lower, monolayers[stacking["lower"]]),
        "strain_upper": layer_strain(structure, len(layer) - n_lower, monolayers[stacking["upper"]]),
        "energy_per_atom": record["energy"] / len(structure),
        "converged": bool(record["converged"]),
        **{
            key: stacking[key]
            for key in (
                "lower",
                "upper",
                "lower_flipped",
                "upper_flipped",
                "rotation",
                "registry",
                "twist",
                "twist_angle",
            )
        },
    }


def write_dataset(rows: list[dict], names: list[str], out_dir: Path, seed: int) -> dict[str, dict]:
    """CDVAE-format CSVs, randomly split 6:2:2 (seeded); ``material_id`` is the stacking key. Returns path and size."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    frame.insert(0, "material_id", names)
    order = np.random.default_rng(seed).permutation(len(frame))
    n_train, n_val = round(SPLIT_FRACTIONS["train"] * len(frame)), round(SPLIT_FRACTIONS["val"] * len(frame))
    parts = {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
    files = {}
    for split, index in parts.items():
        path = out_dir / f"{split}.csv.gz"
        frame.iloc[np.sort(index)].to_csv(path, index=False)
        files[split] = {"path": str(path), "rows": len(index)}
    return files


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 3) if values else None


def _ranges(rows: list[dict], keys: Sequence[str]) -> dict[str, list[float]]:
    return {k: [round(float(min(r[k] for r in rows)), 4), round(float(max(r[k] for r in rows)), 4)] for k in keys}


def summarise(
    config: BuildConfig,
    records: dict[str, dict],
    mu: dict[str, float],
    monolayers: dict[str, Structure],
    out_dir: Path,
    relaxed_now: int,
    wall: float,
    command: str = "",
) -> BuildSummary:
    """Label the bilayer ``records`` (stacking key -> record), write the split CSVs and ``manifest.json``."""
    ok = {name: r for name, r in records.items() if r["status"] == "ok"}
    if not ok:
        raise CrysloopError(f"none of the {len(records)} bilayer relaxations succeeded; see the vdw_records errors")
    rows = [bilayer_row(r, mu, monolayers) for r in ok.values()]
    summary = BuildSummary(bilayers=len(rows), failed=len(records) - len(ok), relaxed_now=relaxed_now)
    summary.seconds_per_bilayer = wall / relaxed_now if relaxed_now else None
    summary.label_ranges = _ranges(
        rows, ("formation_energy_per_atom", "binding_energy", "interlayer_distance", "strain_lower", "strain_upper")
    )
    summary.splits = write_dataset(rows, list(ok), out_dir, config.seed)
    manifest = {
        "command": command,
        "config": config.model_dump(mode="json") | {"key": config.key},
        "bilayers": summary.bilayers,
        "failed": summary.failed,
        "monolayers": len(monolayers),
        "monolayer_pairs": len({frozenset((r["lower"], r["upper"])) for r in rows}),
        "monolayers_in_bilayers": len({name for r in rows for name in (r["lower"], r["upper"])}),
        "chemical_potentials_eV_per_atom": mu,
        "label_units": {
            "formation_energy_per_atom": "eV/atom",
            "binding_energy": "meV/A^2 (< 0 bound)",
            "interlayer_distance": "A",
            "strain_lower": "fraction",
            "strain_upper": "fraction",
        },
        "label_ranges": summary.label_ranges,
        "converged": sum(r["converged"] for r in rows),
        "seconds_per_bilayer_this_run": summary.seconds_per_bilayer,
        "relaxed_this_run": summary.relaxed_now,
        "relax_seconds_per_bilayer_recorded": _mean([r["wall_time_s"] for r in ok.values()]),
        "relax_steps_per_bilayer": _mean([r["steps"] for r in ok.values()]),
        "splits": {split: part["rows"] for split, part in summary.splits.items()},
        "files": {split: Path(part["path"]).name for split, part in summary.splits.items()},
    }
    summary.manifest = str(out_dir / "manifest.json")
    Path(summary.manifest).write_text(json.dumps(manifest, indent=2) + "\n")
    return summary
