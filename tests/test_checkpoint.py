"""One checkpoint format: version 2 round trips with the kind's own entries, the shipped version-1 files load, and a
missing, corrupt, foreign or other-kind file is an InputError that says which."""

from __future__ import annotations

import pytest
import torch

from crysloop.errors import InputError
from crysloop.models.checkpoint import read_checkpoint, write_checkpoint
from crysloop.resources import asset_path

SHIPPED = {
    "diffcsp_mp20_small.pt": "diffcsp",
    "cdvae_mp20_small.pt": "cdvae",
    "vdw-cdvae.pt": "cdvae",
    "composition_lm.pt": "composition_lm",
}


def test_round_trip_is_plain_data_with_the_kind_and_its_entries(tmp_path):
    path = write_checkpoint(
        tmp_path / "sub" / "m.pt",
        "cdvae",
        {"a": 1},
        {"w": torch.ones(2)},
        {"steps": 3},
        {"step": 3},
        gan={"cond_dim": 4},
    )
    raw = torch.load(path, weights_only=True)
    assert (raw["format"], raw["version"], raw["kind"]) == ("crysloop-checkpoint", 2, "cdvae")
    assert raw["gan"] == {"cond_dim": 4} and raw["training_state"] == {"step": 3}
    assert not path.with_name("m.pt.tmp").exists()
    payload = read_checkpoint(path, "cdvae")
    assert torch.equal(payload["state_dict"]["w"], torch.ones(2)) and payload["metadata"] == {"steps": 3}
    assert "training_state" not in read_checkpoint(write_checkpoint(path, "cdvae", {}, {}), "cdvae")
    with pytest.raises(ValueError, match="reserved"):
        write_checkpoint(path, "cdvae", {}, {}, version=3)


@pytest.mark.parametrize("name,kind", SHIPPED.items())
def test_shipped_version_1_checkpoints_still_load(name, kind):
    payload = read_checkpoint(asset_path("checkpoints", name), kind)
    assert (payload["version"], payload["kind"]) == (1, kind) and payload["state_dict"] and payload["config"]


def test_bad_files_say_what_they_are(tmp_path):
    with pytest.raises(InputError, match="no DiffCSP checkpoint at"):
        read_checkpoint(tmp_path / "missing.pt", "diffcsp")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(asset_path("checkpoints", "composition_lm.pt").read_bytes()[:5000])
    with pytest.raises(InputError, match="not a readable checkpoint"):
        read_checkpoint(corrupt, "composition_lm")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(1)}, foreign)
    with pytest.raises(InputError, match="is not a crysloop checkpoint"):
        read_checkpoint(foreign, "cdvae")
    with pytest.raises(InputError, match="is a crysloop-diffcsp checkpoint, not a composition-model one"):
        read_checkpoint(asset_path("checkpoints", "diffcsp_mp20_small.pt"), "composition_lm")
    future = write_checkpoint(tmp_path / "future.pt", "diffcsp", {}, {})
    torch.save({**torch.load(future, weights_only=True), "version": 3}, future)
    with pytest.raises(InputError, match="version 3"):
        read_checkpoint(future, "diffcsp")
