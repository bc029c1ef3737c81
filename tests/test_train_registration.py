"""Every entry point that trains records its checkpoint in the results database the same way: the ``train`` flow
(ConditionCDVAE+ stage here; the other stages in test_campaign.py) and the three CLI train commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from crysloop.cli import main

MP20 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mp_20_sample" / "val.csv.gz"


@pytest.fixture(scope="module")
def crystals(tmp_path_factory) -> Path:
    from crysloop.data.datasets import read_structures, write_records_csv

    path = tmp_path_factory.mktemp("data") / "crystals.csv"
    write_records_csv([r for r in read_structures(MP20, progress=False) if len(r.structure) <= 6][:8], path)
    return path


def _recorded() -> dict:
    from crysloop.infra.db import database
    from crysloop.infra.documents import ModelCheckpoint

    with database(readonly=True):
        return {c.name: c for c in ModelCheckpoint.objects}


def test_train_flow_trains_and_records_condition_cdvae(crystals, settings, prefect_harness, tmp_path, single_thread):
    from crysloop.flows.train import train_flow
    from crysloop.models import cdvae

    out = tmp_path / "cdvae.pt"
    report = train_flow(
        "cdvae",
        str(crystals),
        str(out),
        "cdvae-test",
        properties=("band_gap", "formula"),
        epochs=1,
        preset="cpu-tiny",
        gan_epochs=1,
    )
    model, gan = cdvae.load_checkpoint(out, device="cpu")
    assert model.config.conditions == ("band_gap", "formula") and gan is not None
    stored = _recorded()["cdvae-test"]
    assert (stored.kind, stored.conditions, stored.path) == ("cdvae", ["band_gap"], str(out))
    assert len(stored.sha256) == 64 and stored.metrics["n_train"] == report["n_train"] == 8


def test_every_train_command_records_its_checkpoint(crystals, db, tmp_path, capsys, single_thread):
    commands = {
        "structure": [
            "train",
            "structure",
            str(crystals),
            "--preset",
            "cpu-tiny",
            "--steps",
            "1",
            "--properties",
            "band_gap",
        ],
        "cdvae": [
            "train",
            "cdvae",
            str(crystals),
            "--preset",
            "cpu-tiny",
            "--steps",
            "1",
            "--gan-epochs",
            "0",
            "--conditions",
            "band_gap,formula",
        ],
        "composition": [
            "train",
            "composition",
            str(crystals),
            "--epochs",
            "1",
            "--n-layer",
            "1",
            "--n-embd",
            "16",
            "--n-head",
            "2",
            "--property",
            "band_gap",
        ],
    }
    for kind, args in commands.items():
        out = tmp_path / f"{kind}.pt"
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--device", "cpu", "--out", str(out)])
        assert exit_info.value.code == 0, capsys.readouterr().out
        stored = _recorded()[str(out.resolve())]
        assert (stored.kind, stored.conditions, stored.path) == (kind, ["band_gap"], str(out))
    with pytest.raises(SystemExit) as exit_info:
        main([*commands["structure"], "--device", "cpu", "--out", str(tmp_path / "x.pt"), "--name", "x", "--no-db"])
    assert exit_info.value.code == 0 and "x" not in _recorded()
