r"""Sample-quality and prediction metrics for conditional graph generation.

Two-sample distances between generated and real graph signals (squared MMD with Gaussian
kernels, the energy statistic), the per-label-pattern protocol of the iGNN paper that averages a
distance over the most frequent label patterns, a classifier two-sample test, the test negative
log-likelihood per dimension and node-label accuracy.

Samples may be given as ``[n, d]`` matrices or as batches of graph signals ``[n, V, C]``
(flattened to ``[n, V * C]``), as NumPy arrays or tensors. Distances are computed in float64, in
row chunks, so the pairwise matrices of a few thousand samples never sit in memory at once, and
on centred and rescaled samples, so that coordinates of any magnitude give finite statistics
(a ``ValueError`` says when the distances themselves exceed float64).

References:
    | A Kernel Two-Sample Test (Gretton et al., 2012)
    | https://jmlr.org/papers/v13/gretton12a.html

    | Energy statistics: A class of statistics based on distances (Székely and Rizzo, 2013)
    | https://doi.org/10.1016/j.jspi.2013.03.018

    | Invertible Neural Networks for Graph Prediction (Xu, Cheng and Xie, 2022)
    | https://arxiv.org/abs/2206.01163

    | Revisiting Classifier Two-Sample Tests (Lopez-Paz and Oquab, 2017)
    | https://arxiv.org/abs/1610.06545
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_ALPHAS",
    "mmd",
    "mmd_terms",
    "mmd_median",
    "energy_distance",
    "conditional_metric",
    "nll_per_dim",
    "accuracy",
    "classifier_two_sample_test",
]

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._checks import _as_tensor, _is_scalar, as_count, as_flag, as_labels, as_real, as_seed

DEFAULT_ALPHAS = (0.1, 1.0, 5.0, 10.0)
r"""The iGNN paper's kernel parameters :math:`a` of :func:`mmd`, on :math:`\exp(-a \|x - x'\|^2)`."""

# A tile of a pairwise matrix: 1024 x 4096 float64 is 32 MB, whatever the sizes of the samples.
_CHUNK = 1024
_TILE = 4096
# Squared distances below this fraction of ||a||^2 + ||b||^2 are taken from the differences:
# the expansion's rounding, a few float64 epsilons of that sum, would be over 1e-9 of them.
_CANCELLATION = 2.0**-20


def _as_samples(X: Any, name: str) -> Tensor:
    r"""Converts a sample ``[n, d]`` or ``[n, V, C]`` to a float64 tensor ``[n, d]``."""
    X = _as_tensor(X, name).detach()
    if X.dim() < 2:
        raise ValueError(f"{name} must have shape [n, d] or [n, V, C], got {tuple(X.shape)}")
    if X.dtype.is_complex:
        raise ValueError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if X[0].numel() == 0:
        raise ValueError(f"{name} has no dimensions: shape {tuple(X.shape)}")
    X = X.to("cpu", torch.float64).reshape(X.shape[0], -1)
    if not torch.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return X


def _as_pair(X: Any, Y: Any, names: tuple[str, str] = ("X", "Y")) -> tuple[Tensor, Tensor]:
    X, Y = _as_samples(X, names[0]), _as_samples(Y, names[1])
    if X.shape[1] != Y.shape[1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same dimension per sample, "
            f"got {X.shape[1]} and {Y.shape[1]}"
        )
    return X, Y


def _centred_and_scaled(A: Tensor, B: Tensor) -> tuple[Tensor, Tensor, float]:
    r"""``(A', B', s)``: both samples less the mean of ``B``, in units ``s``, a power of two in
    (largest / 2, largest] of their centred coordinates (1 when all are 0)."""
    centre = B.mean(0)
    A, B = A - centre, B - centre
    largest = max(A.abs().max().item(), B.abs().max().item())
    scale = math.ldexp(1.0, math.frexp(largest)[1] - 1) if largest > 0 else 1.0
    return A / scale, B / scale, scale


def _pair_sums(A: Tensor, B: Tensor, fns: list[Callable[[Tensor, float], Tensor]]) -> list[float]:
    r"""``sum_{i, j} fn(D_ij, s)`` for each ``fn``, with :math:`\|a_i - b_j\|^2 = s^2 D_{ij}`,
    over tiles of ``_CHUNK`` rows of ``A`` and ``_TILE`` rows of ``B`` (memory bounded).

    The expansion :math:`\|a\|^2 + \|b\|^2 - 2 a \cdot b` is taken around the mean of ``B`` and
    in units ``s`` of about the largest centred coordinate (:func:`_centred_and_scaled`):
    otherwise coordinates near 1e200 square to inf (and inf - inf gives nan), near 1e-200 to 0,
    and samples far from the origin lose their distances to cancellation. ``s`` is a power of
    two, so dividing by it rounds nothing. Pairs much closer to each other than to that centre
    (a sample with one far outlier, or tight clusters far apart) would still lose theirs: where
    the expansion gives less than :data:`_CANCELLATION` of :math:`\|a\|^2 + \|b\|^2`, the
    distance is recomputed from the differences. ``D`` is exactly zero on the diagonal when
    ``A is B``.

    Raises:
        ValueError: When a sum is not finite: the distances overflow float64.
    """
    same = A is B
    A, B, scale = _centred_and_scaled(A, B)
    totals = [0.0] * len(fns)
    for row, a in zip(range(0, len(A), _CHUNK), A.split(_CHUNK)):
        a_norms = (a * a).sum(1)[:, None]
        for column, b in zip(range(0, len(B), _TILE), B.split(_TILE)):
            norms = a_norms + (b * b).sum(1)[None, :]
            d2 = (norms - 2.0 * a @ b.T).clamp_min_(0.0)
            inexact = d2 < _CANCELLATION * norms
            if same:  # the pairs (i, i), (k, k + row - column) here, are 0 apart exactly
                d2.diagonal(offset=row - column).zero_()
                inexact.diagonal(offset=row - column).fill_(False)
            rows = inexact.any(1).nonzero().squeeze(1)
            if len(rows):  # differences taken row by row inside cdist: no [rows, columns, d] tensor
                direct = torch.cdist(a[rows], b, compute_mode="donot_use_mm_for_euclid_dist").square()
                d2[rows] = torch.where(inexact[rows], direct, d2[rows])
            for i, fn in enumerate(fns):
                totals[i] += fn(d2, scale).sum().item()
    if not all(math.isfinite(total) for total in totals):
        raise ValueError("the distances between the samples are too large for float64; rescale both samples")
    return totals


def _gaussian(alpha: float) -> Callable[[Tensor, float], Tensor]:
    def kernel(d2: Tensor, scale: float) -> Tensor:
        # alpha * scale**2 may overflow, and inf * 0 is nan: D is scaled up first, a 0 stays 0.
        return torch.exp(-alpha * (d2 * scale * scale))

    return kernel


def _distance(d2: Tensor, scale: float) -> Tensor:
    return d2.sqrt() * scale


def _check_paired(n: int, m: int, biased: bool, paired: bool, statistic: str):
    if paired and n != m:
        raise ValueError(f"paired samples need as many rows on each side, got {n} and {m}")
    if (not biased or paired) and (n < 2 or m < 2):
        raise ValueError(f"the unbiased or paired {statistic} needs at least 2 samples on each side, got {n} and {m}")


def _cross_sums(X: Tensor, Y: Tensor, fns: list[Callable[[Tensor, float], Tensor]], paired: bool) -> tuple[list[float], int]:
    r"""The sums of ``fn`` over the pairs of :math:`x_i` and :math:`y_j` and their number: all
    pairs, or with ``paired`` the pairs :math:`i \neq j` only."""
    totals = _pair_sums(X, Y, fns)
    if not paired:
        return totals, X.shape[0] * Y.shape[0]
    A, B, scale = _centred_and_scaled(X, Y)
    d2 = (A - B).square().sum(1)
    return [total - fn(d2, scale).sum().item() for total, fn in zip(totals, fns)], X.shape[0] * (X.shape[0] - 1)


def _kernel_means(
    X: Tensor, Y: Tensor, alphas: list[float], biased: bool, paired: bool = False
) -> list[tuple[float, float, float]]:
    r"""``(E k(x, x'), E k(y, y'), E k(x, y))`` for each ``alpha``."""
    n, m = X.shape[0], Y.shape[0]
    _check_paired(n, m, biased, paired, "MMD")
    kernels = [_gaussian(a) for a in alphas]
    kxx = _pair_sums(X, X, kernels)
    kyy = _pair_sums(Y, Y, kernels)
    kxy, nxy = _cross_sums(X, Y, kernels, paired)
    if biased:
        return [(sxx / n**2, syy / m**2, sxy / nxy) for sxx, syy, sxy in zip(kxx, kyy, kxy)]
    # A Gaussian kernel is exactly 1 on the diagonal: drop it analytically.
    return [((sxx - n) / (n * (n - 1)), (syy - m) / (m * (m - 1)), sxy / nxy) for sxx, syy, sxy in zip(kxx, kyy, kxy)]


def mmd(
    X: Any,
    Y: Any,
    alphas: float | Iterable[float] = DEFAULT_ALPHAS,
    *,
    biased: bool = False,
    paired: bool = False,
) -> dict[float, float]:
    r"""Squared maximum mean discrepancy with Gaussian kernels.

    With the kernel :math:`k(x, x') = \exp(-\alpha \|x - x'\|^2)` (the kernel of the iGNN paper),

    .. math:: \mathrm{MMD}^2 = E\,k(x, x') + E\,k(y, y') - 2 E\,k(x, y).

    The default is the unbiased U-statistic (pairs :math:`i \neq j` within a sample), which can
    be slightly negative when the two distributions are equal; ``biased=True`` gives the
    V-statistic (all pairs), which is non-negative unless ``paired`` leaves the pairs
    :math:`i = i` out of the cross term alone.

    Arguments:
        X: A sample ``[n, d]`` or ``[n, V, C]``.
        Y: A sample ``[m, d]`` or ``[m, V, C]`` with the same dimension per sample.
        alphas: One kernel parameter or several.
        biased: Whether to use the biased V-statistic.
        paired: Whether ``X[i]`` and ``Y[i]`` are dependent, as a signal and one generated for
            its labels are (``n == m``): the cross term then averages over the independent
            pairs :math:`i \neq j` only (see :func:`energy_distance`).

    Returns:
        A dictionary from each :math:`\alpha` to the squared MMD.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.randn(200, 3, generator=g)
        >>> Y = torch.randn(200, 3, generator=g) + 1.0
        >>> values = mmd(X, Y, alphas=(0.1, 1.0))
        >>> sorted(values)
        [0.1, 1.0]
        >>> values[0.1] > 0.05
        True
        >>> mmd(X, X, alphas=1.0, biased=True)[1.0]
        0.0
    """
    terms = mmd_terms(X, Y, alphas, biased=biased, paired=paired)
    return {a: xx + yy - 2.0 * xy for a, (xx, yy, xy) in terms.items()}


def mmd_terms(
    X: Any,
    Y: Any,
    alphas: float | Iterable[float] = DEFAULT_ALPHAS,
    *,
    biased: bool = False,
    paired: bool = False,
) -> dict[float, tuple[float, float, float]]:
    r"""The three kernel means of :func:`mmd`: :math:`(E\,k(x, x'), E\,k(y, y'), E\,k(x, y))`.

    They show what a squared MMD is made of; with a narrow kernel, for instance, the first two
    count near-duplicates within each sample and the last near-matches across them.
    Same arguments as :func:`mmd`.

    Example:
        >>> X, Y = torch.zeros(3, 2), torch.ones(2, 2)
        >>> mmd_terms(X, Y, alphas=1.0)[1.0]  # exp(0), exp(0), exp(-2)
        (1.0, 1.0, 0.1353352832366127)
    """
    X, Y, biased, paired = *_as_pair(X, Y), as_flag(biased, "biased"), as_flag(paired, "paired")
    alphas = _as_alphas(alphas)
    return dict(zip(alphas, _kernel_means(X, Y, alphas, biased, paired)))


def _as_alphas(alphas: Any) -> list[float]:
    r"""Checks the kernel parameters of :func:`mmd`: one positive finite number, or a non-empty
    1-D sequence of them (booleans, strings and nested sequences refused), as ``float``."""
    message = f"alphas must be a positive finite number or a non-empty 1-D sequence of them, got {alphas!r}"
    if isinstance(alphas, numbers.Number) or getattr(alphas, "ndim", None) == 0:  # a float, NumPy scalar, 0-d tensor
        values = [alphas]
    # A string would read as its characters ("12": the alphas 1 and 2), a dict as its keys.
    elif isinstance(alphas, (str, bytes, Mapping)) or not isinstance(alphas, Iterable):
        raise ValueError(message)
    else:
        values = list(alphas)
    if not values or not all(_is_scalar(a) for a in values):  # rows of a 2-D array are no numbers
        raise ValueError(message)
    try:
        return [as_real(a, "alphas", "(0, inf)") for a in values]
    except ValueError:
        raise ValueError(message) from None


def _median_distance(Z: Tensor, max_points: int = 1000) -> float:
    r"""The median pairwise distance of ``Z``; when that is 0 (more than half the distances are,
    as with many repeated points), the median of the non-zero ones, which scales with the data
    as the median does. 0 only when all points are equal."""
    if Z.shape[0] > max_points:  # a fixed, evenly spaced subsample: deterministic
        Z = Z[torch.linspace(0, Z.shape[0] - 1, max_points).long()]
    # Differences taken directly (no expansion's rounding: repeated points are exactly 0 apart),
    # in units of about the largest coordinate (no overflow near 1e200).
    Z, _, scale = _centred_and_scaled(Z, Z)
    distances = torch.pdist(Z) * scale
    # The usual median (the mean of the two middle values for an even count), not torch.median's
    # lower one; quantile accepts up to 2**24 values, and max_points bounds the pairs to ~5e5.
    median = torch.quantile(distances, 0.5).item()
    if median == 0.0:
        distances = distances[distances > 0]
        median = torch.quantile(distances, 0.5).item() if distances.numel() else 0.0
    return median


def mmd_median(X: Any, Y: Any, *, biased: bool = False) -> float:
    r"""Squared MMD with a Gaussian kernel whose bandwidth is the median heuristic.

    The bandwidth :math:`h` is the median pairwise distance of the pooled sample (on at most
    1000 evenly spaced points of it; the median of the non-zero distances when more than half
    of them are 0, as with many repeated points) and the kernel is
    :math:`k(x, x') = \exp(-\|x - x'\|^2 / (2 h^2))`, i.e. :math:`\alpha = 1 / (2 h^2)` in
    :func:`mmd`.

    Arguments:
        X: A sample ``[n, d]`` or ``[n, V, C]``.
        Y: A sample ``[m, d]`` or ``[m, V, C]``.
        biased: Whether to use the biased V-statistic.

    Returns:
        The squared MMD.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> X, Y = torch.randn(2, 300, 4, generator=g)
        >>> abs(mmd_median(X, Y)) < 0.01
        True
        >>> mmd_median(X, Y + 2.0) > 0.1
        True
    """
    X, Y, biased = *_as_pair(X, Y), as_flag(biased, "biased")
    h = _median_distance(torch.cat([X, Y]))
    if h == 0.0:
        h = 1.0  # all points equal: any bandwidth gives the same (zero) statistic
    # In units of h, alpha = 1/2: 1 / (2 h^2) itself would be 0 for h = 1e200 and inf for 1e-200.
    xx, yy, xy = _kernel_means(X / h, Y / h, [0.5], biased)[0]
    return xx + yy - 2.0 * xy


def energy_distance(X: Any, Y: Any, *, biased: bool = False, paired: bool = False) -> float:
    r"""The energy statistic :math:`2 E\|X - Y\| - E\|X - X'\| - E\|Y - Y'\|`.

    Zero exactly when the two distributions are equal (in the population). The within-sample
    expectations average over pairs :math:`i \neq j` (U-statistics) unless ``biased=True``, in
    which case they average over all :math:`n^2` pairs. This is the squared energy distance;
    ``scipy.stats.energy_distance`` (1-D) returns the square root of the biased version.

    Arguments:
        X: A sample ``[n, d]`` or ``[n, V, C]``.
        Y: A sample ``[m, d]`` or ``[m, V, C]``.
        biased: Whether to use V-statistics for the within-sample terms.
        paired: Whether ``X[i]`` and ``Y[i]`` are dependent, as a signal and one generated for
            its labels are (``n == m``): the cross term then averages over the independent
            pairs :math:`i \neq j` only. With the pairs :math:`i = i` in it, a generator is
            rewarded for drawing close to the very signal whose labels it was given: by
            :math:`2/n` of how much closer that signal is than the others, which favours
            draws narrower than the data.

    Returns:
        The energy statistic.

    Example:
        >>> X = torch.tensor([[0.0], [1.0]])
        >>> Y = torch.tensor([[3.0], [4.0]])
        >>> energy_distance(X, Y)  # 2 * 3 - 1 - 1
        4.0
    """
    X, Y = _as_pair(X, Y)
    biased, paired = as_flag(biased, "biased"), as_flag(paired, "paired")
    n, m = X.shape[0], Y.shape[0]
    _check_paired(n, m, biased, paired, "energy statistic")
    (sxy,), nxy = _cross_sums(X, Y, [_distance], paired)
    (sxx,) = _pair_sums(X, X, [_distance])
    (syy,) = _pair_sums(Y, Y, [_distance])
    nxx, nyy = (n * n, m * m) if biased else (n * (n - 1), m * (m - 1))
    return 2.0 * sxy / nxy - sxx / nxx - syy / nyy


def _frequent_patterns(Y: Tensor, top_k: int, min_count: int) -> list[tuple[Tensor, Tensor]]:
    r"""The ``top_k`` most frequent rows of ``Y`` with at least ``min_count`` occurrences.

    Returns ``(pattern, row indices)`` pairs, most frequent first; ties go to the
    lexicographically smaller pattern.
    """
    patterns, inverse, counts = torch.unique(Y, dim=0, return_inverse=True, return_counts=True)
    # torch.unique sorts the patterns lexicographically; a stable sort keeps that among ties.
    order = torch.sort(-counts, stable=True).indices
    chosen = []
    for p in order.tolist():
        if len(chosen) == top_k or counts[p] < min_count:
            break
        chosen.append((patterns[p], torch.nonzero(inverse == p).flatten()))
    return chosen


def conditional_metric(
    metric: Callable[[Tensor, Tensor], Any],
    X_gen: Any,
    X_real: Any,
    Y: Any,
    top_k: int = 3,
    *,
    min_count: int = 2,
    return_details: bool = False,
) -> Any:
    r"""A two-sample metric evaluated within the most frequent label patterns.

    The protocol of the iGNN paper: ``X_gen[i]`` is generated for the label pattern ``Y[i]`` and
    ``X_real[i]`` is the real signal observed with it, so both samples share the label patterns.
    The metric compares ``X_gen`` and ``X_real`` restricted to each of the ``top_k`` most
    frequent patterns of ``Y`` (rows of ``Y`` that are equal), and the results are averaged
    with weights proportional to the pattern counts.

    Arguments:
        metric: A function of two samples, e.g. :func:`mmd` or :func:`energy_distance`,
            returning a number or a dictionary of numbers (averaged key by key).
        X_gen: Generated signals ``[N, V, C]`` or ``[N, d]``, finite.
        X_real: Real signals of the same shape per sample as ``X_gen``.
        Y: Integer label patterns ``[N, V]`` (``[N]`` for one node; booleans and whole-numbered
            floats too), aligned with both; the three may be on different devices.
        top_k: How many of the most frequent patterns to use.
        min_count: Patterns seen fewer times are skipped (unbiased statistics need 2). A
            statistic of a few signals against a few is mostly noise: on graphs of many nodes,
            where patterns seldom repeat, compare whole splits instead (as
            :func:`igraphflow.compare.evaluate` does below 20 signals a pattern).
        return_details: Whether to also return a list with, for each pattern used, a
            dictionary ``{"pattern", "count", "value"}``.

    Returns:
        The count-weighted average (a number or a dictionary), and the details if asked.

    Raises:
        ValueError: When ``X_gen``, ``X_real`` or ``Y`` is misshapen, not finite, or ``Y`` holds
            no integers; the message names the argument.
        TypeError: When ``metric`` returns anything but a real number or a dict of them.

    Example:
        >>> Y = torch.tensor([[0, 1]] * 6 + [[1, 1]] * 3 + [[0, 0]])
        >>> X_real = torch.arange(10.0).reshape(10, 1)
        >>> X_gen = X_real + 1.0
        >>> value, details = conditional_metric(
        ...     energy_distance, X_gen, X_real, Y, top_k=2, return_details=True
        ... )
        >>> [(d["pattern"], d["count"]) for d in details]
        [([0, 1], 6), ([1, 1], 3)]
    """
    X_gen, X_real, Y = _conditional_inputs(X_gen, X_real, Y)
    if not callable(metric):
        raise TypeError(f"metric must be a function of two samples, got {type(metric).__name__}")
    top_k = as_count(top_k, "top_k")
    min_count = as_count(min_count, "min_count")
    return_details = as_flag(return_details, "return_details")

    groups = _frequent_patterns(Y, top_k, min_count)
    if not groups:
        raise ValueError(f"no label pattern of Y occurs at least min_count = {min_count} times")

    details = []
    for pattern, rows in groups:
        value = metric(X_gen[rows], X_real[rows])
        details.append({"pattern": pattern.tolist(), "count": len(rows), "value": value})
    average = _weighted_average([d["value"] for d in details], [d["count"] for d in details])
    return (average, details) if return_details else average


def _conditional_inputs(X_gen: Any, X_real: Any, Y: Any) -> tuple[Tensor, Tensor, Tensor]:
    r"""Checks the signals and labels of :func:`conditional_metric`, under its argument names; the
    signals come back as given (on their devices), the labels as in :func:`_pattern_labels`."""
    X_gen, X_real = _as_tensor(X_gen, "X_gen"), _as_tensor(X_real, "X_real")
    Y, given = _pattern_labels(Y)
    for name, X in (("X_gen", X_gen), ("X_real", X_real)):
        if X.dim() < 2 or X.shape[0] != Y.shape[0]:
            raise ValueError(
                f"{name} must have shape [N, ...] with N = {Y.shape[0]} rows aligned with Y, "
                f"got {tuple(X.shape)}"
            )
        if X.dtype.is_complex or X.dtype == torch.bool:
            raise ValueError(f"{name} must hold real numbers, got dtype {X.dtype}")
        if not torch.isfinite(X).all():
            raise ValueError(f"{name} holds NaN or infinite values")
    if X_gen.shape[1:] != X_real.shape[1:]:
        raise ValueError(
            f"X_gen and X_real must have the same shape per sample ([V, C] or [d]), "
            f"got {list(X_gen.shape[1:])} and {list(X_real.shape[1:])}"
        )
    if X_gen.dim() == 3 and Y.shape[1] != X_gen.shape[1]:
        raise ValueError(f"Y must have shape [N, V={X_gen.shape[1]}] like X_gen [N, V, C], got {given}")
    return X_gen, X_real, Y


def _pattern_labels(Y: Any) -> tuple[Tensor, list[int]]:
    r"""Integer labels ``[N, V]`` (or ``[N]``) as ``[N, V]`` on the CPU, and the shape given."""
    # Row indices on the CPU index a tensor on any device; ones on a GPU index only its own.
    Y = _as_tensor(Y, "Y").cpu()
    given = list(Y.shape)
    if Y.dim() == 1:
        Y = Y[:, None]
    if Y.dim() != 2:
        raise ValueError(f"Y must have shape [N, V], got {given}")
    if Y.dtype.is_complex:
        raise ValueError(f"Y must hold integer labels, got dtype {Y.dtype}")
    if Y.dtype.is_floating_point:
        # NaN rows never equal each other: no pattern would ever repeat.
        if not torch.isfinite(Y).all():
            raise ValueError(f"Y holds {int((~torch.isfinite(Y)).sum())} NaN or infinite labels")
        if (Y != Y.round()).any():
            raise ValueError("Y must hold integer labels, got non-integer values")
    return Y, given


def _metric_number(value: Any, key: Any = None) -> float:
    r"""A metric's value as ``float``; anything but a real number is the metric's fault, said so."""
    if _is_scalar(value):
        try:
            return float(value)
        except (TypeError, ValueError, RuntimeError):
            pass
    under = "" if key is None else f" under the key {key!r}"
    raise TypeError(f"metric returned {value!r}{under}, a {type(value).__name__}; it must return a real number or a dict of them")


def _weighted_average(values: list[Any], counts: list[int]) -> float | dict[Any, float]:
    r"""The ``counts``-weighted average of the metric's values: numbers, or dicts averaged key by key."""
    total = sum(counts)
    if isinstance(values[0], dict):
        keys = values[0].keys()
        for value in values:
            if not isinstance(value, dict) or value.keys() != keys:
                raise TypeError(f"metric returned {value!r} for one pattern and {values[0]!r} for another; "
                                "it must return numbers, or dicts with the same keys")
        return {key: sum(c * _metric_number(v[key], key) for c, v in zip(counts, values)) / total
                for key in keys}
    return sum(c * _metric_number(v) for c, v in zip(counts, values)) / total


def nll_per_dim(log_prob: Any, num_dims: int) -> float:
    r"""Negative log-likelihood per dimension, in nats: ``-mean(log_prob) / num_dims``.

    Arguments:
        log_prob: Log-densities ``[N]`` of test samples (natural logarithm), real numbers. ``-inf``
            (a sample where the density is 0) is allowed and gives ``inf``; ``NaN`` and ``+inf``
            are refused, since no density is infinite.
        num_dims: Dimension of one sample, e.g. ``V * C``.

    Returns:
        The average negative log-likelihood per dimension.

    Example:
        >>> nll_per_dim(torch.tensor([-3.0, -5.0]), num_dims=2)
        2.0
    """
    log_prob = _as_tensor(log_prob, "log_prob")
    if log_prob.dim() != 1:
        raise ValueError(f"log_prob must have shape [N], one log-density per sample, got {list(log_prob.shape)}")
    if log_prob.dtype == torch.bool:
        raise TypeError("log_prob must hold real numbers, got booleans")
    if log_prob.dtype.is_complex:
        raise ValueError(f"log_prob must hold real numbers, got dtype {log_prob.dtype}")
    if log_prob.numel() == 0:
        raise ValueError("log_prob is empty")
    log_prob = log_prob.to(torch.float64)
    if log_prob.isnan().any():  # -inf is a sample off the support, but NaN is no density at all
        raise ValueError(f"log_prob holds {int(log_prob.isnan().sum())} NaN values")
    if (log_prob == math.inf).any():  # and would give an NLL of -inf, or NaN beside a -inf
        raise ValueError(f"log_prob holds {int((log_prob == math.inf).sum())} +inf values: a density cannot be infinite")
    num_dims = as_count(num_dims, "num_dims")
    return -log_prob.mean().item() / num_dims


def accuracy(pred: Any, Y: Any) -> float:
    r"""Fraction of node labels predicted correctly.

    Arguments:
        pred: Predicted labels ``[N, V]`` or scores / probabilities ``[N, V, K]`` (arg-maxed
            over the last axis; a boolean ``[N, V, K]``, such as prediction sets, is refused).
            Scores may be ``-inf`` (log-probabilities of 0) beside a finite score of the node,
            but not ``NaN`` or ``+inf``.
        Y: True labels ``[N, V]``, on the device of ``pred`` or another.

    Labels are class indices ``0..K-1``: whole numbers ``>= 0`` (booleans read as 0 and 1).

    Returns:
        The node-label accuracy, between 0 and 1.

    Example:
        >>> accuracy(torch.tensor([[0, 1], [1, 1]]), torch.tensor([[0, 1], [0, 1]]))
        0.75
        >>> accuracy(torch.tensor([[[0.9, 0.1], [0.2, 0.8]]]), torch.tensor([[0, 0]]))
        0.5
    """
    pred, Y = _as_tensor(pred, "pred"), _as_tensor(Y, "Y")
    if Y.dim() != 2:
        raise ValueError(f"Y must have shape [N, V] (labels), got {list(Y.shape)}")
    if Y.numel() == 0:
        raise ValueError("Y is empty")
    if pred.dim() == Y.dim() + 1:
        if pred.dtype == torch.bool:  # which label would the arg-max of a set be?
            raise ValueError("pred scores must be numbers, got booleans: sets of labels per node have no arg-max")
        if pred.shape[-1] == 0 or (pred.is_floating_point() and pred.isnan().any()):
            raise ValueError(f"pred scores must be [..., K] with K >= 1 and no NaN, got shape {tuple(pred.shape)}")
        # -inf is a log-probability of 0; +inf, or only -inf at a node, ties and picks label 0.
        if pred.is_floating_point() and ((pred == math.inf).any() or (pred == -math.inf).all(-1).any()):
            raise ValueError("pred scores must be finite, -inf allowed only beside a finite score of the node; "
                             "got +inf or a node with only -inf scores")
        pred = pred.argmax(-1)
    if pred.shape != Y.shape:
        raise ValueError(
            f"pred must have shape {tuple(Y.shape)} (labels) or {tuple(Y.shape) + ('K',)} "
            f"(scores), got {tuple(pred.shape)}"
        )
    for name, labels in (("pred", pred), ("Y", Y)):
        _check_accuracy_labels(labels, name)
    return (pred.cpu() == Y.cpu()).double().mean().item()


def _check_accuracy_labels(labels: Tensor, name: str):
    r"""Refuses labels that are not class indices ``0..K-1`` (booleans read as 0 and 1)."""
    # 0.3 would silently count as wrong everywhere: labels are whole numbers.
    if labels.is_complex() or (labels.is_floating_point() and not (labels == labels.round()).all()):
        raise ValueError(f"{name} labels must be whole numbers (or pred scores [..., K]), got dtype {labels.dtype}")
    if labels.is_floating_point() and not torch.isfinite(labels).all():
        raise ValueError(f"{name} holds infinite labels; labels are 0..K-1")
    if labels.dtype.is_signed and labels.min() < 0:
        raise ValueError(f"{name} holds negative labels (the smallest is {labels.min().item():g}); labels are 0..K-1")


def _c2st_signals(X: Any, name: str) -> tuple[Tensor, list[int]]:
    r"""Signals ``[n, V, C]`` (or ``[n, d]``) as float64 ``[n, V * C]``, and their shape per sample."""
    X = _as_tensor(X, name)
    return _as_samples(X, name), list(X.shape[1:])


def _c2st_labels(Y: Any, num_samples: int, num_nodes: int | None, num_classes: int | None, name: str) -> Tensor:
    r"""Labels ``[n, V]`` (or ``[n]`` for one node) as ``int64`` ``[n, V]``, checked against ``n``,
    ``V`` (``None``: any, for signals ``[n, d]``) and ``K``."""
    Y = _as_tensor(Y, name)
    if Y.dim() == 1 and num_nodes in (None, 1):
        Y = Y[:, None]
    if num_nodes is None and Y.dim() != 2:
        raise ValueError(f"{name} must have shape [N={num_samples}, V], got {list(Y.shape)}")
    return as_labels(Y, num_nodes or Y.shape[1], num_classes, num_samples=num_samples, name=name, device="cpu")


def _c2st_num_classes(Y_a: Tensor, Y_b: Tensor) -> int:
    r"""``K`` read off the labels as the largest + 1, at most the number of labels given."""
    num_classes = int(max(Y_a.max(), Y_b.max())) + 1
    # More classes than labels leaves most one-hot columns empty: these are no class indices
    # 0..K-1, and the one-hot [n, V * K] may not even fit in memory.
    if num_classes > Y_a.numel() + Y_b.numel():
        raise ValueError(
            f"the largest label, {num_classes - 1}, makes K = {num_classes} classes, more than the "
            f"{Y_a.numel() + Y_b.numel()} labels of Y_a and Y_b; labels are class indices 0..K-1 "
            "(give num_classes if K really is that large)"
        )
    return num_classes


def _c2st_features(X: Tensor, Y: Tensor, num_classes: int) -> np.ndarray:
    onehot = torch.nn.functional.one_hot(Y, num_classes).reshape(X.shape[0], -1)
    return torch.cat([X, onehot.double()], 1).numpy()


def classifier_two_sample_test(
    X_a: Any,
    Y_a: Any,
    X_b: Any,
    Y_b: Any,
    seed: int = 0,
    *,
    num_classes: int | None = None,
) -> float:
    r"""Classifier two-sample test: how well can pairs of set a be told from pairs of set b?

    Each pair ``(X, Y)`` becomes the vector of flattened features and one-hot labels. A
    :class:`sklearn.ensemble.HistGradientBoostingClassifier` learns to separate set a from set
    b on a stratified random half of the pooled pairs and is scored on the other half.

    Arguments:
        X_a: Signals ``[n_a, V, C]`` (or ``[n_a, d]``) of set a.
        Y_a: Labels ``[n_a, V]`` of set a.
        X_b: Signals ``[n_b, V, C]`` of set b.
        Y_b: Labels ``[n_b, V]`` of set b.
        seed: Seed of the split and of the classifier.
        num_classes: Number of label values K. Inferred from the labels if omitted, as the
            largest label + 1, which must not exceed the number of labels given
            (``n_a * V + n_b * V``): more classes than labels are no class indices ``0..K-1``,
            and their one-hot columns would be mostly empty (and may not fit in memory).

    Returns:
        The held-out accuracy: about 0.5 (or the larger set's share, if unbalanced) when the
        two sets are indistinguishable, near 1 when they are clearly different.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.randn(100, 2, 1, generator=g)
        >>> Y = torch.zeros(100, 2, dtype=torch.long)
        >>> classifier_two_sample_test(X, Y, X + 5.0, Y) > 0.95
        True
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import train_test_split

    # scikit-learn's random_state is a 32-bit seed.
    seed = as_seed(seed, maximum=2**32 - 1)
    (X_a, shape_a), (X_b, shape_b) = _c2st_signals(X_a, "X_a"), _c2st_signals(X_b, "X_b")
    if shape_a != shape_b:
        raise ValueError(f"X_a and X_b must have the same shape per sample ([V, C] or [d]), got {shape_a} and {shape_b}")
    if num_classes is not None:
        num_classes = as_count(num_classes, "num_classes")
    num_nodes = shape_a[0] if len(shape_a) >= 2 else None
    Y_a = _c2st_labels(Y_a, X_a.shape[0], num_nodes, num_classes, "Y_a")
    Y_b = _c2st_labels(Y_b, X_b.shape[0], num_nodes, num_classes, "Y_b")
    if Y_a.shape[1] != Y_b.shape[1]:  # only signals [n, d] leave V to the labels
        raise ValueError(f"Y_a and Y_b must label the same number of nodes V, got {Y_a.shape[1]} and {Y_b.shape[1]}")
    if num_classes is None:
        num_classes = _c2st_num_classes(Y_a, Y_b)
    A = _c2st_features(X_a, Y_a, num_classes)
    B = _c2st_features(X_b, Y_b, num_classes)
    if min(len(A), len(B)) < 2:
        raise ValueError("each set needs at least 2 samples")
    features = np.concatenate([A, B])
    target = np.concatenate([np.zeros(len(A), int), np.ones(len(B), int)])
    f_train, f_test, t_train, t_test = train_test_split(
        features, target, test_size=0.5, stratify=target, random_state=seed
    )
    clf = HistGradientBoostingClassifier(random_state=seed).fit(f_train, t_train)
    return float(math.fsum(clf.predict(f_test) == t_test) / len(t_test))
