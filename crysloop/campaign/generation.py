"""CrysVCD generation: Stage I compositions -> Stage II structures, as candidates ready for the database."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache

from crysloop.chemistry.valence import ValenceAssignment
from crysloop.chemistry.volume import rescale_to_expected_volume
from crysloop.errors import InputError
from crysloop.evaluation.validity import MAX_VOLUME_PER_ATOM, structure_validity
from crysloop.infra.store import NewCandidate
from crysloop.models.diffcsp import DiffCSP, sample_structures


@lru_cache(maxsize=16)
def model_condition_names(
    composition_checkpoint: str = "shipped", structure_checkpoint: str = "shipped"
) -> dict[str, tuple[str, ...]]:
    """The conditions each stage's checkpoint was trained on (``shipped`` = the packaged models)."""
    from crysloop.models import composition
    from crysloop.models.diffcsp.checkpoints import read_checkpoint

    stage1 = composition.load_checkpoint(composition_checkpoint)
    payload = read_checkpoint(structure_checkpoint)
    return {"stage I": tuple(stage1.condition_names), "stage II": tuple(payload["config"].get("properties") or ())}


def check_conditions(conditions: Mapping[str, float], known: Mapping[str, Sequence[str]]) -> None:
    """Every condition must be finite and known to some model; otherwise an ``InputError`` listing the known names.

    A condition no model knows would be dropped silently and the crystals generated unconditioned.
    """
    names = {name for group in known.values() for name in group}
    for name, value in conditions.items():
        if name not in names:
            listing = "; ".join(f"{where}: {', '.join(group) or 'none'}" for where, group in known.items())
            raise InputError(f"unknown condition {name!r}; the models know {listing}")
        if not math.isfinite(value):
            raise InputError(f"condition {name}: {value} is not a finite number")


def known_conditions(conditions: Mapping[str, float] | None, names) -> dict[str, float]:
    """The subset of target conditions a model was trained on (others cannot steer it yet)."""
    return {k: float(v) for k, v in (conditions or {}).items() if k in set(names)}


def structures_for(
    assignments: list[ValenceAssignment],
    model: DiffCSP,
    conditions: Mapping[str, float] | None = None,
    guidance: float = 2.0,
    steps: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
    origin: dict | None = None,
    rescale_volume: bool = True,
) -> list[NewCandidate]:
    """Stage II: one structure per composition, conditioned with classifier-free guidance when the model can be.

    ``rescale_volume`` scales each cell to its composition's expected volume (``rescale_to_expected_volume``); the
    sampled volume per atom is kept in the candidate's origin as ``sampled_volume_per_atom``.
    """
    wanted = known_conditions(conditions, model.config.properties)
    structures = sample_structures(
        model,
        compositions=[a.composition for a in assignments],
        conditions=wanted or None,
        guidance=guidance if wanted else 0.0,
        steps=steps,
        batch_size=batch_size,
        device=device,
        seed=seed,
    )
    origin = {
        **(origin or {}),
        "conditions_stage2": wanted,
        "guidance": guidance if wanted else 0.0,
        "rescale_volume": rescale_volume,
    }
    return [
        NewCandidate(
            rescale_to_expected_volume(structure) if rescale_volume else structure,
            source="generated",
            origin={
                **origin,
                "ionic": assignment.ionic,
                "sampled_volume_per_atom": round(structure.volume / len(structure), 3),
            },
            oxidation_states=assignment.species,
        )
        for assignment, structure in zip(assignments, structures, strict=True)
    ]


def cdvae_structures_for(
    assignments: list[ValenceAssignment],
    model,
    gan,
    conditions: Mapping[str, float] | None,
    candidates: int = 100,
    steps_per_level: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    origin: dict | None = None,
) -> list[NewCandidate]:
    """Stage II with ConditionCDVAE+: one structure per composition the model can take (elements in its vocabulary,
    few enough atoms; the others are left out), steered toward the conditions it was trained on."""
    from crysloop.models.cdvae import sample_structures as cdvae_sample
    from crysloop.models.cdvae.conditions import formula_atoms

    wanted = known_conditions(conditions, model.config.scalar_conditions)
    formulas, usable = [], []
    for assignment in assignments:
        formula = assignment.composition.formula.replace(" ", "")
        try:
            formula_atoms(model.config, formula)
        except InputError:
            continue
        formulas.append(formula)
        usable.append(assignment)
    if not usable:
        return []
    structures = cdvae_sample(
        model,
        gan,
        conditions=wanted,
        formulas=formulas,
        candidates=candidates,
        steps_per_level=steps_per_level,
        batch_size=batch_size,
        seed=seed,
    )
    origin = {**(origin or {}), "generator": "condition-cdvae-plus", "conditions_stage2": wanted}
    return [
        NewCandidate(
            structure,
            source="generated",
            origin={**origin, "ionic": assignment.ionic},
            oxidation_states=assignment.species,
        )
        for assignment, structure in zip(usable, structures, strict=True)
    ]


MIN_VOLUME_PER_ATOM = 4.0  # A^3; MP-20 spans 8-93, diamond has 5.7


def valid_flags(items: Sequence[NewCandidate]) -> list[bool]:
    """For each sampled crystal: structurally valid (no atoms closer than 0.5 A) and of a plausible density.

    Overlapping atoms, collapsed or vastly expanded cells cannot be relaxed by a potential (and can exhaust memory
    building its graph), so they never reach the candidates or the screening; they still count in round statistics.
    """
    return [
        MIN_VOLUME_PER_ATOM <= item.structure.volume / len(item.structure) <= MAX_VOLUME_PER_ATOM
        and structure_validity(item.structure)
        for item in items
    ]
