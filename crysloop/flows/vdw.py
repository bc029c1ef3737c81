"""The ``build-vdw`` flow: relax references, monolayers and bilayers with an MLIP + D3, label them, write the dataset.

Every relaxation is stored in the database as soon as it finishes (:mod:`crysloop.infra.vdw`), so a killed build
resumes where it stopped. References and monolayers relax in the flow's process; bilayers run on the task runner of
``config.executor`` (threads, local worker processes or a Dask cluster), at most ``executor.workers`` at a time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from prefect import flow
from prefect.futures import as_completed
from pymatgen.core import Structure
from tqdm.auto import tqdm

from crysloop.flows.runners import task_runner
from crysloop.infra.db import database
from crysloop.infra.vdw import save_record, stored_records
from crysloop.tasks.vdw import relax_bilayer_task, relax_record_task
from crysloop.vdw.bilayers import Stacking
from crysloop.vdw.build import (
    BuildSummary,
    candidate_bilayers,
    chemical_potentials,
    reference_structure,
    relaxed_monolayers,
    summarise,
)
from crysloop.vdw.config import BuildConfig
from crysloop.vdw.monolayers import select_monolayers


def build_dataset(config: BuildConfig, out_dir: str | Path, progress: bool = True, command: str = "") -> BuildSummary:
    """Run :func:`build_vdw_flow` on the task runner ``config.executor`` asks for."""
    run = build_vdw_flow.with_options(task_runner=task_runner(config.executor))
    return run(config, Path(out_dir), progress, command)


@flow(name="build-vdw", validate_parameters=False)
def build_vdw_flow(config: BuildConfig, out_dir: Path, progress: bool = True, command: str = "") -> BuildSummary:
    """The whole build (resuming from stored records), then the split CSVs and ``manifest.json`` in ``out_dir``."""
    layers = select_monolayers(list(config.elements))
    elements = sorted({el for m in layers for el in (*m.bottom, *m.top)})
    with database():
        references = _relax_here("reference", {el: reference_structure(el) for el in elements}, config, progress)
        mu = chemical_potentials(config, references)
        monolayers = relaxed_monolayers(
            _relax_here("monolayer", {m.name: m.structure() for m in layers}, config, progress)
        )
        candidates = candidate_bilayers(config, monolayers, progress)
        records, relaxed_now, wall = _relax_bilayers(config, candidates, progress)
    return summarise(config, records, mu, monolayers, Path(out_dir), relaxed_now, wall, command)


def _relax_here(kind: str, items: dict[str, Structure], config: BuildConfig, progress: bool) -> dict[str, dict]:
    """Relax the references or monolayers not yet stored for this build, in this process; returns all records."""
    records = stored_records(config.key, kind)
    todo = {name: s for name, s in items.items() if name not in records}
    for name, structure in tqdm(todo.items(), desc=f"relaxing {kind}s", unit=kind, disable=not progress):
        records[name] = relax_record_task(kind, name, structure, config)
        save_record(config.key, kind, name, **records[name])
    return {name: records[name] for name in items}


def _relax_bilayers(
    config: BuildConfig, candidates: Sequence[tuple[Stacking, Structure]], progress: bool
) -> tuple[dict[str, dict], int, float]:
    """Relax the bilayers not yet stored on the task runner, storing each as it finishes.

    Returns the records of all ``candidates``, how many were relaxed now and the wall time that took.
    """
    records = stored_records(config.key, "bilayer")
    todo = [(s, b) for s, b in candidates if s.key not in records]
    relaxed_now, started = len(todo), time.perf_counter()
    running: dict = {}
    with tqdm(
        total=len(candidates),
        initial=len(candidates) - len(todo),
        desc="relaxing bilayers",
        unit="bilayer",
        disable=not progress,
    ) as bar:
        while todo or running:
            while todo and len(running) < config.executor.workers:
                stacking, bilayer = todo.pop(0)
                layer = list(bilayer.site_properties["layer"])
                future = relax_bilayer_task.submit(stacking.key, bilayer.as_dict(), layer, config)
                running[future.task_run_id] = (stacking, future)
            done = next(as_completed([future for _, future in running.values()]))
            stacking, _ = running.pop(done.task_run_id)
            record = done.result() | {"stacking": stacking.as_dict()}
            save_record(config.key, "bilayer", stacking.key, **record)
            records[stacking.key] = record
            bar.update(1)
    return {s.key: records[s.key] for s, _ in candidates}, relaxed_now, time.perf_counter() - started
