"""DiffCSP pieces: wrapped-normal score, denoiser symmetries, loss, config, training, checkpoints, fine-tuning."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from crysloop.data.datasets import read_structures
from crysloop.errors import InputError
from crysloop.models.diffcsp import (
    DiffCSP,
    DiffCSPConfig,
    finetune_diffcsp,
    load_checkpoint,
    records_to_tensors,
    save_checkpoint,
    train_diffcsp,
)
from crysloop.models.diffcsp.checkpoints import read_checkpoint
from crysloop.models.diffcsp.corruption import wrapped_normal_score, wrapped_normal_score_norm

PEROV = Path(__file__).resolve().parents[2] / "shared" / "data" / "perov_5" / "val.csv.gz"


@pytest.fixture(scope="module")
def perov_records():
    return list(read_structures(PEROV, progress=False))[:96]


@pytest.fixture(scope="module")
def perov_tensors(perov_records):
    return records_to_tensors(perov_records, ("heat_ref", "dir_gap"))


def _log_wrapped_normal(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = torch.arange(-10, 11, dtype=torch.float64)
    return torch.logsumexp(-((x[..., None] + k) ** 2) / (2 * sigma**2), -1)


@pytest.mark.parametrize("sigma", [0.01, 0.1, 0.5])
def test_wrapped_normal_score_is_gradient_of_log_density(sigma):
    x = torch.linspace(-0.49, 0.49, 41, dtype=torch.float64)
    h = 1e-6
    numeric = (_log_wrapped_normal(x + h, sigma) - _log_wrapped_normal(x - h, sigma)) / (2 * h)
    assert torch.allclose(wrapped_normal_score(x, sigma), numeric, rtol=1e-4, atol=1e-3)
    assert torch.allclose(wrapped_normal_score(x + 1.0, sigma), wrapped_normal_score(x, sigma), atol=1e-6)


def test_score_norm_matches_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    for sigma in (0.02, 0.3):
        x = sigma * torch.randn(400_000, generator=gen, dtype=torch.float64)
        mc = (wrapped_normal_score(x, sigma) ** 2).mean()
        exact = wrapped_normal_score_norm(torch.tensor([sigma]))[0]
        assert math.isclose(float(mc), float(exact), rel_tol=0.02)


def _outputs(model, batch, lattice, frac):
    latent = model.latent(
        torch.full((len(batch.num_atoms),), 300), batch.properties, torch.ones_like(batch.properties), None
    )
    return model(model.type_features(batch.atom_types), frac, lattice, batch.num_atoms, latent)


def test_denoiser_symmetries(perov_tensors):
    torch.manual_seed(0)
    model = DiffCSP(
        DiffCSPConfig.preset(
            "cpu-tiny",
            properties=("heat_ref", "dir_gap"),
            property_stats={"heat_ref": (0.0, 1.0), "dir_gap": (0.0, 1.0)},
        )
    ).eval()
    batch = perov_tensors.select(torch.arange(4))
    eps_l, score, types = _outputs(model, batch, batch.lattice, batch.frac_coords)
    assert types is None and eps_l.shape == (4, 3, 3) and score.shape == (20, 3)
    # rotating the Cartesian frame (rows L -> L R) rotates the lattice noise, leaves the coordinate score alone
    q, _ = torch.linalg.qr(torch.randn(3, 3))
    eps_rot, score_rot, _ = _outputs(model, batch, batch.lattice @ q, batch.frac_coords)
    assert torch.allclose(eps_rot, eps_l @ q, atol=1e-4)
    assert torch.allclose(score_rot, score, atol=1e-4)
    # a periodic translation of every atom changes nothing
    _, score_shift, _ = _outputs(model, batch, batch.lattice, (batch.frac_coords + torch.tensor([0.3, 0.7, 0.1])) % 1)
    assert torch.allclose(score_shift, score, atol=1e-4)
    # permuting the atoms of a crystal permutes the score
    perm = torch.cat([torch.tensor([4, 2, 0, 1, 3]), torch.arange(5, 20)])
    permuted = type(batch)(
        batch.atom_types[perm], batch.frac_coords[perm], batch.lattice, batch.num_atoms, batch.properties
    )
    _, score_perm, _ = _outputs(model, permuted, permuted.lattice, permuted.frac_coords)
    assert torch.allclose(score_perm, score[perm], atol=1e-4)


def test_loss_backward_both_modes(perov_tensors):
    batch = perov_tensors.select(torch.arange(16))
    for mode in ("csp", "abinitio"):
        model = DiffCSP(
            DiffCSPConfig.preset(
                "cpu-tiny", mode=mode, properties=("heat_ref",), property_stats={"heat_ref": (1.0, 0.5)}
            )
        )
        losses = model.loss(
            type(batch)(batch.atom_types, batch.frac_coords, batch.lattice, batch.num_atoms, batch.properties[:, :1])
        )
        assert set(losses) == ({"loss", "lattice", "coord"} | ({"type"} if mode == "abinitio" else set()))
        losses["loss"].backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        assert model.property_embeddings[0][0].weight.grad.abs().sum() > 0


def test_config_presets_and_round_trip():
    config = DiffCSPConfig.preset("cpu-small", properties=("band_gap",), property_stats={"band_gap": (1.0, 2.0)})
    assert DiffCSPConfig.from_dict(config.to_dict()) == config
    paper = DiffCSPConfig()
    assert (paper.num_layers, paper.hidden_dim, paper.time_dim, paper.num_freqs) == (6, 512, 256, 128)
    with pytest.raises(InputError):
        DiffCSPConfig.preset("enormous")


def test_training_lowers_loss_and_checkpoint_resumes(perov_records, tmp_path):
    torch.set_num_threads(1)
    config = DiffCSPConfig.preset("cpu-tiny", properties=("heat_ref",), lr=3e-3)
    ckpt, log = tmp_path / "m.pt", tmp_path / "m.jsonl"
    model = train_diffcsp(
        perov_records,
        config,
        device="cpu",
        epochs=12,
        checkpoint_path=ckpt,
        log_path=log,
        checkpoint_every=6,
        progress=False,
    )
    lines = [line for line in log.read_text().splitlines() if line]
    first, last = (__import__("json").loads(lines[i]) for i in (0, -1))
    assert len(lines) == 12 and last["step"] == 12 * 3
    assert last["train_loss"] < first["train_loss"]
    assert model.config.property_stats["heat_ref"][1] > 0
    loaded = load_checkpoint(ckpt, device="cpu")
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    resumed = train_diffcsp(
        perov_records, model.config, device="cpu", epochs=14, checkpoint_path=ckpt, resume=True, progress=False
    )
    assert read_checkpoint(ckpt)["training_state"]["step"] == 14 * 3
    assert isinstance(resumed, DiffCSP)
    slim = save_checkpoint(resumed, tmp_path / "slim.pt")
    assert "training_state" not in read_checkpoint(slim)
    with pytest.raises(InputError):
        train_diffcsp(
            perov_records, model.config, device="cpu", epochs=15, checkpoint_path=slim, resume=True, progress=False
        )


def test_finetune_adds_property_and_keeps_weights(perov_records):
    base = DiffCSP(DiffCSPConfig.preset("cpu-tiny", properties=("heat_ref",), property_stats={"heat_ref": (1.0, 1.0)}))
    tuned = finetune_diffcsp(
        base, perov_records, new_properties=["dir_gap"], steps=1, lr=1e-12, device="cpu", progress=False
    )
    assert tuned.config.properties == ("heat_ref", "dir_gap")
    assert tuned.config.property_stats["heat_ref"] == (1.0, 1.0)
    assert len(tuned.property_embeddings) == 2
    base_state = base.state_dict()
    for name, value in tuned.state_dict().items():
        if name in base_state and value.is_floating_point() and name != "num_atoms_counts":
            assert torch.allclose(value, base_state[name], atol=1e-6), name
    with pytest.raises(InputError):
        finetune_diffcsp(base, perov_records, new_properties=["no_such_column"], steps=1, device="cpu", progress=False)
