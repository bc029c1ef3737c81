"""``crysloop compositions``: label, train (and fine-tune), sample to the database and CSV, input errors."""

from __future__ import annotations

import csv
import json

import pytest

from crysloop.cli import main
from crysloop.models.composition import shipped_checkpoint_path


def _run(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


def test_label_cli(tmp_path, capsys):
    code, out = _run(["data", "label", "Fe3O4", "Ni3Al", "NaO3", "--csv", str(tmp_path / "l.csv")], capsys)
    assert code == 0 and "Fe2+ x1, Fe3+ x2, O2- x4" in out and "2/3 labelled" in out
    rows = list(csv.DictReader(open(tmp_path / "l.csv")))
    assert rows[1]["ionic"] == "False" and rows[2]["formula"] == ""
    code, out = _run(["data", "label", "Qq3O"], capsys)
    assert code == 1 and "error: composition 'Qq3O': unknown element Qq" in out


def test_train_finetune_sample_cli(tmp_path, capsys, db):
    data = tmp_path / "train.csv"
    formulas = ["MgO", "NaCl", "Fe3O4", "GaAs", "Ni3Al", "ZnS", "KCl", "CaF2"] * 4
    data.write_text(
        "formula,e_above_hull,stable\n" + "".join(f"{f},{0.01 * i},{i % 2}\n" for i, f in enumerate(formulas))
    )
    ckpt = tmp_path / "lm.pt"
    common = ["--epochs", "1", "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--device", "cpu"]
    code, out = _run(
        ["train", "composition", str(data), "--out", str(ckpt), "--property", "ehull=e_above_hull", *common], capsys
    )
    assert code == 0 and ckpt.is_file(), out
    tuned = tmp_path / "tuned.pt"
    code, out = _run(
        [
            "train",
            "composition",
            str(data),
            "--init",
            str(ckpt),
            "--out",
            str(tuned),
            "--property",
            "stable:binary",
            "--epochs",
            "1",
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert code == 0, out
    code, out = _run(
        [
            "sample",
            "composition",
            "--n",
            "25",
            "--checkpoint",
            str(tuned),
            "--condition",
            "ehull=0.0",
            "--condition",
            "stable=1",
            "--seed",
            "0",
            "--csv",
            str(tmp_path / "s.csv"),
            "--campaign",
            "c1",
        ],
        capsys,
    )
    assert code == 0, out
    from crysloop.infra.documents import GeneratedComposition

    documents = list(GeneratedComposition.objects(campaign="c1"))
    assert len(documents) == 25
    for document in documents:
        assert document.conditions == {"ehull": 0.0, "stable": 1.0}
        if document.ionic:
            assert sum(o.oxidation_state * o.count for o in document.oxidation_states) == 0
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert len(rows) == 25 and json.loads(rows[0]["oxidation_states"])
    code, out = _run(
        ["sample", "composition", "--n", "5", "--checkpoint", str(tuned), "--condition", "kappa=1", "--no-db"], capsys
    )
    assert code == 1 and "not trained on condition 'kappa'" in out
    code, out = _run(
        ["sample", "composition", "--n", "5", "--checkpoint", str(tuned), "--condition", "ehull", "--no-db"], capsys
    )
    assert code == 1 and "expected NAME=NUMBER" in out


def test_shipped_checkpoint_samples(capsys):
    assert shipped_checkpoint_path().is_file()
    assert shipped_checkpoint_path().stat().st_size < 5 * 2**20
    code, out = _run(
        ["sample", "composition", "--n", "20", "--seed", "0", "--no-db", "--condition", "ehull=0.0"], capsys
    )
    assert code == 0 and "20 compositions" in out
