"""The forward (noising) processes of DiffCSP and their training targets.

Lattice matrices and (ab initio) one-hot atom types follow a DDPM with a cosine schedule; fractional
coordinates follow a wrapped normal on the unit torus with a geometric sigma schedule, and the network learns
the score of that wrapped normal divided by its root-mean-square (``sigma_norm``) so targets have unit scale.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import nn

from crysloop.models.slab import SlabGeometry, confine, fix_out_of_plane, in_plane_mask


def cosine_alphas_cumprod(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """alpha-bar_t for t = 0..T of the cosine schedule (Nichol & Dhariwal), betas clipped to [1e-4, 0.9999]."""
    x = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
    f = torch.cos((x / timesteps + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(1e-4, 0.9999)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])


def wrapped_normal_score(x: torch.Tensor, sigma: torch.Tensor | float, images: int = 10) -> torch.Tensor:
    """d/dx log p(x) of the normal N(0, sigma^2) wrapped onto the unit circle, summed over 2*images+1 images."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand_as(x)
    shifted = x[..., None] + torch.arange(-images, images + 1, device=x.device, dtype=x.dtype)
    weights = torch.softmax(-(shifted**2) / (2 * sigma[..., None] ** 2), dim=-1)
    return -(weights * shifted).sum(-1) / sigma**2


def wrapped_normal_score_norm(sigmas: torch.Tensor, points: int = 2001, images: int = 3) -> torch.Tensor:
    """E[score^2] of the wrapped normal for each sigma, by quadrature over one period (exact up to 1e-6)."""
    x = torch.linspace(-0.5, 0.5, points, dtype=torch.float64)[:-1]
    out = []
    for sigma in sigmas.to(torch.float64).split(100):
        s = sigma[:, None]
        k = torch.arange(-images, images + 1, dtype=torch.float64)
        shifted = x[None, :, None] + k
        logw = -(shifted**2) / (2 * s[..., None] ** 2)
        density = torch.exp(logw).sum(-1) / (s * math.sqrt(2 * math.pi))
        score = -(torch.softmax(logw, -1) * shifted).sum(-1) / s**2
        out.append((density * score**2).sum(-1) / (density.sum(-1)))
    return torch.cat(out)


@lru_cache(maxsize=8)
def _score_norms(timesteps: int, sigma_begin: float, sigma_end: float) -> torch.Tensor:
    sigmas = torch.exp(torch.linspace(math.log(sigma_begin), math.log(sigma_end), timesteps, dtype=torch.float64))
    return torch.cat([torch.ones(1, dtype=torch.float64), wrapped_normal_score_norm(sigmas)])


class NoiseSchedule(nn.Module):
    """Per-timestep constants (t = 0..T) of both processes, kept as non-persistent buffers that follow ``.to()``."""

    def __init__(self, timesteps: int, sigma_begin: float, sigma_end: float):
        super().__init__()
        self.timesteps = timesteps
        alphas_cumprod = cosine_alphas_cumprod(timesteps)
        sigmas = torch.cat(
            [
                torch.zeros(1, dtype=torch.float64),
                torch.exp(torch.linspace(math.log(sigma_begin), math.log(sigma_end), timesteps, dtype=torch.float64)),
            ]
        )
        sigmas_norm = _score_norms(timesteps, sigma_begin, sigma_end)
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)
        self.register_buffer("sigmas", sigmas.float(), persistent=False)
        self.register_buffer("sigmas_norm", sigmas_norm.float(), persistent=False)

    def sample_t(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform timesteps in 1..T."""
        return torch.randint(1, self.timesteps + 1, (n,), device=device, generator=generator)


def noise_lattice(
    lattice: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule, slab: SlabGeometry | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """DDPM-noised lattices (B, 3, 3) at timesteps t and the noise (the target); for a ``slab`` only the in-plane
    block diffuses (zero noise elsewhere) and c stays fixed."""
    abar = schedule.alphas_cumprod[t][:, None, None]
    eps = torch.randn_like(lattice)
    if slab is None:
        return abar.sqrt() * lattice + (1 - abar).sqrt() * eps, eps
    eps = eps * in_plane_mask(lattice.device)
    return fix_out_of_plane(abar.sqrt() * lattice + (1 - abar).sqrt() * eps, slab), eps


def noise_types(
    onehot: torch.Tensor, t_atom: torch.Tensor, schedule: NoiseSchedule
) -> tuple[torch.Tensor, torch.Tensor]:
    """DDPM-noised one-hot atom types (N, Z) at per-atom timesteps and the noise (the target)."""
    abar = schedule.alphas_cumprod[t_atom][:, None]
    eps = torch.randn_like(onehot)
    return abar.sqrt() * onehot + (1 - abar).sqrt() * eps, eps


def noise_frac_coords(
    frac_coords: torch.Tensor, t_atom: torch.Tensor, schedule: NoiseSchedule, slab: SlabGeometry | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Wrapped-normal-noised fractional coordinates and the normalised score target at per-atom timesteps.

    For a ``slab`` z is reflected at the slab bounds instead of wrapped, and its target is the normal score of
    the displacement that remains after the reflection (no periodic images along c).
    """
    sigma = schedule.sigmas[t_atom][:, None]
    displacement = sigma * torch.randn_like(frac_coords)
    norm = schedule.sigmas_norm[t_atom][:, None].sqrt()
    if slab is None:
        return (frac_coords + displacement) % 1.0, wrapped_normal_score(displacement, sigma) / norm
    noisy = confine(frac_coords + displacement, slab)
    score = wrapped_normal_score(displacement, sigma)
    score = torch.cat([score[:, :2], -(noisy[:, 2:] - frac_coords[:, 2:]) / sigma**2], dim=1)
    return noisy, score / norm
