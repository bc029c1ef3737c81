"""DiffCSP settings that follow the paper: self-edges, joint condition dropping, value clipping, fp32 lattice maths."""

from __future__ import annotations

import torch

from crysloop.models.diffcsp import DiffCSP, DiffCSPConfig
from crysloop.models.diffcsp.config import DiffCSPConfig as Config
from crysloop.models.diffcsp.denoiser import fully_connected_edges, lattice_gram
from crysloop.models.diffcsp.model import condition_mask
from crysloop.models.diffcsp.training import optimizer_config
from crysloop.models.training import clip_gradients


def _one_atom_outputs(model: DiffCSP, lattice: torch.Tensor):
    num_atoms = torch.tensor([1])
    types = model.type_features(torch.tensor([12]))
    latent = model.latent(torch.tensor([500]), torch.zeros(1, 0), torch.zeros(1, 0), None)
    eps_lattice, score, _ = model(types, torch.tensor([[0.1, 0.2, 0.3]]), lattice, num_atoms, latent)
    return eps_lattice, score


def test_edges_include_self_loops_of_every_atom():
    src, dst, crystal = fully_connected_edges(torch.tensor([1, 3]))
    assert len(src) == 1 + 9
    pairs = set(zip(src.tolist(), dst.tolist()))
    assert {(0, 0), (1, 1), (2, 2), (3, 3)} <= pairs
    assert crystal.tolist() == [0] + [1] * 9


def test_one_atom_cell_lattice_update_depends_on_the_lattice():
    torch.manual_seed(0)
    model = DiffCSP(DiffCSPConfig.preset("cpu-tiny")).eval()
    small, large = torch.eye(3)[None] * 3.0, torch.diag(torch.tensor([5.0, 6.0, 9.0]))[None]
    with torch.no_grad():
        eps_small, score_small = _one_atom_outputs(model, small)
        eps_large, score_large = _one_atom_outputs(model, large)
    # eps_L = C(h) L: the learned coefficients C must see the lattice, through the atom's self-edge message
    coeff_small = eps_small @ torch.linalg.inv(small)
    coeff_large = eps_large @ torch.linalg.inv(large)
    assert not torch.allclose(coeff_small, coeff_large, atol=1e-4)
    assert not torch.allclose(score_small, score_large, atol=1e-4)


def test_unconditional_branch_frequency_equals_drop_rate():
    properties = torch.ones(200_000, 2)
    generator = torch.Generator().manual_seed(0)
    for drop in (0.1, 0.25, 0.5):
        joint = condition_mask(properties, drop, "joint", generator)
        unconditional = (~joint).all(1).double().mean()
        assert abs(float(unconditional) - drop) < 0.005
        assert bool((joint.all(1) | (~joint).all(1)).all())  # all conditions kept or all dropped
        independent = condition_mask(properties, drop, "independent", generator)
        assert abs(float((~independent).all(1).double().mean()) - drop**2) < 0.005


def test_missing_values_are_never_conditions():
    properties = torch.tensor([[float("nan"), 1.0]] * 1000)
    mask = condition_mask(properties, 0.0, "joint")
    assert not mask[:, 0].any() and mask[:, 1].all()


def test_default_config_has_paper_settings_and_old_ones_as_options():
    config = Config()
    assert (config.cost_type, config.grad_clip, config.grad_clip_mode, config.property_drop_mode) == (
        20.0,
        0.5,
        "value",
        "joint",
    )
    legacy = Config.from_dict(
        {**config.to_dict(), "cost_type": 1.0, "grad_clip_mode": "norm", "property_drop_mode": "independent"}
    )
    assert (legacy.cost_type, legacy.grad_clip_mode, legacy.property_drop_mode) == (1.0, "norm", "independent")


def test_value_clipping_bounds_each_gradient_entry_and_norm_clipping_the_norm():
    layer = torch.nn.Linear(4, 4)
    for mode in ("value", "norm"):
        layer.zero_grad()
        (100.0 * layer(torch.ones(1, 4)).pow(2).sum()).backward()
        clip_gradients(layer, optimizer_config(Config(grad_clip=0.5, grad_clip_mode=mode)))
        grads = torch.cat([p.grad.flatten() for p in layer.parameters()])
        if mode == "value":
            assert grads.abs().max() <= 0.5 + 1e-7 and torch.linalg.norm(grads) > 0.5
        else:
            assert abs(float(torch.linalg.norm(grads)) - 0.5) < 1e-4


def test_lattice_gram_stays_fp32_under_bf16_autocast():
    lattice = torch.tensor([[[5.123457, 0.0, 0.0], [0.3, 6.217, 0.0], [0.1, 0.2, 7.00123]]])
    exact = (lattice.double() @ lattice.double().transpose(-1, -2)).flatten(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gram = lattice_gram(lattice)
        coarse = (lattice @ lattice.transpose(-1, -2)).flatten(1)
    assert gram.dtype == torch.float32 and coarse.dtype == torch.bfloat16
    assert (gram.double() - exact).abs().max() < 1e-4
    assert (coarse.double() - exact).abs().max() > 1e-2  # what bf16 would have cost


def test_lattice_noise_prediction_is_fp32_under_autocast():
    torch.manual_seed(0)
    model = DiffCSP(DiffCSPConfig.preset("cpu-tiny")).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        eps_lattice, _ = _one_atom_outputs(model, torch.eye(3)[None] * 4.0)
    assert eps_lattice.dtype == torch.float32


def test_campaign_guidance_default_is_crysvcd_weight():
    from crysloop.campaign.config import StructureModelConfig

    assert StructureModelConfig().guidance == 2.0


def test_auto_lattice_clip_is_on_and_bounds_the_first_step():
    import pytest

    from crysloop.errors import InputError
    from crysloop.models.diffcsp.corruption import NoiseSchedule
    from crysloop.models.diffcsp.sampler import DEFAULT_LATTICE_CLIP, _ddpm_step, resolve_lattice_clip

    assert resolve_lattice_clip("auto") == DEFAULT_LATTICE_CLIP
    assert resolve_lattice_clip(None) is None and resolve_lattice_clip(20.0) == 20.0
    with pytest.raises(InputError, match="lattice_clip"):
        resolve_lattice_clip("always")
    # at t = T the noisy lattice is the noise itself; a noise prediction off by 0.05 (the shipped model's RMSE
    # there) moves the unclipped step ~100x as far (1 / sqrt(alpha_T) = 100), the clipped one by under 0.1 A
    schedule = NoiseSchedule(1000, 0.005, 0.5)
    abar_t, abar_next = schedule.alphas_cumprod[1000], schedule.alphas_cumprod[999]
    torch.manual_seed(0)
    x = torch.randn(1, 3, 3)
    zero = torch.zeros(1, 3, 3)
    exact = _ddpm_step(x, x, abar_t, abar_next, zero)
    unclipped = _ddpm_step(x, x + 0.05, abar_t, abar_next, zero)
    clipped = _ddpm_step(x, x + 0.05, abar_t, abar_next, zero, clip=DEFAULT_LATTICE_CLIP)
    assert (unclipped - exact).abs().min() > 4.0
    assert (clipped - exact).abs().max() < 0.1


def test_earlier_graph_without_self_edges_is_an_option():
    from crysloop.models.diffcsp.config import EARLIER_SETTINGS

    src, dst, crystal = fully_connected_edges(torch.tensor([1, 3]), self_edges=False)
    assert len(src) == 6 and bool((src != dst).all()) and crystal.tolist() == [1] * 6
    earlier = DiffCSP(Config.preset("cpu-tiny", **EARLIER_SETTINGS))
    assert earlier.denoiser.self_edges is False and DiffCSP(Config.preset("cpu-tiny")).denoiser.self_edges is True
    assert Config.from_dict(earlier.config.to_dict()).self_edges is False
