"""Build a Janus III-VI bilayer dataset: relax references, monolayers and bilayers with an MLIP + D3, then label.

Every relaxation is stored in the database as soon as it finishes (crysloop.infra.vdw), so a killed build resumes
where it stopped. Bilayer relaxations run on the campaign executors: in this process (threads), local worker
processes or a Dask cluster, each worker loading the potential once. The result is a CDVAE-format CSV per split
(random 6:2:2) and a ``manifest.json`` with the settings, counts, label ranges and timing.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from ase.build import bulk
from ase.calculators.calculator import Calculator
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter
from tqdm.auto import tqdm

from crysloop.infra.executors import ExecutorConfig, limit_threads
from crysloop.errors import CrysloopError, InputError
from crysloop.screening.dispersion import D3_DAMPINGS, with_d3
from crysloop.screening.potentials import check_mlip_name, get_calculator, predict_batch
from crysloop.screening.relax import RelaxConfig, RelaxResult, relax_structures
from crysloop.vdw.bilayers import DEFAULT_GAP, DEFAULT_VACUUM, Stacking, check_twists, pair_bilayers
from crysloop.vdw.labels import (
    binding_energy_per_area,
    formation_energy_per_atom,
    in_plane_area,
    interlayer_distance,
    layer_parts,
    layer_strain,
)
from crysloop.vdw.monolayers import CHALCOGENS, COVALENT_RADII, Monolayer, select_monolayers

IN_PLANE_MASK = (1, 1, 0, 0, 0, 1)  # Voigt xx, yy, xy: the in-plane cell relaxes, c stays fixed
SPLIT_FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
# Elemental references at their ground-state structure types, from experimental lattice data (Donohue, The
# Structures of the Elements): fcc Al, body-centred tetragonal In (ASE's reference states), alpha-Ga (Cmce) and the
# trigonal chains (A8, P3_121) of Se and Te; S on the Se chain scaled by the covalent radii, as alpha-S8 (128 atoms
# per cell) is too large for a CPU build; the chain lies a few tens of meV/atom above it.
_ALPHA_GA = (4.5197, 7.6633, 4.5260, (0.0, 0.1549, 0.0810))
_CHAINS = {"Se": (4.366, 4.954, 0.2254), "Te": (4.457, 5.929, 0.2636)}
@dataclass(frozen=True)
class BuildConfig:
    """What to build and how: potential + D3 damping, relaxation thresholds, geometry, subset size and executor."""

    mlip: str = "chgnet"
    damping: str = "zero"
    fmax: float = 0.05
    steps: int = 300
    gap: float = DEFAULT_GAP
    vacuum: float = DEFAULT_VACUUM
    twists: tuple[str, ...] = ()
    elements: tuple[str, ...] = ()
    max_bilayers: int | None = None
    per_pair: int | None = None  # keep this many random stackings of each pair: a small subset spread over pairs
    seed: int = 0
    device: str | None = None
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    def __post_init__(self) -> None:
        # the build adds D3 itself, with its own damping: a "+d3" potential name must not add it a second time
        object.__setattr__(self, "mlip", check_mlip_name(self.mlip).removesuffix("+d3"))
        if self.damping not in D3_DAMPINGS:
            raise InputError(f"unknown D3 damping {self.damping!r}; choose one of {', '.join(D3_DAMPINGS)}")
        check_twists(self.twists)
        if self.fmax <= 0 or self.steps < 1 or self.gap <= 0 or self.vacuum < 15.0:
            raise InputError("fmax and gap must be positive, steps at least 1 and vacuum at least 15 A")
        if (self.max_bilayers is not None and self.max_bilayers < 1) or (self.per_pair is not None and self.per_pair < 1):
            raise InputError("max_bilayers and per_pair must be at least 1")
        select_monolayers(list(self.elements))  # an element outside III-VI fails here, before any work

    @property
    def key(self) -> str:
        """Identifies the relaxations this build shares with another build (subset size and executor excluded)."""
        return (f"{self.mlip}+d3-{self.damping}|fmax={self.fmax:g}|steps={self.steps}|gap={self.gap:g}"
                f"|vacuum={self.vacuum:g}")  # fmt: skip

    def relax_config(self, in_plane: bool) -> RelaxConfig:
        return RelaxConfig(fmax=self.fmax, steps=self.steps, cell_mask=IN_PLANE_MASK if in_plane else None)


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


# --- work done on the executors: plain picklable functions, each worker loading the potential once ---------------


@lru_cache(maxsize=2)
def _worker_potential(mlip: str, damping: str, device: str | None) -> Calculator:
    return potential(mlip, damping, device)


def relax_bilayer(structure: dict, layer: list[int], config: BuildConfig) -> dict:
    """Relax one bilayer (positions + in-plane cell) and evaluate its two layers alone at the relaxed geometry."""
    calculator = _worker_potential(config.mlip, config.damping, config.device)
    result = relax_structures([Structure.from_dict(structure)], calculator, batch_size=1, config=config.relax_config(True))[0]
    record = _record(result)
    if result.ok:
        lower, upper = layer_parts(result.structure, layer)
        e_lower, e_upper = (p.energy for p in predict_batch([lower, upper], calculator, 1))
        record["extra"] = {"lower_alone": float(e_lower), "upper_alone": float(e_upper), "layer": list(layer)}
    return record


def _record(result: RelaxResult) -> dict:
    return {
        "formula": result.structure.composition.reduced_formula, "status": result.status, "error": result.error,
        "converged": result.converged, "steps": result.steps, "energy": result.energy,
        "structure": result.structure.as_dict(), "wall_time_s": result.wall_time_s,
    }  # fmt: skip


@contextmanager
def open_executor(config: ExecutorConfig) -> Iterator[Executor | None]:
    """A concurrent.futures executor for ``config``: None (this process), worker processes, or a Dask client's."""
    if config.kind == "threads":
        yield None
        return
    if config.kind == "processes":
        with ProcessPoolExecutor(max_workers=config.workers, initializer=limit_threads, initargs=(1,)) as pool:
            yield pool
        return
    from distributed import Client, LocalCluster

    if config.address:
        with Client(config.address) as client:
            yield client.get_executor()
        return
    with LocalCluster(n_workers=config.workers, threads_per_worker=1, processes=True) as cluster, Client(cluster) as client:
        yield client.get_executor()


def _run(tasks: Sequence[tuple[str, tuple]], fn: Callable[..., dict], executor: Executor | None) -> Iterator[tuple[str, dict]]:
    """Run ``fn(*args)`` for each (name, args), yielding (name, record) as each finishes."""
    if executor is None:
        for name, args in tasks:
            yield name, fn(*args)
        return
    futures = {executor.submit(fn, *args): name for name, args in tasks}
    for future in as_completed(futures):
        yield futures[future], future.result()


# --- the build, in stages, each resumable ------------------------------------------------------------------------


def _relax_stage(kind: str, items: dict[str, Structure], in_plane: bool, config: BuildConfig,
                 progress: bool) -> dict[str, dict]:  # fmt: skip
    """Relax references or monolayers not yet stored for this build, in this process; returns all records."""
    from crysloop.infra.vdw import save_record, stored_records

    records = stored_records(config.key, kind)
    todo = {name: s for name, s in items.items() if name not in records}
    if todo:
        calculator = potential(config.mlip, config.damping, config.device)
        for name, structure in tqdm(todo.items(), desc=f"relaxing {kind}s", unit=kind, disable=not progress):
            result = relax_structures([structure], calculator, batch_size=1, config=config.relax_config(in_plane))[0]
            records[name] = _record(result)
            save_record(config.key, kind, name, **records[name])
    return {name: records[name] for name in items}


def chemical_potentials(config: BuildConfig, elements: Sequence[str], progress: bool = True) -> dict[str, float]:
    """Energy per atom of each element's relaxed reference under the build's potential (eV/atom)."""
    records = _relax_stage("reference", {el: reference_structure(el) for el in elements}, False, config, progress)
    failed = [el for el, r in records.items() if r["status"] != "ok"]
    if failed:
        raise CrysloopError(f"the reference relaxation of {', '.join(failed)} failed under {config.mlip}")
    return {el: r["energy"] / len(r["structure"]["sites"]) for el, r in records.items()}


def relaxed_monolayers(config: BuildConfig, layers: Sequence[Monolayer], progress: bool = True) -> dict[str, Structure]:
    """The monolayers relaxed in-plane (c fixed) with the build's potential, by name; failed ones left out."""
    records = _relax_stage("monolayer", {m.name: m.structure() for m in layers}, True, config, progress)
    return {name: Structure.from_dict(r["structure"]) for name, r in records.items() if r["status"] == "ok"}


def candidate_bilayers(config: BuildConfig, monolayers: dict[str, Structure],
                       progress: bool = True) -> list[tuple[Stacking, Structure]]:  # fmt: skip
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


def relax_bilayers(config: BuildConfig, candidates: Sequence[tuple[Stacking, Structure]],
                   progress: bool = True) -> tuple[dict[str, dict], int, float]:  # fmt: skip
    """Relax the bilayers not yet stored, on the configured executor.

    Returns the records of all ``candidates``, how many were relaxed now and the wall time that took.
    """
    from crysloop.infra.vdw import save_record, stored_records

    records = stored_records(config.key, "bilayer")
    todo = [(s.key, (b.as_dict(), list(b.site_properties["layer"]), config)) for s, b in candidates if s.key not in records]
    stackings = {s.key: s for s, _ in candidates}
    started = time.perf_counter()
    with open_executor(config.executor) as executor, tqdm(
        total=len(candidates), initial=len(candidates) - len(todo), desc="relaxing bilayers", unit="bilayer",
        disable=not progress,
    ) as bar:  # fmt: skip
        for name, record in _run(todo, relax_bilayer, executor):
            save_record(config.key, "bilayer", name, stacking=stackings[name].as_dict(), **record)
            records[name] = record | {"stacking": stackings[name].as_dict()}
            bar.update(1)
    return {s.key: records[s.key] for s, _ in candidates}, len(todo), time.perf_counter() - started


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
        "binding_energy": binding_energy_per_area(record["energy"], record["extra"]["lower_alone"],
                                                  record["extra"]["upper_alone"], in_plane_area(structure.lattice)),
        "interlayer_distance": interlayer_distance(structure, layer),
        "strain_lower": layer_strain(structure, n_lower, monolayers[stacking["lower"]]),
        "strain_upper": layer_strain(structure, len(layer) - n_lower, monolayers[stacking["upper"]]),
        "energy_per_atom": record["energy"] / len(structure),
        "converged": bool(record["converged"]),
        **{key: stacking[key] for key in ("lower", "upper", "lower_flipped", "upper_flipped", "rotation", "registry",
                                          "twist", "twist_angle")},
    }  # fmt: skip


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


def build_dataset(config: BuildConfig, out_dir: str | Path, progress: bool = True, command: str = "") -> BuildSummary:
    """Run the whole build (resuming from stored records) and write the split CSVs and ``manifest.json``."""
    from crysloop.infra.db import database

    out_dir = Path(out_dir)
    layers = select_monolayers(list(config.elements))
    elements = sorted({el for m in layers for el in (*m.bottom, *m.top)})
    summary = BuildSummary()
    with database():
        mu = chemical_potentials(config, elements, progress)
        monolayers = relaxed_monolayers(config, layers, progress)
        candidates = candidate_bilayers(config, monolayers, progress)
        records, summary.relaxed_now, wall = relax_bilayers(config, candidates, progress)
    ok = {name: r for name, r in records.items() if r["status"] == "ok"}
    if not ok:
        raise CrysloopError(f"none of the {len(records)} bilayer relaxations succeeded; see the vdw_records errors")
    rows = [bilayer_row(r, mu, monolayers) for r in ok.values()]
    summary.bilayers, summary.failed = len(rows), len(records) - len(ok)
    summary.seconds_per_bilayer = wall / summary.relaxed_now if summary.relaxed_now else None
    summary.label_ranges = _ranges(rows, ("formation_energy_per_atom", "binding_energy", "interlayer_distance",
                                          "strain_lower", "strain_upper"))  # fmt: skip
    summary.splits = write_dataset(rows, list(ok), out_dir, config.seed)
    manifest = {
        "command": command,
        "config": asdict(config) | {"key": config.key, "executor": config.executor.model_dump()},
        "bilayers": summary.bilayers, "failed": summary.failed, "monolayers": len(monolayers),
        "monolayer_pairs": len({frozenset((r["lower"], r["upper"])) for r in rows}),
        "monolayers_in_bilayers": len({name for r in rows for name in (r["lower"], r["upper"])}),
        "chemical_potentials_eV_per_atom": mu,
        "label_units": {"formation_energy_per_atom": "eV/atom", "binding_energy": "meV/A^2 (< 0 bound)",
                        "interlayer_distance": "A", "strain_lower": "fraction", "strain_upper": "fraction"},
        "label_ranges": summary.label_ranges, "converged": sum(r["converged"] for r in rows),
        "seconds_per_bilayer_this_run": summary.seconds_per_bilayer, "relaxed_this_run": summary.relaxed_now,
        "relax_seconds_per_bilayer_recorded": _mean([r["wall_time_s"] for r in ok.values()]),
        "relax_steps_per_bilayer": _mean([r["steps"] for r in ok.values()]),
        "splits": {split: part["rows"] for split, part in summary.splits.items()},
        "files": {split: Path(part["path"]).name for split, part in summary.splits.items()},
    }  # fmt: skip
    summary.manifest = str(out_dir / "manifest.json")
    Path(summary.manifest).write_text(json.dumps(manifest, indent=2) + "\n")
    return summary
