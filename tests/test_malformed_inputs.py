"""Malformed inputs across every command that reads user data (issue 16), through the real CLI entry point.

Each case must exit non-zero with exactly one ``error:`` line naming the input, print no traceback and write
nothing: the results database stays empty and the output file named on the command line does not appear.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pymatgen.core import Lattice, Structure

from crysloop.cli import main

NACL = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
OVERLAPPING = Structure(Lattice.cubic(4.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.52, 0.5, 0.5]])
DISORDERED = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
UNKNOWN_ELEMENT_CIF = NACL.to(fmt="cif").replace("Cl", "Qq")
CAMPAIGN = {"name": "bad", "rounds": 1, "candidates_per_round": 2, "mlip": "chgnet", "device": "cpu"}


def _write_inputs(folder: Path) -> None:
    (folder / "broken.cif").write_text("data_broken\n_cell_length_a 4.0\nthis is not a CIF loop\n")
    (folder / "overlap.cif").write_text(OVERLAPPING.to(fmt="cif"))
    (folder / "disordered.cif").write_text(DISORDERED.to(fmt="cif"))
    (folder / "unknown_element.cif").write_text(UNKNOWN_ELEMENT_CIF)
    (folder / "empty.csv").write_text("")
    (folder / "header_only.csv").write_text("material_id,cif\n")
    pd.DataFrame({"material_id": ["a"], "formula": ["NaCl"]}).to_csv(folder / "no_cif_column.csv", index=False)
    rows = {
        "material_id": ["good", "overlap", "disordered"],
        "cif": [NACL.to(fmt="cif"), OVERLAPPING.to(fmt="cif"), DISORDERED.to(fmt="cif")],
    }
    pd.DataFrame(rows).to_csv(folder / "one_bad_row.csv", index=False)
    (folder / "junk.csv").write_bytes(bytes(range(256)) * 8)
    (folder / "junk.extxyz").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (folder / "notgzip.csv.gz").write_bytes(b"material_id,cif\nnot gzip at all\n")
    (folder / "notes.txt").write_text("NaCl\n")
    (folder / "no_structures").mkdir()
    (folder / "no_structures" / "readme.md").write_text("nothing here")
    (folder / "good.cif").write_text(NACL.to(fmt="cif"))
    campaigns = {
        "unknown_field.yaml": {**CAMPAIGN, "round": 3},
        "unknown_condition.yaml": {**CAMPAIGN, "conditions": {"stabel": 1}},
        "bad_type.yaml": {**CAMPAIGN, "rounds": "three"},
        "bad_condition_type.yaml": {**CAMPAIGN, "conditions": {"stable": "yes please"}},
        "list.yaml": [CAMPAIGN],
    }
    for name, content in campaigns.items():
        (folder / name).write_text(yaml.safe_dump(content))
    (folder / "nan_condition.yaml").write_text(yaml.safe_dump(CAMPAIGN) + "conditions: {stable: .nan}\n")
    (folder / "inf_condition.yaml").write_text(yaml.safe_dump(CAMPAIGN) + "conditions: {kappa: .inf}\n")
    (folder / "syntax.yaml").write_text("name: bad\nrounds: [1, 2\n")
    with gzip.open(folder / "truncated.csv.gz", "wb") as handle:
        handle.write(b"material_id,cif\n")
    (folder / "truncated.csv.gz").write_bytes((folder / "truncated.csv.gz").read_bytes()[:-6])


# (command line with {d} for the inputs folder and {o} for an output path, text the error line must contain)
CASES = [
    # files: data ingest
    ("data ingest {d}/broken.cif", "broken.cif"),
    ("data ingest {d}/overlap.cif", "overlapping atoms"),
    ("data ingest {d}/disordered.cif", "partial occupancy"),
    ("data ingest {d}/unknown_element.cif", "unknown element 'Qq'"),
    ("data ingest {d}/empty.csv", "empty.csv: empty file"),
    ("data ingest {d}/header_only.csv", "header_only.csv: no readable structures"),
    ("data ingest {d}/no_cif_column.csv", "no 'cif' column"),
    ("data ingest {d}/one_bad_row.csv", "row 2 (overlap)"),
    ("data ingest {d}/junk.csv", "junk.csv"),
    ("data ingest {d}/missing.csv", "missing.csv"),
    ("data ingest {d}/notgzip.csv.gz", "notgzip.csv.gz"),
    ("data ingest {d}/truncated.csv.gz", "truncated.csv.gz"),
    ("data ingest {d}/notes.txt", "notes.txt: unknown format"),
    ("data ingest {d}/no_structures", "no CIF or POSCAR files"),
    # files: data inspect, kappa, compositions
    ("data inspect {d}/broken.cif", "broken.cif"),
    ("data inspect {d}/disordered.cif", "partial occupancy"),
    ("data inspect {d}/junk.extxyz", "junk.extxyz"),
    ("data inspect {d}/empty.csv", "empty.csv"),
    ("kappa structure {d}/missing.cif", "missing.cif: no such file"),
    ("kappa structure {d}/broken.cif", "broken.cif"),
    ("kappa dft {d}/broken.cif --output {o}", "broken.cif"),
    ("data label {d}/empty.csv", "empty.csv"),
    # options
    ("data ingest {d}/good.cif --limit -5", "--limit"),
    ("data ingest {d}/good.cif --limit 0", "--limit"),
    ("screen --max-candidates 0", "--max-candidates"),
    ("screen --fmax nan", "--fmax"),
    ("screen --batch-size 0", "--batch-size"),
    ("screen --mlip mace", "unknown MLIP 'mace'"),
    ("kappa run --max-atoms 0", "--max-atoms"),
    ("kappa run --top-n 0", "--top-n"),
    ("kappa run --temperatures nan", "--temperatures"),
    ("kappa run --temperatures -10", "--temperatures"),
    ("kappa run --mesh -5", "--mesh"),
    ("kappa run --mesh 4,0,4", "--mesh"),
    ("kappa run --mesh 4,4", "--mesh"),
    ("kappa run --fc3-min-length -1", "--fc3-min-length"),
    ("db export {o}.xyz.unknownext", "unknownext"),
    ("db export {o} --format pdb", "unknown export format 'pdb'"),
    ("db query --ehull-max nan", "--ehull-max"),
    ("db query --dft-state finished", "--dft-state 'finished'"),
    ("generate --n 0", "--n"),
    ("generate --n 2 --device tpu", "device 'tpu'"),
    ("generate --n 2 --guidance nan", "--guidance"),
    ("dft run --preset nope", "unknown DFT preset 'nope'"),
    ("dft run --top-n 2", "VASP command"),
    # conditions
    ("generate --n 2 --condition foo=1", "unknown condition 'foo'"),
    ("generate --n 2 --condition stable", "--condition 'stable'"),
    ("generate --n 2 --condition ehull=nan", "--condition 'ehull=nan'"),
    ("generate --n 2 --condition ehull=inf", "--condition 'ehull=inf'"),
    ("sample structure NaCl --condition foo=1 --steps 2", "no condition foo"),
    ("sample composition --n 5 --no-db --condition foo=1", "condition 'foo'"),
    # formulas
    ("db query --formula Na(Cl", "Na(Cl"),
    ("db query --elements Na,Xx", "unknown element 'Xx'"),
    ("sample structure Xx2O3 --steps 2", "Xx is not a chemical element"),
    ("sample structure Na(Cl --steps 2", "Na(Cl"),
    ("data label Na(Cl", "Na(Cl"),
    # campaign YAML
    ("campaign run {d}/unknown_field.yaml", "round"),
    ("campaign run {d}/unknown_condition.yaml", "unknown condition 'stabel'"),
    ("campaign run {d}/nan_condition.yaml", "stable: nan is not a finite number"),
    ("campaign run {d}/inf_condition.yaml", "kappa: inf is not a finite number"),
    ("campaign run {d}/bad_type.yaml", "rounds"),
    ("campaign run {d}/bad_condition_type.yaml", "conditions.stable"),
    ("campaign run {d}/list.yaml", "list.yaml: expected a mapping"),
    ("campaign run {d}/syntax.yaml", "syntax.yaml: not valid YAML"),
    ("campaign run {d}/missing.yaml", "missing.yaml: no such campaign file"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("malformed")
    _write_inputs(folder)
    return folder


def _stored_candidates() -> int:
    from crysloop.infra.db import database
    from crysloop.infra.documents import Candidate

    with database(readonly=True):
        return Candidate.objects.count()


@pytest.mark.parametrize("command,expected", CASES, ids=[c for c, _ in CASES])
def test_malformed_input_is_one_error_line(
    command, expected, inputs, settings, prefect_harness, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no VASP on this machine, whatever the developer has installed
    output = tmp_path / "out"
    args = [part.format(d=inputs, o=output) for part in command.split()]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert exit_info.value.code not in (0, None), out
    assert len(errors) == 1, err
    assert expected in errors[0]
    assert "Traceback" not in out + err
    assert not list(tmp_path.glob("out*"))  # nothing written where the command was told to write
    assert _stored_candidates() == 0


def test_table_is_large_enough():
    assert len(CASES) >= 40
