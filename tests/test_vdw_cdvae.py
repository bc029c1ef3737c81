"""The shipped bilayer ConditionCDVAE+ model (vdw-cdvae.pt): the name the vdW campaign gives resolves to it from any
folder, it loads, and the campaign's Stage II decodes slab candidates with it."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest

from crysloop.models.cdvae import (
    load_checkpoint,
    resolve_checkpoint,
    shipped_checkpoint_path,
)

CAMPAIGN = Path(str(files("crysloop") / "assets" / "campaigns" / "vdw.yaml"))
PACKAGED = shipped_checkpoint_path().parent


def test_a_bare_shipped_name_resolves_to_the_package_unless_a_local_file_has_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint("shipped") == resolve_checkpoint(None) == shipped_checkpoint_path()
    assert resolve_checkpoint("vdw-cdvae.pt") == PACKAGED / "vdw-cdvae.pt"
    assert resolve_checkpoint("elsewhere/vdw-cdvae.pt") == Path("elsewhere/vdw-cdvae.pt")  # a path stays a path
    assert resolve_checkpoint("not-shipped.pt") == Path("not-shipped.pt")
    (tmp_path / "vdw-cdvae.pt").write_bytes(b"")
    assert resolve_checkpoint("vdw-cdvae.pt") == Path("vdw-cdvae.pt")  # the user's own model wins


def test_the_vdw_campaign_loads_its_semi_periodic_model_and_decodes_slabs():
    from crysloop.campaign.config import load_config
    from crysloop.chemistry.valence import ValenceAssignment
    from crysloop.tasks.sample import sample_cdvae_structures_task

    config = load_config(CAMPAIGN)
    assert config.generation.generator == "condition-cdvae-plus"
    model, gan = load_checkpoint(config.generation.cdvae_model.checkpoint, device="cpu")
    assert model.config.semi_periodic and gan is not None
    assert set(config.conditions) <= set(model.config.scalar_conditions)
    assert (PACKAGED / "vdw-cdvae.pt").stat().st_size < 10e6
    bilayer = ValenceAssignment(ionic=False, species=(("Ga", 0, 2), ("In", 0, 2), ("Se", 0, 3), ("S", 0, 1)))
    bulk_like = ValenceAssignment(ionic=True, species=(("Na", 1, 1), ("Cl", -1, 1)))  # outside its vocabulary
    settings = config.generation.cdvae_model.model_copy(update={"steps_per_level": 1, "candidates": 4})
    candidates = sample_cdvae_structures_task.fn(
        [bilayer, bulk_like], config.conditions, settings, seed=0, device="cpu"
    )
    assert len(candidates) == 1
    structure = candidates[0].structure
    assert structure.composition.reduced_formula == bilayer.composition.reduced_formula
    assert structure.lattice.c == pytest.approx(model.config.slab_c, rel=1e-5)
    low, high = model.config.slab.bounds()
    assert low - 1e-5 <= structure.frac_coords[:, 2].min() and structure.frac_coords[:, 2].max() <= high + 1e-5


def test_cli_semi_periodic_flag_is_saved_and_honoured_when_sampling(tmp_path, capsys, settings):
    import torch

    from crysloop.cli import main

    subset = Path(str(files("crysloop") / "assets" / "datasets" / "vdw_iii_vi_mini"))
    checkpoint = tmp_path / "slab.pt"
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "train",
                "cdvae",
                str(subset / "train.csv.gz"),
                "--preset",
                "cpu-tiny",
                "--semi-periodic",
                "--conditions",
                "formation_energy_per_atom",
                "--steps",
                "1",
                "--gan-epochs",
                "0",
                "--device",
                "cpu",
                "--out",
                str(checkpoint),
            ]
        )
    assert exit_info.value.code == 0
    config = torch.load(checkpoint, weights_only=True)["config"]
    assert config["semi_periodic"] and config["slab_c"] > 28.0 and config["slab_half_width"] > 7.0
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "sample",
                "cdvae",
                "--checkpoint",
                str(checkpoint),
                "--n",
                "2",
                "--steps-per-level",
                "1",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "cifs"),
            ]
        )
    assert exit_info.value.code == 0
    from pymatgen.core import Structure

    cifs = sorted((tmp_path / "cifs").glob("*.cif"))
    assert len(cifs) == 2
    for cif in cifs:
        assert Structure.from_file(cif).lattice.c == pytest.approx(config["slab_c"], rel=1e-4)
