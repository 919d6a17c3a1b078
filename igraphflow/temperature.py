r"""The sampling temperature: how widely to draw the latent noise so that decoded signals are as
spread as real ones.

A flow trained for a limited time is not the exact inverse of the data's law: Gaussian draws
around the class means, even with the fitted noise covariance, need not decode to signals as
spread as the training signals (on solar_hope they are far more concentrated; on the simulated
graph_moons a little wider; ``experiments/RESULTS.md``, ``benchmarks/results/core.md``). Scaling the latent noise by a temperature :math:`t` and choosing
:math:`t` where the decoded draws are closest to real signals, in the energy distance, corrects
that spread with one number; an exact flow gets :math:`t = 1`. The temperature changes sampling
only, never the likelihood. A flow whose fitted noise is a mixture (which fits the shape of the
encoded signals, not just their covariance) samples it at :math:`t = 1`.
"""

from __future__ import annotations

__all__ = ["TEMPERATURE_BOUNDS", "energy_temperature"]

from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import Tensor

from .metrics import energy_distance

TEMPERATURE_BOUNDS = (0.5, 2.0)
r"""The interval searched by :func:`energy_temperature`."""


@torch.no_grad()
def energy_temperature(
    draw: Callable[[float], Tensor],
    X: Tensor,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
    tolerance: float = 0.02,
) -> float:
    r"""The temperature :math:`t` minimizing the energy distance between ``draw(t)`` and ``X``.

    ``draw`` must use the same noise at every call (a fixed seed), so that the distance is a
    smooth function of :math:`t`, searched by Brent's bounded method to within ``tolerance``.
    Draws that are not finite count as infinitely far; 1 is kept unless the search finds a
    temperature whose draws are closer.

    Arguments:
        draw: ``t -> [n, V, C]`` signals decoded from latent noise scaled by ``t``, one per
            row of ``X`` and for its labels.
        X: The real signals ``[n, V, C]``, ``n >= 2``.
        bounds: The interval of :math:`t`.
        tolerance: The absolute precision of :math:`t`.

    Example:
        >>> noise = torch.randn(500, 1, 2, generator=torch.Generator().manual_seed(0))
        >>> X = 1.5 * torch.randn(500, 1, 2, generator=torch.Generator().manual_seed(1))
        >>> round(energy_temperature(lambda t: t * noise, X), 1)
        1.5
    """

    def distance(t: float) -> float:
        sample = draw(t)
        if not torch.isfinite(sample).all():
            return float("inf")
        return energy_distance(sample, X)

    # An infinite distance makes Brent's parabolic step NaN, which it rejects for a golden-section step.
    with np.errstate(invalid="ignore"):
        result = minimize_scalar(distance, bounds=bounds, method="bounded", options={"xatol": tolerance})
    # 1 unless another temperature is closer: draws that do not depend on t keep their scale.
    if bounds[0] <= 1.0 <= bounds[1] and not result.fun < distance(1.0):
        return 1.0
    return float(result.x)
