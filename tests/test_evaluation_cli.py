"""``crysloop evaluate`` end to end on small CSV files, and its error line on bad input."""

from __future__ import annotations

import json

import pytest
from pymatgen.core import Lattice, Structure

from crysloop.cli import main
from crysloop.data.datasets import CrystalRecord, write_records_csv


def _records(prefix: str, e_above_hull: list[float]) -> list[CrystalRecord]:
    crystals = [
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure.from_spacegroup("F-43m", Lattice.cubic(5.65), ["Ga", "As"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
    ]
    return [
        CrystalRecord(f"{prefix}-{i}", s, {"e_above_hull": e, "energy_per_atom": -3.0 - i})
        for i, (s, e) in enumerate(zip(crystals, e_above_hull))
    ]


def test_cli_writes_json_markdown_and_plots(tmp_path, settings):
    write_records_csv(_records("gen", [0.0, 0.05, 0.3]), tmp_path / "gen.csv")
    write_records_csv(_records("ref", [0.0, 0.0, 0.0]), tmp_path / "ref.csv.gz")
    write_records_csv(_records("train", [0.0, 0.0, 0.0])[:1], tmp_path / "train.csv")
    out = tmp_path / "report"
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "evaluate",
                "--generated",
                str(tmp_path / "gen.csv"),
                "--reference",
                str(tmp_path / "ref.csv.gz"),
                "--train",
                str(tmp_path / "train.csv"),
                "--dataset",
                "mp20",
                "--out",
                str(out),
                "--jobs",
                "1",
            ]
        )
    assert exit_info.value.code == 0
    report = json.loads((out / "report.json").read_text())
    metrics = report["metrics"]
    assert metrics["valid"] == 1.0 and metrics["cov_recall"] == 1.0 and metrics["wdist_density"] == 0.0
    assert metrics["wdist_energy_per_atom"] == 0.0
    assert metrics["n_novel"] == 2 and metrics["n_sun"] == 1  # CsCl: unique, novel, 0.05 eV/atom above hull
    assert (out / "report.md").read_text().startswith("# Generative evaluation (mp20)")
    assert (out / "density.png").exists() and (out / "num_elements.png").exists()
    assert (settings.cache_dir / "evaluation").is_dir()


def test_cli_unknown_dataset_is_one_error_line(tmp_path, settings, capsys):
    write_records_csv(_records("gen", [0.0, 0.0, 0.0]), tmp_path / "gen.csv")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "evaluate",
                "--generated",
                str(tmp_path / "gen.csv"),
                "--reference",
                str(tmp_path / "gen.csv"),
                "--dataset",
                "unknown",
                "--jobs",
                "1",
                "--out",
                str(tmp_path / "o"),
            ]
        )
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "error:" in err and "coverage thresholds" in err and "Traceback" not in err


def test_cli_counts_overlapping_and_exploded_samples_as_invalid(tmp_path, settings):
    """Generated crystals with overlapping atoms or an exploded cell are samples of a generator: evaluated as
    structurally invalid, not refused as input (the reference set still refuses them)."""
    folder = tmp_path / "generated"
    folder.mkdir()
    good = _records("gen", [0.0, 0.0, 0.0])
    overlapping = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0.1, 0.1, 0.1], [0.15, 0.1, 0.1]])  # 0.25 A
    exploded = Structure(
        Lattice.from_parameters(1312.7, 1108.7, 9115.3, 87.8, 91.0, 10.6),
        ["Na", "Cl"],
        [[0.46, 0.55, 0.77], [0.9, 0.74, 0.06]],
    )
    for i, structure in enumerate([good[0].structure, good[1].structure, overlapping, exploded]):
        structure.to(filename=str(folder / f"{i}.cif"))
    write_records_csv(good, tmp_path / "ref.csv")
    out = tmp_path / "report"
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "evaluate",
                "--generated",
                str(folder),
                "--reference",
                str(tmp_path / "ref.csv"),
                "--dataset",
                "mp20",
                "--out",
                str(out),
                "--jobs",
                "1",
                "--no-cache",
            ]
        )
    assert exit_info.value.code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["generated"] == 4 and report["counts"]["valid"] == 2
    assert report["metrics"]["struct_valid"] == 0.5
