"""EquiformerV2-style network: invariance of per-atom scalars and equivariance of l=1 vectors under rotation,
permutation, translation and change of unit cell; the tie-aware neighbour cap; cells shorter than the cutoff."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from e3nn import o3
from pymatgen.core import Lattice, Structure

from crysloop.data.graph import radius_graph_pbc
from crysloop.models.equiformer import EquiformerConfig, EquiformerV2, capped_radius_graph, graph_readout

TOL = 1e-4


def _cells() -> list[Structure]:
    """A few MP-20-like cells: rock salt, a cubic perovskite, a distorted triclinic ternary, a 2D-like layer."""
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    perovskite = Structure(
        Lattice.cubic(3.9),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    rng = np.random.default_rng(0)
    triclinic = Structure(
        Lattice.from_parameters(4.1, 5.3, 6.2, 81.0, 97.0, 104.0), ["Li", "Fe", "P", "O", "O", "O"], rng.random((6, 3))
    )
    layer = Structure(
        Lattice.from_parameters(3.0, 3.2, 18.0, 90.0, 90.0, 117.0),
        ["Mo", "S", "S"],
        [[0, 0, 0.5], [1 / 3, 2 / 3, 0.41], [1 / 3, 2 / 3, 0.59]],
    )
    return [rocksalt, perovskite, triclinic, layer]


def _tensors(structures: list[Structure]) -> tuple[torch.Tensor, ...]:
    """(one-hot species, frac coords, lattices, batch) in float64."""
    z = torch.tensor([site.specie.Z for s in structures for site in s])
    feats = torch.nn.functional.one_hot(z - 1, 100).double()
    frac = torch.tensor(np.concatenate([s.frac_coords for s in structures]))
    lattice = torch.tensor(np.stack([s.lattice.matrix for s in structures]))
    batch = torch.repeat_interleave(torch.arange(len(structures)), torch.tensor([len(s) for s in structures]))
    return feats, frac, lattice, batch


@pytest.fixture(scope="module")
def network() -> EquiformerV2:
    torch.manual_seed(0)
    return EquiformerV2(EquiformerConfig.preset("tiny"), num_species=100, cond_dim=3).double().eval()


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, ...]:
    feats, frac, lattice, batch = _tensors(_cells())
    cond = torch.randn(lattice.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return feats, frac, lattice, batch, cond


@pytest.fixture(scope="module")
def reference(network, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return network(*inputs)


def test_shapes_and_gradients(network, inputs):
    feats, frac, lattice, batch, cond = inputs
    lattice = lattice.clone().requires_grad_(True)
    scalars, vectors = network(feats, frac, lattice, batch, cond)
    channels = network.config.channels
    assert scalars.shape == (len(feats), channels) and vectors.shape == (len(feats), channels, 3)
    network.zero_grad()
    (scalars.pow(2).sum() + vectors.pow(2).sum()).backward()
    assert torch.isfinite(lattice.grad).all() and lattice.grad.abs().sum() > 0
    dead = [name for name, p in network.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"parameters without gradient: {dead}"
    assert graph_readout(scalars, batch, 4).shape == (4, channels)


def test_rotation(network, inputs, reference):
    feats, frac, lattice, batch, cond = inputs
    angles = torch.rand(3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 2 * torch.pi
    rotation = o3.angles_to_matrix(*angles)
    with torch.no_grad():
        scalars, vectors = network(feats, frac, lattice @ rotation.T, batch, cond)
    assert torch.allclose(scalars, reference[0], atol=TOL)
    assert torch.allclose(vectors, reference[1] @ rotation.T, atol=TOL)
    assert not torch.allclose(vectors, reference[1], atol=1e-2)  # the vectors do turn


def test_permutation(network, inputs, reference):
    feats, frac, lattice, batch, cond = inputs
    perm = torch.cat([torch.nonzero(batch == b).flatten()[torch.randperm(int((batch == b).sum()))] for b in range(4)])
    with torch.no_grad():
        scalars, vectors = network(feats[perm], frac[perm], lattice, batch[perm], cond)
    assert torch.allclose(scalars, reference[0][perm], atol=TOL)
    assert torch.allclose(vectors, reference[1][perm], atol=TOL)
    shuffled = torch.randperm(len(batch), generator=torch.Generator().manual_seed(5))
    with pytest.raises(ValueError, match="grouped by crystal"):
        network(feats[shuffled], frac[shuffled], lattice, batch[shuffled], cond)


def test_translation(network, inputs, reference):
    feats, frac, lattice, batch, cond = inputs
    shift = torch.rand(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        scalars, vectors = network(feats, (frac + shift[batch]) % 1.0, lattice, batch, cond)
    assert torch.allclose(scalars, reference[0], atol=TOL)
    assert torch.allclose(vectors, reference[1], atol=TOL)


def test_supercell_gives_the_same_atoms(network, inputs, reference):
    feats, frac, lattice, batch, cond = inputs
    parts = {"feats": [], "frac": [], "batch": [], "source": []}
    for b in range(4):
        atoms = torch.nonzero(batch == b).flatten()
        for copy in range(2):
            parts["feats"].append(feats[atoms])
            parts["frac"].append(
                (frac[atoms] + torch.tensor([copy, 0.0, 0.0], dtype=torch.float64))
                / torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)
            )
            parts["batch"].append(batch[atoms])
            parts["source"].append(atoms)
    doubled = lattice * torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)[None, :, None]
    source, new_batch = torch.cat(parts["source"]), torch.cat(parts["batch"])
    with torch.no_grad():
        scalars, vectors = network(torch.cat(parts["feats"]), torch.cat(parts["frac"]), doubled, new_batch, cond)
    assert torch.allclose(scalars, reference[0][source], atol=TOL)
    assert torch.allclose(vectors, reference[1][source], atol=TOL)
    assert torch.allclose(graph_readout(scalars, new_batch, 4), graph_readout(reference[0], batch, 4), atol=TOL)


def test_condition_changes_the_output(network, inputs, reference):
    feats, frac, lattice, batch, cond = inputs
    with torch.no_grad():
        scalars, _ = network(feats, frac, lattice, batch, cond + 1.0)
    assert (scalars - reference[0]).abs().max() > 1e-3
    with pytest.raises(ValueError):
        network(feats, frac, lattice, batch)


def test_cap_keeps_nearest_and_whole_shells():
    copper = Structure(Lattice.cubic(3.61), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    _, frac, lattice, batch = _tensors([copper])
    graph = capped_radius_graph(frac, lattice, torch.tensor([4]), 7.0, 20, 1e-3)
    # fcc shells: 12 at a/sqrt2, 6 at a, 24 at a sqrt(3/2); the 20th neighbour is in the third shell, kept whole
    assert torch.bincount(graph.edge_index[0]).tolist() == [42] * 4
    _, frac, lattice, batch = _tensors(_cells()[2:3])
    full = radius_graph_pbc(frac, lattice, torch.tensor([6]), 7.0)
    capped = capped_radius_graph(frac, lattice, torch.tensor([6]), 7.0, 20, 1e-3)
    for atom in range(6):
        all_d = full.distances[full.edge_index[0] == atom].sort().values
        kept = capped.distances[capped.edge_index[0] == atom].sort().values
        assert len(kept) == 20 and torch.equal(kept, all_d[:20])


def test_short_cell_gets_all_images():
    layer = _cells()[3]
    _, frac, lattice, _ = _tensors([layer])
    graph = capped_radius_graph(frac, lattice, torch.tensor([3]), 7.0, 1000, 1e-3)
    centres, neighbours, _, distances = layer.get_neighbor_list(7.0)
    assert graph.edge_index.shape[1] == len(centres)
    assert np.allclose(np.sort(graph.distances.numpy()), np.sort(distances))
    assert graph.cell_offsets[:, 0].abs().max() >= 2  # images beyond the nearest one along the 3 A vector


def test_float32_rotation_on_low_symmetry_cells():
    torch.manual_seed(0)
    network = EquiformerV2(EquiformerConfig.preset("cpu-small"), num_species=100).eval()
    feats, frac, lattice, batch = (t.float() if t.is_floating_point() else t for t in _tensors(_cells()[2:]))
    rotation = o3.angles_to_matrix(*torch.tensor([2.0, 0.7, 5.1]))
    with torch.no_grad():
        s0, v0 = network(feats, frac, lattice, batch)
        s1, v1 = network(feats, frac, lattice @ rotation.T, batch)
    assert torch.allclose(s1, s0, atol=1e-3) and torch.allclose(v1, v0 @ rotation.T, atol=1e-3)


def test_drop_path_only_in_training(inputs):
    torch.manual_seed(0)
    config = EquiformerConfig.preset("tiny", drop_path_rate=0.5)
    network = EquiformerV2(config, num_species=100, cond_dim=3).double()
    network.eval()
    with torch.no_grad():
        first, second = network(*inputs)[0], network(*inputs)[0]
        network.train()
        torch.manual_seed(1)
        dropped = network(*inputs)[0]
    assert torch.equal(first, second) and not torch.allclose(first, dropped)


def test_presets():
    paper = EquiformerConfig.preset("paper")
    assert (paper.num_layers, paper.channels, paper.lmax, paper.mmax, paper.num_heads) == (8, 128, 4, 2, 8)
    assert (paper.cutoff, paper.max_neighbors) == (7.0, 20)
    from crysloop.errors import InputError

    with pytest.raises(InputError):
        EquiformerConfig.preset("huge")
    with pytest.raises(InputError):
        EquiformerConfig.preset("tiny", mmax=3)
    with pytest.raises(InputError):
        EquiformerConfig.preset("tiny", grid_resolution=5)


def test_separable_s2_activation_gradient():
    from crysloop.models.equiformer.activation import SeparableS2Activation

    activation = SeparableS2Activation(2, 8).double()
    x = torch.randn(4, 9, 3, dtype=torch.float64, requires_grad=True)
    scalars = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(activation, (scalars, x))


def test_edge_rotation_turns_each_edge_onto_the_polar_axis():
    from crysloop.models.equiformer.linear import edge_frame_index
    from crysloop.models.equiformer.so2 import EdgeRotation

    vectors = torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    rotation = EdgeRotation(3, 3)(vectors)  # mmax = lmax keeps every coefficient: an orthogonal matrix per edge
    full = torch.zeros(50, 16, 16, dtype=torch.float64)
    full[:, edge_frame_index(3, 3)] = rotation
    assert torch.allclose(full @ full.transpose(1, 2), torch.eye(16, dtype=torch.float64).expand(50, 16, 16))
    local = (full[:, 1:4, 1:4] @ (vectors / vectors.norm(dim=1, keepdim=True))[:, :, None]).squeeze(-1)
    assert torch.allclose(local, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand(50, 3), atol=1e-12)
    turned = torch.zeros(16, 16, dtype=torch.float64)
    turned[edge_frame_index(3, 3)] = EdgeRotation(3, 3)(
        vectors[:1] @ o3.angles_to_matrix(*torch.tensor([0.3, 1.2, 2.2], dtype=torch.float64)).T
    )[0]
    wigner = o3.Irreps.spherical_harmonics(3).D_from_angles(*torch.tensor([0.3, 1.2, 2.2], dtype=torch.float64))
    roll = turned @ wigner @ full[0].T  # the same edge, turned: frames differ only by a roll about the axis
    assert torch.allclose(roll[0, 0], torch.tensor(1.0, dtype=torch.float64)) and abs(float(roll[2, 2]) - 1) < 1e-12


def test_so2_convolution_commutes_with_rolls_about_the_edge():
    from crysloop.models.equiformer.linear import edge_frame_index
    from crysloop.models.equiformer.so2 import SO2Convolution

    torch.manual_seed(0)
    conv = SO2Convolution(3, 5, lmax=3, mmax=2, extra_scalars=4).double()
    index = edge_frame_index(3, 2)
    roll = o3.Irreps.spherical_harmonics(3).D_from_angles(*torch.tensor([0.9, 0.0, 0.0], dtype=torch.float64))
    roll = roll[index][:, index]
    x = torch.randn(7, len(index), 3, dtype=torch.float64)
    radial = torch.randn(7, conv.radial_size, dtype=torch.float64)
    out, extra = conv(x, radial)
    out_rolled, extra_rolled = conv(roll @ x, radial)
    assert torch.allclose(out_rolled, roll @ out) and torch.allclose(extra_rolled, extra)


def test_float64_wigner_matches_e3nn():
    from crysloop.models.equiformer.linear import wigner_d_float64

    angles = [torch.tensor(a, dtype=torch.float64) for a in (0.3, 1.1, -2.0)]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        expected = [o3.wigner_D(l, *angles) for l in range(4)]
    finally:
        torch.set_default_dtype(previous)
    for l in range(4):
        assert torch.allclose(wigner_d_float64(l, *angles), expected[l], atol=1e-12)


def test_building_in_threads_leaves_the_default_dtype_alone():
    """torch's default dtype is process-wide: networks built concurrently (Prefect task threads) must not touch it."""
    from concurrent.futures import ThreadPoolExecutor

    config = EquiformerConfig.preset("tiny")
    with ThreadPoolExecutor(4) as pool:
        networks = list(pool.map(lambda _: EquiformerV2(config, num_species=4), range(8)))
    assert torch.get_default_dtype() == torch.float32
    assert all(p.dtype == torch.float32 for net in networks for p in net.parameters())
    assert all(b.dtype == torch.float64 for b in networks[0].rotation.buffers() if b.is_floating_point())
