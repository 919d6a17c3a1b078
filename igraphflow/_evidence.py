r"""The library's rule for keeping a choice: a gain on held-out items beyond two standard errors."""

from __future__ import annotations

__all__ = ["beats"]

import numpy as np
from torch import Tensor


def _float64(values: Tensor | np.ndarray) -> np.ndarray:
    return values.detach().double().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values, dtype=np.float64)


def beats(scores: Tensor | np.ndarray, baseline: Tensor | np.ndarray) -> bool:
    r"""Whether held-out ``scores`` (higher is better: log-likelihoods, negated losses) gain on
    ``baseline`` (of the same items) by more than two standard errors of the mean gain; never
    from fewer than two items, which give no standard error.

    Example:
        >>> beats(np.array([1.0, 1.2, 0.9, 1.1]), np.zeros(4)), beats(np.array([1.0, -1.0, 0.5]), np.zeros(3))
        (True, False)
    """
    gain = _float64(scores) - _float64(baseline)
    if len(gain) < 2:
        return False
    return bool(gain.mean() > 2 * gain.std(ddof=1) / len(gain) ** 0.5)
