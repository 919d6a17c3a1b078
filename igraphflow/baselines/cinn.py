r"""Conditional invertible neural network baseline (FrEIA affine couplings)."""

from __future__ import annotations

__all__ = ["CINNBaseline", "SubnetMLP", "atan_clamp"]

import functools
import math
from typing import Any

import FrEIA.framework as Ff
import FrEIA.modules as Fm
import torch
from torch import Tensor, nn

from .._checks import as_count, as_real
from .._random import draw
from ._common import LikelihoodBaseline


def atan_clamp(u: Tensor) -> Tensor:
    r"""FrEIA's default soft clamp ``0.636 * atan(u)`` as a named function: FrEIA's own is a
    lambda, which would make the model impossible to pickle."""
    return 0.636 * torch.atan(u)


class SubnetMLP(nn.Sequential):
    r"""The coupling subnetwork: an MLP whose last layer starts at zero (identity coupling).

    A module class rather than a closure, so that models holding it can be pickled.

    Arguments:
        in_features: Input width (half of the signal plus the condition).
        out_features: Output width (scales and shifts).
        hidden: Hidden width.
        layers: Number of hidden layers.
    """

    def __init__(self, in_features: int, out_features: int, hidden: int = 128, layers: int = 2):
        widths = [in_features] + [hidden] * layers
        modules: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            modules += [nn.Linear(a, b), nn.ReLU()]
        last = nn.Linear(widths[-1], out_features)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        super().__init__(*modules, last)


class CINNBaseline(LikelihoodBaseline):
    r"""Conditional INN: GLOW affine couplings on the flattened signal, conditioned on labels.

    A :class:`FrEIA.framework.SequenceINN` of ``blocks`` :class:`FrEIA.modules.GLOWCouplingBlock`
    each followed by a fixed random permutation. Every coupling subnetwork receives the one-hot
    label pattern (``V * K`` numbers) next to its half of the signal; the latent is a standard
    Gaussian. The graph is not used.

    FrEIA's convention: ``model_(x, c=[c])`` returns ``(z, log|det dz/dx|)``, so
    ``log p(x | y) = log N(z; 0, I) + log|det dz/dx|``.

    Arguments:
        edge_index: The graph ``[2, E]`` (checked, kept for the common interface, unused).
        num_nodes: Number of nodes V.
        num_features: Number of features per node C (``V * C`` must be at least 2).
        num_classes: Number of node labels K.
        blocks: Number of coupling blocks.
        hidden: Hidden width of the subnetworks.
        layers: Hidden layers of the subnetworks.
        clamp: Soft clamp of the log-scales of the couplings.
        kwargs: Common settings of :class:`~igraphflow.baselines._common.ConditionalBaseline`:
            ``seed``, ``device``, ``dtype``, ``standardize``, ``batch_size``, ``lr``,
            ``patience``.

    Shapes:
        ``fit(X [N, V, C], Y [N, V])``, ``sample(Y [N, V]) -> [N, V, C]``,
        ``log_prob(X [N, V, C], Y [N, V]) -> [N]``.

    References:
        | Guided Image Generation with Conditional Invertible Neural Networks
        | (Ardizzone et al., 2019) https://arxiv.org/abs/1907.02392

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> X, Y = torch.randn(64, 3, 2, generator=g), torch.randint(2, (64, 3), generator=g)
        >>> edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> model = CINNBaseline(edge_index, 3, 2, 2, seed=0)
        >>> model = model.fit(X, Y, max_epochs=1, progress=False)
        >>> model.sample(Y[:5]).shape
        torch.Size([5, 3, 2])
        >>> model.log_prob(X[:5], Y[:5]).shape
        torch.Size([5])
    """

    _settings = ("blocks", "hidden", "layers", "clamp")

    def __init__(
        self,
        edge_index: Any,
        num_nodes: int,
        num_features: int,
        num_classes: int,
        *,
        blocks: int = 6,
        hidden: int = 128,
        layers: int = 2,
        clamp: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(edge_index, num_nodes, num_features, num_classes, **kwargs)
        if self.num_nodes * self.num_features < 2:
            raise ValueError(
                "CINNBaseline couples two halves of the signal: num_nodes * num_features must "
                f"be at least 2, got {self.num_nodes} * {self.num_features}"
            )
        self.blocks = as_count(blocks, "blocks")
        self.hidden = as_count(hidden, "hidden")
        self.layers = as_count(layers, "layers", minimum=0)
        self.clamp = as_real(clamp, "clamp", "(0, inf)")

    def _build(self) -> nn.Module:
        dim = self.num_nodes * self.num_features
        subnet = functools.partial(SubnetMLP, hidden=self.hidden, layers=self.layers)
        inn = Ff.SequenceINN(dim)
        for _ in range(self.blocks):
            inn.append(
                Fm.GLOWCouplingBlock,
                cond=0,
                cond_shape=(self.num_nodes * self.num_classes,),
                subnet_constructor=subnet,
                clamp=self.clamp,
                clamp_activation=atan_clamp,
            )
            inn.append(Fm.PermuteRandom)  # draws from NumPy's state, seeded by fit
        return inn

    def _log_prob_std(self, x: Tensor, Y: Tensor) -> Tensor:
        z, log_jac = self.model_(x, c=[self._onehot(Y).flatten(1)])
        base = -0.5 * (z * z).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)
        return base + log_jac

    def _sample_std(self, Y: Tensor, generator: torch.Generator) -> Tensor:
        dim = self.num_nodes * self.num_features
        z = draw(torch.randn, len(Y), dim, device=self.device, generator=generator, dtype=self.dtype)
        x, _ = self.model_(z, c=[self._onehot(Y).flatten(1)], rev=True, jac=False)
        return x
