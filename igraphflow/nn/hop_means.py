r"""Neighbourhood means on a static graph: fixed features for a node classifier."""

from __future__ import annotations

__all__ = ["HopMeans"]

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from .._checks import as_count, as_flag, as_orders, check_node_input
from ..graph import hop_supports


class HopMeans(nn.Module):
    r"""The mean of the features over the ``m``-hop neighbourhood of every node, for each ``m``.

    A parameter-free map ``[*, V, C] -> [*, V, len(orders) * C]``: block ``i`` of the output
    at node ``v`` averages the input over the nodes within ``orders[i]`` hops of ``v`` (``v``
    itself included; order 0 is the identity). A linear layer on top is a node classifier
    that sees its neighbourhood, and stays convex to fit (the features are fixed).

    With ``products``, each node's features are first followed by their pairwise products
    :math:`x_i x_j` (:math:`i \le j`), ``C (C + 1) / 2`` of them: a linear layer on top is then
    a quadratic classifier, which also tells apart classes that differ in spread rather than
    in mean (a ramp: a large change either way).

    Arguments:
        edge_index: The graph, ``[2, E]`` (taken as undirected).
        num_nodes: The number of nodes ``V``.
        orders: The hop radii.
        products: Whether to average the pairwise products of the features too.

    Example:
        >>> path = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> HopMeans(path, 3, orders=(0, 1))(torch.tensor([[[0.0], [3.0], [6.0]]]))
        tensor([[[0.0000, 1.5000],
                 [3.0000, 3.0000],
                 [6.0000, 4.5000]]])
    """

    def __init__(self, edge_index: Tensor, num_nodes: int, orders: Sequence[int] = (0, 1, 2), products: bool = False):
        super().__init__()
        self.num_nodes = as_count(num_nodes, "num_nodes")
        self.orders = as_orders(orders)
        self.products = as_flag(products, "products")
        supports = hop_supports(edge_index, self.num_nodes, self.orders)
        # Derived from the graph, so not part of the state: a checkpoint stays small.
        for i, support in enumerate(supports):
            self.register_buffer(f"support_{i}", support, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        check_node_input(x, self.num_nodes, None, type(self).__name__)
        if self.products:
            i, j = torch.triu_indices(x.size(-1), x.size(-1), device=x.device)
            x = torch.cat([x, x[..., i] * x[..., j]], -1)
        means = []
        for i in range(len(self.orders)):
            source, target = getattr(self, f"support_{i}")
            means.append(scatter(x.index_select(-2, source), target, dim=-2, dim_size=self.num_nodes, reduce="mean"))
        return torch.cat(means, dim=-1)

    def with_products(self, products: bool) -> HopMeans:
        r"""These means with (or without) the products of the features, on the same supports."""
        other = copy.deepcopy(self)
        other.products = as_flag(products, "products")
        return other

    def plain_columns(self, in_features: int) -> Tensor:
        r"""Which of the output columns for ``in_features`` input features are means of the
        features themselves (``True``) rather than of their products, ``[len(orders) * F]``.

        Example:
            >>> path = torch.tensor([[0, 1], [1, 0]])
            >>> HopMeans(path, 2, orders=(0, 1), products=True).plain_columns(2).int().tolist()
            [1, 1, 0, 0, 0, 1, 1, 0, 0, 0]
        """
        block = torch.ones(in_features, dtype=torch.bool)
        if self.products:
            block = torch.cat([block, torch.zeros(in_features * (in_features + 1) // 2, dtype=torch.bool)])
        return block.repeat(len(self.orders))

    def extra_repr(self) -> str:
        return f"num_nodes={self.num_nodes}, orders={self.orders}" + (", products=True" if self.products else "")
