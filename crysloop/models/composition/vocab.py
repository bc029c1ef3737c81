"""Tokenizer of the composition language model: (element, oxidation state) species plus PAD, BOS and EOS.

A composition is the sequence BOS, (species, count), ..., EOS; counts run 1..max_count (0 on special tokens).
The vocabulary also precomputes what constrained decoding needs: each species' charge and a pairwise
compatibility matrix (two species may appear together in one composition) that encodes the labelling rules.
"""

from __future__ import annotations

import numpy as np

from crysloop.chemistry.electronic import N_FEATURES, feature_matrix
from crysloop.chemistry.oxidation import Vocabulary, electronegativity, species_vocabulary
from crysloop.chemistry.valence import ValenceAssignment
from crysloop.errors import InputError

PAD, BOS, EOS = 0, 1, 2
N_SPECIAL = 3


class CompositionVocabulary:
    """Token ids <-> (element, oxidation state); charges, electronic features and compatibility of species.

    ``species`` (a checkpoint's list) wins over ``vocabulary`` (a named oxidation-state vocabulary); the
    compatibility rules read each element's states from the species list itself, so a model keeps its own rules.
    """

    def __init__(self, species: list[tuple[str, int]] | None = None, vocabulary: Vocabulary = "common"):
        self.species: list[tuple[str, int]] = [(str(e), int(s)) for e, s in (species or species_vocabulary(vocabulary))]
        self.index = {sp: i + N_SPECIAL for i, sp in enumerate(self.species)}
        self.charges = np.array([s for _, s in self.species], dtype=np.int64)
        self.features = np.zeros((len(self), N_FEATURES), dtype=np.float32)
        self.features[N_SPECIAL:] = feature_matrix(self.species)
        self.compatible = self._compatibility()

    def __len__(self) -> int:
        return N_SPECIAL + len(self.species)

    def _compatibility(self) -> np.ndarray:
        """compatible[i, j]: species i and j (species indices, not token ids) may share a composition."""
        n = len(self.species)
        en = np.array([electronegativity(e) for e, _ in self.species])
        elements = np.array([e for e, _ in self.species])
        charge = self.charges
        same_element = elements[:, None] == elements[None, :]
        zero = charge == 0
        both_zero = zero[:, None] & zero[None, :]
        one_zero = zero[:, None] ^ zero[None, :]
        cation = charge > 0
        anion = charge < 0
        en_order = (
            (cation[:, None] & anion[None, :] & (en[:, None] < en[None, :]))
            | (anion[:, None] & cation[None, :] & (en[:, None] > en[None, :]))
            | (cation[:, None] & cation[None, :])
            | (anion[:, None] & anion[None, :])
        )
        adjacent = np.zeros((n, n), dtype=bool)
        for i, (element, state) in enumerate(self.species):
            if state == 0:
                continue
            states = self.ionic_states(element)
            position = states.index(state) if state in states else -1
            for j, (other, other_state) in enumerate(self.species):
                if other == element and other_state * state > 0 and position >= 0 and other_state in states:
                    adjacent[i, j] = abs(states.index(other_state) - position) == 1
        compatible = np.where(same_element, adjacent & ~both_zero, np.where(one_zero, False, both_zero | en_order))
        np.fill_diagonal(compatible, False)
        return compatible

    def ionic_states(self, element: str) -> tuple[int, ...]:
        """The element's non-zero states in this vocabulary, ascending."""
        return tuple(sorted(s for e, s in self.species if e == element and s != 0))

    def token(self, element: str, oxidation_state: int) -> int:
        """Token id of a species; unknown species raise :class:`InputError`."""
        try:
            return self.index[(element, int(oxidation_state))]
        except KeyError:
            raise InputError(f"species {element}{oxidation_state:+d} is not in the model's vocabulary") from None

    def encode(self, assignment: ValenceAssignment) -> list[tuple[int, int]]:
        """(token id, count) pairs of an assignment, in its order (no BOS/EOS)."""
        return [(self.token(e, s), int(c)) for e, s, c in assignment.species]

    def decode(self, tokens: list[tuple[int, int]]) -> ValenceAssignment:
        """Assignment from (token id, count) pairs; repeated species are merged, ionic = any non-zero state."""
        merged: dict[tuple[str, int], int] = {}
        for token, count in tokens:
            species = self.species[token - N_SPECIAL]
            merged[species] = merged.get(species, 0) + int(count)
        ionic = any(state != 0 for _, state in merged)
        return ValenceAssignment(ionic, tuple((e, s, c) for (e, s), c in merged.items()))
