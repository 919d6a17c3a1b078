r"""L3Net: low-rank learnable local filters on k-hop supports."""

from __future__ import annotations

__all__ = ["DENSE_FRACTION", "L3NetConv"]

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.utils import degree

from .._checks import as_count, as_orders, check_node_input
from ..graph import hop_supports

DENSE_FRACTION = 0.05
r"""The share of all node pairs, averaged over the bases, from which :class:`L3NetConv` applies them as dense matrices."""


class L3NetConv(nn.Module):
    r"""Graph convolution with learnable local filters, :math:`\sum_m B_m X W_m`.

    Each basis :math:`B_m` is supported on the pairs of nodes within ``orders[m]`` hops and
    carries one learnable weight per (node, neighbour) pair; :math:`W_m` mixes channels.
    Unlike a polynomial of the Laplacian (ChebNet), the filter may differ from node to node,
    which lets it tell apart nodes that the graph's symmetries make look alike. The graph is
    static: it is given once, its supports are stored as buffers, and the layer is applied to
    a batch of signals ``[..., V, C]``. Memory is linear in the size of the supports (bases
    applied as dense matrices have at most ``1 / DENSE_FRACTION`` entries per pair of their supports).

    The neighbour sums run over whichever side has fewer channels (:math:`(B_m X) W_m` or
    :math:`B_m (X W_m)`). When the bases hold on average at least :data:`DENSE_FRACTION` of all
    ``V * V`` pairs (a small sensor graph), they are stacked and applied as one dense
    ``[M V, V]`` (or ``[V, M V]``) matrix product to the signals moved channels first
    (:meth:`forward_channels_first`), otherwise basis by basis with
    ``index_select``/``index_add``: on a CPU the dense product is the faster one from about 5 %
    of the pairs on (3x per layer on the 22- and 50-node sensor graphs), the sparse sums below
    that (1.8x on a 503-node graph whose bases hold 1 % on average).

    Arguments:
        in_channels: Input channels per node.
        out_channels: Output channels per node.
        edge_index: The graph, ``[2, E]`` (taken as undirected).
        num_nodes: The number of nodes ``V``.
        orders: The hop radius of each basis.
        bias: Whether to add a learnable bias.

    Shapes:
        input ``[*, V, in_channels]``, output ``[*, V, out_channels]``.

    References:
        | Graph convolution with low-rank learnable local filters (Cheng, Miao and Qiu, ICLR 2021)

    Example:
        >>> edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> conv = L3NetConv(2, 4, edge_index, num_nodes=3, orders=(0, 1))
        >>> conv(torch.randn(5, 3, 2)).shape
        torch.Size([5, 3, 4])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        edge_index: Tensor,
        num_nodes: int,
        orders: Sequence[int] = (0, 1, 2),
        bias: bool = True,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_nodes = as_count(num_nodes, "num_nodes")
        self.orders = as_orders(orders)
        supports = hop_supports(edge_index, self.num_nodes, self.orders)
        # Derived from the graph, so not part of the state: a checkpoint stays small.
        for m, support in enumerate(supports):
            self.register_buffer(f"support_{m}", support, persistent=False)
        basis = torch.cat([torch.full_like(s[0], m) for m, s in enumerate(supports)])
        pairs = torch.cat(supports, dim=1)
        # (basis, node, neighbour) of every filter weight, in the order of ``filters``
        self.register_buffer("stacked_index", torch.stack([basis, pairs[1], pairs[0]]), persistent=False)
        self.filters = nn.ParameterList(nn.Parameter(torch.empty(s.size(1))) for s in supports)
        self.aggregate_first = in_channels <= out_channels
        if self.aggregate_first:
            self.lin = Linear(len(supports) * in_channels, out_channels, bias=False)
        else:
            self.lin = Linear(in_channels, len(supports) * out_channels, bias=False)
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def supports(self) -> list[Tensor]:
        r"""The ``[2, E_m]`` (neighbour, node) pairs of each basis."""
        return [getattr(self, f"support_{m}") for m in range(len(self.orders))]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # States written when the supports were saved with the layer: it keeps its own.
        for m in range(len(self.orders)):
            state_dict.pop(f"{prefix}support_{m}", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reset_parameters(self) -> None:
        r"""Draws the linear map afresh and sets every basis to the mean over its support."""
        self.lin.reset_parameters()
        # A basis starts as the mean over its support, a well-scaled local average.
        for weights, support in zip(self.filters, self.supports()):
            count = degree(support[1], self.num_nodes, dtype=weights.dtype)
            weights.data.copy_(1.0 / count[support[1]])
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _stacked_bases(self) -> Tensor:
        r"""The bases as one dense ``[M, V, V]`` tensor, ``B[m, node, neighbour]``."""
        weights = torch.cat(list(self.filters))
        shape = (len(self.orders), self.num_nodes, self.num_nodes)
        return weights.new_zeros(shape).index_put(tuple(self.stacked_index), weights)

    @staticmethod
    def _neighbour_sum(x: Tensor, weights: Tensor, support: Tensor) -> Tensor:
        lead, (num_nodes, channels) = x.shape[:-2], x.shape[-2:]
        # Node-major rows [V, batch * channels]: gathering and adding whole contiguous rows is
        # about twice as fast as indexing the node dimension in place.
        rows = x.reshape(-1, num_nodes, channels).transpose(0, 1).reshape(num_nodes, -1)
        messages = weights.unsqueeze(-1) * rows.index_select(0, support[0])
        out = torch.zeros_like(rows).index_add(0, support[1], messages)
        return out.reshape(num_nodes, -1, channels).transpose(0, 1).reshape(*lead, num_nodes, channels)

    def _sparse(self, x: Tensor) -> Tensor:
        pairs = zip(self.filters, self.supports())
        if self.aggregate_first:
            return self.lin(torch.cat([self._neighbour_sum(x, w, s) for w, s in pairs], dim=-1))
        parts = self.lin(x).chunk(len(self.orders), dim=-1)
        return sum(self._neighbour_sum(part, w, s) for part, (w, s) in zip(parts, pairs))

    @property
    def dense(self) -> bool:
        r"""Whether the bases are applied as dense matrices (they hold :data:`DENSE_FRACTION` of all pairs)."""
        return self.stacked_index.size(1) >= DENSE_FRACTION * len(self.orders) * self.num_nodes**2

    def forward(self, x: Tensor) -> Tensor:
        check_node_input(x, self.num_nodes, self.in_channels, type(self).__name__)
        if self.dense:
            return self.forward_channels_first(x.movedim(-1, 0)).movedim(0, -1)
        out = self._sparse(x)
        return out if self.bias is None else out + self.bias

    def forward_channels_first(self, x: Tensor, constant: Tensor | None = None) -> Tensor:
        r"""The layer on channels-first signals ``[C, *, V]``, with the bases as dense matrices.

        Every product then has the batch in its long, output dimension, where a CPU's matrix
        products are fast; ``forward`` with dense bases moves its input here and back.
        :class:`GraphVelocityField`, which keeps this layout between its layers on a small
        graph, takes 1.2-1.3x less time per training step on the sensor graphs than on
        ``[*, V, C]`` (``benchmarks/results/step_time.md``).

        Arguments:
            x: The input, ``[C, *, V]``.
            constant: A scalar that fills one more input channel, the last, at every node of
                every signal (the time of a velocity field): ``x`` then holds the other
                ``in_channels - 1``, and the constant's share of the output, the same for every
                signal, is added without the channel being stored.

        Returns:
            ``[out_channels, *, V]``, equal to ``forward`` on ``x`` moved to channels last
            (with the constant channel appended).

        Example:
            >>> edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
            >>> conv = L3NetConv(3, 4, edge_index, num_nodes=3)
            >>> x, t = torch.randn(5, 3, 2), torch.tensor(0.5)
            >>> out = conv.forward_channels_first(x.permute(2, 0, 1), constant=t)
            >>> torch.allclose(out.permute(1, 2, 0), conv(torch.cat([x, t.expand(5, 3, 1)], -1)), atol=1e-6)
            True
        """
        channels = self.in_channels - (constant is not None)
        if x.dim() < 2 or x.size(0) != channels or x.size(-1) != self.num_nodes:
            raise ValueError(f"{type(self).__name__}.forward_channels_first expects [{channels}, *, {self.num_nodes}], "
                             f"got {list(x.shape)}")
        bases = self._stacked_bases()
        num_bases, num_nodes, lead = len(self.orders), self.num_nodes, x.shape[1:-1]
        out_channels, batch = self.out_channels, lead.numel()  # sizes spelt out: a batch may be empty
        # weight[o, m, c]: basis m's map from input channel c to output channel o.
        if self.aggregate_first:
            weight = self.lin.weight.view(out_channels, num_bases, self.in_channels)
            summed = x.reshape(channels * batch, num_nodes) @ bases.reshape(-1, num_nodes).T  # [(c, batch), (m, node)]
            summed = summed.view(channels, batch, num_bases, num_nodes).permute(2, 0, 1, 3)
            summed = summed.reshape(num_bases * channels, batch * num_nodes)
            out = weight[..., :channels].reshape(out_channels, num_bases * channels) @ summed
        else:
            weight = self.lin.weight.view(num_bases, out_channels, self.in_channels).transpose(0, 1)
            mixed = self.lin.weight[:, :channels] @ x.reshape(channels, batch * num_nodes)  # [(m, o), (batch, node)]
            mixed = mixed.view(num_bases, out_channels, batch, num_nodes).permute(1, 2, 0, 3)
            mixed = mixed.reshape(out_channels * batch, num_bases * num_nodes)
            out = mixed @ bases.transpose(1, 2).reshape(-1, num_nodes)
        out = out.view(out_channels, batch, num_nodes)
        shift = None if self.bias is None else self.bias.view(-1, 1)  # [out, 1]; [out, V] with the constant's share
        if constant is not None:
            # B_m applied to a constant channel is the constant times B_m's row sums.
            constant_share = constant.to(x) * (weight[..., -1] @ bases.sum(-1))
            shift = constant_share if shift is None else shift + constant_share
        if shift is not None:
            out = out + shift.unsqueeze(1)
        return out.view(out_channels, *lead, num_nodes)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
            f"num_nodes={self.num_nodes}, orders={self.orders})"
        )
