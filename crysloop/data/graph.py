"""Periodic radius graphs in torch: neighbour pairs within a cutoff, with their lattice image offsets.

Differentiable with respect to fractional coordinates and lattice, device-agnostic (CPU or CUDA).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class NeighborList:
    """Directed edges i -> j with ``r_ij = x_j + offset @ L - x_i`` for every pair closer than the cutoff."""

    edge_index: torch.Tensor  # (2, E) long, global atom indices in the batch
    cell_offsets: torch.Tensor  # (E, 3) long, lattice image of j
    vectors: torch.Tensor  # (E, 3) Cartesian r_ij, Angstrom
    distances: torch.Tensor  # (E,)


def _image_range(lattice: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Images needed along each lattice vector: ceil(cutoff / interplanar spacing)."""
    volume = torch.det(lattice).abs()
    cross = torch.stack(
        [
            torch.linalg.cross(lattice[1], lattice[2]),
            torch.linalg.cross(lattice[2], lattice[0]),
            torch.linalg.cross(lattice[0], lattice[1]),
        ]
    )
    spacing = volume / cross.norm(dim=-1)
    return torch.ceil(cutoff / spacing).long()


def _offsets(reps: torch.Tensor, device: torch.device) -> torch.Tensor:
    axes = [torch.arange(-int(n), int(n) + 1, device=device) for n in reps]
    return torch.cartesian_prod(*axes).reshape(-1, 3)


def radius_graph_pbc(
    frac_coords: torch.Tensor,
    lattice: torch.Tensor,
    num_atoms: torch.Tensor,
    cutoff: float,
    max_neighbors: int | None = None,
) -> NeighborList:
    """All pairs within ``cutoff`` (Angstrom) in a batch of periodic crystals, self-images included, self excluded.

    ``frac_coords`` (N, 3); ``lattice`` (B, 3, 3) with lattice vectors as rows; ``num_atoms`` (B,).
    ``max_neighbors`` keeps the nearest ones per atom (ties broken by order).
    """
    device = frac_coords.device
    edges, offsets_out, vectors_out = [], [], []
    start = 0
    for b, n in enumerate(num_atoms.tolist()):
        lat = lattice[b]
        frac = frac_coords[start : start + n]
        offsets = _offsets(_image_range(lat.detach(), cutoff), device)  # (K, 3)
        cart = frac @ lat  # (n, 3)
        shift = offsets.to(lat.dtype) @ lat  # (K, 3)
        vec = cart[None, :, None, :] + shift[None, None, :, :] - cart[:, None, None, :]  # (n, n, K, 3)
        dist2 = (vec.detach() ** 2).sum(-1)
        zero = (offsets == 0).all(dim=1)
        self_pair = torch.eye(n, dtype=torch.bool, device=device)[:, :, None] & zero[None, None, :]
        mask = (dist2 <= cutoff**2) & ~self_pair
        i, j, k = mask.nonzero(as_tuple=True)
        edges.append(torch.stack([i + start, j + start]))
        offsets_out.append(offsets[k])
        vectors_out.append(vec[i, j, k])
        start += n
    edge_index = torch.cat(edges, dim=1)
    cell_offsets = torch.cat(offsets_out)
    vectors = torch.cat(vectors_out)
    distances = vectors.norm(dim=-1)
    if max_neighbors is not None:
        keep = _nearest(edge_index[0], distances.detach(), max_neighbors)
        edge_index, cell_offsets, vectors, distances = (
            edge_index[:, keep],
            cell_offsets[keep],
            vectors[keep],
            distances[keep],
        )
    return NeighborList(edge_index, cell_offsets, vectors, distances)


def _nearest(centers: torch.Tensor, distances: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` shortest edges of every centre atom."""
    order = torch.argsort(distances, stable=True)
    order = order[torch.argsort(centers[order], stable=True)]
    sorted_centers = centers[order]
    first = torch.searchsorted(sorted_centers, sorted_centers, right=False)
    rank = torch.arange(len(order), device=centers.device) - first
    return order[rank < k]
