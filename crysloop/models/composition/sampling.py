"""Sampling compositions from the language model, with charge-neutrality constrained decoding.

Constrained decoding masks every token after which neutrality becomes unreachable, so no sample is thrown away.
It keeps one invariant: the running charge Q is 0, or one more token (a species compatible with every species
so far, count <= max_count, within the remaining token budget) cancels it. A (species, count) candidate is
allowed only if the new charge Q' = Q + v*c keeps the invariant, and the composition ends only when Q = 0; since
the token that cancels Q is always allowed, decoding never reaches a dead end. When the model draws EOS while
Q != 0, its stop is turned into a closing token: one drawn (with the model's probabilities) among the allowed
tokens that make Q' = 0, so compositions do not grow past the point where the model meant to stop. Compatibility (see
:class:`~crysloop.models.composition.vocab.CompositionVocabulary`) also enforces the labelling rules: one sign
and at most two adjacent states per element, cations less electronegative than anions, alloys all in state 0.

Constrained decoding samples a different distribution from p(x | x neutral): masking reweights every prefix.
:func:`sample_compositions_rejection` draws that conditional exactly, by sampling the raw model and keeping only
the compositions constrained decoding could produce (neutral, pairwise compatible species, counts in range).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from crysloop.chemistry.valence import ValenceAssignment
from crysloop.errors import InputError
from crysloop.models.composition.model import CompositionLM
from crysloop.models.composition.vocab import BOS, EOS, N_SPECIAL, PAD
from crysloop.settings import resolve_device


class _Constraints:
    """Tensors for the neutrality masks: species charges, compatibility and one-token cancellation table."""

    def __init__(self, model: CompositionLM, device: str):
        vocabulary, max_count = model.vocabulary, model.config.max_count
        charges = torch.as_tensor(vocabulary.charges, device=device)
        self.charges = charges
        self.compatible = torch.as_tensor(vocabulary.compatible, device=device, dtype=torch.float32)
        self.values = sorted({int(v) for v in vocabulary.charges if v != 0})
        self.onehot = torch.stack([(charges == v).float() for v in self.values], dim=1)  # (S, K)
        self.max_charge = max(abs(v) for v in self.values) * max_count
        offsets = torch.arange(-self.max_charge, self.max_charge + 1, device=device)
        cancel = torch.zeros(len(self.values), offsets.numel(), device=device)
        for k, v in enumerate(self.values):
            quotient = -offsets / v
            cancel[k] = ((quotient == quotient.round()) & (quotient >= 1) & (quotient <= max_count)).float()
        self.bits = 2.0 ** torch.arange(len(self.values), device=device, dtype=torch.float64)
        # cancel_bits[q + max_charge]: bitmask of the charge values k of which one token can cancel charge q
        self.cancel_bits = (cancel.T.double() @ self.bits).long()
        self.counts = torch.arange(1, max_count + 1, device=device)

    def allowed(self, available: torch.Tensor, charge: torch.Tensor, budget: torch.Tensor):
        """(B, S, C) masks of (species, count) candidates that keep neutrality reachable, and of those that
        make the composition neutral.

        ``available`` (B, S) species compatible with the prefix, ``charge`` (B,) running charge, ``budget`` (B,)
        tokens still allowed after this one.
        """
        batch, n_species = available.shape
        new_charge = charge[:, None, None] + self.charges[None, :, None] * self.counts[None, None, :]  # (B, S, C)
        by_charge = (available[:, :, None] * self.onehot[None]).permute(1, 0, 2).reshape(n_species, -1)
        present = self.compatible @ by_charge  # charge values left once s is chosen
        present = present.reshape(n_species, batch, -1).permute(1, 0, 2)  # (B, S, K)
        in_range = new_charge.abs() <= self.max_charge
        index = (new_charge.clamp(-self.max_charge, self.max_charge) + self.max_charge).long()
        present_bits = ((present > 0).double() @ self.bits).long()  # (B, S) bitmask of available charge values
        cancellable = (self.cancel_bits[index] & present_bits[:, :, None]) != 0  # (B, S, C)
        budget = budget[:, None, None]
        ok = ((new_charge == 0) & (budget >= 0)) | (cancellable & in_range & (budget >= 1))
        ok = ok & (available[:, :, None] > 0)
        return ok, ok & (new_charge == 0)


def _condition_tensors(model: CompositionLM, conditions: dict | None, n: int, device: str) -> dict[str, torch.Tensor]:
    tensors = {}
    for name, value in (conditions or {}).items():
        if name not in model.conditions:
            known = ", ".join(model.condition_names) or "none"
            raise InputError(f"the model was not trained on condition {name!r} (it knows: {known})")
        if value is None:
            continue
        value = float(value)
        if model.conditions[name].spec.kind == "binary" and value not in (0.0, 1.0):
            raise InputError(f"condition {name} is binary: give 0 or 1, not {value}")
        tensors[name] = torch.full((n,), value, device=device)
    return tensors


def _sample_from(logits: torch.Tensor, temperature: float, top_k: int, generator: torch.Generator) -> torch.Tensor:
    logits = logits / max(temperature, 1e-6)
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)


@torch.no_grad()
def _sample_batch(model, n, conditions, temperature, top_k, constrained, generator, device) -> list[ValenceAssignment]:
    config = model.config
    species, counts = model.start_tokens(n, device)
    n_species = len(model.vocabulary.species)
    available = torch.ones((n, n_species), device=device)
    charge = torch.zeros(n, dtype=torch.long, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    constraints = _Constraints(model, device) if constrained else None
    for step in range(config.max_species + 1):
        hidden = model(species, counts, conditions)[:, -1]
        logits = model.species_logits(hidden)
        logits[:, PAD] = -math.inf
        logits[:, BOS] = -math.inf
        budget = torch.full((n,), config.max_species - step - 1, device=device)
        if constrained:
            allowed, closing = constraints.allowed(available, charge, budget)  # (B, S, C)
            logits[:, N_SPECIAL:] = logits[:, N_SPECIAL:].masked_fill(~allowed.any(dim=2), -math.inf)
        elif step == config.max_species:
            logits[:, N_SPECIAL:] = -math.inf
        if step == 0:
            logits[:, EOS] = -math.inf
        logits[done, EOS] = 0.0
        token = _sample_from(logits, temperature, top_k, generator)
        if constrained:  # the model wants to stop before neutrality: close with the token that cancels the charge
            closes = (token == EOS) & (charge != 0) & ~done
            if closes.any():
                closing_logits = logits.clone()
                closing_logits[:, :N_SPECIAL] = -math.inf
                closing_logits[:, N_SPECIAL:] = closing_logits[:, N_SPECIAL:].masked_fill(
                    ~closing.any(dim=2), -math.inf
                )
                closing_logits[~closes] = 0.0
                token = torch.where(closes, _sample_from(closing_logits, temperature, top_k, generator), token)
                allowed = torch.where(closes[:, None, None], closing, allowed)
        token = torch.where(done, torch.full_like(token, PAD), token)
        is_species = token >= N_SPECIAL
        count_logits = model.count_logits(hidden, token)
        count_logits[:, 0] = -math.inf
        if constrained:
            index = (token - N_SPECIAL).clamp(min=0)
            count_ok = allowed[torch.arange(n, device=device), index]  # (B, C)
            count_logits[:, 1:] = count_logits[:, 1:].masked_fill(~count_ok & is_species[:, None], -math.inf)
        count = torch.where(is_species, _sample_from(count_logits, temperature, 0, generator), torch.zeros_like(token))
        if constrained:
            chosen = (token - N_SPECIAL).clamp(min=0)
            charge = charge + torch.where(is_species, constraints.charges[chosen] * count, 0)
            available = torch.where(is_species[:, None], available * constraints.compatible[chosen], available)
        done = done | (token == EOS)
        species = torch.cat([species, torch.where(is_species, token, torch.full_like(token, PAD))[:, None]], dim=1)
        counts = torch.cat([counts, count[:, None]], dim=1)
        if done.all():
            break
    results = []
    for row_species, row_counts in zip(species[:, 1:].tolist(), counts[:, 1:].tolist(), strict=True):
        tokens = [(t, c) for t, c in zip(row_species, row_counts, strict=True) if t >= N_SPECIAL]
        results.append(model.vocabulary.decode(tokens))
    return results


def sample_compositions(
    model: CompositionLM,
    n: int,
    conditions: dict[str, float] | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    constrained: bool = True,
    seed: int | None = None,
    device: str = "cpu",
    batch_size: int = 1024,
) -> list[ValenceAssignment]:
    """Draw ``n`` compositions as valence assignments (``.composition`` gives the pymatgen Composition).

    With ``constrained=True`` every ionic sample is charge-neutral and follows the labelling rules; with
    False the raw model distribution is sampled (species tokens only kept apart from PAD/BOS). ``conditions``
    maps property names the model was trained on to target values; absent names are unconditioned.
    """
    if n < 0:
        raise InputError("the number of samples must be >= 0")
    device = resolve_device(device)
    model = model.to(device).eval()
    tensors_for = lambda size: _condition_tensors(model, conditions, size, device)  # noqa: E731
    tensors_for(1)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int(np.random.SeedSequence().entropy % 2**63))
    samples: list[ValenceAssignment] = []
    while len(samples) < n:
        size = min(batch_size, n - len(samples))
        samples.extend(
            _sample_batch(model, size, tensors_for(size), temperature, top_k, constrained, generator, device)
        )
    return samples


def admissible(model: CompositionLM, assignment: ValenceAssignment) -> bool:
    """Whether constrained decoding could produce this composition: neutral, every pair of species compatible,
    every count within ``max_count`` (repeated species, merged by the decoder, have no such pair and fail)."""
    vocabulary = model.vocabulary
    if assignment.charge != 0 or not assignment.species:
        return False
    if any(count > model.config.max_count for _, _, count in assignment.species):
        return False
    indices = [vocabulary.index[(element, state)] - N_SPECIAL for element, state, _ in assignment.species]
    return all(vocabulary.compatible[i, j] for k, i in enumerate(indices) for j in indices[k + 1 :])


def sample_compositions_rejection(
    model: CompositionLM,
    n: int,
    conditions: dict[str, float] | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
    device: str = "cpu",
    batch_size: int = 1024,
    max_draws: int = 1_000_000,
) -> tuple[list[ValenceAssignment], int]:
    """``n`` compositions from the model conditioned exactly on admissibility (rejection sampling), and the
    number of raw draws it took; :class:`InputError` if ``max_draws`` raw samples do not yield ``n``."""
    rng = np.random.default_rng(seed)
    kept: list[ValenceAssignment] = []
    draws = 0
    while len(kept) < n:
        if draws >= max_draws:
            raise InputError(f"rejection sampling kept {len(kept)} of {draws} draws, fewer than the {n} asked for")
        size = min(batch_size, max_draws - draws)
        batch = sample_compositions(
            model,
            size,
            conditions,
            temperature,
            top_k,
            constrained=False,
            seed=int(rng.integers(2**62)),
            device=device,
            batch_size=batch_size,
        )
        draws += size
        kept.extend(a for a in batch if admissible(model, a))
    return kept[:n], draws


def sample_valid_compositions(
    model: CompositionLM,
    n: int,
    conditions: Mapping[str, float] | None = None,
    max_atoms: int = 20,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    device: str = "cpu",
    max_tries: int = 20,
) -> list[ValenceAssignment]:
    """``n`` charge-neutral compositions with at most ``max_atoms`` atoms per cell (constrained decoding); conditions
    the model was not trained on are left out."""
    wanted = {k: float(v) for k, v in (conditions or {}).items() if k in set(model.condition_names)}
    chosen: list[ValenceAssignment] = []
    for attempt in range(max_tries):
        batch = sample_compositions(
            model,
            max(n, 16),
            conditions=wanted or None,
            temperature=temperature,
            top_k=top_k,
            constrained=True,
            seed=seed + attempt,
            device=device,
        )
        chosen += [a for a in batch if 0 < a.composition.num_atoms <= max_atoms]
        if len(chosen) >= n:
            return chosen[:n]
    raise InputError(
        f"the composition model produced only {len(chosen)} compositions of at most {max_atoms} atoms "
        f"in {max_tries} batches; raise composition_model.max_atoms"
    )
