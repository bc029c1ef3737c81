"""The network's periodic graph: every image within the cutoff, capped at the nearest neighbours without
splitting ties, so that the graph (and the network) does not depend on atom order, cell choice or orientation."""

from __future__ import annotations

import torch

from crysloop.data.graph import NeighborList, radius_graph_pbc


def capped_radius_graph(
    frac_coords: torch.Tensor,
    lattice: torch.Tensor,
    num_atoms: torch.Tensor,
    cutoff: float,
    max_neighbors: int,
    tolerance: float,
) -> NeighborList:
    """Edges within ``cutoff`` (all periodic images), keeping per atom every neighbour no farther than its
    ``max_neighbors``-th nearest plus ``tolerance`` Angstrom (so a shell of equidistant neighbours is kept whole)."""
    graph = radius_graph_pbc(frac_coords, lattice, num_atoms, cutoff)
    centre, distance = graph.edge_index[0], graph.distances.detach()
    order = torch.argsort(distance, stable=True)
    order = order[torch.argsort(centre[order], stable=True)]
    sorted_centre = centre[order]
    rank = torch.arange(len(order), device=centre.device) - torch.searchsorted(sorted_centre, sorted_centre)
    at_cap = rank == max_neighbors - 1
    threshold = torch.full((len(frac_coords),), float("inf"), dtype=distance.dtype, device=distance.device)
    threshold[sorted_centre[at_cap]] = distance[order[at_cap]] + tolerance
    keep = distance <= threshold[centre]
    return NeighborList(graph.edge_index[:, keep], graph.cell_offsets[keep], graph.vectors[keep], graph.distances[keep])


def average_degree(
    frac_coords: torch.Tensor,
    lattice: torch.Tensor,
    num_atoms: torch.Tensor,
    cutoff: float,
    max_neighbors: int,
    tolerance: float,
) -> float:
    """Mean number of neighbours per atom of a batch of crystals in the capped graph (set ``avg_degree`` to it)."""
    graph = capped_radius_graph(frac_coords, lattice, num_atoms, cutoff, max_neighbors, tolerance)
    return graph.edge_index.shape[1] / max(len(frac_coords), 1)
