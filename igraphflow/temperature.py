r"""The sampling temperature: how widely to draw the latent noise so that decoded signals are as
spread as real ones.

A flow trained for a limited time is not the exact inverse of the data's law: Gaussian draws
around the class means, even with the fitted noise covariance, need not decode to signals as
spread as the training signals (on solar_hope they are far more concentrated; on the simulated
graph_moons a little wider; ``experiments/RESULTS.md``, ``benchmarks/results/core.md``). Scaling the latent noise by a temperature :math:`t` and choosing
:math:`t` where the decoded draws are closer to real signals than at 1 in the energy distance,
beyond the noise of that statistic, corrects that spread with one number; an exact flow gets
:math:`t = 1`. The temperature changes sampling
only, never the likelihood. A flow whose fitted noise is a mixture (which fits the shape of the
encoded signals, not just their covariance) samples it at :math:`t = 1`.
"""

from __future__ import annotations

__all__ = ["TEMPERATURE_BOUNDS", "energy_temperature"]

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import Tensor

from ._checks import as_real
from .metrics import _as_samples, _centred_and_scaled, energy_distance

TEMPERATURE_BOUNDS = (0.5, 2.0)
r"""The interval searched by :func:`energy_temperature`."""

_CHUNK = 1024


def _energy_influence(G: Tensor, X: Tensor) -> Tensor:
    r"""Per pair ``i`` of ``G, X [n, d]`` (float64), the terms of the paired energy statistic
    that depend on the draws: :math:`\psi_i = \frac{1}{n-1} \sum_{j \neq i} \big(\|G_i - X_j\|
    + \|G_j - X_i\| - \|G_i - G_j\|\big)`, ``[n]``. Their mean is the statistic up to a term of
    ``X`` alone; the spread of the difference of two of them gives the standard error of the
    difference of two statistics (the first-order term of a U-statistic)."""
    # Distances taken around the signals' mean, in units of their size, as in the metrics.
    G, X, scale = _centred_and_scaled(G, X)
    n = G.size(0)
    rows, columns, within = G.new_zeros(n), G.new_zeros(n), G.new_zeros(n)
    for start, g in zip(range(0, n, _CHUNK), G.split(_CHUNK)):
        to_X = torch.cdist(g, X)
        rows[start : start + len(g)] = to_X.sum(1)
        columns += to_X.sum(0)
        within[start : start + len(g)] = torch.cdist(g, G).sum(1)
    matched = (G - X).norm(dim=1)
    return (rows + columns - 2 * matched - within) * scale / (n - 1)


def _standard_error(gain: Tensor) -> Tensor:
    r"""The standard error of the difference of two paired energy statistics, from the
    differences ``gain [n]`` of their :func:`_energy_influence` terms: a U-statistic of degree 2
    varies as :math:`4 \operatorname{Var}(\psi) / n` to first order."""
    return (4 * gain.var() / len(gain)).sqrt()


@torch.no_grad()
def energy_temperature(
    draw: Callable[[float], Tensor],
    X: Tensor,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
    tolerance: float = 0.02,
    standard_errors: float = 2.0,
) -> float:
    r"""The temperature :math:`t` minimizing the energy distance between ``draw(t)`` and ``X``,
    if it is closer than :math:`t = 1` beyond the noise of the statistic; else 1.

    Draw ``i`` is made for the labels of ``X[i]``, so the distance leaves those dependent pairs
    out (:func:`~igraphflow.metrics.energy_distance` with ``paired=True``); with them, narrower
    draws would be favoured. The minimum is searched by Brent's bounded method to within
    ``tolerance``; ``draw`` must use the same noise at every call (a fixed seed), so that the
    distance is a smooth function of :math:`t`. The statistic of a few hundred signals is flat
    near its minimum: the minimum is kept only when its gain over :math:`t = 1` exceeds
    ``standard_errors`` standard errors (over the pairs of draw and signal), so that a flow whose
    draws are as spread as the data keeps 1 instead of whatever temperature one set of draws
    favours. Draws that are not finite count as infinitely far; without 1 in ``bounds``, or when
    the draws at 1 are not finite, the minimum is kept as it is.

    Arguments:
        draw: ``t -> [n, V, C]`` signals decoded from latent noise scaled by ``t``, one per
            row of ``X`` and for its labels.
        X: The real signals ``[n, V, C]`` (or ``[n, d]``), ``n >= 3``.
        bounds: The interval of :math:`t`.
        tolerance: The absolute precision of :math:`t`.
        standard_errors: How many standard errors the gain must clear (0: the plain minimum).

    Example:
        >>> noise = torch.randn(2000, 1, 2, generator=torch.Generator().manual_seed(0))
        >>> X = 1.5 * torch.randn(2000, 1, 2, generator=torch.Generator().manual_seed(1))
        >>> round(energy_temperature(lambda t: t * noise, X), 1)
        1.5
        >>> X = torch.randn(2000, 1, 2, generator=torch.Generator().manual_seed(2))
        >>> energy_temperature(lambda t: t * noise, X), round(energy_temperature(lambda t: t * noise, X, standard_errors=0), 2)
        (1.0, 1.01)
    """
    X = _as_samples(X, "X")
    if len(X) < 3:  # two pairs have one standard error term between them: none to estimate
        raise ValueError(f"energy_temperature needs at least 3 signals, got {len(X)}")
    standard_errors = as_real(standard_errors, "standard_errors", "[0, inf)")

    @functools.cache  # the chosen temperature and 1 were decoded during the search already
    def drawn(t: float) -> Tensor | None:
        sample = torch.as_tensor(draw(t))
        rows = sample.flatten(1).shape if sample.dim() >= 2 else tuple(sample.shape)
        if rows != X.shape:
            raise ValueError(f"draw(t) must give one signal per row of X, {tuple(X.shape)} flattened, got {tuple(rows)}")
        return _as_samples(sample, "draw(t)") if torch.isfinite(sample).all() else None

    def distance(t: float) -> float:
        sample = drawn(t)
        return math.inf if sample is None else energy_distance(sample, X, paired=True)

    # An infinite distance makes Brent's parabolic step NaN, which it rejects for a golden-section step.
    with np.errstate(invalid="ignore"):
        result = minimize_scalar(distance, bounds=bounds, method="bounded", options={"xatol": tolerance})
    chosen = float(result.x)
    if not bounds[0] <= 1.0 <= bounds[1]:
        return chosen
    if not math.isfinite(result.fun):
        return 1.0
    at_one = drawn(1.0)
    if at_one is None:
        return chosen
    # Draws that do not depend on t gain exactly 0 and keep 1.
    gain = _energy_influence(drawn(chosen), X) - _energy_influence(at_one, X)
    return chosen if gain.mean() + standard_errors * _standard_error(gain) < 0 else 1.0
