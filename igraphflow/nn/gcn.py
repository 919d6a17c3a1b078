r"""GCN convolution on a static graph, with its normalised adjacency cached."""

from __future__ import annotations

__all__ = ["StaticGCNConv"]

import torch
from torch import Tensor
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from .._checks import as_count, check_node_input
from ..graph import symmetric_edges
from ._operator import CachedOperator


class StaticGCNConv(CachedOperator, GCNConv):
    r"""PyG's :class:`~torch_geometric.nn.conv.GCNConv` bound to one static graph.

    The normalised adjacency :math:`\hat D^{-1/2} (A + I) \hat D^{-1/2}` is computed from the
    graph in float64 and kept in the buffers ``norm_index`` and ``norm_weight``, again whenever
    the layer is moved or cast (:class:`~igraphflow.nn._operator.CachedOperator`), where PyG's
    own cache, ``cached=True``, is a plain attribute that stays where it was filled. They and
    the ``edge_index`` buffer they come from are left out of the state dict: the layer is bound
    to the graph it was built with.

    Arguments:
        in_channels: Input channels per node.
        out_channels: Output channels per node.
        edge_index: The graph, ``[2, E]`` (taken as undirected).
        num_nodes: The number of nodes ``V``.

    Shapes:
        input ``[*, V, in_channels]``, output ``[*, V, out_channels]``.

    Example:
        >>> conv = StaticGCNConv(2, 3, torch.tensor([[0, 1], [1, 0]]), num_nodes=2)
        >>> conv(torch.randn(4, 2, 2)).shape
        torch.Size([4, 2, 3])
    """

    def __init__(self, in_channels: int, out_channels: int, edge_index: Tensor, num_nodes: int):
        # normalize=False: the layer is handed the weights normalised here instead of
        # normalising at every call.
        super().__init__(in_channels, out_channels, normalize=False)
        self.num_nodes = as_count(num_nodes, "num_nodes")
        # Derived from the graph given, like the normalisation: neither is part of the state.
        self.register_buffer("edge_index", symmetric_edges(edge_index, self.num_nodes), persistent=False)
        self._graph = self.edge_index.cpu()
        self._operator_buffers = ("norm_index", "norm_weight")
        self.register_buffer("norm_index", None, persistent=False)
        self.register_buffer("norm_weight", None, persistent=False)
        self._set_operator()

    def _operator(self) -> tuple[Tensor, Tensor]:
        # GCNConv's defaults: self-loops added.
        return gcn_norm(self._graph, None, self.num_nodes, add_self_loops=True, dtype=torch.float64)

    def forward(self, x: Tensor) -> Tensor:
        check_node_input(x, self.num_nodes, self.in_channels, type(self).__name__)
        return super().forward(x, self.norm_index, self.norm_weight)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # States written when the graph was saved with the layer: the layer keeps its own, so
        # that the same graph written otherwise (self-loops, one direction) loads.
        state_dict.pop(prefix + "edge_index", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
