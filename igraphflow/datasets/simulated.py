r"""Simulated graph signals with a known conditional density ``p(X | Y)``.

Every simulation draws node latents ``Z_v | Y_v`` independently, then mixes them over the graph
with an invertible linear operator ``P`` (``V x V``) applied to each feature:
``X[:, c] = P Z[:, c]``. The change of variables gives the exact log-density of the returned
``X``::

    log p(X | Y) = sum_c log p_Z(P^{-1} X[:, c] | Y) - C log |det P|

which is exposed as ``GraphDataset.true_log_prob``. ``X`` is not standardised (the scaler is
the identity), so ``true_log_prob`` applies to the returned tensors as they are.

Datasets: ``three_moons`` (one node, three moon arcs), ``three_node`` (3-node path,
``P = D^{-1}(A + I)``), ``chordal`` (503-node chordal cycle graph, ``P = 0.8 I + 0.2 D^{-1} A``),
``linear_gaussian`` (random geometric graph, Gaussian latents) and ``graph_moons`` (same graph,
two-moons latents).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Set

import networkx as nx
import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import splu
from torch import Tensor

from .._checks import _as_tensor, as_labels, as_real
from ._base import GraphDataset, as_float_tensor, as_long_tensor, checked_options, edge_index_from_networkx

__all__ = [
    "GaussianLatentLogProb",
    "MoonLatentLogProb",
    "chordal",
    "graph_moons",
    "linear_gaussian",
    "moon_log_density",
    "random_geometric_graph",
    "smoothing_operator",
    "three_moons",
    "three_node",
]

# Moon arcs: unit circles, half a turn each, given as (centre x, centre y, start angle).
# TWO_MOONS is the scikit-learn layout: label 0 the upper moon, label 1 the lower moon.
TWO_MOONS = ((0.0, 0.0, 0.0), (1.0, 0.5, math.pi))
THREE_MOONS = ((0.0, 0.0, 0.0), (1.0, 0.5, math.pi), (2.5, 0.0, 0.0))


# ----------------------------------------------------------------------------- operators


def smoothing_operator(G: nx.Graph, d: float, *, self_loops: bool = False) -> sp.csc_matrix:
    r"""Random-walk smoothing ``P = (1 - d) I + d D^{-1} A`` (or ``D^{-1}(A + I)``) as a sparse matrix.

    Arguments:
        G: An undirected graph on nodes ``0..V-1``.
        d: The smoothing weight in ``[0, 1)``. Ignored when ``self_loops`` is true.
        self_loops: If true, return ``D^{-1}(A + I)`` with ``D`` the degree of ``A + I``.

    Returns:
        ``P``, a ``scipy.sparse`` CSC matrix ``[V, V]`` (rows sum to one).

    Example:
        >>> P = smoothing_operator(nx.path_graph(3), 0.5).toarray()
        >>> P[1].tolist()
        [0.25, 0.5, 0.25]
    """
    V = G.number_of_nodes()
    A = nx.to_scipy_sparse_array(G, nodelist=range(V), format="csr", dtype=np.float64)
    A = sp.csr_matrix(A)
    A.setdiag(0.0)
    A.eliminate_zeros()
    A.data[:] = 1.0
    I = sp.identity(V, format="csr", dtype=np.float64)
    if self_loops:
        B = A + I
        return sp.csc_matrix(sp.diags(1.0 / np.asarray(B.sum(axis=1)).ravel()) @ B)
    if not 0.0 <= d < 1.0:
        raise ValueError(f"smoothing must lie in [0, 1), got {d}")
    deg = np.asarray(A.sum(axis=1)).ravel()
    if np.any(deg == 0):
        raise ValueError("smoothing operator: the graph has isolated nodes")
    return sp.csc_matrix((1.0 - d) * I + d * (sp.diags(1.0 / deg) @ A))


class _Inverse:
    # P^{-1} from a sparse LU: a dense inverse for moderate V (one matmul per call is much
    # faster than SuperLU's column-by-column solves), the LU itself for large V.
    def __init__(self, lu, V: int) -> None:
        self.lu = lu
        self.dense = lu.solve(np.eye(V)) if V <= 2000 else None

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        return self.dense @ rhs if self.dense is not None else self.lu.solve(rhs)


def _log_abs_det(P: sp.spmatrix) -> tuple[float, _Inverse]:
    lu = splu(sp.csc_matrix(P))
    diag = lu.U.diagonal()
    if np.any(diag == 0) or not np.all(np.isfinite(diag)):
        raise ValueError("the mixing operator is singular")
    return float(np.log(np.abs(diag)).sum()), _Inverse(lu, P.shape[0])


def _apply(P: sp.spmatrix, Z: np.ndarray) -> np.ndarray:
    # X[n, :, c] = P Z[n, :, c], for Z of shape [N, V, C]
    N, V, C = Z.shape
    flat = np.transpose(Z, (1, 0, 2)).reshape(V, N * C)
    return np.transpose((P @ flat).reshape(V, N, C), (1, 0, 2))


def _unmix(lu, X: np.ndarray) -> np.ndarray:
    N, V, C = X.shape
    flat = np.transpose(X, (1, 0, 2)).reshape(V, N * C)
    return np.transpose(lu.solve(np.ascontiguousarray(flat)).reshape(V, N, C), (1, 0, 2))


def _as_batch(X: Tensor, Y: Tensor, V: int, C: int, K: int) -> tuple[np.ndarray, np.ndarray, tuple, torch.device]:
    # The density is computed on the CPU (a sparse LU) and returned on X's device.
    X, Y = _as_tensor(X, "X"), _as_tensor(Y, "Y")
    if X.shape[-2:] != (V, C) or Y.shape != X.shape[:-1]:
        raise ValueError(f"expected X [..., {V}, {C}] and Y [..., {V}], got {tuple(X.shape)} and {tuple(Y.shape)}")
    batch = tuple(X.shape[:-2])
    Xn = X.detach().cpu().double().reshape(-1, V, C).numpy()
    Yn = as_labels(Y.detach().reshape(-1, V), V, K, device="cpu").numpy()
    return Xn, Yn, batch, X.device


class GaussianLatentLogProb:
    r"""``log p(X | Y)`` for ``X[:, c] = P Z[:, c]`` with ``Z_v | Y_v ~ N(means[Y_v], sigma^2 I)``.

    Arguments:
        P: The invertible mixing operator ``[V, V]`` (dense or sparse).
        means: The class means ``[K, C]``.
        sigma: The latent standard deviation.

    Returns (when called with ``X [..., V, C]`` and ``Y [..., V]``, labels in ``0..K-1``):
        The log-densities, float64 ``[...]``, on the device of ``X``.

    Example:
        >>> logp = GaussianLatentLogProb(np.eye(2), np.array([[0.0], [1.0]]), 1.0)
        >>> logp(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long)).item() == -math.log(2 * math.pi)
        True
    """

    def __init__(self, P, means: np.ndarray, sigma: float) -> None:
        self.P = sp.csc_matrix(P, dtype=np.float64)
        self.means = np.asarray(means, dtype=np.float64)
        self.sigma = float(sigma)
        self.log_abs_det, self._lu = _log_abs_det(self.P)

    def __call__(self, X: Tensor, Y: Tensor) -> Tensor:
        V, (K, C) = self.P.shape[0], self.means.shape
        Xn, Yn, batch, device = _as_batch(X, Y, V, C, K)
        Z = _unmix(self._lu, Xn)
        r = (Z - self.means[Yn]) / self.sigma
        logp = -0.5 * (r**2).sum(axis=(1, 2)) - V * C * (math.log(self.sigma) + 0.5 * math.log(2 * math.pi))
        return torch.from_numpy(logp - C * self.log_abs_det).reshape(batch).to(device)

    def __getstate__(self) -> dict:  # the LU factor cannot be pickled: rebuilt on load
        return {k: v for k, v in self.__dict__.items() if k != "_lu"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.log_abs_det, self._lu = _log_abs_det(self.P)

    def __repr__(self) -> str:
        return f"GaussianLatentLogProb(V={self.P.shape[0]}, K={self.means.shape[0]}, sigma={self.sigma})"


def moon_log_density(z: Tensor, labels: Tensor, arcs=TWO_MOONS, noise: float = 0.1, num_points: int = 2048) -> Tensor:
    r"""Log-density of a noisy moon: ``p(z | y) = (1/pi) int N(z; arc_y(theta), noise^2 I) dtheta``.

    ``arc_y(theta) = centre_y + (cos theta, sin theta)`` for ``theta`` over half a turn from the
    arc's start angle. The integral is a midpoint rule with ``num_points`` nodes, evaluated
    stably with ``logsumexp``; the data are processed in chunks so memory stays small.

    Arguments:
        z: Points ``[M, 2]``.
        labels: Arc index of each point ``[M]``, in ``0..len(arcs)-1`` (``ValueError`` otherwise).
        arcs: ``(centre x, centre y, start angle)`` per label.
        noise: The noise standard deviation.
        num_points: The number of quadrature nodes.

    Returns:
        float64 log-densities ``[M]``, on the device of ``z``.

    Example:
        >>> z = torch.tensor([[0.0, 1.0], [5.0, 5.0]])
        >>> lp = moon_log_density(z, torch.tensor([0, 0]))
        >>> bool(lp[0] > lp[1])
        True
    """
    z = _as_tensor(z, "z").double()
    if z.dim() != 2 or z.size(1) != 2:
        raise ValueError(f"z must have shape [M, 2], got {list(z.shape)}")
    # Every point gets a label of an arc, so every entry of ``out`` is written below.
    labels = _as_tensor(labels, "labels").unsqueeze(-1)
    labels = as_labels(labels, 1, len(arcs), num_samples=z.shape[0], name="labels", device=z.device)[:, 0]
    out = torch.empty(z.shape[0], dtype=torch.float64, device=z.device)
    s2 = float(noise) ** 2
    const = -math.log(2 * math.pi * s2) - math.log(num_points)
    for k, (cx, cy, start) in enumerate(arcs):
        idx = torch.nonzero(labels == k).flatten()
        if idx.numel() == 0:
            continue
        theta = start + (torch.arange(num_points, dtype=torch.float64, device=z.device) + 0.5) * math.pi / num_points
        dirs = torch.stack([torch.cos(theta), torch.sin(theta)])  # [2, Q]
        for chunk in idx.split(4096):
            d = z[chunk] - torch.tensor([cx, cy], dtype=torch.float64, device=z.device)
            # ||d - u||^2 = ||d||^2 + 1 - 2 d.u  for unit vectors u
            lse = torch.logsumexp((d @ dirs) / s2, dim=1)
            out[chunk] = lse - ((d**2).sum(1) + 1.0) / (2 * s2) + const
    return out


class MoonLatentLogProb:
    r"""``log p(X | Y)`` for ``X[:, c] = P Z[:, c]`` with ``Z_v | Y_v`` a noisy moon arc.

    Arguments:
        P: The invertible mixing operator ``[V, V]``.
        arcs: The moon arcs, one per class (see :func:`moon_log_density`).
        noise: The moon noise.
        num_points: Quadrature nodes.

    Example:
        >>> logp = MoonLatentLogProb(np.eye(1), noise=0.1)
        >>> logp(torch.tensor([[[0.0, 1.0]]]), torch.tensor([[0]])).shape
        torch.Size([1])
    """

    def __init__(self, P, arcs=TWO_MOONS, noise: float = 0.1, num_points: int = 2048) -> None:
        self.P = sp.csc_matrix(P, dtype=np.float64)
        self.arcs = tuple(tuple(a) for a in arcs)
        self.noise = float(noise)
        self.num_points = int(num_points)
        self.log_abs_det, self._lu = _log_abs_det(self.P)

    def __call__(self, X: Tensor, Y: Tensor) -> Tensor:
        V = self.P.shape[0]
        Xn, Yn, batch, device = _as_batch(X, Y, V, 2, len(self.arcs))
        Z = _unmix(self._lu, Xn)
        lp = moon_log_density(torch.from_numpy(Z.reshape(-1, 2)), torch.from_numpy(Yn.reshape(-1)), self.arcs, self.noise, self.num_points)
        return (lp.reshape(-1, V).sum(1) - 2 * self.log_abs_det).reshape(batch).to(device)

    __getstate__ = GaussianLatentLogProb.__getstate__
    __setstate__ = GaussianLatentLogProb.__setstate__

    def __repr__(self) -> str:
        return f"MoonLatentLogProb(V={self.P.shape[0]}, noise={self.noise}, num_points={self.num_points})"


# ----------------------------------------------------------------------------- samplers


def _sample_moons(rng: np.random.Generator, labels: np.ndarray, arcs, noise: float) -> np.ndarray:
    arcs_np = np.asarray(arcs, dtype=np.float64)
    theta = arcs_np[labels, 2] + math.pi * rng.random(labels.shape)
    z = np.stack([np.cos(theta), np.sin(theta)], axis=-1) + arcs_np[labels, :2]
    return z + noise * rng.standard_normal(z.shape)


def _binary_means(num_features: int, shift: float) -> np.ndarray:
    return np.stack([-shift * np.ones(num_features), shift * np.ones(num_features)])


def _split(X: np.ndarray, Y: np.ndarray, num_train: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return (
        as_float_tensor(X[:num_train]),
        as_float_tensor(X[num_train:]),
        as_long_tensor(Y[:num_train]),
        as_long_tensor(Y[num_train:]),
    )


# The smallest eigenvalue modulus of P = (1 - d) I + d D^-1 A accepted by random_geometric_graph.
_MIN_EIGENVALUE = 0.05


def _well_conditioned(G: nx.Graph, d: float) -> bool:
    # eigenvalues of D^-1 A are real (it is similar to D^-1/2 A D^-1/2)
    A = nx.to_scipy_sparse_array(G, nodelist=range(G.number_of_nodes()), dtype=np.float64).toarray()
    deg = A.sum(1)
    lam = np.linalg.eigvalsh(A / np.sqrt(np.outer(deg, deg)))
    return bool(np.min(np.abs(1.0 - d + d * lam)) >= _MIN_EIGENVALUE)


def _ill_conditioned_error(num_nodes: int, d: float, graphs: str) -> ValueError:
    # The eigenvalues of D^-1 A lie in [-1, 1], so those of P have modulus >= 1 - 2d.
    safe = (1.0 - _MIN_EIGENVALUE) / 2
    return ValueError(
        f"smoothing={d} makes the mixing operator P = (1 - d) I + d D^-1 A singular or ill-conditioned "
        f"(an eigenvalue below {_MIN_EIGENVALUE} in modulus) on {graphs} with {num_nodes} nodes; "
        f"use a smaller smoothing (below {safe:g} always works)"
    )


def random_geometric_graph(
    num_nodes: int, seed: int, radius: float | None = None, smoothing: float | None = None
) -> tuple[nx.Graph, np.ndarray]:
    r"""A connected random geometric graph in the unit square.

    Tries the seeds ``1000003 * seed + attempt`` in turn; after every 20 failed attempts the
    radius grows by 10%. The default radius is ``1.2 sqrt(2 log V / (pi V))``. With
    ``smoothing = d``, graphs on which ``P = (1 - d) I + d D^{-1} A`` is nearly singular
    (an eigenvalue below 0.05 in modulus, e.g. a bipartite graph, such as a tree, at ``d = 0.5``)
    are rejected too, so that ``P`` is well conditioned; ``d < 0.475`` always passes.

    Arguments:
        num_nodes: The number of nodes ``V``.
        seed: The base seed.
        radius: The connection radius (default above).
        smoothing: If given, the ``d`` of the operator that must be invertible.

    Returns:
        ``(G, positions)`` with positions ``[V, 2]``.

    Raises:
        ValueError: When ``smoothing`` makes ``P`` nearly singular on every connected graph drawn
            (at once for ``V = 2``, whose only connected graph is one edge), or when ``radius`` is
            too small for any connected graph to be drawn.

    Example:
        >>> G, pos = random_geometric_graph(12, seed=0)
        >>> nx.is_connected(G), pos.shape
        (True, (12, 2))
    """
    V = int(num_nodes)
    if V < 2:
        raise ValueError(f"num_nodes must be at least 2, got {num_nodes}")
    if V == 2 and smoothing is not None and not _well_conditioned(nx.path_graph(2), smoothing):
        raise _ill_conditioned_error(V, smoothing, "the only connected graph (one edge)")
    default = 1.2 * math.sqrt(2 * math.log(V) / (math.pi * V))
    r = first = radius if radius is not None else default
    drew_connected = False
    for attempt in range(400):
        G = nx.random_geometric_graph(V, r, seed=1000003 * int(seed) + attempt)
        if nx.is_connected(G):
            drew_connected = True
            if smoothing is None or _well_conditioned(G, smoothing):
                pos = np.array([G.nodes[i]["pos"] for i in range(V)], dtype=np.float64)
                return nx.Graph(G.edges()), pos
        if attempt % 20 == 19:
            r *= 1.1
    if drew_connected:
        raise _ill_conditioned_error(V, smoothing, "every connected random geometric graph drawn (400 attempts)")
    raise ValueError(
        f"radius={first:g} is too small to connect {V} nodes: no connected random "
        f"geometric graph in 400 attempts, though the radius grew to {r:.3g}; use a larger radius (default {default:.3g})"
    )


# ----------------------------------------------------------------------------- datasets


@checked_options(noise="(0, inf)")
def three_moons(
    *,
    seed: int = 0,
    num_train: int = 4000,
    num_test: int = 2000,
    noise: float = 0.1,
    weights: tuple[float, ...] = (0.5, 0.3, 0.2),
) -> GraphDataset:
    r"""Three interleaved noisy moons on a single node (the iGNN toy), 3 imbalanced classes.

    Class ``k`` lies on a half circle of radius 1 around ``(0, 0)`` (upper), ``(1, 0.5)``
    (lower) and ``(2.5, 0)`` (upper), with Gaussian noise. The graph has one node and no edge
    (``edge_index`` is ``[2, 0]``).

    Arguments:
        seed: The random seed.
        num_train: Training samples.
        num_test: Test samples.
        noise: The noise standard deviation.
        weights: Three non-negative numbers, the class probabilities up to normalisation.

    Returns:
        A :class:`GraphDataset` with ``X [N, 1, 2]``, ``Y [N, 1]`` and the exact
        ``true_log_prob`` (quadrature over the arc).

    Example:
        >>> data = three_moons(num_train=300, num_test=100)
        >>> data.X_train.shape, data.num_classes, data.edge_index.shape
        (torch.Size([300, 1, 2]), 3, torch.Size([2, 0]))
    """
    # In order: a set or a dict (its keys) is not; as_real refuses strings and booleans, which
    # np.asarray would read as numbers.
    unordered = isinstance(weights, (str, bytes, Set, Mapping)) or not isinstance(weights, Iterable)
    items = [] if unordered else list(weights)
    try:
        w = np.array([as_real(x, "weights", "[0, inf)") for x in items])
    except ValueError:
        w = np.zeros(0)
    if w.shape != (3,) or w.sum() <= 0:
        raise ValueError(f"weights must be three finite non-negative numbers, not all zero, got {weights!r}")
    rng = np.random.default_rng(seed)
    N = num_train + num_test
    Y = rng.choice(3, size=(N, 1), p=w / w.sum())
    X = _sample_moons(rng, Y, THREE_MOONS, noise)
    X_tr, X_te, Y_tr, Y_te = _split(X, Y, num_train)
    return GraphDataset(
        X_tr, X_te, Y_tr, Y_te,
        edge_index=torch.zeros(2, 0, dtype=torch.long),
        num_classes=3,
        name="three_moons",
        node_names=["v0"],
        positions=torch.zeros(1, 2),
        feature_names=["x0", "x1"],
        label_rule=f"Y = the moon a point was drawn from; P(Y = k) = {tuple(np.round(w / w.sum(), 3).tolist())}",
        provenance=f"simulated: three half-circle arcs {THREE_MOONS} with Gaussian noise {noise}",
        true_log_prob=MoonLatentLogProb(np.eye(1), THREE_MOONS, noise),
    )


@checked_options(sigma="(0, inf)", mean_shift="(-inf, inf)", asymmetry="(-inf, inf)")
def three_node(
    *,
    seed: int = 0,
    num_train: int = 4000,
    num_test: int = 2000,
    num_features: int = 2,
    sigma: float = 0.5,
    mean_shift: float = 1.0,
    asymmetry: float = 0.0,
) -> GraphDataset:
    r"""The iGNN 3-node example: a path ``0 - 1 - 2``, ``X = D^{-1}(A + I) Z`` per feature.

    ``Z_v | Y_v ~ N(mu_{Y_v}, sigma^2 I)`` with ``mu_0 = -mean_shift * 1``,
    ``mu_1 = +mean_shift * 1``. The operator ``P = D^{-1}(A + I)`` (``D`` the degree of
    ``A + I``) averages each node with its neighbours; on the 3-node path ``det P = -1/12``, so
    it is invertible (checked at load time). All ``2^3 = 8`` label patterns appear equally
    often (cycled, then shuffled).

    Arguments:
        seed: The random seed.
        num_train: Training samples.
        num_test: Test samples.
        num_features: ``C``.
        sigma: The latent standard deviation.
        mean_shift: Half the per-coordinate distance between the class means.
        asymmetry: Extra weight of ``Z_1`` in ``X_0`` only (``P[0, 1] += asymmetry``). With 0 the
            data are symmetric under the path's mirror (nodes 0 and 2 exchanged, labels with
            them), like every automorphism-equivariant flow (ChebNet, GCN); any other value breaks
            that symmetry, so such flows cannot generate ``X | Y`` while L3Net's per-edge filters
            can. ``P`` stays invertible unless ``asymmetry = -1/2``.

    Returns:
        A :class:`GraphDataset` with the exact Gaussian ``true_log_prob``.

    Example:
        >>> data = three_node(num_train=16, num_test=8)
        >>> data.edge_index.tolist()
        [[0, 1, 1, 2], [1, 0, 2, 1]]
    """
    rng = np.random.default_rng(seed)
    G = nx.path_graph(3)
    P = smoothing_operator(G, 0.0, self_loops=True).tolil()
    P[0, 1] += float(asymmetry)
    P = P.tocsc()
    det = np.linalg.det(P.toarray())
    if abs(det) < 1e-8:
        raise ValueError(f"three_node: asymmetry={asymmetry} makes the mixing operator singular")
    patterns = np.array(list(itertools.product([0, 1], repeat=3)), dtype=np.int64)

    def draw(n: int) -> np.ndarray:
        return patterns[rng.permutation(np.arange(n) % 8)]

    Y = np.concatenate([draw(num_train), draw(num_test)])
    means = _binary_means(num_features, mean_shift)
    Z = means[Y] + sigma * rng.standard_normal((Y.shape[0], 3, num_features))
    X = _apply(P, Z)
    X_tr, X_te, Y_tr, Y_te = _split(X, Y, num_train)
    return GraphDataset(
        X_tr, X_te, Y_tr, Y_te,
        edge_index=edge_index_from_networkx(G),
        num_classes=2,
        name="three_node",
        node_names=["v0", "v1", "v2"],
        positions=torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]),
        feature_names=[f"x{c}" for c in range(num_features)],
        label_rule="Y_v in {0, 1}; all 8 patterns of the 3 nodes equally often",
        provenance=(
            f"simulated: path graph 0-1-2, X[:, c] = P Z[:, c], P = D^-1 (A + I) + {asymmetry:g} e_0 e_1^T (det = {det:.4g}), "
            f"Z_v | Y_v ~ N(+-{mean_shift} * 1, {sigma}^2 I)"
        ),
        true_log_prob=GaussianLatentLogProb(P, means, sigma),
    )


@checked_options(smoothing="[0, 1)", sigma="(0, inf)", mean_shift="(-inf, inf)")
def chordal(
    *,
    seed: int = 0,
    num_train: int = 2000,
    num_test: int = 1000,
    num_nodes: int = 503,
    num_features: int = 2,
    smoothing: float = 0.2,
    sigma: float = 1.0,
    mean_shift: float = 1.0,
) -> GraphDataset:
    r"""The chordal cycle graph of a prime ``p``: a sparse expander with ``p`` nodes of degree at most 3.

    ``networkx.chordal_cycle_graph(p)`` is made simple (self loops and multi-edges dropped, which
    leaves a few nodes of degree 2: 3 of 503).
    ``X = (0.8 I + 0.2 D^{-1} A) Z`` per feature (a sparse operator; its log-determinant comes
    from a sparse LU), ``Z_v | Y_v ~ N(mu_{Y_v}, sigma^2 I)`` with ``mu = +-mean_shift * 1``,
    and in every sample a random half of the nodes (``floor(p / 2)``) has label 1.

    Arguments:
        seed: The random seed.
        num_train: Training samples.
        num_test: Test samples.
        num_nodes: The prime ``p`` (503 in the iGNN paper).
        num_features: ``C``.
        smoothing: ``d`` in ``(1 - d) I + d D^{-1} A``.
        sigma: The latent standard deviation.
        mean_shift: Half the per-coordinate distance between the class means.

    Returns:
        A :class:`GraphDataset` with the exact Gaussian ``true_log_prob``.

    Example:
        >>> data = chordal(num_train=20, num_test=10, num_nodes=11)
        >>> data.X_train.shape, int(data.Y_train.sum(1)[0])
        (torch.Size([20, 11, 2]), 5)
    """
    p = num_nodes
    # The chordal cycle graph is a 3-regular expander for a prime p only (x -> 1/x mod p).
    if p < 3 or any(p % d == 0 for d in range(2, int(p**0.5) + 1)):
        raise ValueError(f"num_nodes must be a prime of at least 3, got {num_nodes}")
    rng = np.random.default_rng(seed)
    G = nx.Graph(nx.chordal_cycle_graph(p))
    G.remove_edges_from(list(nx.selfloop_edges(G)))
    P = smoothing_operator(G, smoothing)
    N = num_train + num_test
    ranks = np.argsort(rng.random((N, p)), axis=1)
    Y = (ranks < p // 2).astype(np.int64)
    means = _binary_means(num_features, mean_shift)
    Z = means[Y] + sigma * rng.standard_normal((N, p, num_features))
    X = _apply(P, Z)
    X_tr, X_te, Y_tr, Y_te = _split(X, Y, num_train)
    angle = 2 * np.pi * np.arange(p) / p
    return GraphDataset(
        X_tr, X_te, Y_tr, Y_te,
        edge_index=edge_index_from_networkx(G),
        num_classes=2,
        name="chordal",
        node_names=[f"v{i}" for i in range(p)],
        positions=torch.tensor(np.stack([np.cos(angle), np.sin(angle)], 1), dtype=torch.float32),
        feature_names=[f"x{c}" for c in range(num_features)],
        label_rule=f"in every sample a uniformly random half ({p // 2} of {p}) of the nodes has Y_v = 1",
        provenance=(
            f"simulated: networkx chordal_cycle_graph({p}) made simple, "
            f"X[:, c] = ({1 - smoothing:g} I + {smoothing:g} D^-1 A) Z[:, c], "
            f"Z_v | Y_v ~ N(+-{mean_shift} * 1, {sigma}^2 I)"
        ),
        true_log_prob=GaussianLatentLogProb(P, means, sigma),
    )


@checked_options(smoothing="[0, 1)", p_one="(0, 1)", mean_shift="(-inf, inf)", radius="(0, inf)")
def linear_gaussian(
    *,
    seed: int = 0,
    num_nodes: int = 12,
    num_features: int = 2,
    num_train: int = 4000,
    num_test: int = 2000,
    smoothing: float = 0.5,
    p_one: float = 0.5,
    mean_shift: float = 1.0,
    radius: float | None = None,
) -> GraphDataset:
    r"""The general linear-Gaussian simulator on a random geometric graph.

    ``P = (1 - d) I + d D^{-1} A`` (``d = smoothing``), ``Z_v | Y_v ~ N(mu_{Y_v}, I)`` with
    ``mu_0 = -mean_shift * 1`` and ``mu_1 = +mean_shift * 1``, ``Y_v`` iid Bernoulli(``p_one``),
    ``X[:, c] = P Z[:, c]``. The exact density is
    ``log N(P^{-1} X | mu_Y, I) - C log |det P|``.

    Arguments:
        seed: The random seed (graph and samples).
        num_nodes: ``V``.
        num_features: ``C``.
        num_train: Training samples.
        num_test: Test samples.
        smoothing: ``d`` in ``[0, 1)``.
        p_one: ``P(Y_v = 1)``.
        mean_shift: Half the per-coordinate distance between the class means.
        radius: The geometric graph radius (default: see :func:`random_geometric_graph`).

    Returns:
        A :class:`GraphDataset` with the exact Gaussian ``true_log_prob``.

    Example:
        >>> data = linear_gaussian(num_nodes=5, num_train=50, num_test=20)
        >>> data.true_log_prob(data.X_test, data.Y_test).shape
        torch.Size([20])
    """
    means = _binary_means(num_features, mean_shift)
    return _geometric_dataset(
        "linear_gaussian",
        seed=seed, num_nodes=num_nodes, num_train=num_train, num_test=num_test,
        smoothing=smoothing, p_one=p_one, radius=radius,
        draw_latent=lambda rng, Y: means[Y] + rng.standard_normal((*Y.shape, num_features)),
        num_features=num_features,
        latent_rule=f"N(+-{mean_shift} * 1, I)",
        true_log_prob=lambda P: GaussianLatentLogProb(P, means, 1.0),
    )


@checked_options(smoothing="[0, 1)", p_one="(0, 1)", noise="(0, inf)", radius="(0, inf)")
def graph_moons(
    *,
    seed: int = 0,
    num_nodes: int = 12,
    num_train: int = 4000,
    num_test: int = 2000,
    smoothing: float = 0.5,
    p_one: float = 0.5,
    noise: float = 0.1,
    radius: float | None = None,
    num_points: int = 2048,
) -> GraphDataset:
    r"""Two-moons latents mixed over a random geometric graph (``C = 2``).

    Same graph and operator as :func:`linear_gaussian`; ``Z_v`` is drawn from the upper moon
    (``Y_v = 0``) or the lower moon (``Y_v = 1``) of the scikit-learn two-moons layout, with
    Gaussian noise ``noise``. The exact density integrates the noise kernel over the arc
    angle by quadrature (``num_points`` nodes) and adds ``-2 log |det P|``.

    Arguments:
        seed: The random seed (graph and samples).
        num_nodes: ``V``.
        num_train: Training samples.
        num_test: Test samples.
        smoothing: ``d`` in ``[0, 1)``.
        p_one: ``P(Y_v = 1)``.
        noise: The moon noise standard deviation.
        radius: The geometric graph radius.
        num_points: Quadrature nodes of ``true_log_prob``.

    Returns:
        A :class:`GraphDataset` with ``true_log_prob``.

    Example:
        >>> data = graph_moons(num_nodes=4, num_train=30, num_test=10)
        >>> data.X_train.shape, data.true_log_prob(data.X_test, data.Y_test).shape
        (torch.Size([30, 4, 2]), torch.Size([10]))
    """
    return _geometric_dataset(
        "graph_moons",
        seed=seed, num_nodes=num_nodes, num_train=num_train, num_test=num_test,
        smoothing=smoothing, p_one=p_one, radius=radius,
        draw_latent=lambda rng, Y: _sample_moons(rng, Y, TWO_MOONS, noise),
        num_features=2,
        latent_rule=f"two moons (noise {noise})",
        label_note="; 0 = upper moon, 1 = lower moon",
        true_log_prob=lambda P: MoonLatentLogProb(P, TWO_MOONS, noise, num_points),
    )


def _geometric_dataset(
    name: str,
    *,
    seed: int,
    num_nodes: int,
    num_train: int,
    num_test: int,
    smoothing: float,
    p_one: float,
    radius: float | None,
    draw_latent: Callable[[np.random.Generator, np.ndarray], np.ndarray],
    num_features: int,
    latent_rule: str,
    true_log_prob: Callable[[sp.spmatrix], Callable],
    label_note: str = "",
) -> GraphDataset:
    r"""Latents ``Z = draw_latent(rng, Y)`` of iid Bernoulli(``p_one``) labels, mixed over a random geometric graph."""
    rng = np.random.default_rng(seed)
    G, pos = random_geometric_graph(num_nodes, seed, radius, smoothing)
    P = smoothing_operator(G, smoothing)
    Y = (rng.random((num_train + num_test, num_nodes)) < p_one).astype(np.int64)
    X = _apply(P, draw_latent(rng, Y))
    X_tr, X_te, Y_tr, Y_te = _split(X, Y, num_train)
    return GraphDataset(
        X_tr, X_te, Y_tr, Y_te,
        edge_index=edge_index_from_networkx(G),
        num_classes=2,
        name=name,
        node_names=[f"v{i}" for i in range(num_nodes)],
        positions=torch.tensor(pos, dtype=torch.float32),
        feature_names=[f"x{c}" for c in range(num_features)],
        label_rule=f"Y_v iid Bernoulli({p_one}){label_note}",
        provenance=(
            f"simulated: random geometric graph (unit square, seed {seed}), "
            f"X[:, c] = ({1 - smoothing:g} I + {smoothing:g} D^-1 A) Z[:, c], Z_v | Y_v ~ {latent_rule}"
        ),
        true_log_prob=true_log_prob(P),
    )
