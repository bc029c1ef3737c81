"""ConditionCDVAE+ building blocks: low-rank fusion, the latent WGAN-GP, Langevin step sizes, condition checks,
DimeNet++ latents invariant under symmetry operations, and the training loss."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crysloop.data.tensors import records_to_tensors
from crysloop.errors import InputError
from crysloop.models.cdvae import CDVAEConfig, ConditionCDVAE, GANConfig, train_latent_gan
from crysloop.models.cdvae.conditions import check_conditions, formula_atoms
from crysloop.models.cdvae.fusion import LowRankFusion
from crysloop.models.cdvae.gan import Critic, Generator, gradient_penalty
from crysloop.models.cdvae.langevin import annealed_langevin, step_sizes
from crysloop.models.cdvae.model import minimum_image
from crysloop.models.cdvae.training import as_tensors, dataset_statistics

sys.path.insert(0, str(Path(__file__).parent))
from cdvae_standin import TinyEquivariantNet


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _structure(seed: int = 0) -> Structure:
    rng = np.random.default_rng(seed)
    lattice = Lattice.from_parameters(4.1, 4.7, 5.3, 81.0, 95.0, 103.0)
    return Structure(lattice, ["Si", "O", "O", "Mg", "Al"], rng.random((5, 3)))


def _config(**overrides) -> CDVAEConfig:
    base = CDVAEConfig.preset("cpu-tiny", encoder="dimenet", conditions=("band_gap", "formula"))
    data = records_to_tensors([(_structure(s), {"band_gap": float(s)}) for s in range(4)], ("band_gap",))
    return replace(replace(base, **dataset_statistics(data, base)), **overrides)


def _model(config: CDVAEConfig) -> ConditionCDVAE:
    return ConditionCDVAE(config, TinyEquivariantNet(config.num_species, config.latent_dim, cutoff=config.cutoff))


def test_lmf_equals_its_full_tensor_fusion():
    fusion = LowRankFusion([3, 2], out_dim=4, rank=4)
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    fused = fusion([x, y])
    assert fused.shape == (5, 4)
    a, b = fusion.factors  # (rank, 4, out), (rank, 3, out)
    full = torch.einsum("r,rio,rjo->ijo", fusion.rank_weights[0], a, b)  # the rank-4 weight tensor
    x1, y1 = torch.cat([x, torch.ones(5, 1)], 1), torch.cat([y, torch.ones(5, 1)], 1)
    expected = torch.einsum("bi,bj,ijo->bo", x1, y1, full) + fusion.bias
    assert torch.allclose(fused, expected, atol=1e-5)
    with pytest.raises(ValueError):
        fusion([x])


def test_gan_shapes_follow_the_issue():
    config = GANConfig.preset("paper")
    gen, critic = Generator(config, cond_dim=24, latent_dim=256), Critic(config, cond_dim=24, latent_dim=256)
    linears = [m for m in gen.net if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 6 and max(m.out_features for m in linears[:-1]) == 1024
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in gen.net) == 4
    assert [m.out_features for m in critic.net if isinstance(m, torch.nn.Linear)] == [512, 512, 512, 1]
    assert sum(isinstance(m, torch.nn.Dropout) for m in critic.net) == 3
    z = gen(torch.randn(7, config.noise_dim), torch.randn(7, 24))
    assert z.shape == (7, 256) and critic(z, torch.randn(7, 24)).shape == (7,)


def test_gradient_penalty_of_a_linear_critic():
    critic = Critic(replace(GANConfig(), critic_hidden=()), cond_dim=2, latent_dim=3)
    weight = critic.net[0].weight[0, :3]
    gp = gradient_penalty(critic, torch.randn(6, 3), torch.randn(6, 3), torch.randn(6, 2))
    assert torch.allclose(gp, (weight.norm() - 1) ** 2, atol=1e-6)


def test_latent_gan_trains_and_steps_its_plateau_schedule(tmp_path):
    config = _config()
    model = _model(config)
    data = records_to_tensors([(_structure(s), {"band_gap": float(s)}) for s in range(8)], ("band_gap",))
    gan_config = replace(GANConfig.preset("cpu-tiny"), plateau_patience=0, plateau_factor=0.5, critic_steps=1)
    gan = train_latent_gan(model, data, gan_config, epochs=6, log_path=tmp_path / "gan.jsonl", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "gan.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and rows[-1]["lr_g"] < gan_config.lr  # the scheduler is stepped
    cond = torch.randn(3, gan.cond_dim)
    assert gan.sample(cond).shape == (3, config.latent_dim)
    assert all(p.requires_grad for p in model.parameters())  # the VAE is unfrozen again afterwards


def test_noise_levels_and_langevin_step_sizes():
    paper = CDVAEConfig.preset("paper")
    assert (paper.langevin_steps_per_level, paper.langevin_step_lr) == (100, 1e-4)
    model = _model(_config(num_noise_levels=paper.num_noise_levels))
    sigmas = model.sigmas
    assert (
        len(sigmas) == 50
        and math.isclose(sigmas[0], 10.0, rel_tol=1e-5)
        and math.isclose(sigmas[-1], 0.01, rel_tol=1e-5)
    )
    ratios = sigmas[1:] / sigmas[:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-4)  # geometric
    assert math.isclose(model.type_sigmas[0], 5.0, rel_tol=1e-5)
    sizes = step_sizes(sigmas, 1e-4)
    assert torch.allclose(sizes, 1e-4 * (sigmas / 0.01) ** 2) and math.isclose(sizes[0], 100.0, rel_tol=1e-4)


def test_langevin_runs_every_step_and_keeps_given_types():
    config = _config(num_noise_levels=3, langevin_steps_per_level=4)
    model = _model(config).eval()
    calls = []
    original = model.score
    model.score = lambda *args: calls.append(1) or original(*args)
    num_atoms = torch.tensor([3, 2])
    types = torch.tensor([14, 8, 8, 12, 8])
    lattice = torch.eye(3).expand(2, 3, 3) * 4.0
    frac, out_types = annealed_langevin(
        model,
        torch.randn(2, config.latent_dim),
        num_atoms,
        lattice,
        types,
        types_fixed=True,
        steps_per_level=4,
        step_lr=1e-4,
    )
    assert len(calls) == 12 and frac.shape == (5, 3) and ((frac >= 0) & (frac < 1)).all()
    assert torch.equal(out_types, types)


def test_condition_and_formula_validation():
    config = _config()
    assert check_conditions(config, {"band_gap": 1.5}) == {"band_gap": 1.5}
    with pytest.raises(InputError, match="no condition kappa"):
        check_conditions(config, {"kappa": 1.0})
    for bad in (float("nan"), float("inf")):
        with pytest.raises(InputError, match="finite"):
            check_conditions(config, {"band_gap": bad})
    assert sorted(formula_atoms(config, "MgSiO2")) == [8, 8, 12, 14]
    with pytest.raises(InputError, match="outside this model's vocabulary"):
        formula_atoms(config, "MoS2")
    with pytest.raises(InputError, match="at most 5"):
        formula_atoms(config, "Mg2Si2O4")
    with pytest.raises(InputError, match="not a chemical element"):
        formula_atoms(config, "Xq2")
    with pytest.raises(InputError, match="cannot read"):
        formula_atoms(config, "Mg(")


def _latent(model, structure: Structure) -> torch.Tensor:
    data = as_tensors([structure], model.config)
    mu, _ = model.encode(data)
    return mu[0]


def test_dimenet_latent_is_invariant():
    model = _model(_config()).eval()
    structure = _structure(3)
    reference = _latent(model, structure)
    rotation = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0].numpy()
    rotated = Structure(Lattice(structure.lattice.matrix @ rotation.T), structure.species, structure.frac_coords)
    permuted = Structure(
        structure.lattice, [structure.species[i] for i in (3, 1, 4, 0, 2)], structure.frac_coords[[3, 1, 4, 0, 2]]
    )
    translated = Structure(structure.lattice, structure.species, [*structure.frac_coords, 0.31, 0.77, 0.05])
    supercell = structure * (2, 1, 1)
    with torch.no_grad():
        for other in (rotated, permuted, translated):
            assert torch.allclose(_latent(model, other), reference, atol=1e-4)
        data = records_to_tensors([supercell], ())  # not Niggli-equivalent to the primitive cell: still invariant
        mu, _ = model.encode(data)
        assert torch.allclose(mu[0], reference, atol=1e-4)


def test_minimum_image_is_the_shortest_vector():
    lattice = torch.tensor([[4.0, 0.0, 0.0], [3.5, 1.0, 0.0], [0.0, 0.0, 5.0]])
    d_frac = torch.rand(50, 3) * 2 - 1
    vec = minimum_image(d_frac, lattice.expand(50, 3, 3))
    shifts = torch.cartesian_prod(*[torch.arange(-3, 4)] * 3).float()
    brute = ((d_frac[:, None, :] + shifts) @ lattice).norm(dim=-1).min(dim=1).values
    assert torch.allclose(vec.norm(dim=-1), brute, atol=1e-5)


def test_loss_has_every_term_and_trains():
    config = _config()
    model = _model(config)
    data = records_to_tensors([(_structure(s), {"band_gap": float(s)}) for s in range(4)], ("band_gap",))
    losses = model.loss(data, teacher_forcing=True)
    assert set(losses) == {"natom", "lattice", "composition", "kl", "coord", "type", "property", "loss"}
    weights = {"natom": 1, "lattice": 10, "composition": 1, "kl": 0.01, "coord": 10, "type": 1, "property": 1}
    assert torch.allclose(losses["loss"], sum(w * losses[k] for k, w in weights.items()))
    losses["loss"].backward()
    assert model.property_head[0].weight.grad.abs().sum() > 0 and model.fusion.factors[0].grad.abs().sum() > 0


def _tensors(structure: Structure):
    from crysloop.data.tensors import CrystalTensors

    lattice = torch.tensor(structure.lattice.matrix, dtype=torch.float32)[None]
    return CrystalTensors(
        torch.tensor([s.specie.Z for s in structure]),
        torch.tensor(structure.frac_coords % 1.0, dtype=torch.float32),
        lattice,
        torch.tensor([len(structure)]),
        torch.zeros(1, 1),
    )


def test_equiformer_model_is_invariant_and_equivariant():
    """Encoder latents and type logits invariant, coordinate scores equivariant under rotation, permutation,
    translation and a supercell (EquiformerV2-style encoder and decoder, tiny preset)."""
    config = _config(encoder="equiformer")
    model = ConditionCDVAE(config).eval()
    structure = _structure(5)
    z_c = torch.randn(1, config.latent_dim)
    onehot = lambda t: torch.nn.functional.one_hot(t.atom_types - 1, config.num_species).float()  # noqa: E731

    def run(s: Structure):
        t = _tensors(s)
        with torch.no_grad():
            mu, _ = model.encode(t)
            logits, score = model.score(z_c, onehot(t), t.frac_coords, t.lattice, t.num_atoms)
        return mu[0], logits, score

    mu, logits, score = run(structure)
    rotation = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]
    rotated = Structure(
        Lattice(structure.lattice.matrix @ rotation.numpy().T), structure.species, structure.frac_coords
    )
    mu_r, logits_r, score_r = run(rotated)
    assert torch.allclose(mu_r, mu, atol=1e-4) and torch.allclose(logits_r, logits, atol=1e-4)
    assert torch.allclose(score_r, score @ rotation.float().T, atol=1e-4)
    order = [3, 1, 4, 0, 2]
    permuted = Structure(structure.lattice, [structure.species[i] for i in order], structure.frac_coords[order])
    mu_p, logits_p, score_p = run(permuted)
    assert torch.allclose(mu_p, mu, atol=1e-4) and torch.allclose(logits_p, logits[order], atol=1e-4)
    assert torch.allclose(score_p, score[order], atol=1e-4)
    translated = Structure(structure.lattice, structure.species, [*structure.frac_coords, 0.31, 0.77, 0.05])
    mu_t, logits_t, score_t = run(translated)
    assert torch.allclose(mu_t, mu, atol=1e-4) and torch.allclose(score_t, score, atol=1e-4)
    supercell = structure * (2, 1, 1)  # pymatgen puts the copies of site i at 2i, 2i + 1
    mu_s, logits_s, score_s = run(supercell)
    assert torch.allclose(mu_s, mu, atol=1e-4)
    assert torch.allclose(logits_s[0::2], logits, atol=1e-4) and torch.allclose(logits_s[1::2], logits, atol=1e-4)
    assert torch.allclose(score_s[0::2], score, atol=1e-4)


def test_checkpoint_round_trip_and_kind_check(tmp_path, shared_data):
    from crysloop.data.datasets import load_dataset
    from crysloop.models.cdvae import load_checkpoint, save_checkpoint, train_cdvae
    from crysloop.models.diffcsp import shipped_checkpoint_path as diffcsp_checkpoint

    records = load_dataset(shared_data / "mp_20_sample" / "val.csv.gz", progress=False)[:12]
    config = CDVAEConfig.preset("cpu-tiny", conditions=("formation_energy_per_atom", "formula"))
    model, gan = train_cdvae(
        records, config, device="cpu", steps=2, gan_epochs=1, gan_config=GANConfig.preset("cpu-tiny"), progress=False
    )
    path = save_checkpoint(model, tmp_path / "m.pt", gan)
    loaded, loaded_gan = load_checkpoint(path, device="cpu")
    assert loaded.config == model.config and loaded.config.property_stats == model.config.property_stats
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    for key, value in gan.generator.state_dict().items():
        assert torch.equal(loaded_gan.generator.state_dict()[key], value), key
    payload = torch.load(path, weights_only=True)  # plain data only
    assert (payload["format"], payload["kind"]) == ("crysloop-checkpoint", "cdvae")
    with pytest.raises(InputError, match="not a ConditionCDVAE"):
        load_checkpoint(diffcsp_checkpoint())


def test_new_conditions_keep_the_model_output_until_trained():
    from crysloop.models.cdvae.training import finetune_cdvae, with_conditions

    model = ConditionCDVAE(_config(encoder="equiformer")).eval()
    records = [(_structure(s), {"band_gap": float(s), "stable": float(s % 2)}) for s in range(4)]
    data = records_to_tensors(records, ("band_gap", "stable"))
    extended = with_conditions(model, ["band_gap", "stable"], data).eval()
    assert extended.config.conditions == ("band_gap", "formula", "stable")
    assert extended.config.property_stats["stable"] == (0.5, pytest.approx(0.57735, abs=1e-4))
    z = torch.randn(4, model.config.latent_dim)
    keep_old = torch.ones(4, 2, dtype=torch.bool)
    comps = torch.rand(4, 100)
    old = model.fuse(z, model.conditions(data.properties[:, :1], comps, keep_old))
    new = extended.fuse(z, extended.conditions(data.properties, comps, torch.ones(4, 3, dtype=torch.bool)))
    assert torch.allclose(old, new, atol=1e-5)
    assert torch.allclose(extended.predict_properties(z)[:, :1], model.predict_properties(z), atol=1e-6)
    tuned, gan = finetune_cdvae(model, records, new_conditions=["stable"], steps=1, device="cpu", progress=False)
    assert tuned.config.conditions[-1] == "stable" and gan is None


def test_an_unconditional_model_gains_a_condition_without_changing_z_c():
    from crysloop.models.cdvae.training import with_conditions

    model = ConditionCDVAE(_config(encoder="equiformer", conditions=())).eval()
    records = [(_structure(s), {"stable": float(s % 2)}) for s in range(4)]
    extended = with_conditions(model, ["stable"], records_to_tensors(records, ("stable",)))
    z = torch.randn(3, model.config.latent_dim)
    fused = extended.fuse(z, extended.conditions(torch.ones(3, 1), None, torch.ones(3, 1, dtype=torch.bool)))
    assert model.fusion is None and torch.allclose(fused, z)


def test_reconstruction_with_true_atoms_keeps_each_crystal_atoms():
    """The diagnostic decode (``fixed_composition``) keeps every crystal's atom count and types in order."""
    from crysloop.models.cdvae.sampling import reconstruct

    model = _model(_config(num_noise_levels=2)).eval()
    crystals = [_structure(1), Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])]
    batch = records_to_tensors([(s, {"band_gap": 1.0}) for s in crystals], ("band_gap",))
    out = reconstruct(model, batch, steps_per_level=2, fixed_composition=True)
    assert torch.equal(out["num_atoms"], batch.num_atoms) and torch.equal(out["atom_types"], batch.atom_types)
    assert out["frac_coords"].shape == batch.frac_coords.shape and out["lattice"].shape == (2, 3, 3)
