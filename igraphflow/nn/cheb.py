r"""ChebNet convolution on a static graph, with its scaled Laplacian cached."""

from __future__ import annotations

__all__ = ["StaticChebConv"]

import torch
from torch import Tensor
from torch_geometric.nn import ChebConv

from .._checks import as_count, check_node_input
from ..graph import symmetric_edges
from ._operator import CachedOperator


class StaticChebConv(CachedOperator, ChebConv):
    r"""PyG's :class:`~torch_geometric.nn.conv.ChebConv` bound to one static graph.

    :math:`\sum_{k<K} T_k(\hat L) X \Theta_k`, with :math:`T_k` the Chebyshev polynomials of
    the scaled Laplacian. PyG recomputes the normalised Laplacian at every call; inside an ODE
    block that is several times per solver step, so it is computed once here and stored (in
    float64, then in the weights' dtype: see :class:`~igraphflow.nn._operator.CachedOperator`).

    Arguments:
        in_channels: Input channels per node.
        out_channels: Output channels per node.
        edge_index: The graph, ``[2, E]`` (taken as undirected).
        num_nodes: The number of nodes ``V``.
        K: The order of the Chebyshev polynomial (``K - 1`` hops).

    Shapes:
        input ``[*, V, in_channels]``, output ``[*, V, out_channels]``.

    Example:
        >>> edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> conv = StaticChebConv(2, 4, edge_index, num_nodes=3, K=3)
        >>> conv(torch.randn(5, 3, 2)).shape
        torch.Size([5, 3, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, edge_index: Tensor, num_nodes: int, K: int = 3):
        super().__init__(in_channels, out_channels, K=as_count(K, "K"), normalization="sym")
        self.num_nodes = as_count(num_nodes, "num_nodes")
        # The symmetric Laplacian needs both directions of every edge.
        self._graph = symmetric_edges(edge_index, self.num_nodes).cpu()
        self._operator_buffers = ("scaled_index", "scaled_weight")
        self.register_buffer("scaled_index", None, persistent=False)
        self.register_buffer("scaled_weight", None, persistent=False)
        self._set_operator()

    def _operator(self) -> tuple[Tensor, Tensor]:
        return ChebConv.__norm__(self, self._graph, self.num_nodes, None, "sym", lambda_max=2.0, dtype=torch.float64)

    def __norm__(self, edge_index, num_nodes, edge_weight, normalization, lambda_max=None, dtype=None, batch=None):
        return self.scaled_index, self.scaled_weight.to(dtype or self.scaled_weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        check_node_input(x, self.num_nodes, self.in_channels, type(self).__name__)
        return super().forward(x, self.scaled_index)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, num_nodes={self.num_nodes}, K={len(self.lins)})"
