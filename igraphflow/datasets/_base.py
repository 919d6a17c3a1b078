r"""The dataset container and the helpers every loader shares.

A :class:`GraphDataset` holds train and test graph signals ``X`` of shape ``[N, V, C]`` with node
labels ``Y`` of shape ``[N, V]`` on one fixed graph ``edge_index``, plus the metadata needed to
interpret them (node names, positions, the scaler that undoes standardisation, the label rule,
the provenance and, for simulations, the true conditional log-density).

The helpers (graph construction, lag windows, ramp labels, chronological splits, CSV reading,
option checks) are written once here and reused by every loader.
"""

from __future__ import annotations

import csv
import functools
import gzip
import inspect
import os
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import networkx as nx
import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor
from torch_geometric.utils import coalesce, contains_self_loops, from_networkx, is_undirected, remove_self_loops, to_undirected

from .._checks import as_count, as_flag, as_real, as_seed, check_input_file

__all__ = [
    "GraphDataset",
    "Scaler",
    "as_path",
    "checked_options",
    "check_options",
    "chronological_windows",
    "column_list",
    "edge_index_from_networkx",
    "is_connected",
    "knn_graph",
    "ramp_labels",
    "lag_features",
    "lag_names",
    "most_common_step",
    "read_numeric_csv",
    "series_samples",
]


@dataclass
class Scaler:
    r"""Per-(node, feature) affine standardisation ``(X - mean) / std``.

    Arguments:
        mean: The offsets, shape ``[V, C]``.
        std: The scales, shape ``[V, C]`` (positive).

    Example:
        >>> X = torch.randn(100, 3, 2) * 5 + 1
        >>> scaler = Scaler.fit(X)
        >>> torch.allclose(scaler.inverse_transform(scaler.transform(X)), X, atol=1e-5)
        True
        >>> Scaler.identity(3, 2).transform(X).equal(X)
        True
    """

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, X: Tensor, eps: float = 1e-6) -> "Scaler":
        r"""Fits the statistics of ``X`` (shape ``[N, V, C]``) over its first axis.

        Arguments:
            X: Training signals, shape ``[N, V, C]``.
            eps: Floor of the standard deviation (constant channels are only centred).

        Returns:
            The fitted scaler.
        """
        X = torch.as_tensor(X, dtype=torch.float64)
        mean = X.mean(dim=0)
        std = X.std(dim=0, unbiased=False)
        std = torch.where(std > eps, std, torch.ones_like(std))
        return cls(mean, std)  # in float64: a large offset rounded to float32 would shift every signal

    @classmethod
    def identity(cls, num_nodes: int, num_features: int) -> "Scaler":
        r"""Returns the scaler that changes nothing (``mean = 0``, ``std = 1``)."""
        return cls(torch.zeros(num_nodes, num_features), torch.ones(num_nodes, num_features))

    @property
    def is_identity(self) -> bool:
        r"""Whether the scaler leaves signals unchanged."""
        return bool((self.mean == 0).all() and (self.std == 1).all())

    def transform(self, X: Tensor) -> Tensor:
        r"""Standardises ``X`` (shape ``[..., V, C]``)."""
        return (X - self.mean.to(X)) / self.std.to(X)

    def inverse_transform(self, X: Tensor) -> Tensor:
        r"""Undoes :meth:`transform`: maps standardised ``X`` back to data units."""
        return X * self.std.to(X) + self.mean.to(X)

    def __repr__(self) -> str:
        if self.is_identity:
            return f"Scaler(identity, shape={tuple(self.mean.shape)})"
        return f"Scaler(shape={tuple(self.mean.shape)})"


@dataclass(repr=False)
class GraphDataset:
    r"""Train and test graph signals with node labels on one fixed graph.

    Arguments:
        X_train: Training signals, float32 ``[N_train, V, C]``.
        X_test: Test signals, float32 ``[N_test, V, C]``.
        Y_train: Training node labels, int64 ``[N_train, V]`` in ``{0, ..., K-1}``.
        Y_test: Test node labels, int64 ``[N_test, V]``.
        edge_index: The graph, int64 ``[2, E]``: symmetric, no self loops, connected
            (``[2, 0]`` for a single node).
        num_classes: The number of node classes ``K``.
        name: The dataset name.
        node_names: One name per node.
        positions: Node coordinates ``[V, 2]`` (for plots and spatial graphs) or ``None``.
        feature_names: One name per feature (e.g. the lags ``"ghi[t-1]", "ghi[t]"``).
        scaler: Undoes the standardisation of ``X`` (identity when ``X`` is not standardised).
        label_rule: How ``Y`` is defined, in words.
        provenance: Where the data comes from, its licence and how it was processed.
        true_log_prob: ``(X, Y) -> Tensor[N]`` (float64), the natural log-density of the
            returned (possibly standardised) ``X`` given ``Y``, or ``None`` when unknown.
            Leading batch dimensions are kept: ``X [..., V, C]``, ``Y [..., V]`` -> ``[...]``.
        time_train: For time series, ``[N_train, 2]`` float64 with the first and last time
            stamp (seconds) that each training sample touches (features and label);
            ``None`` for independent simulated samples.
        time_test: Same for the test samples.

    Example:
        >>> from igraphflow.datasets import load
        >>> data = load("three_node", num_train=80, num_test=40)
        >>> data.num_nodes, data.num_features, data.num_classes
        (3, 2, 2)
        >>> data.X_train.shape, data.Y_train.dtype
        (torch.Size([80, 3, 2]), torch.int64)
    """

    X_train: Tensor
    X_test: Tensor
    Y_train: Tensor
    Y_test: Tensor
    edge_index: Tensor
    num_classes: int
    name: str
    node_names: list[str] = field(default_factory=list)
    positions: Tensor | None = None
    feature_names: list[str] = field(default_factory=list)
    scaler: Scaler | None = None
    label_rule: str = ""
    provenance: str = ""
    true_log_prob: Callable[[Tensor, Tensor], Tensor] | None = None
    time_train: Tensor | None = None
    time_test: Tensor | None = None

    def __post_init__(self) -> None:
        V, C = self.X_train.shape[1], self.X_train.shape[2]
        if not self.node_names:
            self.node_names = [f"v{i}" for i in range(V)]
        if not self.feature_names:
            self.feature_names = [f"x{c}" for c in range(C)]
        if self.scaler is None:
            self.scaler = Scaler.identity(V, C)
        self.validate()

    @property
    def num_nodes(self) -> int:
        r"""The number of nodes ``V``."""
        return int(self.X_train.shape[1])

    @property
    def num_features(self) -> int:
        r"""The number of features per node ``C``."""
        return int(self.X_train.shape[2])

    @property
    def num_edges(self) -> int:
        r"""The number of undirected edges (``edge_index.shape[1] // 2``)."""
        return int(self.edge_index.shape[1]) // 2

    def label_balance(self) -> Tensor:
        r"""Returns the fraction of training node labels in each class, shape ``[K]``."""
        counts = torch.bincount(self.Y_train.flatten(), minlength=self.num_classes)
        return counts.double() / max(1, self.Y_train.numel())

    def validate(self) -> None:
        r"""Checks shapes, dtypes and the graph; raises ``ValueError`` on a violation."""
        for key in ("X_train", "X_test"):
            x = getattr(self, key)
            if x.dtype != torch.float32 or x.dim() != 3:
                raise ValueError(f"{key} must be float32 [N, V, C], got {x.dtype} {tuple(x.shape)}")
        for key, x in (("Y_train", self.X_train), ("Y_test", self.X_test)):
            y = getattr(self, key)
            if y.dtype != torch.int64 or tuple(y.shape) != tuple(x.shape[:2]):
                raise ValueError(f"{key} must be int64 {tuple(x.shape[:2])}, got {y.dtype} {tuple(y.shape)}")
        if self.X_test.shape[1:] != self.X_train.shape[1:]:
            raise ValueError("X_train and X_test must share [V, C]")
        V = self.num_nodes
        ei = self.edge_index
        if ei.dtype != torch.int64 or ei.dim() != 2 or ei.shape[0] != 2:
            raise ValueError(f"edge_index must be int64 [2, E], got {ei.dtype} {tuple(ei.shape)}")
        if ei.numel() and (ei.min() < 0 or ei.max() >= V):
            raise ValueError("edge_index refers to a node outside 0..V-1")
        if contains_self_loops(ei) or not is_undirected(ei, num_nodes=V):
            raise ValueError("edge_index must be symmetric (every edge in both directions) without self loops")
        for key in ("Y_train", "Y_test"):
            y = getattr(self, key)
            if y.numel() and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(f"{key} holds labels outside 0..{self.num_classes - 1}")
        if not is_connected(ei, V):
            raise ValueError("the graph must be connected")
        if len(self.node_names) != V or len(self.feature_names) != self.num_features:
            raise ValueError("node_names / feature_names do not match [V, C]")

    def __repr__(self) -> str:
        balance = ", ".join(f"{p:.2f}" for p in self.label_balance().tolist())
        return (
            f"GraphDataset(name={self.name!r}, V={self.num_nodes}, C={self.num_features}, "
            f"E={self.num_edges}, K={self.num_classes}, train={self.X_train.shape[0]}, "
            f"test={self.X_test.shape[0]}, label_balance=[{balance}], "
            f"true_log_prob={'yes' if self.true_log_prob is not None else 'no'})"
        )

    def summary(self) -> str:
        r"""Returns a multi-line description (shapes, graph, labels, rule, provenance)."""
        return "\n".join(
            [
                repr(self),
                f"  features: {', '.join(self.feature_names)}",
                f"  scaler: {self.scaler!r}",
                f"  labels: {self.label_rule}",
                f"  provenance: {self.provenance}",
            ]
        )


# ----------------------------------------------------------------------------- graphs


def edge_index_from_networkx(G: nx.Graph) -> Tensor:
    r"""Converts an undirected networkx graph on nodes ``0..V-1`` to a clean ``edge_index``.

    The result is symmetric, sorted, without self loops or duplicate edges.

    Arguments:
        G: A graph whose nodes are the integers ``0..V-1``.

    Returns:
        An int64 tensor ``[2, E]`` (``E`` counts both directions).

    Example:
        >>> edge_index_from_networkx(nx.path_graph(3)).tolist()
        [[0, 1, 1, 2], [1, 0, 2, 1]]
    """
    V = G.number_of_nodes()
    if sorted(G.nodes) != list(range(V)):
        G = nx.convert_node_labels_to_integers(G, ordering="sorted")
    simple = nx.Graph()
    simple.add_nodes_from(range(V))
    simple.add_edges_from((u, v) for u, v in G.edges() if u != v)
    if simple.number_of_edges() == 0:
        return torch.zeros(2, 0, dtype=torch.long)
    ei = from_networkx(simple).edge_index.long()
    ei, _ = remove_self_loops(ei)
    ei = to_undirected(ei, num_nodes=V)
    return coalesce(ei, num_nodes=V)


def is_connected(edge_index: Tensor, num_nodes: int) -> bool:
    r"""Whether the undirected graph ``edge_index`` on ``num_nodes`` nodes is connected.

    Example:
        >>> is_connected(torch.tensor([[0, 1], [1, 0]]), 3)
        False
    """
    G = nx.Graph()
    G.add_nodes_from(range(num_nodes))
    G.add_edges_from(edge_index.t().tolist())
    return num_nodes > 0 and nx.is_connected(G)


def knn_graph(
    k: int,
    *,
    positions: np.ndarray | None = None,
    distances: np.ndarray | None = None,
) -> Tensor:
    r"""Symmetric k-nearest-neighbour graph, made connected.

    Each node is joined to its ``k`` nearest others (the union of both directions is kept);
    if the result is not connected, the closest pair of nodes between the component of node 0
    and the rest is joined, repeatedly, until it is.

    Arguments:
        k: The number of neighbours per node (at least 1).
        positions: Node coordinates ``[V, d]`` (Euclidean distances, KD-tree query), or
        distances: A full dissimilarity matrix ``[V, V]`` (e.g. ``1 - correlation``).

    Returns:
        The edge index, int64 ``[2, E]``, symmetric, no self loops, connected.

    Example:
        >>> pos = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [11.0, 0.0]])
        >>> knn_graph(1, positions=pos).tolist()
        [[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]]
    """
    if (positions is None) == (distances is None):
        raise ValueError("give exactly one of positions or distances")
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if positions is not None:
        positions = np.asarray(positions, dtype=np.float64)
        V = positions.shape[0]
        kk = min(int(k), V - 1)
        D = np.sqrt(((positions[:, None, :] - positions[None, :, :]) ** 2).sum(-1))
        G = nx.empty_graph(V)
        if kk > 0:
            _, nbr = cKDTree(positions).query(positions, k=kk + 1)
            for i in range(V):
                G.add_edges_from((i, int(j)) for j in np.atleast_1d(nbr[i]) if int(j) != i)
    else:
        D = np.asarray(distances, dtype=np.float64)
        if D.ndim != 2 or D.shape[0] != D.shape[1]:
            raise ValueError(f"distances must be a square matrix, got shape {D.shape}")
        V = D.shape[0]
        D = np.where(np.isfinite(D), D, np.inf)
        kk = min(int(k), V - 1)
        G = nx.empty_graph(V)
        masked = D.copy()
        np.fill_diagonal(masked, np.inf)
        order = np.argsort(masked, axis=1, kind="stable")[:, :kk]
        for i in range(V):
            G.add_edges_from((i, int(j)) for j in order[i])
    D = D.copy()
    np.fill_diagonal(D, np.inf)
    while V > 1 and not nx.is_connected(G):
        comp = np.array(sorted(nx.node_connected_component(G, 0)))
        rest = np.setdiff1d(np.arange(V), comp)
        sub = D[np.ix_(comp, rest)]
        i, j = np.unravel_index(np.argmin(sub), sub.shape)
        G.add_edge(int(comp[i]), int(rest[j]))
    return edge_index_from_networkx(G)


# ----------------------------------------------------------------------------- time series


def most_common_step(times: np.ndarray) -> float:
    r"""The most common difference between consecutive time stamps: the series' step, which a
    few stray stamps or gaps do not change (the smallest difference would).

    Example:
        >>> most_common_step(np.array([0.0, 900.0, 1200.0, 1800.0, 2700.0, 4500.0]))
        900.0
    """
    steps, occurrences = np.unique(np.diff(times), return_counts=True)
    return float(steps[np.argmax(occurrences)])


def chronological_windows(
    times: np.ndarray,
    *,
    lags: int,
    horizon: int,
    test_fraction: float,
    step: float | None = None,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Window end indices for a chronological train/test split without leakage.

    A sample ending at index ``t`` uses the readings ``t-lags+1 .. t`` as features and may use
    ``t+1 .. t+horizon`` for its label. A window is kept only if all these ``lags + horizon``
    readings are consecutive (time difference ``step``), valid, and on the same side of the
    split boundary; windows straddling the boundary are dropped, so every training sample
    lies strictly before every test sample.

    Arguments:
        times: Sorted time stamps ``[T]`` (seconds).
        lags: The number of feature readings ``C``.
        horizon: The number of future readings the label looks at (0 for same-window labels).
        test_fraction: The share of the readings (time stamps), the last ones, given to the
            test split (``0 < f < 1``); with gaps in the series, not the same share of its span.
        step: The regular time step; by default the most common difference of ``times``.
        valid: Optional mask ``[T]``; invalid readings are never used.

    Returns:
        ``(train_ends, test_ends)``, integer index arrays in increasing order.

    Example:
        >>> tr, te = chronological_windows(np.arange(10.0), lags=2, horizon=1, test_fraction=0.3)
        >>> tr.tolist(), te.tolist()
        ([1, 2, 3, 4, 5], [8])
    """
    times = np.asarray(times, dtype=np.float64)
    T = times.shape[0]
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    if lags < 1 or horizon < 0:
        raise ValueError(f"lags must be >= 1 and horizon >= 0, got {lags}, {horizon}")
    if T < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    diffs = np.diff(times)
    if step is None:
        step = most_common_step(times)
    boundary = int(round(T * (1.0 - float(test_fraction))))
    valid = np.ones(T, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    # a new segment starts after a gap, at the split boundary, and around invalid readings
    breaks = np.zeros(T, dtype=bool)
    breaks[1:] = ~np.isclose(diffs, step)
    breaks[boundary:boundary + 1] = True
    segment = np.cumsum(breaks | ~valid) * 2 + (~valid)  # invalid readings get their own ids
    ends = np.arange(lags - 1, T - horizon)
    if ends.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = ends - lags + 1
    last = ends + horizon
    # same segment at both ends and valid throughout <=> a clean window (segments are runs)
    ok = (segment[starts] == segment[last]) & valid[starts] & valid[last]
    ends = ends[ok]
    return ends[ends + horizon < boundary].astype(np.int64), ends[ends - lags + 1 >= boundary].astype(np.int64)


def lag_features(series: np.ndarray, ends: np.ndarray, lags: int) -> np.ndarray:
    r"""Stacks the readings ``t-lags+1 .. t`` of ``series`` (``[T, V]``) into ``[N, V, lags]``.

    Example:
        >>> lag_features(np.arange(6.0)[:, None], np.array([2, 5]), 2)[:, 0].tolist()
        [[1.0, 2.0], [4.0, 5.0]]
    """
    idx = np.asarray(ends)[:, None] + np.arange(-lags + 1, 1)[None, :]  # [N, lags]
    return np.transpose(series[idx], (0, 2, 1))


def ramp_labels(series: np.ndarray, horizon: int, threshold: float) -> np.ndarray:
    r"""Future-ramp labels: ``L[t] = 1`` where ``|g(t + horizon) - g(t)| > threshold``.

    The label of a window ending at ``t`` (last feature reading) is ``L[t]``; the last
    ``horizon`` rows have no future and are set to 0 (no window ends there).

    Arguments:
        series: Readings ``[T, V]`` in data units.
        horizon: How many steps ahead the change is measured (at least 1).
        threshold: The ramp threshold in data units.

    Returns:
        int64 labels ``[T, V]``.

    Example:
        >>> g = np.array([[0.0], [0.0], [100.0], [100.0]])
        >>> ramp_labels(g, 1, 50.0)[:, 0].tolist()
        [0, 1, 0, 0]
    """
    if int(horizon) < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    labels = np.zeros(series.shape, dtype=np.int64)
    change = series[horizon:] - series[:-horizon]
    labels[:-horizon] = np.abs(change) > float(threshold)
    return labels


def series_samples(
    features: np.ndarray,
    labels: np.ndarray,
    times: np.ndarray,
    *,
    lags: int,
    horizon: int,
    test_fraction: float,
    valid: np.ndarray | None = None,
    label_valid: np.ndarray | None = None,
    source: str = "series",
) -> dict:
    r"""Lag windows, labels, a chronological split and train-fitted standardisation.

    Arguments:
        features: The feature series ``[T, V]`` (already transformed, e.g. ``log1p``).
        labels: ``labels[t]`` is the label ``[V]`` of the window ending at ``t``.
        times: Time stamps ``[T]`` (seconds).
        lags: ``C``, the readings per sample.
        horizon: The future readings a label uses (0 for same-window labels).
        test_fraction: The share of the readings, the last ones, for testing.
        valid: Mask ``[T]`` of usable readings.
        label_valid: Mask ``[T]`` of window ends whose label is defined.
        source: A name for error messages.

    Returns:
        A dict with ``X_train, X_test`` (standardised float32), ``Y_train, Y_test``,
        ``scaler``, ``time_train, time_test`` (``[N, 2]``) and the window ends
        ``train_ends, test_ends``.

    Example:
        >>> T = 50
        >>> g = np.sin(np.arange(T, dtype=float))[:, None].repeat(3, 1)
        >>> out = series_samples(g, ramp_labels(g, 1, 0.5), np.arange(T) * 60.0,
        ...                      lags=2, horizon=1, test_fraction=0.3)
        >>> out["X_train"].shape, out["Y_test"].shape
        (torch.Size([33, 3, 2]), torch.Size([13, 3]))
    """
    train, test = chronological_windows(times, lags=lags, horizon=horizon, test_fraction=test_fraction, valid=valid)
    if label_valid is not None:
        train, test = train[label_valid[train]], test[label_valid[test]]
    if train.size == 0 or test.size == 0:
        raise ValueError(
            f"{source}: too few usable time steps for lags={lags}, horizon={horizon} "
            f"(train windows: {train.size}, test windows: {test.size})"
        )
    # Standardised in float64, then cast: in float32 first, readings far from zero (a large
    # offset) would round to a few values, and readings beyond its range to infinity.
    X_train, X_test = (torch.from_numpy(lag_features(features, ends, lags).astype(np.float64)) for ends in (train, test))
    scaler = Scaler.fit(X_train)
    X_train, X_test = (scaler.transform(X).float() for X in (X_train, X_test))
    for name, X in (("training", X_train), ("test", X_test)):
        if not torch.isfinite(X).all():
            raise ValueError(f"{source}: the standardised {name} signals exceed float32: the readings span more "
                             "than it holds; rescale them")
    return {
        "X_train": X_train,
        "X_test": X_test,
        "Y_train": as_long_tensor(labels[train]),
        "Y_test": as_long_tensor(labels[test]),
        "scaler": scaler,
        "time_train": window_times(times, train, lags, horizon),
        "time_test": window_times(times, test, lags, horizon),
        "train_ends": train,
        "test_ends": test,
    }


def lag_names(name: str, lags: int) -> list[str]:
    r"""Feature names of the lags, oldest first.

    Example:
        >>> lag_names("ghi", 3)
        ['ghi[t-2]', 'ghi[t-1]', 'ghi[t]']
    """
    return [f"{name}[t-{lags - 1 - c}]" if c < lags - 1 else f"{name}[t]" for c in range(lags)]


def window_times(times: np.ndarray, ends: np.ndarray, lags: int, horizon: int) -> Tensor:
    r"""The first and last time stamp each window touches, float64 ``[N, 2]``."""
    ends = np.asarray(ends)
    return torch.from_numpy(np.stack([times[ends - lags + 1], times[ends + horizon]], axis=1).astype(np.float64))


# ----------------------------------------------------------------------------- files and options


#: What reading a damaged or non-text file raises (a truncated gzip: EOFError; damaged inside: zlib.error).
UNREADABLE = (OSError, UnicodeDecodeError, EOFError, csv.Error, zlib.error)


def _open_text(path: Path):
    # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the first column's name.
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return open(path, "r", newline="", encoding="utf-8-sig")


def parse_time(text: str, path: Path | str, row: int) -> float:
    r"""Parses an ISO time stamp to POSIX seconds (naive stamps are read as UTC)."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{path}: row {row}: cannot parse the time stamp {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def column_list(names: Sequence[str], shown: int = 5, width: int = 40) -> str:
    r"""The first ``shown`` column names, each escaped and cut to about ``width`` characters, for
    a message: a binary file read as CSV has a "header" of raw bytes, thousands of them.

    Example:
        >>> column_list(["timestamp", "d1", "a" * 30, "d3"], shown=3, width=12)
        "['timestamp', 'd1', 'aaaaaaaa..., ... (1 more)]"
    """
    cut = [text if len(text := repr(name)) <= width else text[: width - 3] + "..." for name in names[:shown]]
    more = [f"... ({len(names) - shown} more)"] if len(names) > shown else []
    return "[" + ", ".join(cut + more) + "]"


def read_numeric_csv(
    path: str | Path,
    *,
    time_column: str | None = None,
    required: Sequence[str] = (),
    min_rows: int = 2,
    skip_lines: int = 0,
) -> tuple[list[str], np.ndarray | None, np.ndarray]:
    r"""Reads a CSV (optionally gzipped) of numbers with a header row, validating it.

    Arguments:
        path: The file.
        time_column: The name of an ISO time stamp column (returned separately), or ``None``.
        required: Column names that must be present.
        min_rows: The minimal number of data rows.
        skip_lines: Lines to skip before the header row.

    Returns:
        ``(columns, times, values)``: the numeric column names, the time stamps ``[T]`` in POSIX
        seconds (or ``None``) and the values ``[T, len(columns)]`` as float64.

    Raises:
        FileNotFoundError: If there is nothing at ``path``.
        ValueError: If ``path`` is a directory; else naming the file and the problem (missing
            columns, too few rows, a non-numeric or empty cell, a ragged row), with the row's
            line in the file.
    """
    path = Path(path)
    check_input_file(path, missing=f"no such file: {path}")
    try:
        with _open_text(path) as f:
            for _ in range(skip_lines):
                f.readline()
            reader = csv.reader(f)
            # Each row with its line in the file (the last, for a cell spanning lines), for the messages.
            rows = [(r, skip_lines + reader.line_num) for r in reader]
    except UNREADABLE as err:
        raise ValueError(f"{path}: cannot be read as CSV ({err})") from None
    rows = [(r, line) for r, line in rows if any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path}: empty file, expected a header row")
    header = [c.strip() for c in rows[0][0]]
    missing = [c for c in list(required) + ([time_column] if time_column else []) if c not in header]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; found {column_list(header)}")
    body, lines = [r for r, _ in rows[1:]], [line for _, line in rows[1:]]
    if len(body) < min_rows:
        raise ValueError(f"{path}: too few rows ({len(body)}, need at least {min_rows})")
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise ValueError(f"{path}: row {lines[i]} has {len(r)} cells, the header has {len(header)}")
    t_idx = header.index(time_column) if time_column else None
    columns = [c for j, c in enumerate(header) if j != t_idx]
    if not columns:
        raise ValueError(f"{path}: no value columns besides {time_column!r}")
    if repeated := sorted({c for c in header if header.count(c) > 1}):  # two nodes of one name
        raise ValueError(f"{path}: repeated columns {repeated}")
    cols = [j for j in range(len(header)) if j != t_idx]
    try:
        values = np.array([[float(r[j]) for j in cols] for r in body], dtype=np.float64)
    except ValueError:
        for i, r in enumerate(body):
            for j in cols:
                try:
                    float(r[j])
                except ValueError:
                    raise ValueError(
                        f"{path}: non-numeric cell {r[j]!r} in row {lines[i]}, column {header[j]!r}"
                    ) from None
        raise
    if not np.isfinite(values).all():
        i, j = np.argwhere(~np.isfinite(values))[0]
        raise ValueError(f"{path}: non-finite value in row {lines[i]}, column {columns[j]!r}")
    times = None
    if t_idx is not None:
        times = np.array([parse_time(r[t_idx], path, line) for r, line in zip(body, lines)])
        if np.any(np.diff(times) <= 0):
            raise ValueError(f"{path}: time stamps must be strictly increasing")
    return columns, times, values


def as_path(value, name: str) -> Path:
    r"""Checks a file or directory path option (``str`` or ``os.PathLike``) and returns it as a ``Path``.

    Example:
        >>> as_path("counts.csv", "path").name
        'counts.csv'
        >>> as_path(123, "path")
        Traceback (most recent call last):
        ...
        ValueError: path must be a file or directory path (str or os.PathLike), got int 123
    """
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(
            f"{name} must be a file or directory path (str or os.PathLike), got {type(value).__name__} {value!r}"
        )
    return Path(value)


def loader_options(func: Callable) -> list[str]:
    r"""The options a loader takes: its keyword-only arguments, sorted.

    Example:
        >>> def loader(*, seed=0, k=4): ...
        >>> loader_options(loader)
        ['k', 'seed']
    """
    params = inspect.signature(func).parameters
    return sorted(p for p in params if params[p].kind is inspect.Parameter.KEYWORD_ONLY)


def check_options(func: Callable, options: dict, name: str) -> None:
    r"""Raises ``TypeError`` naming any option that ``func`` does not accept.

    Example:
        >>> def loader(*, seed=0, k=4): ...
        >>> check_options(loader, {"k": 3}, "demo")
        >>> check_options(loader, {"kk": 3}, "demo")
        Traceback (most recent call last):
        ...
        TypeError: unknown option 'kk' for dataset 'demo'; valid options: k, seed
    """
    valid = loader_options(func)
    for key in options:
        if key not in valid:
            raise TypeError(f"unknown option {key!r} for dataset {name!r}; valid options: {', '.join(valid)}")


def checked_options(**intervals: str) -> Callable[[Callable[..., GraphDataset]], Callable[..., GraphDataset]]:
    r"""Makes a loader check its options on every call, through :func:`~igraphflow.datasets.load` or not.

    An option the loader does not take raises ``TypeError`` naming it; the seed must be an
    integer ``>= 0``, an option annotated ``int`` (a count, size or window length) an integer
    ``>= 1``, one annotated ``bool`` a boolean, and an option named in ``intervals`` a finite
    number in its interval (see :func:`~igraphflow._checks.as_real`; ``None`` passes where the
    loader's default is ``None``, its "choose for me").
    Every other option is the loader's to check.

    Example:
        >>> @checked_options(noise="(0, inf)")
        ... def demo(*, seed: int = 0, num_train: int = 8, noise: float = 0.1):
        ...     return num_train, noise
        >>> demo(num_train=16.0, noise=np.float32(0.5))
        (16, 0.5)
        >>> demo(noise=-1)
        Traceback (most recent call last):
        ...
        ValueError: noise must be a finite number in (0, inf), got -1
    """

    def decorate(loader: Callable[..., GraphDataset]) -> Callable[..., GraphDataset]:
        params = inspect.signature(loader).parameters
        checks = {key: functools.partial(as_count, name=key) for key in params if params[key].annotation in (int, "int")}
        checks.update({key: functools.partial(as_flag, name=key) for key in params if params[key].annotation in (bool, "bool")})
        checks["seed"] = functools.partial(as_seed, maximum=None)  # NumPy takes seeds of any size
        checks.update({key: functools.partial(as_real, name=key, interval=interval) for key, interval in intervals.items()})

        @functools.wraps(loader)
        def checked(**options) -> GraphDataset:
            check_options(loader, options, loader.__name__)
            for key, value in options.items():
                if key in checks and not (value is None and key in intervals and params[key].default is None):
                    options[key] = checks[key](value)
            return loader(**options)

        return checked

    return decorate


def as_float_tensor(x: np.ndarray) -> Tensor:
    r"""Converts to a contiguous float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def as_long_tensor(y: np.ndarray) -> Tensor:
    r"""Converts to a contiguous int64 tensor."""
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
