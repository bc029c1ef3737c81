"""Crystal tensors: Structure <-> tensors round trips on real MP-20 crystals, lattice conversions, canonical form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from crysloop.data.datasets import read_structures
from crysloop.data.tensors import (
    batch_to_structures,
    canonical_structure,
    lattice_params_to_matrix,
    matrix_to_lattice_params,
    records_to_tensors,
)
from crysloop.errors import InputError


@pytest.fixture(scope="module")
def mp20_records():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "mp_20_sample" / "test.csv.gz"
    return list(read_structures(path, progress=False))[:40]


def test_structure_tensor_structure_round_trip_on_mp20(mp20_records):
    structures = [r.structure for r in mp20_records]
    batch = records_to_tensors(mp20_records, ["band_gap"])
    assert len(batch.num_atoms) == len(structures)
    assert batch.lattice.shape == (len(structures), 3, 3)
    assert batch.properties.shape == (len(structures), 1)
    assert batch.properties[:, 0].tolist() == pytest.approx([r.properties["band_gap"] for r in mp20_records])
    back = batch_to_structures(batch)
    matcher = StructureMatcher()
    for original, rebuilt in zip(structures, back):
        reduced = original.get_reduced_structure("niggli")  # the tensors hold the Niggli cell
        assert [site.specie.symbol for site in rebuilt] == [site.specie.symbol for site in reduced]
        assert np.allclose(rebuilt.lattice.abc, reduced.lattice.abc, atol=1e-4)
        assert np.allclose(rebuilt.lattice.angles, reduced.lattice.angles, atol=1e-3)
        assert matcher.fit(original, rebuilt)
        assert ((rebuilt.frac_coords >= 0) & (rebuilt.frac_coords < 1)).all()


def test_batch_to_structures_from_lengths_and_angles(mp20_records):
    structure = mp20_records[0].structure
    data = records_to_tensors([structure])
    lengths, angles = matrix_to_lattice_params(data.lattice)
    tensors = {
        "atom_types": data.atom_types,
        "frac_coords": data.frac_coords,
        "num_atoms": data.num_atoms,
        "lengths": lengths,
        "angles": angles,
    }
    (rebuilt,) = batch_to_structures(tensors)
    assert StructureMatcher().fit(structure, rebuilt)
    with pytest.raises(ValueError):
        batch_to_structures({**tensors, "num_atoms": data.num_atoms + 1})


def test_lattice_params_matrix_round_trip_batched():
    gen = torch.Generator().manual_seed(0)
    lengths = 2 + 10 * torch.rand(64, 3, generator=gen, dtype=torch.float64)
    angles = 60 + 60 * torch.rand(64, 3, generator=gen, dtype=torch.float64)
    valid = (
        (angles.sum(-1) < 355)
        & (angles[:, 0] < angles[:, 1] + angles[:, 2])
        & (angles[:, 1] < angles[:, 0] + angles[:, 2])
        & (angles[:, 2] < angles[:, 0] + angles[:, 1])
    )
    lengths, angles = lengths[valid], angles[valid]
    matrix = lattice_params_to_matrix(lengths, angles)
    back_lengths, back_angles = matrix_to_lattice_params(matrix)
    assert torch.allclose(back_lengths, lengths, atol=1e-8)
    assert torch.allclose(back_angles, angles, atol=1e-6)
    expected = np.stack([Lattice.from_parameters(*l, *a).matrix for l, a in zip(lengths.tolist(), angles.tolist())])
    assert np.allclose(matrix.numpy(), expected, atol=1e-8)


def test_matrix_to_lattice_params_any_orientation():
    rng = np.random.default_rng(1)
    for _ in range(10):
        lattice = Lattice(rng.normal(size=(3, 3)) + 4 * np.eye(3))
        lengths, angles = matrix_to_lattice_params(torch.tensor(lattice.matrix))
        assert np.allclose(lengths.numpy(), lattice.abc)
        assert np.allclose(angles.numpy(), lattice.angles)


def test_canonical_structure_is_primitive_niggli_and_wrapped(mp20_records):
    structure = mp20_records[1].structure
    primitive = structure.get_primitive_structure()
    supercell = structure.copy()
    supercell.make_supercell([[1, 1, 0], [0, 1, 0], [0, 0, 2]])
    supercell.translate_sites(list(range(len(supercell))), [-0.37, 0.21, 1.6], to_unit_cell=False)
    canonical = canonical_structure(supercell)
    assert len(canonical) == len(primitive)
    assert StructureMatcher().fit(canonical, structure)
    assert ((canonical.frac_coords >= 0) & (canonical.frac_coords < 1)).all()
    niggli = canonical.lattice.get_niggli_reduced_lattice()
    assert np.allclose(sorted(canonical.lattice.abc), sorted(niggli.abc), atol=1e-6)


def test_disordered_structure_rejected():
    disordered = Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    with pytest.raises(InputError):
        records_to_tensors([disordered])
