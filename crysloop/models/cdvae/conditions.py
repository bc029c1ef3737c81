"""Condition embeddings: numeric properties standardised and expanded on a Gaussian basis, a chemical formula as
a learned embedding of its composition, each with a learned "absent" embedding so any subset can be given."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from crysloop.errors import InputError
from crysloop.models.cdvae.config import FORMULA, CDVAEConfig


class GaussianBasis(nn.Module):
    """Gaussians centred on a grid over [-3, 3] standard deviations, width one grid spacing."""

    def __init__(self, num_gaussians: int, low: float = -3.0, high: float = 3.0):
        super().__init__()
        self.register_buffer("centers", torch.linspace(low, high, num_gaussians))
        self.width = (high - low) / max(num_gaussians - 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * ((x[:, None] - self.centers) / self.width) ** 2)


def _mlp(in_dim: int, dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))


class ConditionEncoder(nn.Module):
    """One embedding (B, cond_dim) per condition of the config, in ``config.conditions`` order."""

    def __init__(self, config: CDVAEConfig):
        super().__init__()
        self.config = config
        self.basis = GaussianBasis(config.num_gaussians)
        self.embeddings = nn.ModuleDict(
            {
                name: _mlp(config.num_species if name == FORMULA else config.num_gaussians, config.cond_dim)
                for name in config.conditions
            }
        )
        self.absent = nn.Parameter(0.1 * torch.randn(len(config.conditions), config.cond_dim))

    def standardise(self, values: torch.Tensor) -> torch.Tensor:
        """Raw property values (B, P) in ``scalar_conditions`` order -> zero mean, unit std (training statistics)."""
        stats = torch.tensor(
            [self.config.property_stats[name] for name in self.config.scalar_conditions],
            dtype=values.dtype,
            device=values.device,
        ).reshape(-1, 2)
        return (values - stats[:, 0]) / stats[:, 1]

    def forward(
        self, properties: torch.Tensor, compositions: torch.Tensor | None, keep: torch.Tensor
    ) -> list[torch.Tensor]:
        """``properties`` (B, P) raw values (NaN = absent), ``compositions`` (B, num_species) element fractions,
        ``keep`` (B, K) bool: where False (or the value is missing) the condition's absent embedding is used."""
        standard = self.standardise(properties) if self.config.scalar_conditions else properties
        out, column = [], 0
        for k, name in enumerate(self.config.conditions):
            if name == FORMULA:
                present = keep[:, k] & (compositions is not None)
                feats = (
                    compositions
                    if compositions is not None
                    else properties.new_zeros(len(keep), self.config.num_species)
                )
            else:
                value = standard[:, column]
                column += 1
                present = keep[:, k] & ~torch.isnan(value)
                feats = self.basis(torch.nan_to_num(value, nan=0.0))
            embedded = self.embeddings[name](feats)
            out.append(torch.where(present[:, None], embedded, self.absent[k].expand_as(embedded)))
        return out


def composition_fractions(atom_types: torch.Tensor, num_atoms: torch.Tensor, num_species: int) -> torch.Tensor:
    """Element fractions (B, num_species) of each crystal from its atoms' atomic numbers."""
    crystal = torch.repeat_interleave(torch.arange(len(num_atoms), device=num_atoms.device), num_atoms)
    counts = torch.zeros(len(num_atoms), num_species, device=atom_types.device)
    counts.index_put_((crystal, atom_types - 1), torch.ones_like(atom_types, dtype=counts.dtype), accumulate=True)
    return counts / num_atoms[:, None].to(counts.dtype)


def check_conditions(config: CDVAEConfig, conditions: Mapping[str, float] | None) -> dict[str, float]:
    """Validate user targets: each name must be a numeric condition of the model and each value finite."""
    conditions = dict(conditions or {})
    unknown = sorted(set(conditions) - set(config.scalar_conditions))
    if unknown:
        known = ", ".join(config.scalar_conditions) or "none"
        raise InputError(f"this ConditionCDVAE+ model has no condition {', '.join(unknown)} (it knows: {known})")
    for name, value in conditions.items():
        if not math.isfinite(float(value)):
            raise InputError(f"condition {name}={value}: the value must be a finite number")
    return {k: float(v) for k, v in conditions.items()}


def formula_atoms(config: CDVAEConfig, formula: str) -> list[int]:
    """The atomic numbers of one cell of ``formula``; an InputError for an unreadable formula, fractional
    amounts, an element outside the model's vocabulary or more atoms than the model allows."""
    from pymatgen.core import Composition, Element

    try:
        composition = Composition(formula)
    except Exception as exc:
        raise InputError(f"cannot read formula {formula!r}: {exc}") from None
    atoms: list[int] = []
    for element, amount in composition.items():
        if not isinstance(element, Element):
            raise InputError(f"formula {formula!r}: {element} is not a chemical element")
        if abs(amount - round(amount)) > 1e-6 or round(amount) < 1:
            raise InputError(f"formula {formula!r} needs whole numbers of atoms")
        if (config.elements and element.Z not in config.elements) or config.num_species < element.Z:
            raise InputError(f"formula {formula!r}: element {element} is outside this model's vocabulary")
        atoms += [element.Z] * round(amount)
    if not atoms:
        raise InputError(f"formula {formula!r} is empty")
    if len(atoms) > config.max_atoms:
        raise InputError(f"formula {formula!r} has {len(atoms)} atoms; this model allows at most {config.max_atoms}")
    return atoms


def condition_tensor(
    config: CDVAEConfig, conditions: Mapping[str, float], n: int, device: torch.device | str
) -> torch.Tensor:
    """(n, P) raw property targets in ``scalar_conditions`` order, NaN where not given."""
    row = [conditions.get(name, float("nan")) for name in config.scalar_conditions]
    return torch.tensor([row] * n, dtype=torch.float32, device=device).reshape(n, len(row))


def keep_mask(config: CDVAEConfig, given: Sequence[str], n: int, device: torch.device | str) -> torch.Tensor:
    """(n, K) bool: True for the conditions named in ``given``."""
    row = [name in given for name in config.conditions]
    return torch.tensor([row] * n, dtype=torch.bool, device=device).reshape(n, len(row))
