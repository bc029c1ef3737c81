"""EquiformerV2-style equivariant graph network (Liao et al., ICLR 2024) on e3nn primitives, the encoder and
decoder of ConditionCDVAE+.

Modules: ``config`` (sizes and presets), ``graph`` (capped periodic radius graph), ``linear`` (coefficient layouts,
per-degree linear), ``so2`` (edge frames, SO(2) convolution), ``embedding`` (radial basis, edge-degree embedding),
``activation`` (separable S2 activation), ``norm`` (equivariant layer norm), ``attention`` (graph attention),
``network`` (the network and the readout).
"""

from crysloop.models.equiformer.config import EquiformerConfig
from crysloop.models.equiformer.graph import average_degree, capped_radius_graph
from crysloop.models.equiformer.network import EquiformerV2, graph_readout

__all__ = ["EquiformerConfig", "EquiformerV2", "average_degree", "capped_radius_graph", "graph_readout"]
