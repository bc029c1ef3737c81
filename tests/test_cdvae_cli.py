"""``crysloop train cdvae`` and ``crysloop sample cdvae|reconstruct``: a 2-step training run, sampling and
reconstruction through the CLI, and one-line errors
(nothing written) for bad conditions, formulas and checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pymatgen.core import Structure

from crysloop.cli import main

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from crysloop.settings import get_settings

    folder = tmp_path_factory.mktemp("cdvae")
    path = folder / "tiny.pt"
    with pytest.MonkeyPatch.context() as patch, pytest.raises(SystemExit) as exit_info:
        patch.setenv("CRYSLOOP_DATA_DIR", str(folder / "data"))  # training records the checkpoint there
        get_settings.cache_clear()
        main(
            [
                "train",
                "cdvae",
                str(SHARED_DATA / "mp_20_sample" / "val.csv.gz"),
                "--preset",
                "cpu-tiny",
                "--conditions",
                "formation_energy_per_atom,band_gap,formula",
                "--steps",
                "2",
                "--gan-epochs",
                "1",
                "--device",
                "cpu",
                "--out",
                str(path),
            ]
        )
    get_settings.cache_clear()
    assert exit_info.value.code == 0
    return path


def test_training_writes_checkpoint_and_log(checkpoint):
    import torch

    payload = torch.load(checkpoint, weights_only=True)
    assert payload["metadata"]["steps"] == 2 and payload["gan"] is not None
    assert set(payload["config"]["property_stats"]) == {"formation_energy_per_atom", "band_gap"}
    rows = [json.loads(line) for line in checkpoint.with_suffix(".metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 2 and "train_coord" in rows[0] and rows[-1]["gan_epoch"] == 1


def test_sample_with_conditions_and_formula(checkpoint, tmp_path, capsys):
    out = tmp_path / "cifs"
    code, stdout, err = run(
        [
            "sample",
            "cdvae",
            "--checkpoint",
            str(checkpoint),
            "--n",
            "2",
            "-c",
            "formation_energy_per_atom=-0.2",
            "-c",
            "band_gap=1",
            "--formula",
            "TiO2",
            "--candidates",
            "5",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    files = sorted(out.glob("*.cif"))
    assert len(files) == 2
    assert all(Structure.from_file(f).composition.reduced_formula == "TiO2" for f in files)
    code, stdout, err = run(["sample", "cdvae", "--checkpoint", str(checkpoint), "--n", "3", "--device", "cpu"], capsys)
    assert code == 0, err and len([line for line in stdout.splitlines() if "a,b,c" in line]) == 3


def test_reconstruct_prints_match_rate(checkpoint, tmp_path, capsys, shared_data):
    out = tmp_path / "rec.json"
    code, stdout, err = run(
        [
            "sample",
            "reconstruct",
            str(shared_data / "mp_20_sample" / "test.csv.gz"),
            "--checkpoint",
            str(checkpoint),
            "--n",
            "3",
            "--steps-per-level",
            "1",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    figures = json.loads(out.read_text())
    assert figures["n_pairs"] == 3 and 0.0 <= figures["match_rate"] <= 1.0 and "match rate" in stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n", "1", "-c", "kappa=3"], "no condition kappa"),
        (["--n", "1", "-c", "band_gap=nan"], "NAME=NUMBER"),
        (["--formula", "Og2"], "outside this model's vocabulary"),
        (["--formula", "Ti30O60"], "allows at most"),
        (["--formula", "Xq"], "not a chemical element"),
    ],
)
def test_bad_sampling_input_is_one_error_line(checkpoint, tmp_path, capsys, extra, message):
    out = tmp_path / "never"
    code, _, err = run(
        ["sample", "cdvae", "--checkpoint", str(checkpoint), "--device", "cpu", "--out", str(out), *extra], capsys
    )
    assert code == 1 and message in err and err.strip().startswith("error:") and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_checkpoint_of_another_model_is_refused(tmp_path, capsys):
    from crysloop.models.diffcsp import shipped_checkpoint_path

    out = tmp_path / "never"
    code, _, err = run(
        ["sample", "cdvae", "--checkpoint", str(shipped_checkpoint_path()), "--n", "1", "--out", str(out)], capsys
    )
    assert code == 1 and "crysloop-diffcsp checkpoint, not a ConditionCDVAE+" in err and not out.exists()


def test_shipped_checkpoint_samples_offline(capsys):
    code, stdout, err = run(
        [
            "sample",
            "cdvae",
            "--n",
            "1",
            "--formula",
            "MoS2",
            "-c",
            "band_gap=1.5",
            "--steps-per-level",
            "1",
            "--candidates",
            "4",
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert code == 0, err
    assert "Mo1 S2" in stdout
