"""ConditionCDVAE+ as a campaign's Stage II: the config option and a generate flow that stores its crystals."""

from __future__ import annotations

import pytest

from crysloop.errors import InputError


def test_generator_option_is_validated():
    from crysloop.campaign.config import parse_config

    config = parse_config({"name": "vdw", "generator": "condition-cdvae-plus", "cdvae_model": {"candidates": 10}})
    assert config.generation.generator == "condition-cdvae-plus" and config.generation.cdvae_model.candidates == 10
    assert parse_config({"name": "plain"}).generation.generator == "crysvcd"
    with pytest.raises(InputError, match="generator"):
        parse_config({"name": "bad", "generator": "cdvae"})


def test_generate_flow_with_condition_cdvae_plus(settings, prefect_harness, shared_data, tmp_path):
    from crysloop.campaign.config import CDVAEModelConfig, GenerationConfig
    from crysloop.data.datasets import load_dataset
    from crysloop.flows.generate import generate_flow
    from crysloop.infra.db import database
    from crysloop.infra.documents import Candidate
    from crysloop.models.cdvae import CDVAEConfig, GANConfig, train_cdvae

    records = load_dataset(shared_data / "mp_20_sample" / "val.csv.gz", progress=False)
    checkpoint = tmp_path / "cdvae.pt"
    train_cdvae(
        records,
        CDVAEConfig.preset("cpu-tiny", conditions=("formation_energy_per_atom", "formula")),
        device="cpu",
        steps=1,
        gan_epochs=1,
        gan_config=GANConfig.preset("cpu-tiny"),
        checkpoint_path=checkpoint,
        progress=False,
    )
    config = GenerationConfig(
        generator="condition-cdvae-plus",
        cdvae_model=CDVAEModelConfig(checkpoint=str(checkpoint), candidates=4, steps_per_level=1, batch_size=4),
    )
    summary = generate_flow(
        n=6,
        conditions={"formation_energy_per_atom": -0.5, "stable": 1.0},
        config=config,
        campaign="cdvae",
        device="cpu",
        seed=3,
    )
    assert summary.conditions_stage2 in ({}, {"formation_energy_per_atom": -0.5})
    with database(readonly=True):
        stored = list(Candidate.objects(campaign="cdvae"))
    assert len(stored) == summary.inserted and summary.generated >= 1
    assert all(c.origin["generator"] == "condition-cdvae-plus" for c in stored)
    assert all(c.origin["conditions_stage2"] == {"formation_energy_per_atom": -0.5} for c in stored)
