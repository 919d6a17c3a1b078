r"""Graph utilities: validation of ``edge_index`` and k-hop supports."""

from __future__ import annotations

__all__ = ["check_edge_index", "hop_supports", "symmetric_edges", "undirected_edges"]

import hashlib
from collections.abc import Sequence

import networkx as nx
import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch_geometric.utils import coalesce, remove_self_loops

from ._checks import _as_tensor, as_count, as_orders


def check_edge_index(edge_index: Tensor, num_nodes: int) -> Tensor:
    r"""Validates a graph given as ``edge_index`` and returns it as ``int64`` ``[2, E]``.

    Arguments:
        edge_index: The edges, ``[2, E]``, integer.
        num_nodes: The number of nodes ``V``.

    Returns:
        The edges as a contiguous ``int64`` tensor.

    Raises:
        ValueError: When the shape is not ``[2, E]``, the dtype is not integer (for ``E > 0``),
            or a node index lies outside ``[0, num_nodes)``.

    Example:
        >>> check_edge_index(torch.tensor([[0, 1], [1, 0]]), 2).shape
        torch.Size([2, 2])
    """
    if isinstance(edge_index, nx.Graph):  # NumPy would read it as the list of its nodes
        raise ValueError("edge_index must be a tensor or an array [2, E], got a networkx graph: "
                         "torch_geometric.utils.from_networkx(G).edge_index converts it")
    edge_index = _as_tensor(edge_index, "edge_index")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        # The other common layout, one row per edge.
        hint = " (one row per edge: pass its transpose)" if edge_index.dim() == 2 and edge_index.size(1) == 2 else ""
        raise ValueError(f"edge_index must have shape [2, E], got {list(edge_index.shape)}{hint}")
    # An empty list or array reads as floating point: a graph without edges whatever its dtype.
    if edge_index.numel() > 0 and (
        edge_index.dtype.is_floating_point or edge_index.dtype.is_complex or edge_index.dtype == torch.bool
    ):
        raise ValueError(f"edge_index must hold integers, got dtype {edge_index.dtype}")
    num_nodes = as_count(num_nodes, "num_nodes")
    if edge_index.numel() > 0:
        low, high = _index_range(edge_index)
        if low < 0 or high >= num_nodes:
            raise ValueError(
                f"edge_index holds node indices in [{low}, {high}], outside [0, {num_nodes}) "
                f"for num_nodes={num_nodes}"
            )
    return edge_index.long().contiguous()


def _index_range(edge_index: Tensor) -> tuple[int, int]:
    r"""The smallest and largest node index of a non-empty integer ``edge_index``, as given."""
    if edge_index.dtype == torch.uint64:
        # Indices from 2**63 up would wrap round to negatives in int64: NumPy has them as they are.
        values = edge_index.cpu().numpy()
        return int(values.min()), int(values.max())
    # Converted first: torch has no min or max for uint16 and uint32.
    wide = edge_index.long()
    return int(wide.min()), int(wide.max())


def symmetric_edges(edge_index: Tensor, num_nodes: int) -> Tensor:
    r"""Both directions of every edge of ``edge_index``, each once, sorted by source then target.

    Example:
        >>> symmetric_edges(torch.tensor([[0, 1, 2], [1, 0, 1]]), 3).tolist()
        [[0, 1, 1, 2], [1, 0, 2, 1]]
    """
    # coalesce sorts one key, source * V + target; Tensor.unique(dim=1) gives the same edges but
    # sorts column by column, about 0.2 s per layer on the CPU for a 10k-node graph.
    edge_index = check_edge_index(edge_index, num_nodes)
    return coalesce(torch.cat([edge_index, edge_index.flip(0)], dim=1), num_nodes=num_nodes)


def undirected_edges(edge_index: Tensor, num_nodes: int) -> Tensor:
    r"""The graph as the layers see it: :func:`symmetric_edges` without self-loops.

    The layers take the graph as undirected and ignore self-loops, duplicates and the order of
    the edges; two edge lists give the same model exactly when this is equal for both.

    Example:
        >>> undirected_edges(torch.tensor([[1, 1], [0, 1]]), 2).tolist()
        [[0, 1], [1, 0]]
    """
    return remove_self_loops(symmetric_edges(edge_index, num_nodes))[0]


def hop_supports(edge_index: Tensor, num_nodes: int, orders: Sequence[int]) -> list[Tensor]:
    r"""Pairs of nodes within ``m`` hops of each other, for each order ``m``.

    The graph is taken as undirected. Order 0 is the diagonal. Each support is built by
    sparse matrix products on the CPU, so the cost grows with the size of the neighbourhoods,
    never with ``V^2``. Results are cached: every layer of a model on the same graph shares
    one copy (treat them as read-only).

    Arguments:
        edge_index: The edges, ``[2, E]``.
        num_nodes: The number of nodes ``V``.
        orders: The hop radii, e.g. ``(0, 1, 2)``.

    Returns:
        One ``[2, E_m]`` tensor of (neighbour, node) pairs per order, sorted by neighbour, then
        by node.

    Example:
        >>> path = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> [s.size(1) for s in hop_supports(path, 3, (0, 1, 2))]
        [3, 7, 9]
        >>> hop_supports(path, 3, (1,))[0].tolist()
        [[0, 0, 1, 1, 1, 2, 2], [0, 1, 0, 1, 2, 1, 2]]
    """
    orders = as_orders(orders)
    edges = check_edge_index(edge_index, num_nodes).cpu()
    key = (hashlib.sha1(edges.numpy().tobytes()).hexdigest(), num_nodes, orders)
    if key not in _SUPPORTS:
        if len(_SUPPORTS) >= 8:
            _SUPPORTS.pop(next(iter(_SUPPORTS)))
        _SUPPORTS[key] = _compute_supports(edges, num_nodes, key[2])
    return list(_SUPPORTS[key])


_SUPPORTS: dict[tuple, tuple[Tensor, ...]] = {}


def _compute_supports(edge_index: Tensor, num_nodes: int, orders: tuple[int, ...]) -> tuple[Tensor, ...]:
    edge_index, _ = remove_self_loops(edge_index)
    rows, cols = edge_index.numpy()
    ones = np.ones(rows.size)
    step = sp.coo_matrix((ones, (rows, cols)), shape=(num_nodes, num_nodes)).tocsr()
    step = ((step + step.T + sp.identity(num_nodes, format="csr")) > 0).astype(np.float64)
    reach, radius, supports = sp.identity(num_nodes, format="csr"), 0, {}
    for m in sorted(set(orders)):
        while radius < m:
            reach = ((reach @ step) > 0).astype(np.float64)
            radius += 1
        # The relation is symmetric, so row j, column i reads as source j, target i.
        pairs = reach.tocoo()
        supports[m] = coalesce(torch.from_numpy(np.stack([pairs.col, pairs.row])).long(), num_nodes=num_nodes)
    return tuple(supports[m] for m in orders)
