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

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import Tensor

from ._checks import as_real
from .metrics import energy_distance

TEMPERATURE_BOUNDS = (0.5, 2.0)
r"""The interval searched by :func:`energy_temperature`."""

_CHUNK = 1024


def _energy_influence(G: Tensor, X: Tensor) -> Tensor:
    r"""Per pair ``i``, the terms of the paired energy statistic that depend on the draws:
    :math:`\psi_i = \frac{1}{n-1} \sum_{j \neq i} \big(\|G_i - X_j\| + \|G_j - X_i\|
    - \|G_i - G_j\|\big)`, ``[n]``, whose mean is the statistic up to a term of ``X`` alone
    and whose spread gives its standard error (the first-order term of a U-statistic)."""
    G, X = G.flatten(1).double(), X.flatten(1).double()
    n = G.size(0)
    rows, columns, within = G.new_zeros(n), G.new_zeros(n), G.new_zeros(n)
    for start, g in zip(range(0, n, _CHUNK), G.split(_CHUNK)):
        to_X = torch.cdist(g, X)
        rows[start : start + len(g)] = to_X.sum(1)
        columns += to_X.sum(0)
        within[start : start + len(g)] = torch.cdist(g, G).sum(1)
    matched = (G - X).norm(dim=1)
    return (rows + columns - 2 * matched - within) / (n - 1)


@torch.no_grad()
def energy_temperature(
    draw: Callable[[float], Tensor],
    X: Tensor,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
    tolerance: float = 0.02,
    standard_errors: float = 2.0,
) -> float:
    r"""The temperature :math:`t` whose draws ``draw(t)`` are surely closer to ``X`` than at 1,
    in the energy distance.

    The statistic of a few hundred signals is flat near its minimum: taken as it is, a flow
    whose draws are as spread as the data gets whatever temperature the noise of one set of
    draws favours. So the gain over :math:`t = 1` is counted at its upper confidence bound,
    ``standard_errors`` standard errors above its estimate (over the pairs of draw and signal),
    and :math:`t` minimizes that bound: 1 unless some temperature is closer beyond the noise,
    and otherwise no further from 1 than the evidence carries. Draw ``i`` is made for the labels
    of ``X[i]``, so the distance leaves those dependent pairs out
    (:func:`~igraphflow.metrics.energy_distance` with ``paired=True``). Without 1 in ``bounds``,
    or when the draws at 1 are not finite, the distance itself is minimized.

    ``draw`` must use the same noise at every call (a fixed seed), so that the distance is a
    smooth function of :math:`t`, searched by Brent's bounded method to within ``tolerance``.
    Draws that are not finite count as infinitely far.

    Arguments:
        draw: ``t -> [n, V, C]`` signals decoded from latent noise scaled by ``t``, one per
            row of ``X`` and for its labels.
        X: The real signals ``[n, V, C]``, ``n >= 2``.
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
    standard_errors = as_real(standard_errors, "standard_errors", "[0, inf)")
    at_one = draw(1.0) if bounds[0] <= 1.0 <= bounds[1] else None
    if at_one is None or not torch.isfinite(at_one).all():

        def objective(t: float) -> float:
            sample = draw(t)
            return energy_distance(sample, X, paired=True) if torch.isfinite(sample).all() else math.inf

    else:
        reference = _energy_influence(at_one, X)

        def objective(t: float) -> float:
            sample = draw(t)
            if not torch.isfinite(sample).all():
                return math.inf
            gain = _energy_influence(sample, X) - reference
            return (gain.mean() + standard_errors * (4 * gain.var() / len(gain)).sqrt()).item()

    # An infinite objective makes Brent's parabolic step NaN, which it rejects for a golden-section step.
    with np.errstate(invalid="ignore"):
        result = minimize_scalar(objective, bounds=bounds, method="bounded", options={"xatol": tolerance})
    if at_one is None:
        return float(result.x)
    if torch.isfinite(at_one).all():
        # 1 when no temperature is surely closer (draws that do not depend on t gain exactly 0).
        return float(result.x) if result.fun < 0 else 1.0
    return float(result.x) if math.isfinite(result.fun) else 1.0
