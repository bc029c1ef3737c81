"""Annealed Langevin dynamics (CDVAE's decoding): for each noise level sigma, from the largest to the smallest,
``steps_per_level`` steps of size ``step_lr * (sigma / sigma_min)^2`` on the Cartesian coordinates with noise
sqrt(2 step), wrapped back into the cell (a semi-periodic model wraps x and y only and reflects z at its slab
bounds); atom types become the argmax of the decoder's logits after each step, unless the composition is given
(then they stay fixed)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from crysloop.models.slab import confine, random_slab_coords


def step_sizes(sigmas: torch.Tensor, step_lr: float) -> torch.Tensor:
    """Langevin step size per noise level: step_lr * (sigma / sigma_min)^2."""
    return step_lr * (sigmas / sigmas.min()) ** 2


@torch.no_grad()
def annealed_langevin(
    model,
    z_c: torch.Tensor,
    num_atoms: torch.Tensor,
    lattice: torch.Tensor,
    atom_types: torch.Tensor,
    types_fixed: bool,
    steps_per_level: int,
    step_lr: float,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fractional coordinates (N, 3) and atomic numbers (N,) decoded from z_c on the given lattices, starting
    from uniform random positions (inside the slab region for a semi-periodic model) and ``atom_types``."""
    device = z_c.device
    crystal = torch.repeat_interleave(torch.arange(len(num_atoms), device=device), num_atoms)
    lattice_atom = lattice[crystal]
    inverse = torch.linalg.inv(lattice_atom)
    slab = model.config.slab
    if slab is None:
        frac = torch.rand(len(atom_types), 3, device=device, generator=generator)
    else:
        frac = random_slab_coords(len(atom_types), slab, device, generator)
    types = atom_types.clone()
    sigmas = model.sigmas
    sizes = step_sizes(sigmas, step_lr)
    num_species = model.config.num_species
    bar = tqdm(total=len(sigmas) * steps_per_level, desc="Langevin", disable=not progress, leave=False)
    for sigma, step in zip(sigmas, sizes, strict=True):
        for _ in range(steps_per_level):
            type_logits, coord_out = model.score(
                z_c, F.one_hot(types - 1, num_species).float(), frac, lattice, num_atoms
            )
            noise = torch.randn(frac.shape, device=device, generator=generator) * torch.sqrt(2 * step)
            cart = torch.einsum("ni,nij->nj", frac, lattice_atom) + step * coord_out / sigma + noise
            frac = torch.einsum("ni,nij->nj", cart, inverse)
            frac = frac % 1.0 if slab is None else confine(frac, slab)
            if not types_fixed:
                types = type_logits.argmax(dim=-1) + 1
            bar.update(1)
    bar.close()
    return frac, types
