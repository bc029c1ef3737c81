"""The periodic radius graph against pymatgen's get_neighbor_list on real MP-20 structures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crysloop.data.datasets import read_structures
from crysloop.data.graph import radius_graph_pbc

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def mp20():
    data = read_structures(SHARED_DATA / "mp_20_sample" / "train.csv.gz", progress=False)
    return [r.structure for r in data[:300]]


def _edges(i, j, images, d):
    """Edges as {(i, j, image): distance}."""
    return dict(zip(zip(i.tolist(), j.tolist(), map(tuple, np.asarray(images).astype(int).tolist())), d.tolist()))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-6 for k in a)


@pytest.mark.parametrize("cutoff", [3.0, 6.0])
def test_matches_pymatgen_on_300_structures(mp20, cutoff):
    lattices = torch.tensor(np.stack([s.lattice.matrix for s in mp20]))
    frac = torch.tensor(np.concatenate([s.frac_coords for s in mp20]))
    num_atoms = torch.tensor([len(s) for s in mp20])
    graph = radius_graph_pbc(frac, lattices, num_atoms, cutoff)
    offsets = np.concatenate([[0], np.cumsum(num_atoms.numpy())])
    ours = graph.edge_index.numpy()
    mismatched = []
    for b, structure in enumerate(mp20):
        ci, cj, images, d = structure.get_neighbor_list(cutoff)
        sel = (ours[0] >= offsets[b]) & (ours[0] < offsets[b + 1])
        mine = _edges(
            ours[0, sel] - offsets[b],
            ours[1, sel] - offsets[b],
            graph.cell_offsets[sel].numpy(),
            graph.distances[sel].numpy(),
        )
        if not _same(mine, _edges(ci, cj, images, d)):
            mismatched.append(structure.composition.reduced_formula)
    assert not mismatched, f"{len(mismatched)} structures differ from pymatgen: {mismatched[:5]}"


def test_gradients_flow_to_lattice_and_coordinates(mp20):
    s = mp20[0]
    frac = torch.tensor(s.frac_coords, requires_grad=True)
    lattice = torch.tensor(s.lattice.matrix[None], requires_grad=True)
    graph = radius_graph_pbc(frac, lattice, torch.tensor([len(s)]), 5.0)
    energy = (1.0 / graph.distances).sum()
    energy.backward()
    assert torch.isfinite(frac.grad).all() and frac.grad.abs().sum() > 0
    assert torch.isfinite(lattice.grad).all() and lattice.grad.abs().sum() > 0
    # compressing the cell must raise a repulsive energy: d E / d scale < 0
    scale = torch.tensor(1.0, requires_grad=True)
    g2 = radius_graph_pbc(frac.detach(), lattice.detach() * scale, torch.tensor([len(s)]), 5.0)
    (1.0 / g2.distances).sum().backward()
    assert scale.grad < 0


def test_max_neighbors_keeps_nearest(mp20):
    s = mp20[1]
    full = radius_graph_pbc(
        torch.tensor(s.frac_coords), torch.tensor(s.lattice.matrix[None]), torch.tensor([len(s)]), 6.0
    )
    capped = radius_graph_pbc(
        torch.tensor(s.frac_coords), torch.tensor(s.lattice.matrix[None]), torch.tensor([len(s)]), 6.0, max_neighbors=4
    )
    counts = torch.bincount(capped.edge_index[0], minlength=len(s))
    assert (counts <= 4).all() and (counts == 4).all()
    for atom in range(len(s)):
        kept = capped.distances[capped.edge_index[0] == atom].max()
        nearest = torch.sort(full.distances[full.edge_index[0] == atom]).values[3]
        assert torch.isclose(kept, nearest)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda(mp20):
    s = mp20[0]
    graph = radius_graph_pbc(
        torch.tensor(s.frac_coords, device="cuda"),
        torch.tensor(s.lattice.matrix[None], device="cuda"),
        torch.tensor([len(s)]),
        5.0,
    )
    assert graph.distances.is_cuda
