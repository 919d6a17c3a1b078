r"""Velocity fields :math:`f(x, t)` of the ODE blocks: graph convolutions and node-wise layers."""

from __future__ import annotations

__all__ = ["GraphVelocityField", "make_conv", "as_convolution", "CONVOLUTIONS"]

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .._checks import as_choice, as_orders, check_node_input
from .cheb import StaticChebConv
from .gcn import StaticGCNConv
from .l3net import L3NetConv


CONVOLUTIONS = ("l3net", "cheb", "gcn")


def as_convolution(conv) -> str:
    r"""Checks the name of a graph convolution, one of :data:`CONVOLUTIONS`."""
    return as_choice(conv, CONVOLUTIONS, "conv")


def make_conv(conv: str, in_channels: int, out_channels: int, edge_index: Tensor, num_nodes: int, orders: Sequence[int]) -> nn.Module:
    r"""Builds a graph convolution bound to a static graph.

    Arguments:
        conv: ``"l3net"`` (learnable local filters on the hop supports ``orders``), ``"cheb"``
            (ChebNet reaching ``max(orders)`` hops) or ``"gcn"``.
        in_channels: Input channels per node.
        out_channels: Output channels per node.
        edge_index: The graph, ``[2, E]``.
        num_nodes: The number of nodes ``V``.
        orders: Hop radii of the L3Net bases; ChebNet uses ``K = max(orders) + 1``.

    Example:
        >>> edge_index = torch.tensor([[0, 1], [1, 0]])
        >>> make_conv("cheb", 2, 3, edge_index, 2, (0, 1))
        StaticChebConv(2, 3, num_nodes=2, K=2)
    """
    conv, orders = as_convolution(conv), as_orders(orders)
    if conv == "l3net":
        return L3NetConv(in_channels, out_channels, edge_index, num_nodes, orders)
    if conv == "cheb":
        return StaticChebConv(in_channels, out_channels, edge_index, num_nodes, K=max(orders) + 1)
    return StaticGCNConv(in_channels, out_channels, edge_index, num_nodes)


class GraphVelocityField(nn.Module):
    r"""A time-dependent velocity field on graph signals, :math:`f(x, t)`.

    A graph convolution gathers the neighbourhood of each node, node-wise layers mix
    channels, and a second graph convolution spreads the output over the neighbourhood again
    (so one evaluation reaches twice the hop radius). The convolutions sit where the channels
    are few (input and output), which keeps the neighbour sums cheap. Time ``t`` enters every
    layer as an extra channel; activations are smooth (SiLU) so the divergence is well
    defined. The last layer starts small, so a new block starts close to the identity.

    Where the L3Net bases are dense (a small graph, see :class:`L3NetConv`), the layers run on
    channels-first signals with the time added as a bias
    (:meth:`L3NetConv.forward_channels_first`): the same field, 1.2-1.3x faster per training
    step on the sensor graphs (``benchmarks/results/step_time.md``). The attribute
    ``channels_first`` says which way it runs; set to ``False``, it runs channels last.

    Arguments:
        edge_index: The graph, ``[2, E]``.
        num_nodes: The number of nodes ``V``.
        num_features: Features per node ``C``.
        hidden: Hidden channels per node.
        conv: The graph convolution, see :func:`make_conv`.
        orders: Hop radii of the convolution.

    Shapes:
        a scalar ``t`` and ``x [N, V, C]``; output ``[N, V, C]``.

    Example:
        >>> edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> f = GraphVelocityField(edge_index, num_nodes=3, num_features=2, hidden=8)
        >>> f(torch.tensor(0.5), torch.randn(4, 3, 2)).shape
        torch.Size([4, 3, 2])
    """

    def __init__(
        self,
        edge_index: Tensor,
        num_nodes: int,
        num_features: int,
        hidden: int = 32,
        conv: str = "l3net",
        orders: Sequence[int] = (0, 1, 2),
    ):
        super().__init__()
        self.num_nodes, self.num_features = num_nodes, num_features
        self.conv_in = make_conv(conv, num_features + 1, hidden, edge_index, num_nodes, orders)
        self.node_hidden = nn.Linear(hidden + 1, hidden)
        self.conv_out = make_conv(conv, hidden + 1, num_features, edge_index, num_nodes, orders)
        self.activation = nn.SiLU()
        self.channels_first = isinstance(self.conv_in, L3NetConv) and self.conv_in.dense
        with torch.no_grad():
            for name, parameter in self.conv_out.named_parameters():
                if not name.startswith("filters"):
                    parameter.mul_(0.1)

    @staticmethod
    def _with_time(t: Tensor, h: Tensor) -> Tensor:
        return torch.cat([h, t.to(h).expand(*h.shape[:-1], 1)], dim=-1)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        check_node_input(x, self.num_nodes, self.num_features, type(self).__name__)
        if self.channels_first:
            return self._forward_channels_first(t, x)
        h = self.activation(self.conv_in(self._with_time(t, x)))
        h = self.activation(self.node_hidden(self._with_time(t, h)))
        return self.conv_out(self._with_time(t, h))

    def _forward_channels_first(self, t: Tensor, x: Tensor) -> Tensor:
        # The same layers on [C, *, V], the time added as a bias rather than stored as a channel.
        h = self.activation(self.conv_in.forward_channels_first(x.movedim(-1, 0), constant=t))
        weight = self.node_hidden.weight
        shift = (self.node_hidden.bias + t.to(x) * weight[:, -1]).unsqueeze(-1)
        h = self.activation(torch.addmm(shift, weight[:, :-1], h.reshape(h.size(0), x.shape[:-1].numel())))
        return self.conv_out.forward_channels_first(h.view(h.size(0), *x.shape[:-1]), constant=t).movedim(0, -1)
