"""The ``train`` flow: Stage I (composition language model) and Stage II (DiffCSP) from a dataset, registered."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger

from crysloop.data.datasets import load_dataset
from crysloop.infra.campaign import register_checkpoint
from crysloop.infra.db import database
from crysloop.tasks.train import train_composition_task, train_structure_task


@flow(name="train", flow_run_name="train-{stage}-{name}")
def train_flow(
    stage: Literal["composition", "structure"],
    data: str,
    out: str,
    name: str,
    properties: tuple[str, ...] = (),
    epochs: int = 60,
    preset: str = "cpu-small",
    mode: str = "csp",
    device: str = "auto",
    seed: int = 0,
) -> dict:
    """Train one stage on ``data`` (a dataset name or path) and record the checkpoint as ``name``."""
    records = load_dataset(data, progress=False)
    missing = [p for p in properties if not any(r.properties.get(p) is not None for r in records)]
    if missing:
        from crysloop.errors import InputError

        raise InputError(f"{data}: no values for the properties {missing}")
    if stage == "composition":
        report = train_composition_task(list(records), list(properties), Path(out), epochs, device, seed)
    else:
        report = train_structure_task(list(records), list(properties), Path(out), epochs, preset, mode, device, seed)
    with database():
        register_checkpoint(name, stage, Path(out), conditions=report.get("conditions"), metrics=report)
    get_run_logger().info("trained %s model %s on %d crystals -> %s", stage, name, len(records), out)
    return report
