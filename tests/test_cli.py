"""The crysloop CLI: happy paths through ingest, status, query and export, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from crysloop.cli import main


def run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture
def ingested(settings, shared_data, prefect_harness, capsys):
    code, out, err = run(["data", "ingest", str(shared_data / "perov_5" / "test.csv.gz"), "--limit", "25"], capsys)
    assert code == 0, err
    assert "stored 25 new" in out
    return shared_data


def test_ingest_is_idempotent_and_query_lists_rows(ingested, capsys):
    code, out, _ = run(["data", "ingest", str(ingested / "perov_5" / "test.csv.gz"), "--limit", "25"], capsys)
    assert code == 0 and "stored 0 new, 25 already present" in out
    code, out, _ = run(["db", "status"], capsys)
    assert code == 0 and "embedded" in out and "candidates" in out
    code, out, _ = run(["db", "query", "--json", "--limit", "0", "--elements", "O"], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and rows and all("O" in row["chemsys"].split("-") for row in rows)


def test_export_writes_each_format(ingested, tmp_path, capsys):
    for target in ("set.extxyz", "set.csv", "set.json", "cifs"):
        code, out, err = run(["db", "export", str(tmp_path / target)], capsys)
        assert code == 0, err
        assert "wrote 25 candidates" in out
    assert len(list((tmp_path / "cifs").glob("*.cif"))) == 25


@pytest.mark.parametrize(
    "args,message",
    [
        (["db", "query", "--elements", "Na,Xx"], "unknown element 'Xx'"),
        (["db", "query", "--dft-state", "finished"], "--dft-state 'finished'"),
        (["db", "export", "out.bin", "--format", "pdb"], "unknown export format 'pdb'"),
        (["data", "inspect", "/nonexistent/file.csv"], "neither a file nor a known dataset"),
        (["data", "fetch", "mp_21"], "unknown dataset 'mp_21'"),
    ],
)
def test_bad_input_is_one_line_without_traceback(settings, args, message, capsys):
    code, out, err = run(args, capsys)
    assert code == 1
    assert message in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


def test_unreadable_file_and_usage_errors(settings, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\x00\x01garbage")
    code, _, err = run(["data", "inspect", str(bad)], capsys)
    assert code == 1 and "bad.csv" in err and "Traceback" not in err
    code, _, err = run(["db", "query", "--limit", "-1"], capsys)
    assert code == 2 and "Traceback" not in err


def test_console_script_runs_in_a_fresh_process(settings):
    env = {**os.environ, "CRYSLOOP_DATA_DIR": str(settings.data_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "crysloop", "db", "query", "--formula", "Na(Cl"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
