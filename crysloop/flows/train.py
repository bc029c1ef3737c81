"""The ``train`` flow: Stage I (composition language model) or Stage II (DiffCSP, ConditionCDVAE+) from a dataset,
recorded in the results database."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger

from crysloop.data.datasets import load_dataset
from crysloop.errors import InputError
from crysloop.infra.models import register_model
from crysloop.models.cdvae import FORMULA
from crysloop.tasks.train import train_cdvae_task, train_composition_task, train_structure_task


@flow(name="train", flow_run_name="train-{stage}-{name}")
def train_flow(
    stage: Literal["composition", "structure", "cdvae"],
    data: str,
    out: str,
    name: str,
    properties: tuple[str, ...] = (),
    epochs: int = 60,
    preset: str = "cpu-small",
    mode: str = "csp",
    device: str = "auto",
    seed: int = 0,
    gan_epochs: int = 50,
) -> dict:
    """Train one stage on ``data`` (a dataset name or path) and record the checkpoint as ``name``; ``properties``
    are the conditions (for ``cdvae`` also ``formula``), ``mode`` is DiffCSP's, ``gan_epochs`` ConditionCDVAE+'s."""
    records = list(load_dataset(data, progress=False))
    columns = [p for p in properties if not (stage == "cdvae" and p == FORMULA)]
    missing = [p for p in columns if not any(r.properties.get(p) is not None for r in records)]
    if missing:
        raise InputError(f"{data}: no values for the properties {missing}")
    if stage == "composition":
        report = train_composition_task(records, list(properties), Path(out), epochs, device, seed)
    elif stage == "structure":
        report = train_structure_task(records, list(properties), Path(out), epochs, preset, mode, device, seed)
    else:
        report = train_cdvae_task(records, list(properties), Path(out), epochs, preset, gan_epochs, device, seed)
    register_model(name, stage, out, report.get("conditions", ()), report)
    get_run_logger().info("trained %s model %s on %d crystals -> %s", stage, name, len(records), out)
    return report
