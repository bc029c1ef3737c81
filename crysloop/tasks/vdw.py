"""Prefect tasks of the vdW dataset build: one relaxation each, run on the flow's task runner.

The science is in :mod:`crysloop.vdw.build`; the flow stores each record as its task finishes.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from pymatgen.core import Structure

from crysloop.vdw.build import relax_bilayer, relax_record
from crysloop.vdw.config import BuildConfig


@task(name="vdw-relax", task_run_name="relax-{kind}-{name}", tags=["mlip"], cache_policy=NO_CACHE)
def relax_record_task(kind: str, name: str, structure: Structure, config: BuildConfig) -> dict:
    """Relax one elemental reference (cell and positions) or monolayer (in-plane cell, c fixed)."""
    return relax_record(structure, config, in_plane=kind == "monolayer")


@task(name="vdw-relax-bilayer", task_run_name="relax-bilayer-{name}", tags=["mlip"], cache_policy=NO_CACHE)
def relax_bilayer_task(name: str, structure: dict, layer: list[int], config: BuildConfig) -> dict:
    """Relax one bilayer and evaluate its two layers alone (:func:`crysloop.vdw.build.relax_bilayer`)."""
    return relax_bilayer(structure, layer, config)
