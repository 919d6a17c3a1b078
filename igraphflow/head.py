r"""The node classifier: a softmax layer on fixed features of the latent :math:`H` (and the input).

:class:`~igraphflow.ConditionalGraphFlow` fits it after its blocks, on the encoded training
signals (with ``head_input``, the standardised signals beside them, as more node features).
The features are :math:`H_v` itself (``classifier="linear"``) or its means over
neighbourhoods of several hop radii (:func:`graph_head`), with the pairwise products of the
node features where they predict held-out labels better (:func:`fit_head`). Fixed features keep
the fit convex (:func:`~igraphflow.separability.fit_softmax`).
"""

from __future__ import annotations

__all__ = [
    "LATEST_MIN_SIGNALS", "MAX_PRODUCT_FEATURES", "fit_head", "graph_head", "head_rows", "latest_losses",
    "products_validate", "with_products",
]

import copy
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ._chunks import chunk_size, in_chunks
from ._evidence import beats
from ._random import draw
from .nn import HopMeans
from .separability import MAX_ROWS, fit_softmax

LATEST_MIN_SIGNALS = 20
r"""The fewest signals whose latest tenth :func:`latest_losses` scores: a tenth of fewer tells no gain from chance."""

MAX_PRODUCT_FEATURES = 8
r"""The most node features whose pairwise products the graph head may add to its features
(:class:`~igraphflow.nn.HopMeans`, ``products``): their number grows as ``C^2``."""

Signals = tuple[Tensor, Tensor]
r"""Latent signals ``[N, V, C]`` and their labels ``[N, V]``."""


def graph_head(edge_index: Tensor, num_nodes: int, num_features: int, num_classes: int, orders: Sequence[int]) -> nn.Sequential:
    r"""The graph head: a linear layer on the hop means of the node features, ``[*, V, C] -> [*, V, K]`` logits.

    Example:
        >>> head = graph_head(torch.tensor([[0, 1], [1, 0]]), 2, 3, 4, orders=(0, 1))
        >>> head(torch.randn(5, 2, 3)).shape
        torch.Size([5, 2, 4])
    """
    means = HopMeans(edge_index, num_nodes, orders)
    return nn.Sequential(means, nn.Linear(len(means.orders) * num_features, num_classes))


def with_products(head: nn.Sequential, num_features: int, products: bool) -> nn.Sequential:
    r"""The graph head ``head`` with (or without) the products of its ``num_features`` node
    features: its weights are those of ``head``, zero on products it did not have. No random
    numbers are taken.

    Example:
        >>> head = graph_head(torch.tensor([[0, 1], [1, 0]]), 2, 3, 4, orders=(0, 1))
        >>> wide = with_products(head, 3, True)
        >>> x = torch.randn(5, 2, 3)
        >>> wide[0].products, torch.allclose(wide(x), head(x))
        (True, True)
    """
    means, layer = head
    wide = means.with_products(True)
    plain = wide.plain_columns(num_features).to(layer.weight.device)
    weight = layer.weight
    if not means.products:
        weight = weight.new_zeros(layer.out_features, plain.numel())
        weight[:, plain] = layer.weight
    if not products:
        weight = weight[:, plain]
    # Not initialised: the weights come from the layer given.
    linear = nn.utils.skip_init(nn.Linear, weight.size(1), layer.out_features, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(layer.bias)
    return nn.Sequential(wide if products else means.with_products(False), linear)


def head_rows(features_of: nn.Module, h: Tensor, y: Tensor, generator: torch.Generator) -> Signals:
    r"""The features ``features_of(h)`` of the node rows of ``h [N, V, C]`` and their labels.

    Of more than :data:`~igraphflow.separability.MAX_ROWS` rows, that many drawn at random,
    their features computed a chunk of signals at a time: a few features need no more rows, the
    full-batch fit of all of them took gigabytes, and whole signals instead of rows could leave
    a rare class out.

    Returns:
        ``(features [R, F], labels [R])``.
    """
    V = h.size(1)
    if h.size(0) * V <= MAX_ROWS:
        return features_of(h).flatten(0, 1), y.flatten()
    rows = draw(torch.randint, h.size(0) * V, (MAX_ROWS,), device=h.device, generator=generator)
    signal, node = rows // V, rows % V
    features = None
    size = chunk_size(h)
    for start in range(0, h.size(0), size):
        inside = ((signal >= start) & (signal < start + size)).nonzero().squeeze(1)
        chunk = features_of(h[start : start + size])
        if features is None:
            features = h.new_empty(MAX_ROWS, chunk.size(-1))
        features[inside] = chunk[signal[inside] - start, node[inside]]
    return features, y[signal, node]


def _signal_cross_entropy(logits_of: Callable[[Tensor], Tensor], h: Tensor, y: Tensor) -> Tensor:
    r"""The mean cross-entropy over the nodes of each signal, ``[N]`` in float64, of the logits
    ``logits_of(h) [N, V, K]``, a chunk of signals at a time."""

    def losses(h_chunk: Tensor, y_chunk: Tensor) -> Tensor:
        logits = logits_of(h_chunk)
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), y_chunk, reduction="none").double().mean(1)

    return in_chunks(losses, h, y)


def products_validate(head: nn.Sequential, num_features: int, train: Signals, val: Signals, generator: torch.Generator) -> bool:
    r"""Whether the graph head with the products of the node features, fitted on ``train``, beats
    the one without on ``val`` by more than two standard errors of the per-signal difference in
    cross-entropy (never with fewer than two validation signals: no spread to tell a gain from
    chance)."""
    (h, y), (h_val, y_val) = train, val
    if h_val.size(0) < 2:
        return False
    # The features with the products hold those without: one draw of rows serves both heads.
    means, wide = with_products(head, num_features, True)
    plain = means.plain_columns(num_features).to(h.device)
    features, targets = head_rows(means, h.detach(), y, generator)
    losses = []
    for layer, columns in ((copy.deepcopy(head[-1]), plain), (wide, torch.ones_like(plain))):
        fit_softmax(layer, features[:, columns], targets)
        losses.append(_signal_cross_entropy(lambda part: layer(means(part)[..., columns]), h_val.detach(), y_val))
    return beats(-losses[1], -losses[0])  # the products' cross-entropy lower beyond the noise


def fit_head(head: nn.Module, num_features: int, train: Signals, val: Signals, generator: torch.Generator) -> nn.Module:
    r"""Fits ``head`` (a linear layer, or a :func:`graph_head`) by cross-entropy on the training
    and validation signals together: a convex fit needs no held-out signals to stop it.

    A graph head takes the products of the node features too (up to
    :data:`MAX_PRODUCT_FEATURES` features) only where :func:`products_validate`: they add
    features, and under a drift between periods a quadratic classifier extrapolates worse
    (``experiments/RESULTS.md``).

    Returns:
        The fitted head: ``head`` itself, or a new one with the products.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randint(2, (200, 3), generator=g)
        >>> h = torch.randn(200, 3, 2, generator=g) + 2.0 * y.unsqueeze(-1)
        >>> head = graph_head(torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), 3, 2, 2, orders=(0, 1))
        >>> head = fit_head(head, 2, (h[:150], y[:150]), (h[150:], y[150:]), g)
        >>> bool((head(h).argmax(-1) == y).float().mean() > 0.9)
        True
    """
    h, y = torch.cat([train[0], val[0]]).detach(), torch.cat([train[1], val[1]])
    if not isinstance(head, nn.Sequential):
        fit_softmax(head, *head_rows(nn.Identity(), h, y, generator))
        return head
    if num_features <= MAX_PRODUCT_FEATURES and products_validate(head, num_features, train, val, generator):
        head = with_products(head, num_features, True)
    means, layer = head
    fit_softmax(layer, *head_rows(means, h, y, generator))
    return head


def latest_losses(head: nn.Module, num_features: int, h: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
    r"""The cross-entropy of a copy of ``head`` on each of the latest tenth of the signals
    ``h [N, V, C]`` (its last rows), the mean over its nodes, ``[N // 10]`` in float64; the
    copy fitted by :func:`fit_head` on the others (the last tenth of those validating the
    products). ``head`` itself is not changed.

    Signals in time order make this a forecast of how the head carries to later signals; in
    random order, a plain held-out score.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randint(2, (200, 3), generator=g)
        >>> h = torch.randn(200, 3, 2, generator=g) + 2.0 * y.unsqueeze(-1)
        >>> head = graph_head(torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), 3, 2, 2, orders=(0, 1))
        >>> losses = latest_losses(head, 2, h, y, g)
        >>> losses.shape, bool(losses.mean() < 0.3)
        (torch.Size([20]), True)
    """
    test = max(1, round(0.1 * h.size(0)))
    early = h.size(0) - test
    val = max(1, round(0.1 * early))
    train = (h[: early - val], y[: early - val])
    fitted = fit_head(copy.deepcopy(head), num_features, train, (h[early - val : early], y[early - val : early]), generator)
    return _signal_cross_entropy(fitted, h[early:].detach(), y[early:])
