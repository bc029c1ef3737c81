"""Dataset loaders: CDVAE CSVs (plain and gzipped), extxyz, CIF/POSCAR folders, bad rows, downloads offline."""

from __future__ import annotations

import gzip
import shutil

import pandas as pd
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from crysloop.data.datasets import fetch_dataset, load_dataset, read_structures, write_records_csv
from crysloop.errors import InputError, OfflineError


@pytest.fixture
def perov_csv(shared_data, tmp_path):
    """The first 40 rows of perov-5 test as a plain CSV."""
    frame = pd.read_csv(shared_data / "perov_5" / "test.csv.gz").head(40)
    path = tmp_path / "perov.csv"
    frame.to_csv(path, index=False)
    return path


def test_reads_gzipped_mp20_with_properties(shared_data):
    dataset = read_structures(shared_data / "mp_20_sample" / "val.csv.gz", progress=False)
    assert len(dataset) == 123 and not dataset.skipped
    first = dataset[0]
    assert first.material_id.startswith("mp-")
    assert {"formation_energy_per_atom", "band_gap", "e_above_hull"} <= set(first.properties)
    assert all(len(r.structure) <= 20 for r in dataset)


def test_parallel_and_serial_parsing_agree(shared_data):
    path = shared_data / "mp_20_sample" / "val.csv.gz"
    serial = read_structures(path, workers=1, progress=False)
    parallel = read_structures(path, workers=2, progress=False)
    assert [r.material_id for r in serial] == [r.material_id for r in parallel]
    assert all(a.structure == b.structure for a, b in zip(serial, parallel))


def test_bad_row_names_file_and_row(perov_csv):
    frame = pd.read_csv(perov_csv)
    frame.loc[6, "cif"] = "data_broken\n_cell_length_a nonsense\n"
    frame.to_csv(perov_csv, index=False)
    with pytest.raises(InputError, match=r"perov\.csv, row 7"):
        read_structures(perov_csv, progress=False)
    dataset = read_structures(perov_csv, skip_bad=True, progress=False)
    assert len(dataset) == 39 and len(dataset.skipped) == 1
    assert "row 7" in dataset.skipped[0][0]


def test_csv_without_cif_column_is_rejected(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("material_id,energy\na,1\n")
    with pytest.raises(InputError, match="no 'cif' column"):
        read_structures(path)


def test_unknown_format_and_missing_path(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="unknown format"):
        read_structures(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="no such file"):
        read_structures(tmp_path / "absent.csv")


def test_csv_round_trip_gzipped(perov_csv, tmp_path):
    dataset = read_structures(perov_csv, progress=False)
    out = tmp_path / "copy.csv.gz"
    write_records_csv(list(dataset), out)
    with gzip.open(out, "rt") as handle:
        assert handle.readline().startswith("material_id")
    again = read_structures(out, progress=False)
    matcher = StructureMatcher()
    assert [r.material_id for r in again] == [r.material_id for r in dataset]
    assert all(matcher.fit(a.structure, b.structure) for a, b in zip(dataset, again))
    assert again[0].properties["heat_ref"] == pytest.approx(dataset[0].properties["heat_ref"])


def test_extxyz_and_folder(perov_csv, tmp_path):
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    dataset = read_structures(perov_csv, progress=False)[:5]
    frames = []
    for record in dataset:
        atoms = AseAtomsAdaptor.get_atoms(record.structure)
        atoms.info["material_id"] = record.material_id
        atoms.info["energy"] = 1.5
        frames.append(atoms)
    write(tmp_path / "set.extxyz", frames, format="extxyz")
    from_xyz = read_structures(tmp_path / "set.extxyz")
    assert [r.material_id for r in from_xyz] == [r.material_id for r in dataset]
    assert from_xyz[0].properties["energy"] == 1.5

    folder = tmp_path / "cifs"
    folder.mkdir()
    for record in dataset[:3]:
        record.structure.to(filename=str(folder / f"{record.material_id}.cif"))
    dataset[3].structure.to(filename=str(folder / "POSCAR"), fmt="poscar")
    (folder / "broken.cif").write_text("not a cif at all")
    with pytest.raises(InputError, match=r"broken\.cif"):
        read_structures(folder, progress=False)
    loaded = read_structures(folder, skip_bad=True, progress=False)
    assert len(loaded) == 4 and len(loaded.skipped) == 1


def test_known_dataset_served_from_cache_and_checksummed(perov_csv, tmp_path):
    cache = tmp_path / "cache"
    target = cache / "perov_5" / "val.csv"
    target.parent.mkdir(parents=True)
    shutil.copy(perov_csv, target)
    assert fetch_dataset("perov_5", "val", cache_dir=cache) == target
    assert len(load_dataset("perov_5", split="val", cache_dir=cache, progress=False)) == 40
    target.write_text(target.read_text()[:500])  # a truncated download
    with pytest.raises(InputError, match="checksum mismatch"):
        fetch_dataset("perov_5", "val", cache_dir=cache)


def test_download_offline_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("crysloop.data.datasets.CDVAE_BASE_URL", "http://127.0.0.1:9/cdvae")
    with pytest.raises(OfflineError, match="could not download mp_20/test"):
        fetch_dataset("mp_20", "test", cache_dir=tmp_path, timeout=2)
    assert not list(tmp_path.rglob("*.csv*")), "no partial file may be left behind"
    with pytest.raises(InputError, match="unknown dataset"):
        fetch_dataset("mp_21", "test", cache_dir=tmp_path)


def test_structure_file_that_is_not_periodic(tmp_path):
    from ase import Atoms
    from ase.io import write

    write(tmp_path / "molecule.extxyz", Atoms("H2O", positions=[[0, 0, 0], [0, 0, 1], [0, 1, 0]]), format="extxyz")
    with pytest.raises(InputError, match="not a periodic crystal"):
        read_structures(tmp_path / "molecule.extxyz")
    Structure(Lattice.cubic(3.0), ["Na"], [[0, 0, 0]]).to(filename=str(tmp_path / "Na.cif"))
    assert read_structures(tmp_path / "Na.cif")[0].structure.composition.reduced_formula == "Na"
