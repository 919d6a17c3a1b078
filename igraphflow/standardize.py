r"""A fixed affine map that standardises each node's features: the first step of the flow."""

from __future__ import annotations

__all__ = ["Standardize"]

import torch
from torch import Tensor, nn


class Standardize(nn.Module):
    r"""The map :math:`z = (x - m) / s`, per node and feature, fitted once to training signals.

    The blocks then see signals of unit scale whatever the units of :math:`X` (watts, vehicle
    counts, 1e-8 or 1e8), which the latent's :math:`\sigma`, the solver's steps and the
    finite-difference divergence assume. Its log-determinant, :math:`-\sum_{v, c} \log s_{vc}`,
    enters the likelihood. Until fitted it is the identity.

    Arguments:
        num_nodes: ``V``.
        num_features: ``C``.

    Example:
        >>> standardize = Standardize(3, 2)
        >>> X = torch.randn(100, 3, 2) * 1e-6 - 3e-6
        >>> _ = standardize.fit_(X)
        >>> torch.allclose(standardize.inverse(standardize(X)), X), bool(standardize(X).std(0).sub(1).abs().max() < 1e-2)
        (True, True)
    """

    def __init__(self, num_nodes: int, num_features: int):
        super().__init__()
        self.register_buffer("loc", torch.zeros(num_nodes, num_features))
        self.register_buffer("scale", torch.ones(num_nodes, num_features))

    @torch.no_grad()
    def fit_(self, x: Tensor) -> Standardize:
        r"""Sets :math:`m` and :math:`s` to the mean and standard deviation of ``x [N, V, C]`` over
        its samples.

        A feature that does not vary at one node takes the median :math:`s` of the same feature
        at the nodes where it varies (else of every varying feature; :math:`s = 1` when none
        varies, as with one sample): a scale of 1 would tie the spread the flow gives it to the
        units of ``x``.
        """
        wide = x.double()  # float32 sums of many large values lose the small spread
        loc, scale = wide.mean(0), wide.std(0, correction=0)
        # A spread of a few units in the last place of the values is rounding, not signal.
        constant = scale <= 8 * torch.finfo(x.dtype).eps * loc.abs()
        varying = scale[~constant]
        fallback = varying.median() if len(varying) else torch.ones((), dtype=scale.dtype)
        for c in range(scale.size(1)):
            same_feature = scale[:, c][~constant[:, c]]
            scale[:, c][constant[:, c]] = same_feature.median() if len(same_feature) else fallback
        self.loc.copy_(loc)
        self.scale.copy_(scale)
        return self

    def reset_(self):
        r"""Back to the identity."""
        self.loc.zero_()
        self.scale.fill_(1.0)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.loc) / self.scale

    def inverse(self, z: Tensor) -> Tensor:
        r"""The signals :math:`x = s z + m` whose standardised values are ``z``."""
        return z * self.scale + self.loc

    def log_abs_det(self) -> Tensor:
        r""":math:`\log |\det \partial z / \partial x| = -\sum_{v, c} \log s_{vc}`, a scalar."""
        return -self.scale.log().sum()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Models saved before the flow standardised its input modelled X as it was.
        state_dict.setdefault(prefix + "loc", torch.zeros_like(self.loc))
        state_dict.setdefault(prefix + "scale", torch.ones_like(self.scale))
        scale = state_dict[prefix + "scale"]
        if isinstance(scale, Tensor) and not bool((scale > 0).all()):  # NaN fails too
            raise ValueError("the standardisation's scale must be positive everywhere: the state is not one a fit writes")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
