r"""How far apart the classes of node signals are: the distance that places the latent means.

A linear softmax classifier on the neighbourhood means of ``X`` (:class:`~igraphflow.nn.HopMeans`)
is fitted to the training signals; its balanced accuracy ``a`` is what the Bayes rule of two
unit-variance Gaussians reaches when their means lie ``2 Phi^{-1}(a)`` apart. That distance,
in units of ``sigma``, is where :class:`~igraphflow.ConditionalGraphFlow` starts the latent
means (``initial_separation="auto"``). Means that start closer than the classes are separable
never get apart: each block pulls them to where the encoded classes are, and the flow, aiming
at means that overlap, does not separate the classes either (``experiments/RESULTS.md``,
"Where the latent means start").
"""

from __future__ import annotations

__all__ = ["MAX_ROWS", "REFERENCE_SEPARATION", "fit_softmax", "linear_separability", "separation_of_accuracy"]

import math
from collections.abc import Sequence
from statistics import NormalDist

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .nn import HopMeans

IQR_PER_STD = 2 * NormalDist().inv_cdf(0.75)  # a Gaussian's interquartile range, about 1.349

MAX_ROWS = 2**18
r"""The most node rows (signals times nodes) :func:`linear_separability` fits on; the first
signals are taken."""


def fit_softmax(layer: nn.Linear, features: Tensor, targets: Tensor, max_iter: int = 200, weight_decay: float = 1e-4) -> nn.Linear:
    r"""Multinomial logistic regression of ``targets [n]`` on fixed ``features [n, F]``, in place.

    Convex, so full-batch L-BFGS reaches its optimum in a few dozen steps; a small weight decay
    keeps the weights finite when the classes are separable. The layer is fitted on the
    standardised features and then folded back to take the features as they are (only scaled
    for a layer without a bias, which cannot take the centring back): L-BFGS in float32 does
    not move from the start on features far from zero (counts near 1000 stayed at chance), and
    the weight decay then weighs every feature alike, whatever its units. Every column is
    centred on its median and scaled by its interquartile range (in units of a Gaussian's
    standard deviation; by the standard deviation where that range is 0, not at all where the
    column is constant): scaled by the standard deviation, one extreme signal among a hundred
    shrank all the others to near zero, and the weight decay then kept the layer at one class.

    Example:
        >>> features = torch.tensor([[1000.0], [1001.0], [1002.0], [1003.0]])
        >>> layer = fit_softmax(nn.Linear(1, 2), features, torch.tensor([0, 0, 1, 1]))
        >>> layer(features).argmax(-1).tolist()
        [0, 0, 1, 1]
    """
    wide = features.double()
    centre, scale = _robust_centre_and_scale(wide)
    if layer.bias is None:
        centre = torch.zeros_like(centre)
    dtype = layer.weight.dtype
    standardised = ((wide - centre) / scale).to(dtype)
    centre, scale = centre.to(dtype), scale.to(dtype)
    start = [parameter.detach().clone() for parameter in layer.parameters()]
    with torch.no_grad():  # the same function of the standardised features
        if layer.bias is not None:
            layer.bias += layer.weight @ centre
        layer.weight *= scale
    try:
        _fit_standardised(layer, standardised, targets, max_iter, weight_decay)
    except BaseException:
        with torch.no_grad():  # a failed fit leaves the layer as it was
            for parameter, value in zip(layer.parameters(), start):
                parameter.copy_(value)
        raise
    with torch.no_grad():
        layer.weight /= scale
        if layer.bias is not None:
            layer.bias -= layer.weight @ centre
    return layer


def _robust_centre_and_scale(features: Tensor) -> tuple[Tensor, Tensor]:
    # kthvalue, unlike quantile, takes any number of rows.
    n = features.size(0)
    lower, upper = (features.kthvalue(max(1, math.ceil(q * n)), dim=0).values for q in (0.25, 0.75))
    scale = torch.where(upper > lower, (upper - lower) / IQR_PER_STD, features.std(0, correction=0))
    return features.median(0).values, torch.where(scale > 0, scale, torch.ones_like(scale))


def _fit_standardised(layer: nn.Linear, features: Tensor, targets: Tensor, max_iter: int, weight_decay: float):
    optimizer = torch.optim.LBFGS(layer.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(layer(features), targets) + weight_decay * layer.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)


def separation_of_accuracy(accuracy: float) -> float:
    r"""The distance :math:`2 \Phi^{-1}(a)` between the means of two unit-variance Gaussians whose
    Bayes rule (equal priors) is right with probability ``a``; ``0`` when ``a <= 1/2``.

    Example:
        >>> round(separation_of_accuracy(0.9999), 2)  # the iGNN reference's separation
        7.44
    """
    if accuracy <= 0.5:
        return 0.0
    return 2.0 * NormalDist().inv_cdf(min(accuracy, 1.0 - 1e-12))


REFERENCE_SEPARATION = separation_of_accuracy(0.9999)
r"""The means' minimum separation of the iGNN reference code, :math:`2\Phi^{-1}(0.9999) \approx 7.44`."""


@torch.no_grad()
def linear_separability(
    X: Tensor, Y: Tensor, edge_index: Tensor, num_classes: int, orders: Sequence[int] = (0, 1, 2)
) -> float:
    r"""The separation, in units of the noise, that the classes of ``X`` show to a linear classifier.

    Fits a softmax layer on the ``orders``-hop neighbourhood means of ``X [N, V, C]`` against
    ``Y [N, V]`` and returns :func:`separation_of_accuracy` of its balanced accuracy (the mean
    over the classes present of the fraction of their nodes classified right) on the same
    signals. No random numbers are drawn.

    Example:
        >>> edge_index = torch.tensor([[0, 1], [1, 0]])
        >>> _ = torch.manual_seed(0)
        >>> Y = torch.randint(0, 2, (5000, 2))
        >>> X = torch.randn(5000, 2, 1) + 4.0 * Y.unsqueeze(-1)  # unit noise, means 4 apart
        >>> round(linear_separability(X, Y, edge_index, num_classes=2))
        4
    """
    num_nodes = X.size(1)
    keep = max(1, MAX_ROWS // num_nodes)
    X, Y = X[:keep], Y[:keep]
    means = HopMeans(edge_index, num_nodes, orders).to(X.device)
    features, targets = means(X).flatten(0, 1), Y.flatten()
    # A zero start draws nothing (and fit_softmax makes the fit the same on any scale).
    layer = nn.utils.skip_init(nn.Linear, features.size(1), num_classes, device=X.device, dtype=features.dtype)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    # In float64: the folded weights and bias of features far from zero nearly cancel.
    predicted = fit_softmax(layer, features, targets).double()(features.double()).argmax(-1)
    recalls = [(predicted[targets == k] == k).float().mean() for k in range(num_classes) if (targets == k).any()]
    return separation_of_accuracy(torch.stack(recalls).mean().item())
