"""Composition language model: constrained decoding, conditioning, fine-tuning and checkpoints."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crysloop.chemistry.oxidation import electronegativity, ionic_states
from crysloop.errors import InputError
from crysloop.models.composition import (
    CompositionLM,
    CompositionLMConfig,
    ConditionSpec,
    finetune_composition_lm,
    load_checkpoint,
    sample_compositions,
    save_checkpoint,
    train_composition_lm,
)

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "dropout": 0.0}


@pytest.fixture(scope="module")
def random_model() -> CompositionLM:
    torch.manual_seed(1)
    return CompositionLM(
        CompositionLMConfig(
            **TINY, conditions=[ConditionSpec("stable", "binary"), ConditionSpec("ehull", "continuous", 0.1, 0.2)]
        )
    )


def _assert_valid_ionic(assignment) -> None:
    assert assignment.charge == 0
    states: dict[str, list[int]] = {}
    for element, state, count in assignment.species:
        assert 1 <= count <= 20 and state != 0
        states.setdefault(element, []).append(state)
    for element, used in states.items():
        allowed = ionic_states(element)
        assert len(used) <= 2
        if len(used) == 2:
            assert used[0] * used[1] > 0 and abs(allowed.index(used[0]) - allowed.index(used[1])) == 1
    cations = [electronegativity(e) for e, s in states.items() if s[0] > 0]
    anions = [electronegativity(e) for e, s in states.items() if s[0] < 0]
    assert max(cations) < min(anions)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**31 - 1),
    temperature=st.floats(0.3, 3.0),
    top_k=st.sampled_from([0, 1, 5, 50]),
    stable=st.sampled_from([None, 0, 1]),
    ehull=st.one_of(st.none(), st.floats(-0.5, 2.0)),
)
def test_constrained_samples_are_neutral(random_model, seed, temperature, top_k, stable, ehull):
    """Untrained weights are the hardest case: every ionic sample must still be neutral and follow the rules."""
    conditions = {"stable": stable, "ehull": ehull}
    samples = sample_compositions(random_model, 40, conditions, temperature, top_k, constrained=True, seed=seed)
    assert len(samples) == 40
    for sample in samples:
        assert sample.species
        if sample.ionic:
            _assert_valid_ionic(sample)
        else:
            assert all(state == 0 for _, state, _ in sample.species)
            assert len({e for e, _, _ in sample.species}) == len(sample.species)


def test_unconstrained_sampling_is_not_neutral(random_model):
    samples = sample_compositions(random_model, 100, temperature=1.0, constrained=False, seed=0)
    assert any(s.ionic and s.charge != 0 for s in samples)  # the constraint is what makes them neutral


def test_unknown_condition_is_an_input_error(random_model):
    with pytest.raises(InputError, match="not trained on condition 'kappa'"):
        sample_compositions(random_model, 1, {"kappa": 1.0})
    with pytest.raises(InputError, match="binary"):
        sample_compositions(random_model, 1, {"stable": 0.5})


OXIDES = ["MgO", "CaO", "ZnO", "Al2O3", "TiO2", "SnO2", "Li2O", "Na2O", "SrO", "BaO", "Ga2O3", "SiO2"]
HALIDES = ["NaCl", "KCl", "MgCl2", "CaF2", "LiF", "KBr", "NaI", "SrCl2", "BaF2", "CsCl", "AgCl", "ZnCl2"]


def _fraction_oxides(samples) -> float:
    return sum(any(e == "O" for e, _, _ in s.species) for s in samples) / len(samples)


def test_conditioning_moves_the_distribution():
    """Binary: oxide=1 asks for oxides. Continuous: a high 'size' asks for more atoms per formula."""
    compositions = OXIDES + HALIDES
    properties = [{"oxide": 1.0, "size": float(n)} for n in range(len(OXIDES))]
    properties += [{"oxide": 0.0, "size": float(n)} for n in range(len(HALIDES))]
    # 'size' is the number of atoms, so it varies within both families
    for props, formula in zip(properties, compositions):
        from pymatgen.core import Composition

        props["size"] = Composition(formula).num_atoms
    model = train_composition_lm(
        compositions * 4,
        properties * 4,
        {"oxide": None, "size": None},
        CompositionLMConfig(**TINY),
        epochs=60,
        batch_size=32,
        lr=5e-3,
        seed=0,
    )
    assert model.conditions["oxide"].spec.kind == "binary" and model.conditions["size"].spec.kind == "continuous"
    oxide = sample_compositions(model, 300, {"oxide": 1}, seed=1)
    halide = sample_compositions(model, 300, {"oxide": 0}, seed=1)
    assert _fraction_oxides(oxide) > _fraction_oxides(halide) + 0.3
    small = sample_compositions(model, 300, {"size": 2.0}, seed=2)
    large = sample_compositions(model, 300, {"size": 5.0}, seed=2)
    mean_atoms = lambda samples: sum(s.composition.num_atoms for s in samples) / len(samples)  # noqa: E731
    assert mean_atoms(large) > mean_atoms(small) + 0.5


def test_finetune_adds_condition_and_keeps_weights(tmp_path, random_model):
    model = load_checkpoint(save_checkpoint(random_model, tmp_path / "base.pt"))
    species, counts = model.start_tokens(4, "cpu")
    before = model.species_logits(model(species, counts))
    original = {k: v.clone() for k, v in model.state_dict().items()}
    model.add_condition(ConditionSpec("phonon_stable", "binary"))
    after = model.species_logits(model(species, counts))
    assert torch.allclose(before, after)  # a new condition leaves the unconditional model unchanged
    records = [("MgO", {"phonon_stable": 1}), ("NaCl", {"phonon_stable": 0}), ("Fe3O4", {"phonon_stable": 1})]
    finetune_composition_lm(model, records * 8, epochs=2, batch_size=8, lr=1e-4)
    state = model.state_dict()
    assert set(original) <= set(state)
    drift = max((state[k] - v).abs().max().item() for k, v in original.items())
    assert 0 < drift < 0.05  # continued from the old weights, not re-initialised
    assert model.condition_names == ["stable", "ehull", "phonon_stable"]
    reloaded = load_checkpoint(save_checkpoint(model, tmp_path / "tuned.pt"))
    assert reloaded.condition_names == model.condition_names
    assert reloaded.metadata["finetunes"][0]["conditions"] == ["phonon_stable"]


def test_checkpoint_round_trip_is_plain(tmp_path, random_model):
    path = save_checkpoint(random_model, tmp_path / "lm.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["config"]["n_embd"] == 32 and payload["species"][0] == ["H", -1]
    loaded = load_checkpoint(path)
    species, counts = loaded.start_tokens(2, "cpu")
    conditions = {"ehull": torch.tensor([0.0, math.nan])}
    assert torch.allclose(loaded(species, counts, conditions), random_model.eval()(species, counts, conditions))
    a = sample_compositions(loaded, 20, seed=3)
    b = sample_compositions(random_model, 20, seed=3)
    assert a == b
    with pytest.raises(InputError):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("n_labels,epochs", [(1, 1), (3, 10)])
def test_finetune_on_a_handful_of_labels(random_model, n_labels, epochs):
    """A campaign round can label only a few candidates; fine-tuning must still run (learning-rate schedule)."""
    model = copy.deepcopy(random_model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    finetune_composition_lm(model, [("NaCl", {"stable": 1.0})] * n_labels, epochs=epochs)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "no weight was updated"
