"""Sampling ConditionCDVAE+: conditional (noise + c -> generator -> z, the property predictor keeps the best of
``candidates`` latents, z_c = LMF(z, c), heads, Langevin), unconditional (z from the prior) and
formula-conditioned (the cell holds the formula's atoms, types stay fixed), with formulas from crysloop's
Stage I language model if wanted, so every sample is charge-balanced."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from crysloop.errors import InputError
from crysloop.models.cdvae.conditions import (
    check_conditions,
    composition_fractions,
    condition_tensor,
    formula_atoms,
    keep_mask,
)
from crysloop.models.cdvae.config import FORMULA
from crysloop.models.cdvae.gan import LatentGAN, condition_vector
from crysloop.models.cdvae.langevin import annealed_langevin
from crysloop.models.cdvae.model import ConditionCDVAE

if TYPE_CHECKING:
    from pymatgen.core import Structure


@torch.no_grad()
def decode(
    model: ConditionCDVAE,
    z_c: torch.Tensor,
    atom_lists: Sequence[list[int]] | None = None,
    steps_per_level: int | None = None,
    step_lr: float | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Crystals from fused latents: atom count, lattice and composition from the heads (count and types taken
    from ``atom_lists`` when given), then annealed Langevin dynamics for the coordinates (and types)."""
    config, device = model.config, z_c.device
    natom_logits, lattice_std, composition_logits = model.heads(z_c)
    if atom_lists is not None:
        num_atoms = torch.tensor([len(a) for a in atom_lists], device=device)
        types = torch.tensor([z for atoms in atom_lists for z in atoms], device=device)
    else:
        num_atoms = natom_logits[:, 1:].argmax(dim=-1) + 1
        crystal = torch.repeat_interleave(torch.arange(len(num_atoms), device=device), num_atoms)
        probs = F.softmax(composition_logits, dim=-1)[crystal]
        types = torch.multinomial(probs, 1, generator=generator).squeeze(1) + 1
    lattice = model.lattice_from_head(lattice_std, num_atoms)
    frac, types = annealed_langevin(
        model,
        z_c,
        num_atoms,
        lattice,
        types,
        types_fixed=atom_lists is not None,
        steps_per_level=steps_per_level or config.langevin_steps_per_level,
        step_lr=step_lr if step_lr is not None else config.langevin_step_lr,
        generator=generator,
        progress=progress,
    )
    return {"atom_types": types, "frac_coords": frac, "lattice": lattice, "num_atoms": num_atoms}


@torch.no_grad()
def fused_latents(
    model: ConditionCDVAE,
    gan: LatentGAN | None,
    n: int,
    conditions: Mapping[str, float],
    atom_lists: Sequence[list[int]] | None = None,
    candidates: int = 100,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """z_c for ``n`` samples. Without targets z comes from the prior N(0, I); with targets from the generator
    (the prior if no GAN was trained), and the property predictor keeps the latent of ``candidates`` whose
    predicted properties lie closest to the targets."""
    config, device = model.config, model.device
    given = list(conditions) + ([FORMULA] if atom_lists is not None and FORMULA in config.conditions else [])
    m = candidates if conditions else 1
    props = condition_tensor(config, conditions, n * m, device)
    compositions = None
    if atom_lists is not None:
        z = torch.tensor([a for atoms in atom_lists for a in atoms], device=device)
        counts = torch.tensor([len(atoms) for atoms in atom_lists], device=device)
        compositions = composition_fractions(z, counts, config.num_species).repeat_interleave(m, dim=0)
    keep = keep_mask(config, given, n * m, device)
    if given and gan is not None:
        z = gan.sample(condition_vector(model, props, compositions, keep), generator)
    else:
        z = torch.randn(n * m, config.latent_dim, device=device, generator=generator)
    chosen = torch.arange(n, device=device) * m
    if conditions and model.property_head is not None:
        columns = [config.scalar_conditions.index(name) for name in conditions]
        target = model.condition_encoder.standardise(props)[:, columns]
        error = ((model.predict_properties(z)[:, columns] - target) ** 2).sum(-1).reshape(n, m)
        chosen = chosen + error.argmin(dim=1)
    embeddings = model.conditions(props[chosen], None if compositions is None else compositions[chosen], keep[chosen])
    return model.fuse(z[chosen], embeddings)


def formulas_from_language_model(
    n: int, max_atoms: int, seed: int = 0, device: str = "cpu", checkpoint: str | None = None
) -> list[str]:
    """``n`` charge-balanced formulas (one cell each) from crysloop's Stage I language model."""
    from crysloop.models import composition

    lm = composition.load_checkpoint(checkpoint or composition.shipped_checkpoint_path(), device=device)
    return [
        a.composition.formula.replace(" ", "")
        for a in composition.sample_valid_compositions(lm, n, max_atoms=max_atoms, seed=seed, device=device)
    ]


def sample_structures(
    model: ConditionCDVAE,
    gan: LatentGAN | None = None,
    n: int | None = None,
    conditions: Mapping[str, float] | None = None,
    formulas: Sequence[str] | None = None,
    candidates: int = 100,
    steps_per_level: int | None = None,
    step_lr: float | None = None,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
) -> list[Structure]:
    """``n`` crystals (or one per formula in ``formulas``) toward the property ``conditions``; every input is
    validated before anything is sampled."""
    from crysloop.data.tensors import batch_to_structures

    conditions = check_conditions(model.config, conditions)
    atom_lists = [formula_atoms(model.config, f) for f in formulas] if formulas else None
    if atom_lists is None and (n is None or n < 1):
        raise InputError("give the number of crystals (n >= 1) or formulas")
    if candidates < 1 or batch_size < 1:
        raise InputError("candidates and batch_size must be at least 1")
    total = len(atom_lists) if atom_lists is not None else n
    generator = torch.Generator(device=model.device).manual_seed(seed)
    structures: list[Structure] = []
    for start in range(0, total, batch_size):
        chunk = None if atom_lists is None else atom_lists[start : start + batch_size]
        size = min(batch_size, total - start)
        z_c = fused_latents(model, gan, size, conditions, chunk, candidates, generator)
        out = decode(model, z_c, chunk, steps_per_level, step_lr, generator, progress)
        structures += batch_to_structures(out)
    return structures


@torch.no_grad()
def reconstruct(
    model: ConditionCDVAE,
    batch,
    steps_per_level: int | None = None,
    step_lr: float | None = None,
    seed: int = 0,
    fixed_composition: bool = False,
) -> dict[str, torch.Tensor]:
    """CDVAE reconstruction: encode (mu, no sampling), fuse with the crystal's own conditions, decode;
    ``fixed_composition`` keeps each crystal's true atoms (a diagnostic: only lattice and coordinates decoded)."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    mu, _ = model.encode(batch)
    config = model.config
    compositions = composition_fractions(batch.atom_types, batch.num_atoms, config.num_species)
    keep = torch.ones(len(mu), len(config.conditions), dtype=torch.bool, device=mu.device)
    z_c = model.fuse(mu, model.conditions(batch.properties, compositions, keep))
    atom_lists = None
    if fixed_composition:
        atom_lists = [atoms.tolist() for atoms in batch.atom_types.split(batch.num_atoms.tolist())]
    return decode(model, z_c, atom_lists, steps_per_level, step_lr, generator)


def reconstruct_structures(
    model: ConditionCDVAE,
    records,
    steps_per_level: int | None = None,
    step_lr: float | None = None,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = False,
    fixed_composition: bool = False,
) -> tuple[list[Structure], list[Structure]]:
    """Reconstructions of ``records`` (crystals with properties) and the Niggli-reduced originals, pairwise
    (``fixed_composition``: see :func:`reconstruct`)."""
    from crysloop.data.tensors import batch_to_structures
    from crysloop.models.cdvae.training import as_tensors

    data = as_tensors(records, model.config).to(model.device)
    if int(data.num_atoms.max()) > model.config.max_atoms:
        raise InputError(f"a crystal has more than the model's {model.config.max_atoms} atoms")
    predicted, truth = [], []
    for start in tqdm(range(0, len(data.num_atoms), batch_size), desc="reconstructing", disable=not progress):
        batch = data.select(torch.arange(start, min(start + batch_size, len(data.num_atoms)), device=model.device))
        predicted += batch_to_structures(
            reconstruct(model, batch, steps_per_level, step_lr, seed + start, fixed_composition)
        )
        truth += batch_to_structures(
            {
                "atom_types": batch.atom_types,
                "frac_coords": batch.frac_coords,
                "lattice": batch.lattice,
                "num_atoms": batch.num_atoms,
            }
        )
    return predicted, truth
