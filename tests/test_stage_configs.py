"""One config class per stage: the CLI and campaigns take their defaults (and CRYSLOOP_MLIP) from the same class."""

from __future__ import annotations

import pytest
import yaml
from pymatgen.core import Lattice, Structure

from crysloop.campaign.config import CampaignConfig, parse_config
from crysloop.cli import main
from crysloop.errors import InputError
from crysloop.screening.config import ScreeningConfig


def _rocksalt(a: float, cation: str = "Na") -> Structure:
    cubic = Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, "Cl"], [[0, 0, 0], [0.5] * 3])
    return cubic.get_primitive_structure()


@pytest.fixture
def screening_defaults():
    """Change defaults of the ScreeningConfig class itself (and the campaign schema that embeds it), then restore."""
    fields = ScreeningConfig.model_fields
    saved = {name: info.default for name, info in fields.items()}

    def change(**defaults) -> None:
        for name, value in defaults.items():
            fields[name].default = value
        ScreeningConfig.model_rebuild(force=True)
        CampaignConfig.model_rebuild(force=True)

    yield change
    for name, value in saved.items():
        fields[name].default = value
    ScreeningConfig.model_rebuild(force=True)
    CampaignConfig.model_rebuild(force=True)


def test_a_changed_class_default_reaches_crysloop_screen_and_a_campaign(
    db, prefect_harness, screening_defaults, monkeypatch, capsys
):
    """Step limit 2 and a force threshold no relaxation meets in 2 steps: both paths store 2-step unconverged results
    under the potential CRYSLOOP_MLIP names, though neither was given a step limit, a threshold or a potential."""
    from crysloop.flows.campaign import campaign_flow
    from crysloop.infra.documents import Round, ScreeningResult
    from crysloop.infra.store import NewCandidate, add_candidates
    from crysloop.settings import get_settings

    monkeypatch.setenv("CRYSLOOP_MLIP", "chgnet")
    get_settings.cache_clear()
    screening_defaults(steps=2, fmax=1e-4)
    add_candidates([NewCandidate(_rocksalt(5.9))], campaign="cfg", round_index=0)  # as if the round generated it
    Round(campaign="cfg", index=0, stages_done=["generate"]).save()
    config = {
        "name": "cfg",
        "rounds": 1,
        "candidates_per_round": 1,
        "screening": {"phonons": False},
        "finetune": False,
        "evaluate": False,
        "device": "cpu",
    }
    campaign_flow(config)
    [from_campaign] = ScreeningResult.objects(campaign="cfg")
    assert (from_campaign.mlip, from_campaign.steps, from_campaign.status) == ("chgnet", 2, "unconverged")

    add_candidates([NewCandidate(_rocksalt(6.6, "K"))])
    with pytest.raises(SystemExit) as exit_info:
        main(["screen", "--no-phonons"])
    assert exit_info.value.code == 0, capsys.readouterr().err
    [from_cli] = ScreeningResult.objects(formula="KCl")
    assert (from_cli.mlip, from_cli.steps, from_cli.status) == ("chgnet", 2, "unconverged")
    assert from_cli.error == from_campaign.error == "relaxation: step limit 2 reached before fmax 0.0001"


def test_crysloop_mlip_is_honoured_and_rejected_alike(settings, monkeypatch, tmp_path, capsys):
    from crysloop.settings import get_settings
    from crysloop.strict import build

    for setting, potential in (("sevenn-0", "sevenn-0"), ("mattersim-1m", "sevenn-l3i5")):  # no MatterSim weights
        monkeypatch.setenv("CRYSLOOP_MLIP", setting)
        get_settings.cache_clear()
        assert parse_config({"name": "x"}).screening.mlip == potential == build(ScreeningConfig, {"mlip": None}).mlip
    assert parse_config({"name": "x", "screening": {"mlip": "chgnet"}}).screening.mlip == "chgnet"  # given: kept

    monkeypatch.setenv("CRYSLOOP_MLIP", "mace")
    get_settings.cache_clear()
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump({"name": "plain", "rounds": 1}))
    capsys.readouterr()  # the MatterSim fallback note above
    errors = []
    for argv in (["screen"], ["campaign", "run", str(path)]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 1
        errors.append(capsys.readouterr().err.strip())
    assert errors[0] == errors[1] and "unknown MLIP 'mace'" in errors[0] and len(errors[0].splitlines()) == 1


def test_one_tolerance_rule_and_errors_that_name_the_option_or_field(settings, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["screen", "--phonon-tolerance", "0"])
    assert exit_info.value.code == 1 and "--phonon-tolerance: Input should be greater than 0" in capsys.readouterr().err
    with pytest.raises(InputError, match=r"screening\.phonon_tolerance_thz: Input should be greater than 0"):
        parse_config({"name": "x", "screening": {"phonon_tolerance_thz": 0}})
    with pytest.raises(InputError, match=r"screening\.fmax"):
        parse_config({"name": "x", "screening": {"fmax": float("nan")}})


def test_fields_read_at_their_old_places_and_a_contradiction_is_an_error(settings):
    old = parse_config(
        {
            "name": "x",
            "mlip": "sevenn-0",
            "generator": "condition-cdvae-plus",
            "cdvae_model": {"candidates": 10},
            "screening": {"fmax": 0.1},
        }
    )
    assert old.screening.mlip == "sevenn-0" and old.screening.fmax == 0.1
    assert old.generation.generator == "condition-cdvae-plus" and old.generation.cdvae_model.candidates == 10
    assert parse_config(old.model_dump(mode="json")) == old
    with pytest.raises(InputError, match="mlip is given twice"):
        parse_config({"name": "x", "mlip": "sevenn-0", "screening": {"mlip": "chgnet"}})


def test_vdw_build_key_keeps_its_format(settings):
    from crysloop.vdw.config import BuildConfig

    config = BuildConfig(mlip="chgnet+d3", fmax=0.1, steps=200, per_pair=4)
    assert config.key == "chgnet+d3-zero|fmax=0.1|steps=200|gap=3.2|vacuum=15"
    assert BuildConfig().mlip == "chgnet"  # the settings fixture's CRYSLOOP_MLIP, as for screening
