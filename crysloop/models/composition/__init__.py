"""Stage I of CrysVCD: the valence-constrained elemental language model (train, fine-tune, sample, save)."""

from crysloop.models.composition.checkpoint import load_checkpoint, save_checkpoint, shipped_checkpoint_path
from crysloop.models.composition.model import CompositionLM, CompositionLMConfig, ConditionSpec
from crysloop.models.composition.sampling import (
    sample_compositions,
    sample_compositions_rejection,
    sample_valid_compositions,
)
from crysloop.models.composition.training import finetune_composition_lm, train_composition_lm
from crysloop.models.composition.vocab import CompositionVocabulary

__all__ = [
    "CompositionLM",
    "CompositionLMConfig",
    "CompositionVocabulary",
    "ConditionSpec",
    "finetune_composition_lm",
    "load_checkpoint",
    "sample_compositions",
    "sample_compositions_rejection",
    "sample_valid_compositions",
    "save_checkpoint",
    "shipped_checkpoint_path",
    "train_composition_lm",
]
