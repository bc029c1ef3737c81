"""DiffCSP sampling: exactness of the reverse updates with an oracle, guidance arithmetic, the shipped model, CLI."""

from __future__ import annotations

import pytest
import torch
from pymatgen.core import Composition

from crysloop.errors import InputError
from crysloop.models.diffcsp import (
    DiffCSP,
    DiffCSPConfig,
    load_checkpoint,
    sample_structures,
    sample_tensors,
    shipped_checkpoint_path,
)
from crysloop.models.diffcsp.corruption import NoiseSchedule, wrapped_normal_score
from crysloop.models.diffcsp.sampler import _ddpm_step, _Guided

TARGET_LATTICE = torch.tensor([[3.9, 0.0, 0.0], [0.0, 4.1, 0.0], [0.3, 0.0, 4.0]])
TARGET_COORDS = torch.tensor([[0.1, 0.2, 0.3], [0.6, 0.5, 0.95], [0.02, 0.98, 0.5]])


class OracleDiffCSP(DiffCSP):
    """A DiffCSP whose network is replaced by the exact noise and score of a single known crystal.

    It tests the sampler's update rules alone: with exact predictions the reverse process must land on the crystal.
    """

    def latent(self, t, properties, keep, types_given):
        return t.float()[:, None]

    def forward(self, type_features, frac_coords, lattice, num_atoms, latent):
        t = latent[:, 0].long()
        abar = self.schedule.alphas_cumprod[t][:, None, None]
        eps = (lattice - abar.sqrt() * TARGET_LATTICE) / (1 - abar).sqrt()
        sigma = self.schedule.sigmas[t][0]
        displacement = (frac_coords - TARGET_COORDS.repeat(len(num_atoms), 1) + 0.5) % 1.0 - 0.5
        score = wrapped_normal_score(displacement, sigma) / self.schedule.sigmas_norm[t][0].sqrt()
        return eps, score, None


@pytest.mark.parametrize("steps,step_lr", [(1000, 1e-5), (100, 0.0)])
def test_reverse_process_recovers_crystal_with_exact_predictions(steps, step_lr):
    oracle = OracleDiffCSP(DiffCSPConfig.preset("cpu-tiny", timesteps=1000))
    gen = torch.Generator().manual_seed(0)
    out = sample_tensors(
        oracle, torch.tensor([3, 3]), torch.tensor([8, 8, 8] * 2), steps=steps, step_lr=step_lr, generator=gen
    )
    assert torch.allclose(out.lattice, TARGET_LATTICE.expand(2, 3, 3), atol=1e-3)
    error = (out.frac_coords - TARGET_COORDS.repeat(2, 1) + 0.5) % 1.0 - 0.5
    assert error.abs().max() < 0.02


def test_lattice_clip_bounds_the_first_reverse_step():
    schedule = NoiseSchedule(1000, 0.005, 0.5)
    lattice = torch.randn(4, 3, 3, generator=torch.Generator().manual_seed(0))
    wrong_eps = lattice + 0.5  # a 0.5 error in the predicted noise at t = T
    abar_t, abar_next = schedule.alphas_cumprod[1000], schedule.alphas_cumprod[999]
    unclipped = _ddpm_step(lattice, wrong_eps, abar_t, abar_next, torch.zeros_like(lattice))
    clipped = _ddpm_step(lattice, wrong_eps, abar_t, abar_next, torch.zeros_like(lattice), clip=20.0)
    assert unclipped.abs().max() > 20.0
    assert clipped.abs().max() < unclipped.abs().max()
    exact = _ddpm_step(lattice, lattice, abar_t, abar_next, torch.zeros_like(lattice), clip=20.0)
    assert torch.allclose(exact, _ddpm_step(lattice, lattice, abar_t, abar_next, torch.zeros_like(lattice)))


def test_guidance_mixes_conditional_and_unconditional_in_one_pass():
    torch.manual_seed(0)
    config = DiffCSPConfig.preset("cpu-tiny", properties=("band_gap",), property_stats={"band_gap": (1.0, 1.0)})
    model = DiffCSP(config).eval()
    num_atoms = torch.tensor([2, 3])
    types, frac, lattice = model.type_features(torch.tensor([8, 12, 8, 8, 22])), torch.rand(5, 3), torch.randn(2, 3, 3)
    guided = _Guided(model, num_atoms, {"band_gap": 3.0}, guidance=2.0, types_given=None)
    assert guided.two_branches
    props = torch.full((2, 1), 3.0)
    t = torch.full((2,), 40)
    cond = model(types, frac, lattice, num_atoms, model.latent(t, props, torch.ones(2, 1), None))
    uncond = model(types, frac, lattice, num_atoms, model.latent(t, props, torch.zeros(2, 1), None))
    with torch.no_grad():
        mixed = guided(40, types, frac, lattice)
    for m, c, u in zip(mixed[:2], cond[:2], uncond[:2]):
        assert torch.allclose(m, 3.0 * c - 2.0 * u, atol=1e-5)
        assert not torch.allclose(c, u)


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(1)
    return load_checkpoint(device="cpu")


def test_shipped_checkpoint_is_small_and_conditioned(shipped):
    assert shipped_checkpoint_path().stat().st_size < 10e6
    assert shipped.config.mode == "abinitio"
    assert set(shipped.config.properties) == {"band_gap", "formation_energy_per_atom"}
    assert shipped.num_atoms_counts.sum() > 1000


def test_shipped_model_predicts_structures_for_compositions(shipped):
    compositions = [Composition("SrTiO3"), "Na2Cl2", "Si2"]
    first = sample_structures(
        shipped, compositions, steps=25, seed=7, device="cpu", conditions={"band_gap": 2.0}, guidance=1.0
    )
    again = sample_structures(
        shipped, compositions, steps=25, seed=7, device="cpu", conditions={"band_gap": 2.0}, guidance=1.0
    )
    assert [s.composition for s in first] == [Composition(c) for c in compositions]
    for a, b in zip(first, again):
        assert torch.allclose(torch.tensor(a.lattice.matrix), torch.tensor(b.lattice.matrix))
        assert torch.isfinite(torch.tensor(a.lattice.matrix)).all()
        assert ((a.frac_coords >= 0) & (a.frac_coords < 1)).all()


def test_shipped_model_generates_ab_initio(shipped):
    structures = sample_structures(shipped, n=5, steps=25, seed=1, device="cpu", batch_size=2)
    assert len(structures) == 5
    support = set(torch.nonzero(shipped.num_atoms_counts).flatten().tolist())
    assert all(len(s) in support for s in structures)
    assert all(1 <= site.specie.Z <= shipped.config.max_atomic_number for s in structures for site in s)


def test_sampling_rejects_bad_requests(shipped):
    with pytest.raises(InputError):
        sample_structures(shipped, ["SrTiO3"], conditions={"kappa": 1.0}, steps=2)
    with pytest.raises(InputError):
        sample_structures(shipped, ["SrTiO3"], n=3, steps=2)
    with pytest.raises(InputError):
        sample_structures(shipped, ["Sr0.5TiO3"], steps=2)
    csp_only = DiffCSP(DiffCSPConfig.preset("cpu-tiny"))
    with pytest.raises(InputError):
        sample_structures(csp_only, n=2, steps=2)


def test_cli_sample_writes_cifs(tmp_path, capsys):
    from pymatgen.core import Structure

    from crysloop.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "sample",
                "structure",
                "CsPbI3",
                "--samples",
                "2",
                "--steps",
                "10",
                "--device",
                "cpu",
                "--condition",
                "band_gap=1.5",
                "--guidance",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
    assert exit_info.value.code == 0
    cifs = sorted(tmp_path.glob("*.cif"))
    assert len(cifs) == 2
    assert Structure.from_file(cifs[0]).composition == Composition("CsPbI3")
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "structure", "CsPbI3", "--condition", "band_gap"])
    assert exit_info.value.code == 1
    assert "NAME=VALUE" in capsys.readouterr().err
