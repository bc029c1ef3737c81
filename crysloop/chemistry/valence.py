"""Valence labelling: a charge-neutral assignment {(element^v, count)} of a composition, or the alloy label.

Rules of an ionic assignment (CrysVCD's, plus an electronegativity order):

* every element takes states from :func:`crysloop.chemistry.oxidation.ionic_states`; mixed valence is allowed
  (Fe3O4 -> Fe2+ x1, Fe3+ x2, O2- x4), but an element never takes both a positive and a negative state, and it
  takes at most two states that are adjacent in its allowed list (if u < v < w are allowed, u and w never
  appear together; a third state is impossible);
* every cation element is less electronegative (Pauling) than every anion element, so ZnS, GaAs, SiC and NaH
  are ionic (Zn2+ S2-, Ga3+ As3-, Si4+ C4-, Na+ H-) while Ni3Al, whose elements have no anionic state, is not.

Ionic vs alloy (``alloy_rule``): by default (``"ionic-first"``) a composition is ionic when such an assignment
in established states exists; otherwise it is an alloy (all elements in state 0) when every element has a
metallic state; otherwise it is ionic when an assignment that also uses the vocabulary's occasional states
(:func:`crysloop.chemistry.oxidation.occasional_states`, e.g. Cu3+, Co4+) exists; otherwise it has no assignment
and the labeller returns ``None``. Occasional states count as allowed states for the comproportionation rule
in both passes. This deliberately differs from CrysVCD, whose rule
(``"paper"``) calls a composition an alloy whenever every element can take state 0 (so every compound without
O, N or a halogen, ZnS and GaAs included) and ionic only otherwise. ``vocabulary`` picks the oxidation states
(see :mod:`crysloop.chemistry.oxidation`). Among neutral assignments the
cheapest wins: pymatgen's common states cost 0, ICSD states 1, other known states 2, mixed valence 1.5 per
element. The search
is a dynamic programme over elements (states = running charge, pruned by the charge the remaining elements can
still reach), for each cation/anion split of the electronegativity order; results are cached by formula.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, reduce
from math import gcd
from typing import Literal

from pymatgen.core import Composition
from pymatgen.core.periodic_table import DummySpecies

from crysloop.chemistry.oxidation import (
    Vocabulary,
    check_vocabulary,
    electronegativity,
    has_metallic_state,
    ionic_states,
    is_supported_element,
    occasional_states,
    state_cost,
)
from crysloop.errors import InputError

MIXED_VALENCE_COST = 1.5
AlloyRule = Literal["ionic-first", "paper"]
ALLOY_RULES = ("ionic-first", "paper")


@dataclass(frozen=True)
class ValenceAssignment:
    """A labelled composition: ``ionic`` flag and (element, oxidation_state, count) tuples (state 0 = alloy)."""

    ionic: bool
    species: tuple[tuple[str, int, int], ...]

    @property
    def composition(self) -> Composition:
        """The composition (element -> count) without oxidation states."""
        amounts: dict[str, int] = {}
        for element, _, count in self.species:
            amounts[element] = amounts.get(element, 0) + count
        return Composition(amounts)

    @property
    def formula(self) -> str:
        """Reduced formula of the composition."""
        return self.composition.reduced_formula

    @property
    def charge(self) -> int:
        """Total charge (0 for every assignment the labeller or the constrained sampler returns)."""
        return sum(state * count for _, state, count in self.species)

    def as_records(self) -> list[dict]:
        """Plain dicts {element, oxidation_state, count}, the shape of the ``OxidationState`` document."""
        return [{"element": e, "oxidation_state": s, "count": c} for e, s, c in self.species]

    def __str__(self) -> str:
        parts = [f"{e}{species_label(s)} x{c}" for e, s, c in self.species]
        return f"{self.formula} ({'ionic' if self.ionic else 'alloy'}: {', '.join(parts)})"


def species_label(oxidation_state: int) -> str:
    """Superscript-style charge label: 0 -> '0', 3 -> '3+', -2 -> '2-'."""
    if oxidation_state == 0:
        return "0"
    return f"{abs(oxidation_state)}{'+' if oxidation_state > 0 else '-'}"


def as_composition(composition: Composition | str | dict) -> Composition:
    """Parse a formula, a dict or a Composition; unparsable input or unknown elements raise :class:`InputError`."""
    if isinstance(composition, Composition):
        return composition
    try:
        parsed = Composition(composition)
    except Exception as exc:  # pymatgen raises ValueError, KeyError or its own errors on bad formulas
        raise InputError(f"cannot parse composition {composition!r}: {exc}") from None
    if not parsed.elements or parsed.num_atoms <= 0:
        raise InputError(f"cannot parse composition {composition!r}: no atoms")
    unknown = [e.symbol for e in parsed.elements if isinstance(e, DummySpecies)]
    if unknown:
        raise InputError(f"composition {composition!r}: unknown element {', '.join(unknown)}")
    return parsed.element_composition


def _element_options(
    element: str, count: int, sign: int, vocabulary: Vocabulary, occasional: bool
) -> list[tuple[int, float, tuple[tuple[int, int], ...]]]:
    """(charge, cost, ((state, count), ...)) for every allowed way one element of ``count`` atoms takes states;
    occasional states only if ``occasional``, but always as neighbours in the comproportionation rule."""
    states = ionic_states(element, vocabulary)
    usable = set(states) if occasional else set(states) - occasional_states(element, vocabulary)
    cost = {s: state_cost(element, s) for s in states}
    options = []
    for i, state in enumerate(states):
        if state * sign <= 0 or state not in usable:
            continue
        options.append((state * count, cost[state], ((state, count),)))
        if i + 1 < len(states) and states[i + 1] * sign > 0 and states[i + 1] in usable:
            upper = states[i + 1]
            pair_cost = cost[state] + cost[upper] + MIXED_VALENCE_COST
            for k in range(1, count):
                charge = state * k + upper * (count - k)
                options.append((charge, pair_cost, ((state, k), (upper, count - k))))
    return options


def _ionic_assignment(
    items: tuple[tuple[str, int], ...], vocabulary: Vocabulary, occasional: bool
) -> tuple[tuple[str, int, int], ...] | None:
    """Cheapest neutral ionic assignment of integer counts, or None."""
    if len(items) < 2:
        return None
    ordered = sorted(items, key=lambda item: (electronegativity(item[0]), item[0]))
    best: tuple[float, tuple] | None = None
    for split in range(1, len(ordered)):
        if electronegativity(ordered[split - 1][0]) >= electronegativity(ordered[split][0]):
            continue
        options = [
            _element_options(element, count, +1 if position < split else -1, vocabulary, occasional)
            for position, (element, count) in enumerate(ordered)
        ]
        if any(not opts for opts in options):
            continue
        low = [min(o[0] for o in opts) for opts in options]
        high = [max(o[0] for o in opts) for opts in options]
        remaining_low = [sum(low[i + 1 :]) for i in range(len(options))]
        remaining_high = [sum(high[i + 1 :]) for i in range(len(options))]
        frontier: dict[int, tuple[float, tuple]] = {0: (0.0, ())}
        for i, opts in enumerate(options):
            nxt: dict[int, tuple[float, tuple]] = {}
            for charge, (cost, chosen) in frontier.items():
                for delta, option_cost, split_states in opts:
                    total = charge + delta
                    if total + remaining_low[i] > 0 or total + remaining_high[i] < 0:
                        continue
                    new_cost = cost + option_cost
                    if total not in nxt or new_cost < nxt[total][0]:
                        nxt[total] = (new_cost, (*chosen, split_states))
            frontier = nxt
        if 0 in frontier and (best is None or frontier[0][0] < best[0]):
            best = frontier[0]
    if best is None:
        return None
    return tuple(
        (element, state, count)
        for (element, _), split_states in zip(ordered, best[1], strict=True)
        for state, count in split_states
    )


@lru_cache(maxsize=200_000)
def _label_counts(
    items: tuple[tuple[str, int], ...], vocabulary: Vocabulary, alloy_rule: AlloyRule
) -> ValenceAssignment | None:
    if not all(is_supported_element(element) for element, _ in items):
        return None
    alloy = all(has_metallic_state(element) for element, _ in items)
    if alloy and alloy_rule == "paper":
        return ValenceAssignment(False, tuple((element, 0, count) for element, count in items))
    ionic = _ionic_assignment(items, vocabulary, occasional=False)
    if ionic is not None:
        return ValenceAssignment(True, ionic)
    if alloy:
        return ValenceAssignment(False, tuple((element, 0, count) for element, count in items))
    if not any(occasional_states(element, vocabulary) for element, _ in items):
        return None
    ionic = _ionic_assignment(items, vocabulary, occasional=True)
    return None if ionic is None else ValenceAssignment(True, ionic)


def _integer_items(composition: Composition) -> tuple[tuple[str, int], ...]:
    amounts = composition.get_el_amt_dict()
    if all(abs(a - round(a)) < 1e-6 for a in amounts.values()):
        return tuple(sorted((el, round(a)) for el, a in amounts.items() if round(a) > 0))
    formula, _ = composition.get_integer_formula_and_factor(max_denominator=20)
    return tuple(sorted((el, round(a)) for el, a in Composition(formula).get_el_amt_dict().items()))


def check_alloy_rule(alloy_rule: str) -> str:
    """The rule name, or :class:`InputError` for an unknown one."""
    if alloy_rule not in ALLOY_RULES:
        raise InputError(f"unknown alloy rule {alloy_rule!r}; choose one of {', '.join(ALLOY_RULES)}")
    return alloy_rule


def label_composition(
    composition: Composition | str | dict, vocabulary: Vocabulary = "common", alloy_rule: AlloyRule = "ionic-first"
) -> ValenceAssignment | None:
    """Charge-neutral valence assignment of a composition (ionic), the alloy label, or None if neither exists.

    Counts are those of the composition given (a cell stays a cell); fractional amounts are first made integer.
    The reduced formula is labelled and scaled up; only if it has no assignment are the full counts tried (a
    larger cell leaves more room for mixed valence).
    """
    check_vocabulary(vocabulary)
    check_alloy_rule(alloy_rule)
    items = _integer_items(as_composition(composition))
    if not items:
        return None
    factor = reduce(gcd, (count for _, count in items))
    reduced = tuple((element, count // factor) for element, count in items)
    result = _label_counts(reduced, vocabulary, alloy_rule)
    if result is not None:
        return ValenceAssignment(result.ionic, tuple((e, s, c * factor) for e, s, c in result.species))
    return _label_counts(items, vocabulary, alloy_rule) if factor > 1 else None


def _label_chunk(args: tuple[list, str, str]) -> list[ValenceAssignment | None]:
    compositions, vocabulary, alloy_rule = args
    return [label_composition(c, vocabulary, alloy_rule) for c in compositions]


def label_compositions(
    compositions: list[Composition | str | dict],
    processes: int = 1,
    chunk_size: int = 2000,
    vocabulary: Vocabulary = "common",
    alloy_rule: AlloyRule = "ionic-first",
) -> list[ValenceAssignment | None]:
    """Label many compositions (same order); ``processes`` > 1 spreads chunks over a process pool."""
    if processes <= 1 or len(compositions) <= chunk_size:
        return _label_chunk((list(compositions), vocabulary, alloy_rule))
    chunks = [
        (list(compositions[i : i + chunk_size]), vocabulary, alloy_rule)
        for i in range(0, len(compositions), chunk_size)
    ]
    with ProcessPoolExecutor(max_workers=processes) as pool:
        return [label for chunk in pool.map(_label_chunk, chunks) for label in chunk]
