"""Semi-periodic (slab) generation on layered data: the slab geometry of the shipped bilayers, reflection at the
slab bounds, a radius graph that does not cross the vacuum, and ConditionCDVAE+ and DiffCSP models that keep c
fixed and every atom inside the slab when noising, sampling and after a checkpoint round trip."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crysloop.data.datasets import read_structures
from crysloop.data.graph import radius_graph_pbc
from crysloop.data.tensors import records_to_tensors
from crysloop.errors import InputError
from crysloop.models.cdvae import (
    CDVAEConfig,
    ConditionCDVAE,
    load_checkpoint,
    sample_structures,
    save_checkpoint,
)
from crysloop.models.cdvae.training import as_tensors, dataset_statistics
from crysloop.models.slab import (
    SlabGeometry,
    confine,
    reflect,
    slab_geometry,
    to_slab_cells,
)

sys.path.insert(0, str(Path(__file__).parent))
from cdvae_standin import TinyEquivariantNet

SUBSET = Path(__file__).resolve().parents[1] / "crysloop" / "assets" / "datasets" / "vdw_iii_vi_mini"
CONDITION = "formation_energy_per_atom"


@pytest.fixture(scope="module")
def bilayers():
    return list(read_structures(SUBSET / "train.csv.gz", progress=False))[:12]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_reflection_folds_into_the_bounds_and_keeps_inside_points():
    z = torch.tensor([0.35, 0.5, 0.65, 0.30, 0.70, 0.1, 1.4, -0.9])
    folded = reflect(z, 0.3, 0.7)
    assert torch.allclose(folded[:5], z[:5])
    assert ((folded >= 0.3 - 1e-7) & (folded <= 0.7 + 1e-7)).all()
    assert torch.isclose(folded[5], torch.tensor(0.5))  # 0.2 below the lower bound -> 0.2 above it
    frac = torch.tensor([[1.25, -0.25, 0.75]])
    assert torch.allclose(confine(frac, SlabGeometry(c=20.0, half_width=4.0)), torch.tensor([[0.25, 0.75, 0.65]]))


def test_slab_cells_share_c_centre_the_slab_and_keep_the_geometry(bilayers):
    data = records_to_tensors(bilayers)
    geometry = slab_geometry(data, cutoff=7.0)
    lengths = data.lattice[:, 2].norm(dim=1)
    assert geometry.c == pytest.approx(float(lengths.max()), rel=1e-6)
    slabs = to_slab_cells(data, geometry)
    assert torch.allclose(slabs.lattice[:, 2].norm(dim=1), torch.full((len(lengths),), geometry.c))
    assert torch.allclose(slabs.lattice[:, :2], data.lattice[:, :2])
    low, high = geometry.bounds()
    start = 0
    for b, n in enumerate(data.num_atoms.tolist()):
        z = slabs.frac_coords[start : start + n, 2]
        assert float(z.min()) >= low and float(z.max()) <= high
        assert float(z.min() + z.max()) / 2 == pytest.approx(0.5, abs=1e-6)
        before = Structure(
            Lattice(data.lattice[b].numpy()),
            data.atom_types[start : start + n].tolist(),
            data.frac_coords[start : start + n].numpy(),
        )
        after = Structure(
            Lattice(slabs.lattice[b].numpy()),
            slabs.atom_types[start : start + n].tolist(),
            slabs.frac_coords[start : start + n].numpy(),
        )
        assert np.allclose(
            np.sort(before.distance_matrix, axis=None), np.sort(after.distance_matrix, axis=None), atol=1e-3
        )  # same slab, only more vacuum
        start += n


def test_radius_graph_of_a_slab_cell_does_not_cross_the_vacuum(bilayers):
    data = records_to_tensors(bilayers)
    slabs = to_slab_cells(data, slab_geometry(data, cutoff=7.0))
    graph = radius_graph_pbc(slabs.frac_coords, slabs.lattice, slabs.num_atoms, cutoff=7.0)
    assert graph.edge_index.shape[1] > 0
    assert (graph.cell_offsets[:, 2] == 0).all()
    assert (graph.cell_offsets[:, :2] != 0).any()  # in-plane images are still neighbours
    squeezed = replace(slabs, lattice=slabs.lattice * torch.tensor([1.0, 1.0, 0.35])[:, None])  # vacuum < cut-off
    crossing = radius_graph_pbc(squeezed.frac_coords, squeezed.lattice, squeezed.num_atoms, cutoff=7.0)
    assert (crossing.cell_offsets[:, 2] != 0).any()  # the check above can fail


def test_bulk_crystals_are_not_slabs():
    bulk = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(InputError, match="vacuum"):
        slab_geometry(records_to_tensors([bulk]), cutoff=7.0)
    tilted = Structure(Lattice.from_parameters(4, 4, 30, 70, 90, 120), ["Na", "Cl"], [[0, 0, 0.4], [0, 0, 0.5]])
    with pytest.raises(InputError, match="perpendicular"):
        slab_geometry(records_to_tensors([tilted]), cutoff=7.0)


def _cdvae(bilayers, semi_periodic: bool = True, standin: bool = True) -> tuple[ConditionCDVAE, object]:
    """A cpu-tiny model fitted to ``bilayers``: with a stand-in decoder network (fast), or the real EquiformerV2-style
    one (what a checkpoint stores)."""
    base = CDVAEConfig.preset("cpu-tiny", conditions=(CONDITION,), semi_periodic=semi_periodic)
    data = records_to_tensors(bilayers, (CONDITION,))
    config = replace(base, **dataset_statistics(data, base))
    network = TinyEquivariantNet(config.num_species, config.latent_dim, cutoff=config.cutoff) if standin else None
    return ConditionCDVAE(config, network), as_tensors(data, config)


def test_cdvae_noising_keeps_atoms_in_the_slab(bilayers):
    model, data = _cdvae(bilayers)
    slab = model.config.slab
    assert slab is not None and model.config.slab_c == pytest.approx(slab_geometry(records_to_tensors(bilayers), 7.0).c)
    lattice_atom = data.lattice[data.atom_crystal]
    sigma = torch.full((len(data.atom_types), 1), 10.0)  # the largest noise level, as large as the slab
    noisy, target = model.perturb(data.frac_coords, lattice_atom, sigma)
    low, high = slab.bounds()
    assert float(noisy[:, 2].min()) >= low - 1e-6 and float(noisy[:, 2].max()) <= high + 1e-6
    assert ((noisy[:, :2] >= 0) & (noisy[:, :2] < 1)).all()
    along_c = (data.frac_coords[:, 2] - noisy[:, 2]) * slab.c / 100.0  # no image along c: the direct way back
    assert torch.allclose(target[:, 2], along_c, atol=1e-4)
    periodic, _ = _cdvae(bilayers, semi_periodic=False)
    wrapped, _ = periodic.perturb(data.frac_coords, lattice_atom, sigma)
    assert ((wrapped[:, 2] < low) | (wrapped[:, 2] > high)).any()  # 3D-periodic noise leaves the slab


def test_cdvae_samples_keep_c_fixed_and_atoms_in_the_slab_after_a_checkpoint(bilayers, tmp_path):
    model, data = _cdvae(bilayers, standin=False)
    losses = model.loss(data)
    assert torch.isfinite(losses["loss"])
    path = save_checkpoint(model, tmp_path / "slab.pt")
    loaded, gan = load_checkpoint(path, device="cpu")
    assert loaded.config.semi_periodic and loaded.config.slab == model.config.slab
    structures = sample_structures(loaded, gan, n=4, conditions={CONDITION: -0.7}, candidates=3, steps_per_level=2)
    low, high = loaded.config.slab.bounds()
    for structure in structures:
        assert structure.lattice.c == pytest.approx(loaded.config.slab_c, rel=1e-5)
        assert structure.lattice.alpha == pytest.approx(90.0, abs=1e-3)
        assert structure.lattice.beta == pytest.approx(90.0, abs=1e-3)
        z = structure.frac_coords[:, 2]
        assert z.min() >= low - 1e-5 and z.max() <= high + 1e-5
    periodic, _ = _cdvae(bilayers, semi_periodic=False, standin=False)
    loaded_periodic, _ = load_checkpoint(save_checkpoint(periodic, tmp_path / "periodic.pt"), device="cpu")
    assert not loaded_periodic.config.semi_periodic and loaded_periodic.config.slab is None


def test_diffcsp_noising_keeps_c_and_atoms_in_the_slab(bilayers):
    from crysloop.models.diffcsp.corruption import (
        NoiseSchedule,
        noise_frac_coords,
        noise_lattice,
    )

    data = records_to_tensors(bilayers)
    geometry = slab_geometry(data)
    slabs = to_slab_cells(data, geometry)
    schedule = NoiseSchedule(100, 0.005, 0.5)
    t = torch.full((len(slabs.num_atoms),), 100)  # the noisiest step: sigma = 0.5 of c, ~15 A
    lattice, eps = noise_lattice(slabs.lattice, t, schedule, geometry)
    assert torch.allclose(lattice[:, 2], torch.tensor([0.0, 0.0, geometry.c]).expand(len(t), 3))
    assert (lattice[:, :2, 2] == 0).all() and (eps[:, 2] == 0).all() and (eps[:, :2, 2] == 0).all()
    assert not torch.allclose(lattice[:, :2, :2], slabs.lattice[:, :2, :2])  # the in-plane block does diffuse
    t_atom = torch.full((len(slabs.atom_types),), 100)
    noisy, target = noise_frac_coords(slabs.frac_coords, t_atom, schedule, geometry)
    low, high = geometry.bounds()
    assert float(noisy[:, 2].min()) >= low - 1e-6 and float(noisy[:, 2].max()) <= high + 1e-6
    assert ((noisy[:, :2] >= 0) & (noisy[:, :2] < 1)).all()
    assert (torch.sign(target[:, 2]) == torch.sign(slabs.frac_coords[:, 2] - noisy[:, 2])).all()
    wrapped, _ = noise_frac_coords(slabs.frac_coords, t_atom, schedule)
    assert ((wrapped[:, 2] < low) | (wrapped[:, 2] > high)).any()  # 3D-periodic noise leaves the slab


def test_diffcsp_semi_periodic_flag_round_trips_and_sampling_honours_it(bilayers, tmp_path):
    from crysloop.models.diffcsp import (
        DiffCSPConfig,
        load_checkpoint,
        sample_structures,
        train_diffcsp,
    )

    config = DiffCSPConfig.preset("cpu-tiny", mode="abinitio", semi_periodic=True)
    path = tmp_path / "slab-diffcsp.pt"
    train_diffcsp(bilayers, config, device="cpu", steps=2, checkpoint_path=path, progress=False)
    model = load_checkpoint(path, device="cpu")
    assert model.config.semi_periodic and model.config.slab == slab_geometry(records_to_tensors(bilayers))
    low, high = model.config.slab.bounds()
    for structure in sample_structures(model, n=3, steps=10, seed=1):
        assert structure.lattice.c == pytest.approx(model.config.slab_c, rel=1e-5)
        assert structure.lattice.alpha == pytest.approx(90.0, abs=1e-3)
        assert structure.lattice.beta == pytest.approx(90.0, abs=1e-3)
        z = structure.frac_coords[:, 2]
        assert z.min() >= low - 1e-5 and z.max() <= high + 1e-5


def test_finetuning_a_semi_periodic_cdvae_skips_crystals_that_are_not_fitting_slabs(bilayers):
    from crysloop.models.cdvae import finetune_cdvae

    model, _ = _cdvae(bilayers)
    geometry = model.config.slab
    bulk = Structure(Lattice.hexagonal(3.8, 6.0), ["Ga", "Se"], [[0, 0, 0], [1 / 3, 2 / 3, 0.5]])
    records = [(r.structure, {"formation_energy_per_atom": -0.7}) for r in bilayers[:3]]
    tuned, _ = finetune_cdvae(
        model, [(bulk, {"formation_energy_per_atom": -0.5}), *records], epochs=1, device="cpu", progress=False
    )
    assert tuned.config.slab == geometry  # a mixed set trains and keeps the slab geometry
    with pytest.raises(InputError, match="slab"):
        finetune_cdvae(model, [(bulk, {"formation_energy_per_atom": -0.5})], epochs=1, device="cpu", progress=False)
