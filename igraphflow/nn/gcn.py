r"""GCN convolution on a static graph."""

from __future__ import annotations

__all__ = ["StaticGCNConv"]

import torch
from torch import Tensor
from torch_geometric.nn import GCNConv

from .._checks import as_count, check_node_input
from ..graph import symmetric_edges


class StaticGCNConv(GCNConv):
    r"""PyG's :class:`~torch_geometric.nn.conv.GCNConv` bound to one static graph (normalisation cached).

    Example:
        >>> conv = StaticGCNConv(2, 3, torch.tensor([[0, 1], [1, 0]]), num_nodes=2)
        >>> conv(torch.randn(4, 2, 2)).shape
        torch.Size([4, 2, 3])
    """

    def __init__(self, in_channels: int, out_channels: int, edge_index: Tensor, num_nodes: int):
        super().__init__(in_channels, out_channels, cached=True)
        self.num_nodes = as_count(num_nodes, "num_nodes")
        self.register_buffer("edge_index", symmetric_edges(edge_index, self.num_nodes))

    def forward(self, x: Tensor) -> Tensor:
        check_node_input(x, self.num_nodes, self.in_channels, type(self).__name__)
        return super().forward(x, self.edge_index)

