"""Prefect tasks that train and fine-tune the generative models; checkpoints are written atomically
(``crysloop.models.checkpoint``)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from pymatgen.core import Composition, Structure

from crysloop.models import cdvae, composition, diffcsp
from crysloop.settings import resolve_device


@task(name="finetune-composition-lm", tags=["gpu", "stage-1"])
def finetune_composition_task(
    parent: str, examples: list[tuple[Composition, dict]], out: Path, epochs: int, device: str = "auto", seed: int = 0
) -> dict:
    """Fine-tune Stage I on (composition, labels); new label names become new conditions."""
    device = resolve_device(device)
    model = composition.load_checkpoint(parent, device=device)
    model = composition.finetune_composition_lm(model, examples, epochs=epochs, device=device, seed=seed)
    composition.save_checkpoint(model, out)
    return {"conditions": model.condition_names, **model.metadata.get("finetunes", [{}])[-1]}


@task(name="finetune-diffcsp", tags=["gpu", "stage-2"])
def finetune_structure_task(
    parent: str,
    records: list[tuple[Structure, dict]],
    out: Path,
    epochs: int,
    device: str = "auto",
    seed: int = 0,
    scope: str = "conditions",
) -> dict:
    """Fine-tune Stage II on (relaxed structure, labels), adding property embeddings for new labels; ``scope`` as
    in ``finetune_diffcsp`` (``conditions``: the embeddings only)."""
    device = resolve_device(device)
    model = diffcsp.load_checkpoint(parent, device=device)
    names = sorted({name for _, labels in records for name in labels})
    model = diffcsp.finetune_diffcsp(
        model, records, new_properties=names, epochs=epochs, device=device, seed=seed, scope=scope
    )
    diffcsp.save_checkpoint(model, out)
    return {"conditions": list(model.config.properties), "n_train": len(records)}


@task(name="finetune-cdvae", tags=["gpu", "stage-2"])
def finetune_cdvae_task(
    parent: str,
    records: list[tuple[Structure, dict]],
    out: Path,
    epochs: int,
    device: str = "auto",
    seed: int = 0,
    gan_epochs: int = 20,
) -> dict:
    """Fine-tune ConditionCDVAE+ on (relaxed structure, labels), adding the labels as conditions, then retrain
    its latent GAN."""
    device = resolve_device(device)
    model, _ = cdvae.load_checkpoint(parent, device=device)
    names = sorted({name for _, labels in records for name in labels})
    model, gan = cdvae.finetune_cdvae(
        model,
        records,
        new_conditions=names,
        epochs=epochs,
        gan_epochs=gan_epochs,
        device=device,
        seed=seed,
        progress=False,
    )
    cdvae.save_checkpoint(model, out, gan)
    return {"conditions": list(model.config.scalar_conditions), "n_train": len(records)}


@task(name="train-composition-lm", tags=["gpu", "stage-1"])
def train_composition_task(
    records: list, properties: list[str], out: Path, epochs: int, device: str = "auto", seed: int = 0
) -> dict:
    """Train Stage I from scratch on dataset records, conditioned on the named properties."""
    compositions = [r.structure.composition for r in records]
    values = [{name: r.properties.get(name) for name in properties} for r in records]
    model = composition.train_composition_lm(
        compositions, values, properties, epochs=epochs, device=resolve_device(device), seed=seed
    )
    composition.save_checkpoint(model, out)
    return {"conditions": model.condition_names, **model.metadata["training"]}


@task(name="train-diffcsp", tags=["gpu", "stage-2"])
def train_structure_task(
    records: list,
    properties: list[str],
    out: Path,
    epochs: int,
    preset: str = "cpu-small",
    mode: str = "csp",
    device: str = "auto",
    seed: int = 0,
) -> dict:
    """Train Stage II from scratch on dataset records (checkpointed as it goes, so it can be resumed)."""
    config = diffcsp.DiffCSPConfig.preset(preset, mode=mode, properties=tuple(properties))
    model = diffcsp.train_diffcsp(
        records,
        config,
        device=resolve_device(device),
        epochs=epochs,
        checkpoint_path=out,
        log_path=Path(out).with_suffix(".metrics.jsonl"),
        seed=seed,
        progress=False,
    )
    return {"conditions": list(model.config.properties), "n_train": len(records)}


@task(name="train-cdvae", tags=["gpu", "stage-2"])
def train_cdvae_task(
    records: list,
    conditions: list[str],
    out: Path,
    epochs: int,
    preset: str = "cpu-small",
    gan_epochs: int = 50,
    device: str = "auto",
    seed: int = 0,
) -> dict:
    """Train ConditionCDVAE+ from scratch on dataset records (the VAE, then its latent GAN), conditioned on the named
    properties and ``formula``; checkpointed as it goes."""
    config = cdvae.CDVAEConfig.preset(preset, conditions=tuple(conditions))
    model, _ = cdvae.train_cdvae(
        records,
        config,
        device=resolve_device(device),
        epochs=epochs,
        gan_config=cdvae.GANConfig.preset(preset),
        gan_epochs=gan_epochs,
        checkpoint_path=out,
        log_path=Path(out).with_suffix(".metrics.jsonl"),
        seed=seed,
        progress=False,
    )
    return {"conditions": list(model.config.scalar_conditions), "n_train": len(records)}
