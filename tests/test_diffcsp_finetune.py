"""Fine-tuning DiffCSP on a round's few labels: new conditions start as no-ops, and the conditions-only scope
leaves the denoiser as trained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crysloop.data.datasets import read_structures
from crysloop.errors import InputError
from crysloop.models.diffcsp import DiffCSP, DiffCSPConfig, finetune_diffcsp

MP20 = Path(__file__).resolve().parents[2] / "shared" / "data" / "mp_20_sample" / "test.csv.gz"


@pytest.fixture(scope="module")
def labelled():
    records = list(read_structures(MP20, progress=False))[:8]
    return [(r.structure, {"stable": float(r.properties["e_above_hull"] < 0.1)}) for r in records]


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return DiffCSP(DiffCSPConfig.preset("cpu-tiny")).eval()


def _outputs(model: DiffCSP, keep: float):
    """The lattice noise and coordinate score of two fixed noisy crystals, conditions kept (1) or dropped (0)."""
    torch.manual_seed(1)
    num_atoms = torch.tensor([2, 3])
    types = model.type_features(torch.tensor([11, 17, 12, 8, 8]))
    t = torch.tensor([40, 80])
    properties = torch.ones(2, len(model.config.properties))
    latent = model.latent(t, properties, torch.full_like(properties, keep), None)
    with torch.no_grad():
        return model(types, torch.rand(5, 3), torch.eye(3).repeat(2, 1, 1) * 4.0, num_atoms, latent)[:2]


def test_a_new_condition_changes_nothing_until_trained(base, labelled):
    tuned = finetune_diffcsp(base, labelled, new_properties=["stable"], steps=0, device="cpu", progress=False)
    for conditioned, unconditioned in zip(_outputs(tuned, 1.0), _outputs(tuned, 0.0), strict=True):
        assert torch.equal(conditioned, unconditioned)


def test_conditions_scope_trains_the_embedding_and_keeps_the_denoiser(base, labelled):
    tuned = finetune_diffcsp(
        base, labelled, new_properties=["stable"], steps=5, device="cpu", progress=False, scope="conditions"
    )
    base_state = base.state_dict()
    for name, value in tuned.state_dict().items():
        if name.startswith("denoiser."):
            assert torch.allclose(value, base_state[name], atol=1e-6, rtol=0), name
    assert tuned.property_embeddings[0][-1].weight.abs().sum() > 0  # the new condition has learnt something
    lattice_cond, _ = _outputs(tuned, 1.0)
    lattice_uncond, _ = _outputs(tuned, 0.0)
    assert not torch.allclose(lattice_cond, lattice_uncond)
    everything = finetune_diffcsp(base, labelled, new_properties=["stable"], steps=5, device="cpu", progress=False)
    moved = [
        n
        for n, v in everything.state_dict().items()
        if n.startswith("denoiser.") and not torch.allclose(v, base_state[n], atol=1e-6, rtol=0)
    ]
    assert moved  # scope "all" (the default of the model API) trains the denoiser too
    with pytest.raises(InputError):
        finetune_diffcsp(
            base, labelled, new_properties=["stable"], steps=1, device="cpu", progress=False, scope="denoiser"
        )
    with pytest.raises(InputError, match="needs a condition"):
        finetune_diffcsp(base, labelled, steps=1, device="cpu", progress=False, scope="conditions")
