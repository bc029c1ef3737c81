"""Equivariant graph attention of EquiformerV2: SO(2) convolutions of the concatenated centre and neighbour
features in each edge frame, attention weights from invariant channels with re-normalisation (a layer norm before
the non-linearity), separable S2 activation of the values, and aggregation back in the global frame."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.utils import softmax

from crysloop.models.equiformer.activation import SeparableS2Activation, SmoothLeakyReLU
from crysloop.models.equiformer.config import EquiformerConfig
from crysloop.models.equiformer.embedding import EdgeFeatures, RadialMLP
from crysloop.models.equiformer.linear import SO3Linear, edge_frame_index
from crysloop.models.equiformer.so2 import SO2Convolution


class GraphAttention(nn.Module):
    """Multi-head attention over the neighbours of each atom; messages are equivariant (N, K, C) features."""

    def __init__(self, config: EquiformerConfig, num_species: int, scalar_dim: int) -> None:
        super().__init__()
        c = config
        self.heads, self.alpha_channels, self.value_channels = c.num_heads, c.attn_alpha_channels, c.attn_value_channels
        self.hidden = c.attn_hidden_channels
        self.edge_features = EdgeFeatures(num_species, c.edge_channels)
        self.conv1 = SO2Convolution(
            2 * c.channels,
            c.attn_hidden_channels,
            c.lmax,
            c.mmax,
            extra_scalars=c.num_heads * c.attn_alpha_channels + c.attn_hidden_channels,
        )
        self.radial = RadialMLP(scalar_dim + 2 * c.edge_channels, c.edge_channels, self.conv1.radial_size)
        self.alpha_norm = nn.LayerNorm(c.attn_alpha_channels)
        self.alpha_act = SmoothLeakyReLU()
        self.alpha_dot = nn.Parameter(torch.randn(c.num_heads, c.attn_alpha_channels) / c.attn_alpha_channels**0.5)
        self.activation = SeparableS2Activation(c.lmax, c.grid_resolution, edge_frame_index(c.lmax, c.mmax))
        self.conv2 = SO2Convolution(c.attn_hidden_channels, c.num_heads * c.attn_value_channels, c.lmax, c.mmax)
        self.project = SO3Linear(c.num_heads * c.attn_value_channels, c.channels, c.lmax)

    def forward(
        self,
        x: torch.Tensor,
        atom_feats: torch.Tensor,
        edge_index: torch.Tensor,
        edge_scalars: torch.Tensor,
        rotation: torch.Tensor,
    ) -> torch.Tensor:
        """``x`` (N, K, C) -> (N, K, C); ``edge_index[0]`` is the atom that receives the message."""
        centre, neighbour = edge_index
        messages = rotation @ torch.cat([x[centre], x[neighbour]], dim=-1)  # (E, K', 2C) in edge frames
        radial = self.radial(self.edge_features(edge_scalars, atom_feats, edge_index))
        hidden, extra = self.conv1(messages, radial)
        alpha, gate = extra.split([self.heads * self.alpha_channels, self.hidden], dim=1)
        alpha = self.alpha_act(self.alpha_norm(alpha.reshape(-1, self.heads, self.alpha_channels)))
        weights = softmax((alpha * self.alpha_dot).sum(-1), centre, num_nodes=x.shape[0])  # (E, heads)
        values, _ = self.conv2(self.activation(gate, hidden))
        values = values.reshape(*values.shape[:2], self.heads, self.value_channels) * weights[:, None, :, None]
        values = rotation.transpose(1, 2) @ values.flatten(2)  # (E, K, heads * value_channels), global frame
        out = values.new_zeros(x.shape[0], *values.shape[1:]).index_add_(0, centre, values)
        return self.project(out)
