"""Predictor-corrector sampling of DiffCSP with classifier-free property guidance.

Each step runs a Langevin corrector on the fractional coordinates (step size ``step_lr * (sigma/sigma_begin)^2``)
and then a reverse-diffusion predictor on coordinates, a DDPM step on the lattice (and on the atom types in ab
initio mode). With fewer steps than training timesteps the grid is strided; the DDPM and wrapped-normal updates
below are written for an arbitrary pair of adjacent timesteps, so striding stays consistent. Guidance follows
eps = (1 + w) eps_cond - w eps_uncond, both branches in one batched forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import torch
from tqdm.auto import tqdm

from crysloop.data.tensors import CrystalTensors
from crysloop.errors import InputError
from crysloop.models.diffcsp.model import DiffCSP
from crysloop.models.slab import (
    confine,
    fix_out_of_plane,
    in_plane_mask,
    random_slab_coords,
)
from crysloop.settings import resolve_device

if TYPE_CHECKING:
    from pymatgen.core import Composition, Structure

# ``lattice_clip="auto"`` (the default) clips the clean-lattice estimate at DEFAULT_LATTICE_CLIP, about the range of
# the training lattices. The first reverse step from t = T divides by sqrt(alpha_T) = 0.01 (beta_T = 0.9999 in the
# cosine schedule), so an error of the predicted lattice noise becomes 100x that in A and the trajectory leaves the
# training distribution; clipped, the clean-lattice term of that first step is at most sqrt(abar_{T-1}) * 50 A. The
# measurements behind the choice: docs/defaults.md. DiffCSP samples unclipped: ``lattice_clip=None``.
DEFAULT_LATTICE_CLIP = 50.0
LatticeClip = float | None | Literal["auto"]


def resolve_lattice_clip(lattice_clip: LatticeClip) -> float | None:
    """The clip in Angstrom (None = off) that ``lattice_clip`` means: ``"auto"`` is ``DEFAULT_LATTICE_CLIP``."""
    if lattice_clip == "auto":
        return DEFAULT_LATTICE_CLIP
    if isinstance(lattice_clip, str):
        raise InputError(f"lattice_clip must be a length in Angstrom, None or 'auto', not {lattice_clip!r}")
    return lattice_clip


def _check_conditions(model: DiffCSP, conditions: Mapping[str, float] | None) -> dict[str, float]:
    conditions = dict(conditions or {})
    unknown = sorted(set(conditions) - set(model.config.properties))
    if unknown:
        known = ", ".join(model.config.properties) or "none"
        raise InputError(f"this DiffCSP model has no condition {', '.join(unknown)} (it knows: {known})")
    return conditions


class _Guided:
    """Calls the denoiser once per step on the conditional and unconditional halves and mixes their outputs."""

    def __init__(self, model: DiffCSP, num_atoms, conditions: dict[str, float], guidance: float, types_given):
        self.model, self.guidance, self.types_given = model, guidance, types_given
        b, names = len(num_atoms), model.config.properties
        self.properties = torch.tensor(
            [[conditions.get(name, float("nan")) for name in names]] * b, dtype=torch.float32, device=num_atoms.device
        ).reshape(b, len(names))
        self.keep = (~torch.isnan(self.properties)).float()
        self.two_branches = bool(conditions) and guidance != 0.0
        self.num_atoms = torch.cat([num_atoms, num_atoms]) if self.two_branches else num_atoms

    def __call__(self, t: int, types, frac_coords, lattice):
        b = len(lattice)
        tvec = torch.full((b,), t, device=lattice.device, dtype=torch.long)
        latent = self.model.latent(tvec, self.properties, self.keep, self.types_given)
        if not self.two_branches:
            return self.model(types, frac_coords, lattice, self.num_atoms, latent)
        uncond = self.model.latent(tvec, self.properties, torch.zeros_like(self.keep), self.types_given)
        outputs = self.model(
            torch.cat([types, types]),
            torch.cat([frac_coords, frac_coords]),
            torch.cat([lattice, lattice]),
            self.num_atoms,
            torch.cat([latent, uncond]),
        )
        w = self.guidance
        return tuple(
            None if out is None else (1 + w) * out[: len(out) // 2] - w * out[len(out) // 2 :] for out in outputs
        )


def _ddpm_step(x, eps, abar_t, abar_next, noise, clip: float | None = None):
    """One reverse DDPM step from t to an earlier t' (alpha-bar values given), noise-free when t' = 0.

    ``clip`` bounds the implied clean estimate x0 = (x - sqrt(1 - abar) eps) / sqrt(abar) to [-clip, clip]
    (DDPM's ``clip_denoised``): near t = T an error in eps is multiplied by up to 1/sqrt(1 - beta_T) = 100.
    """
    if clip is not None:
        x0 = ((x - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()).clamp(-clip, clip)
        eps = (x - abar_t.sqrt() * x0) / (1 - abar_t).sqrt()
    alpha = abar_t / abar_next
    mean = (x - (1 - alpha) / (1 - abar_t).sqrt() * eps) / alpha.sqrt()
    std = ((1 - alpha) * (1 - abar_next) / (1 - abar_t)).sqrt()
    return mean + std * noise


@torch.no_grad()
def sample_tensors(
    model: DiffCSP,
    num_atoms: torch.Tensor,
    atom_types: torch.Tensor | None = None,
    conditions: Mapping[str, float] | None = None,
    guidance: float = 0.0,
    steps: int | None = None,
    step_lr: float = 1e-5,
    generator: torch.Generator | None = None,
    progress: bool = False,
    lattice_clip: LatticeClip = "auto",
) -> CrystalTensors:
    """Sample crystals with the given atom counts; ``atom_types`` (N,) given = CSP, None = ab initio generation.
    A semi-periodic model keeps c fixed and the atoms inside its slab region.

    ``lattice_clip`` (Angstrom) bounds each step's clean-lattice estimate; None leaves it free, as DiffCSP does;
    ``"auto"`` clips at ``DEFAULT_LATTICE_CLIP`` (see the note there).
    """
    config, schedule, device = model.config, model.schedule, model.device
    conditions = _check_conditions(model, conditions)
    if atom_types is None and config.mode != "abinitio":
        raise InputError("this DiffCSP model predicts structures for given compositions; it cannot sample ab initio")
    num_atoms = num_atoms.to(device)
    n_atoms, b = int(num_atoms.sum()), len(num_atoms)
    types_given = None
    if config.mode == "abinitio":
        types_given = torch.full((b,), atom_types is not None, device=device)

    def randn(*shape):
        return torch.randn(*shape, device=device, generator=generator)

    slab = config.slab
    if slab is None:
        x = torch.rand(n_atoms, 3, device=device, generator=generator)
        lattice = randn(b, 3, 3)
    else:  # c fixed, atoms inside the slab region; z is reflected at its bounds instead of wrapped
        x = random_slab_coords(n_atoms, slab, device, generator)
        lattice = fix_out_of_plane(randn(b, 3, 3) * in_plane_mask(device), slab)

    def into_cell(frac: torch.Tensor) -> torch.Tensor:
        return frac % 1.0 if slab is None else confine(frac, slab)

    if atom_types is not None:
        types = model.type_features(atom_types.to(device))
    else:
        types = randn(n_atoms, config.max_atomic_number)
    denoise = _Guided(model, num_atoms, conditions, guidance, types_given)
    steps = min(steps or config.timesteps, config.timesteps)
    lattice_clip = resolve_lattice_clip(lattice_clip)
    grid = torch.linspace(config.timesteps, 1, steps).round().long().unique(sorted=True).flip(0).tolist()
    for i, t in enumerate(tqdm(grid, desc="sampling", disable=not progress, leave=False)):
        t_next = grid[i + 1] if i + 1 < len(grid) else 0
        last = t_next == 0
        sigma, sigma_next = schedule.sigmas[t], schedule.sigmas[t_next]
        score_scale = schedule.sigmas_norm[t].sqrt()
        if step_lr > 0:
            _, score, _ = denoise(t, types, x, lattice)
            step = step_lr * (sigma / config.sigma_begin) ** 2
            x = into_cell(x + step * score * score_scale + (0.0 if last else (2 * step).sqrt() * randn(n_atoms, 3)))
        eps_lattice, score, eps_types = denoise(t, types, x, lattice)
        step = sigma**2 - sigma_next**2
        std = (sigma_next**2 * step / sigma**2).sqrt()
        x = into_cell(x + step * score * score_scale + std * randn(n_atoms, 3))
        abar_t, abar_next = schedule.alphas_cumprod[t], schedule.alphas_cumprod[t_next]
        lattice = _ddpm_step(lattice, eps_lattice, abar_t, abar_next, randn(b, 3, 3), lattice_clip)
        if slab is not None:
            lattice = fix_out_of_plane(lattice, slab)
        if atom_types is None:
            types = _ddpm_step(types, eps_types, abar_t, abar_next, randn(*types.shape))
    final_types = atom_types.to(device) if atom_types is not None else types.argmax(-1) + 1
    return CrystalTensors(final_types, x, lattice, num_atoms, torch.zeros(b, 0, device=device))


def _composition_atoms(composition: Composition | str) -> list[int]:
    from pymatgen.core import Composition, Element

    try:
        composition = Composition(composition)
    except Exception as exc:
        raise InputError(f"cannot read composition {composition!r}: {exc}") from exc
    atoms: list[int] = []
    for element, amount in composition.items():
        if not isinstance(element, Element):  # pymatgen reads unknown symbols such as Xx as dummy species
            raise InputError(f"composition {composition.formula!r}: {element.symbol} is not a chemical element")
        if abs(amount - round(amount)) > 1e-6 or round(amount) < 1:
            raise InputError(f"composition {composition.formula} needs whole numbers of atoms")
        atoms += [element.Z] * round(amount)
    if not atoms:
        raise InputError("an empty composition has no structure")
    return atoms


def sample_structures(
    model: DiffCSP,
    compositions: Sequence[Composition | str] | None = None,
    n: int | None = None,
    conditions: Mapping[str, float] | None = None,
    guidance: float = 0.0,
    steps: int | None = None,
    batch_size: int = 256,
    device: str | None = None,
    seed: int | None = 0,
    step_lr: float = 1e-5,
    progress: bool = False,
    lattice_clip: LatticeClip = "auto",
) -> list[Structure]:
    """Sample crystal structures: one per composition (CSP, the cell holds exactly the composition's atoms), or
    ``n`` ab initio structures with atom counts drawn from the training set; optional property ``conditions``
    with classifier-free ``guidance`` weight w. ``lattice_clip`` as in ``sample_tensors``."""
    from crysloop.data.tensors import batch_to_structures

    if (compositions is None) == (n is None):
        raise InputError("give either compositions (structure prediction) or n (ab initio generation)")
    if batch_size < 1 or (n is not None and n < 0):
        raise InputError("batch_size must be positive and n non-negative")
    model = model.to(resolve_device(device)).eval()
    generator = torch.Generator(device=model.device)
    generator.manual_seed(seed if seed is not None else torch.seed())
    if compositions is not None:
        atom_lists = [_composition_atoms(c) for c in compositions]
        counts = [len(atoms) for atoms in atom_lists]
    else:
        if model.num_atoms_counts.sum() == 0:
            raise InputError("this model has no atom-count distribution; it was never trained")
        probs = model.num_atoms_counts / model.num_atoms_counts.sum()
        counts = torch.multinomial(probs, n, replacement=True, generator=generator).tolist()
        atom_lists = None
    structures: list[Structure] = []
    for start in range(0, len(counts), batch_size):
        chunk = torch.tensor(counts[start : start + batch_size], dtype=torch.long)
        types = None
        if atom_lists is not None:
            types = torch.tensor([z for atoms in atom_lists[start : start + batch_size] for z in atoms])
        out = sample_tensors(
            model, chunk, types, conditions, guidance, steps, step_lr, generator, progress, lattice_clip
        )
        structures += batch_to_structures(
            {
                "atom_types": out.atom_types,
                "frac_coords": out.frac_coords,
                "lattice": out.lattice,
                "num_atoms": out.num_atoms,
            }
        )
    return structures
