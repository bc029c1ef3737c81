"""The valence-constrained elemental language model: a small causal transformer over (species, count) tokens.

Token embedding = learned species embedding + learned count embedding (0..max_count) + a linear map of the
ion's electronic configuration + a learned position embedding. Property conditions (binary or continuous, each
with a learned "no condition" vector) are summed into the BOS token, so one model samples conditionally and
unconditionally. The next token factorises as p(species | prefix) * p(count | prefix, species).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from crysloop.models.composition.vocab import BOS, CompositionVocabulary

CONDITION_KINDS = ("binary", "continuous")


@dataclass
class ConditionSpec:
    """A property the model can be conditioned on; continuous values are standardised with mean and std."""

    name: str
    kind: str
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in CONDITION_KINDS:
            raise ValueError(f"condition {self.name}: kind must be one of {CONDITION_KINDS}, not {self.kind!r}")


@dataclass
class CompositionLMConfig:
    """Architecture of the model (CrysVCD defaults: 3 layers, 4 heads, width 128), its conditions and the
    oxidation-state vocabulary its training compositions are labelled with (see crysloop.chemistry.oxidation)."""

    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.1
    max_count: int = 20
    max_species: int = 10
    conditions: list[ConditionSpec] = field(default_factory=list)
    vocabulary: str = "common"

    def as_dict(self) -> dict:
        """Plain-type dict (safe for ``torch.load(weights_only=True)``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CompositionLMConfig:
        """Inverse of :meth:`as_dict`."""
        data = dict(data)
        data["conditions"] = [ConditionSpec(**c) for c in data.get("conditions", [])]
        return cls(**data)


class _Block(nn.Module):
    """Pre-norm transformer block with causal self-attention."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width), nn.Dropout(dropout)
        )
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(width, dim=-1)
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        attention = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + F.dropout(
            self.proj(attention.transpose(1, 2).reshape(batch, length, width)), self.dropout, self.training
        )
        return x + self.mlp(self.norm2(x))


class _Condition(nn.Module):
    """Embedding of one property value, or of its absence (NaN)."""

    def __init__(self, spec: ConditionSpec, width: int, zero_init: bool = False):
        super().__init__()
        self.spec = spec
        self.none = nn.Parameter(torch.zeros(width) if zero_init else 0.02 * torch.randn(width))
        if spec.kind == "binary":
            self.value = nn.Embedding(2, width)
        else:
            self.value = nn.Sequential(nn.Linear(1, width), nn.GELU(), nn.Linear(width, width))
        if zero_init:
            for parameter in self.value.parameters():
                nn.init.normal_(parameter, std=0.01)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        missing = torch.isnan(values)
        filled = torch.where(missing, torch.zeros_like(values), values)
        if self.spec.kind == "binary":
            embedded = self.value(filled.round().clamp(0, 1).long())
        else:
            embedded = self.value(((filled - self.spec.mean) / self.spec.std).unsqueeze(-1))
        return torch.where(missing.unsqueeze(-1), self.none.expand_as(embedded), embedded)


class CompositionLM(nn.Module):
    """Causal transformer over (species, count) tokens with property conditioning at the BOS token."""

    def __init__(self, config: CompositionLMConfig | None = None, vocabulary: CompositionVocabulary | None = None):
        super().__init__()
        self.config = config or CompositionLMConfig()
        self.vocabulary = vocabulary or CompositionVocabulary(vocabulary=self.config.vocabulary)
        width, n_tokens = self.config.n_embd, len(self.vocabulary)
        self.species_embedding = nn.Embedding(n_tokens, width)
        self.count_embedding = nn.Embedding(self.config.max_count + 1, width)
        self.register_buffer("electronic", torch.from_numpy(self.vocabulary.features), persistent=False)
        self.electronic_map = nn.Linear(self.electronic.shape[1], width)
        self.position_embedding = nn.Embedding(self.config.max_species + 2, width)
        self.conditions = nn.ModuleDict({c.name: _Condition(c, width) for c in self.config.conditions})
        self.blocks = nn.ModuleList(
            _Block(width, self.config.n_head, self.config.dropout) for _ in range(self.config.n_layer)
        )
        self.norm = nn.LayerNorm(width)
        self.species_head = nn.Linear(width, n_tokens)
        self.count_query = nn.Embedding(n_tokens, width)
        self.count_head = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, self.config.max_count + 1))
        self.metadata: dict = {}

    @property
    def condition_names(self) -> list[str]:
        """Names of the properties the model can be conditioned on."""
        return [c.name for c in self.config.conditions]

    def add_condition(self, spec: ConditionSpec) -> None:
        """Add a property condition to a trained model; its "no condition" vector starts at zero, so the
        unconditional distribution is unchanged until fine-tuning moves it."""
        if spec.name in self.conditions:
            raise ValueError(f"condition {spec.name} already exists")
        device = self.species_embedding.weight.device
        self.conditions[spec.name] = _Condition(spec, self.config.n_embd, zero_init=True).to(device)
        self.config.conditions.append(spec)

    def embed(self, species: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Token embeddings (B, T, width) of species ids and counts."""
        positions = torch.arange(species.shape[1], device=species.device)
        return (
            self.species_embedding(species)
            + self.count_embedding(counts)
            + self.electronic_map(self.electronic[species])
            + self.position_embedding(positions)
        )

    def forward(
        self, species: torch.Tensor, counts: torch.Tensor, conditions: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Hidden states (B, T, width); ``conditions`` maps names to (B,) values, NaN = unconditioned."""
        x = self.embed(species, counts)
        condition = torch.zeros_like(x[:, 0])
        for name, module in self.conditions.items():
            values = (conditions or {}).get(name)
            if values is None:
                values = torch.full((x.shape[0],), math.nan, device=x.device)
            condition = condition + module(values.to(x.device, torch.float32))
        x = torch.cat([x[:, :1] + condition.unsqueeze(1), x[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def species_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the next token's species (and PAD/BOS/EOS)."""
        return self.species_head(hidden)

    def count_logits(self, hidden: torch.Tensor, next_species: torch.Tensor) -> torch.Tensor:
        """Logits over the next token's count given its species."""
        return self.count_head(hidden + self.count_query(next_species))

    def start_tokens(self, batch: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """The BOS prefix of a batch."""
        return (
            torch.full((batch, 1), BOS, dtype=torch.long, device=device),
            torch.zeros((batch, 1), dtype=torch.long, device=device),
        )
