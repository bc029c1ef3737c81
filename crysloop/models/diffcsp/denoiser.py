"""CSPNet-style denoiser: periodic E(3)-invariant message passing over all atom pairs of each crystal.

Messages see the two atoms' features, the lattice Gram matrix L L^T (invariant to rotations) and Fourier
features of the fractional-coordinate difference (invariant to periodic translations). Outputs: the lattice noise
as a learned combination of the lattice vectors (rotation-equivariant), the fractional-coordinate score per atom
and, for ab initio generation, the atom-type noise.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch_geometric.utils import scatter


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style sinusoidal features (B, dim) of timesteps t (B,)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -(math.log(10000) / max(half - 1, 1)))
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([args.sin(), args.cos()], dim=-1)


def fully_connected_edges(
    num_atoms: torch.Tensor, self_edges: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Directed edges between every ordered pair of atoms within each crystal, self-edges i -> i included (as
    DiffCSP's fully connected graph: they carry the lattice into the message of a one-atom cell) unless
    ``self_edges`` is False (crysloop's earlier graph)."""
    counts = num_atoms * num_atoms
    crystal = torch.repeat_interleave(torch.arange(len(num_atoms), device=num_atoms.device), counts)
    first_edge = torch.cumsum(counts, 0) - counts
    local = torch.arange(int(counts.sum()), device=num_atoms.device) - first_edge[crystal]
    n = num_atoms[crystal]
    first_atom = (torch.cumsum(num_atoms, 0) - num_atoms)[crystal]
    src, dst = first_atom + local // n, first_atom + local % n
    if self_edges:
        return src, dst, crystal
    keep = src != dst
    return src[keep], dst[keep], crystal[keep]


def lattice_gram(lattice: torch.Tensor) -> torch.Tensor:
    """Flattened Gram matrices L L^T (B, 9) in fp32 even under autocast: in bf16 their rounding error would exceed
    the lattice noise of the last sampling steps."""
    with torch.autocast(lattice.device.type, enabled=False):
        lattice = lattice.float()
        return (lattice @ lattice.transpose(-1, -2)).flatten(1)


def _mlp(dim_in: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU())


class CSPLayer(nn.Module):
    """One message-passing layer with pre-layer-norm and a residual update of the atom features."""

    def __init__(self, hidden_dim: int, num_freqs: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim)
        self.edge_mlp = _mlp(2 * hidden_dim + 9 + 6 * num_freqs, hidden_dim)
        self.node_mlp = _mlp(2 * hidden_dim, hidden_dim)

    def forward(self, h, src, dst, edge_crystal, gram, fourier):
        """h (N, H) -> h + update."""
        x = self.norm(h)
        messages = self.edge_mlp(torch.cat([x[src], x[dst], gram[edge_crystal], fourier], dim=-1))
        aggregated = scatter(messages, src, dim=0, dim_size=h.shape[0], reduce="mean")
        return h + self.node_mlp(torch.cat([x, aggregated], dim=-1))


class CSPNet(nn.Module):
    """The denoising network: (type features, frac_coords, lattice, per-crystal latent) -> (eps_L, score_x, eps_A)."""

    def __init__(
        self,
        hidden_dim: int,
        num_layers: int,
        latent_dim: int,
        num_freqs: int,
        type_dim: int,
        predict_types: bool,
        self_edges: bool = True,
    ):
        super().__init__()
        self.num_freqs, self.self_edges = num_freqs, self_edges
        self.type_embedding = nn.Linear(type_dim, hidden_dim)
        self.latent_mix = nn.Linear(hidden_dim + latent_dim, hidden_dim)
        self.layers = nn.ModuleList(CSPLayer(hidden_dim, num_freqs) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(hidden_dim)
        self.coord_out = nn.Linear(hidden_dim, 3, bias=False)
        self.lattice_out = nn.Linear(hidden_dim, 9, bias=False)
        self.type_out = nn.Linear(hidden_dim, type_dim) if predict_types else None

    def fourier(self, frac_diff: torch.Tensor) -> torch.Tensor:
        """sin/cos of 2 pi k d for k = 0..num_freqs-1 on each of the three fractional differences."""
        k = torch.arange(self.num_freqs, device=frac_diff.device, dtype=frac_diff.dtype)
        args = 2 * math.pi * frac_diff[..., None] * k
        return torch.cat([args.sin(), args.cos()], dim=-1).flatten(1)

    def forward(self, type_features, frac_coords, lattice, latent, num_atoms, atom_crystal):
        """Returns (lattice noise (B, 3, 3), normalised coordinate score (N, 3), type noise (N, Z) or None)."""
        src, dst, edge_crystal = fully_connected_edges(num_atoms, self.self_edges)
        gram = lattice_gram(lattice)
        fourier = self.fourier((frac_coords[dst] - frac_coords[src]) % 1.0)
        h = self.latent_mix(torch.cat([self.type_embedding(type_features), latent[atom_crystal]], dim=-1))
        for layer in self.layers:
            h = layer(h, src, dst, edge_crystal, gram, fourier)
        h = self.final_norm(h)
        pooled = scatter(h, atom_crystal, dim=0, dim_size=lattice.shape[0], reduce="mean")
        coefficients = self.lattice_out(pooled)
        with torch.autocast(lattice.device.type, enabled=False):  # the lattice update in fp32, as the Gram matrix
            eps_lattice = coefficients.float().view(-1, 3, 3) @ lattice.float()
        eps_types = self.type_out(h) if self.type_out is not None else None
        return eps_lattice, self.coord_out(h), eps_types
