r"""Neighbourhood means on a static graph: fixed features for a node classifier."""

from __future__ import annotations

__all__ = ["HopMeans"]

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from .._checks import as_count, as_orders, check_node_input
from ..graph import hop_supports


class HopMeans(nn.Module):
    r"""The mean of the features over the ``m``-hop neighbourhood of every node, for each ``m``.

    A parameter-free map ``[*, V, C] -> [*, V, len(orders) * C]``: block ``i`` of the output
    at node ``v`` averages the input over the nodes within ``orders[i]`` hops of ``v`` (``v``
    itself included; order 0 is the identity). A linear layer on top is a node classifier
    that sees its neighbourhood, and stays convex to fit (the features are fixed).

    Arguments:
        edge_index: The graph, ``[2, E]`` (taken as undirected).
        num_nodes: The number of nodes ``V``.
        orders: The hop radii.

    Example:
        >>> path = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> HopMeans(path, 3, orders=(0, 1))(torch.tensor([[[0.0], [3.0], [6.0]]]))
        tensor([[[0.0000, 1.5000],
                 [3.0000, 3.0000],
                 [6.0000, 4.5000]]])
    """

    def __init__(self, edge_index: Tensor, num_nodes: int, orders: Sequence[int] = (0, 1, 2)):
        super().__init__()
        self.num_nodes = as_count(num_nodes, "num_nodes")
        self.orders = as_orders(orders)
        supports = hop_supports(edge_index, self.num_nodes, self.orders)
        # Derived from the graph, so not part of the state: a checkpoint stays small.
        for i, support in enumerate(supports):
            self.register_buffer(f"support_{i}", support, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        check_node_input(x, self.num_nodes, None, type(self).__name__)
        means = []
        for i in range(len(self.orders)):
            source, target = getattr(self, f"support_{i}")
            means.append(scatter(x.index_select(-2, source), target, dim=-2, dim_size=self.num_nodes, reduce="mean"))
        return torch.cat(means, dim=-1)

    def extra_repr(self) -> str:
        return f"num_nodes={self.num_nodes}, orders={self.orders}"
