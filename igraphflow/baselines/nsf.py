r"""Neural spline flow baseline: a zuko NSF conditioned on the one-hot labels of all nodes."""

from __future__ import annotations

__all__ = ["NSFBaseline"]

from typing import Any

import torch
import zuko
from torch import Tensor, nn

from .._checks import as_count, as_flag
from .._random import draw
from ._common import LikelihoodBaseline


class NSFBaseline(LikelihoodBaseline):
    r"""Conditional neural spline flow on the flattened signal, blind to the graph.

    The signal ``X`` ``[V, C]`` is flattened to ``V * C`` features and modelled by a masked
    autoregressive flow with monotonic rational-quadratic spline transforms
    (:class:`zuko.flows.NSF`), whose context is the one-hot label pattern flattened to
    ``V * K`` numbers. The graph is not used: the baseline measures what a generic conditional
    density estimator achieves.

    Arguments:
        edge_index: The graph ``[2, E]`` (checked, kept for the common interface, unused).
        num_nodes: Number of nodes V.
        num_features: Number of features per node C.
        num_classes: Number of node labels K.
        transforms: Number of autoregressive transforms.
        hidden_features: Hidden widths of each transform's masked MLP.
        bins: Number of spline bins.
        randperm: Whether to permute the features randomly between transforms (otherwise
            the order alternates).
        kwargs: Common settings of :class:`~igraphflow.baselines._common.ConditionalBaseline`:
            ``seed``, ``device``, ``dtype``, ``standardize``, ``batch_size``, ``lr``,
            ``patience``.

    Shapes:
        ``fit(X [N, V, C], Y [N, V])``, ``sample(Y [N, V]) -> [N, V, C]``,
        ``log_prob(X [N, V, C], Y [N, V]) -> [N]``.

    References:
        | Neural Spline Flows (Durkan et al., 2019)
        | https://arxiv.org/abs/1906.04032

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> X, Y = torch.randn(64, 3, 2, generator=g), torch.randint(2, (64, 3), generator=g)
        >>> edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> model = NSFBaseline(edge_index, 3, 2, 2, seed=0)
        >>> model = model.fit(X, Y, max_epochs=1, progress=False)
        >>> model.sample(Y[:5]).shape
        torch.Size([5, 3, 2])
        >>> model.log_prob(X[:5], Y[:5]).shape
        torch.Size([5])
    """

    _settings = ("transforms", "hidden_features", "bins")

    def __init__(
        self,
        edge_index: Any,
        num_nodes: int,
        num_features: int,
        num_classes: int,
        *,
        transforms: int = 3,
        hidden_features: tuple[int, ...] = (64, 64),
        bins: int = 8,
        randperm: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(edge_index, num_nodes, num_features, num_classes, **kwargs)
        self.transforms = as_count(transforms, "transforms")
        self.hidden_features = tuple(as_count(h, "hidden_features") for h in hidden_features)
        self.bins = as_count(bins, "bins")
        self.randperm = as_flag(randperm, "randperm")

    def _build(self) -> nn.Module:
        return zuko.flows.NSF(
            features=self.num_nodes * self.num_features,
            context=self.num_nodes * self.num_classes,
            bins=self.bins,
            transforms=self.transforms,
            hidden_features=self.hidden_features,
            randperm=self.randperm,
        )

    def _log_prob_std(self, x: Tensor, Y: Tensor) -> Tensor:
        return self.model_(self._onehot(Y).flatten(1)).log_prob(x)

    def _sample_std(self, Y: Tensor, generator: torch.Generator) -> Tensor:
        dist = self.model_(self._onehot(Y).flatten(1))
        base = dist.base  # a diagonal Gaussian
        eps = draw(torch.randn, base.mean.shape, device=self.device, generator=generator, dtype=self.dtype)
        z = base.mean + base.stddev * eps
        return dist.transform.inv(z)
