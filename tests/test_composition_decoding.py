"""Stage I choices: exact rejection sampling next to constrained decoding, and each model keeping its vocabulary."""

from __future__ import annotations

import pytest
import torch

from crysloop.errors import InputError
from crysloop.models.composition import (
    CompositionLM,
    CompositionLMConfig,
    load_checkpoint,
    sample_compositions,
    sample_compositions_rejection,
    save_checkpoint,
)
from crysloop.models.composition.sampling import admissible

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "dropout": 0.0}


@pytest.fixture(scope="module")
def model() -> CompositionLM:
    torch.manual_seed(3)
    return CompositionLM(CompositionLMConfig(**TINY, max_species=4))


def test_constrained_samples_are_admissible(model):
    samples = sample_compositions(model, 200, seed=0)
    assert all(admissible(model, s) for s in samples)


def test_rejection_keeps_only_admissible_draws_of_the_raw_model(model):
    samples, draws = sample_compositions_rejection(model, 30, seed=0, batch_size=512)
    assert len(samples) == 30 and draws >= 30
    assert all(admissible(model, s) and s.charge == 0 for s in samples)
    raw = sample_compositions(model, 400, seed=5, constrained=False)
    share = sum(admissible(model, s) for s in raw) / len(raw)
    assert 0.0 < share < 1.0  # an untrained model draws many inadmissible compositions: rejection has work to do


def test_rejection_gives_up_with_an_input_error(model):
    with pytest.raises(InputError, match="rejection sampling kept"):
        sample_compositions_rejection(model, 10_000, seed=0, max_draws=64, batch_size=64)


def test_default_vocabulary_is_common_and_old_checkpoints_stay_full(tmp_path, model):
    assert model.config.vocabulary == "common" and len(model.vocabulary.species) == 239
    full = CompositionLM(CompositionLMConfig(**TINY, vocabulary="full"))
    assert len(full.vocabulary.species) == 311
    path = save_checkpoint(full, tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    del payload["config"]["vocabulary"]  # as written before the vocabulary was a choice
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    assert loaded.config.vocabulary == "full" and loaded.vocabulary.species == full.vocabulary.species
    assert (loaded.vocabulary.compatible == full.vocabulary.compatible).all()
