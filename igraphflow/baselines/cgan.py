r"""Conditional GAN baseline with Chebyshev graph convolutions."""

from __future__ import annotations

__all__ = ["CGANBaseline", "ChebNet"]

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import ChebConv

from .._checks import as_count
from .._random import draw
from ..graph import symmetric_edges
from ._common import ConditionalBaseline, batched_edge_index, seeded, train_loop


class ChebNet(nn.Module):
    r"""ChebConv layers on a batch of signals on one static graph, with node embeddings.

    A learned embedding of each node is appended to its input features, so that the network
    can treat nodes differently (ChebConv alone is the same filter at every node).

    Arguments:
        in_features: Input features per node.
        hidden: Hidden features per node.
        layers: Number of ChebConv layers.
        num_nodes: Number of nodes V.
        embedding: Size of the learned node embedding (0: none).
        K: Chebyshev order of every layer.
        slope: Negative slope of the LeakyReLU activations.

    Shapes:
        ``x [B, V, in_features], edge_index [2, E] -> [B, V, hidden]``.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        layers: int,
        num_nodes: int,
        embedding: int = 4,
        K: int = 3,
        slope: float = 0.2,
    ) -> None:
        super().__init__()
        self.num_nodes = num_nodes
        self.slope = slope
        self.embedding = nn.Parameter(0.1 * torch.randn(num_nodes, embedding))
        widths = [in_features + embedding] + [hidden] * layers
        self.convs = nn.ModuleList(ChebConv(a, b, K=K) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        B, V = x.shape[:2]
        x = torch.cat([x, self.embedding.expand(B, -1, -1)], -1).reshape(B * V, -1)
        big = batched_edge_index(edge_index, V, B)
        for conv in self.convs:
            x = F.leaky_relu(conv(x, big), self.slope)
        return x.reshape(B, V, -1)


class _Generator(nn.Module):
    def __init__(self, noise: int, num_classes: int, out: int, hidden: int, layers: int, V: int):
        super().__init__()
        self.body = ChebNet(noise + num_classes, hidden, layers, V)
        self.head = nn.Linear(hidden, out)

    def forward(self, noise: Tensor, onehot: Tensor, edge_index: Tensor) -> Tensor:
        return self.head(self.body(torch.cat([noise, onehot], -1), edge_index))


class _Discriminator(nn.Module):
    def __init__(self, features: int, num_classes: int, hidden: int, layers: int, V: int):
        super().__init__()
        self.body = ChebNet(features + num_classes, hidden, layers, V)
        # Readout: the node states of the (fixed, ordered) graph concatenated, then an MLP.
        self.readout = nn.Sequential(
            nn.Linear(V * hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1)
        )

    def forward(self, x: Tensor, onehot: Tensor, edge_index: Tensor) -> Tensor:
        h = self.body(torch.cat([x, onehot], -1), edge_index)
        return self.readout(h.flatten(1)).squeeze(-1)


class CGANBaseline(ConditionalBaseline):
    r"""Conditional GAN whose generator and discriminator are Chebyshev graph networks.

    The generator maps per-node noise and one-hot labels through :class:`ChebNet` (ChebConv
    layers, ``K = 3``) and a node-wise linear layer to a signal ``[V, C]``; the discriminator
    maps per-node (signal, one-hot label) through another :class:`ChebNet` and a graph readout
    (the node states concatenated, then an MLP) to one logit. Both are trained with the
    non-saturating GAN loss for a fixed number of epochs (or ``max_time``).

    A GAN has no density: this baseline has no ``log_prob`` method. The ``validation``
    fraction of :meth:`fit` (default 0) holds samples out and records the discriminator loss
    on them in ``history_``; it does not stop training early.

    Arguments:
        edge_index: The graph ``[2, E]`` (taken as undirected).
        num_nodes: Number of nodes V.
        num_features: Number of features per node C.
        num_classes: Number of node labels K.
        noise: Noise dimensions per node.
        hidden: Hidden features per node.
        layers: ChebConv layers in each network.
        kwargs: Common settings of :class:`~igraphflow.baselines._common.ConditionalBaseline`:
            ``seed``, ``device``, ``dtype``, ``standardize``, ``batch_size``, ``lr`` (default
            ``2e-4`` here, with Adam's betas ``(0.5, 0.999)``).

    Shapes:
        ``fit(X [N, V, C], Y [N, V])``, ``sample(Y [N, V]) -> [N, V, C]``.

    References:
        | Conditional Generative Adversarial Nets (Mirza and Osindero, 2014)
        | https://arxiv.org/abs/1411.1784

        | Convolutional Neural Networks on Graphs with Fast Localized Spectral Filtering
        | (Defferrard et al., 2016) https://arxiv.org/abs/1606.09375

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> X, Y = torch.randn(64, 3, 2, generator=g), torch.randint(2, (64, 3), generator=g)
        >>> edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> model = CGANBaseline(edge_index, 3, 2, 2, seed=0)
        >>> model = model.fit(X, Y, max_epochs=1, progress=False)
        >>> model.sample(Y[:5]).shape
        torch.Size([5, 3, 2])
        >>> hasattr(model, "log_prob")
        False
    """

    _settings = ("noise", "hidden", "layers")

    def __init__(
        self,
        edge_index: Any,
        num_nodes: int,
        num_features: int,
        num_classes: int,
        *,
        noise: int = 4,
        hidden: int = 32,
        layers: int = 2,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("lr", 2e-4)
        kwargs.setdefault("patience", None)
        super().__init__(edge_index, num_nodes, num_features, num_classes, **kwargs)
        self.noise = as_count(noise, "noise")
        self.hidden = as_count(hidden, "hidden")
        self.layers = as_count(layers, "layers")

    def _noise(self, n: int, generator: torch.Generator) -> Tensor:
        return draw(torch.randn, n, self.num_nodes, self.noise, device=self.device, generator=generator, dtype=self.dtype)

    def _graph(self) -> Tensor:
        r"""The graph on the model's device, both directions of every edge once: ChebConv's
        Laplacian would otherwise depend on which directions the edge list holds."""
        return symmetric_edges(self.edge_index, self.num_nodes).to(self.device)

    def _build(self) -> nn.Module:
        V, C, K = self.num_nodes, self.num_features, self.num_classes
        return nn.ModuleDict(
            {
                "generator": _Generator(self.noise, K, C, self.hidden, self.layers, V),
                "discriminator": _Discriminator(C, K, self.hidden, self.layers, V),
            }
        )

    def fit(
        self,
        X: Any,
        Y: Any,
        *,
        max_time: float | None = None,
        max_epochs: int = 200,
        validation: float = 0.0,
        progress: bool = True,
    ) -> CGANBaseline:
        r"""Trains the generator and the discriminator.

        Arguments:
            X: Signals ``[N, V, C]`` (NumPy array or tensor).
            Y: Labels ``[N, V]`` in ``[0, K)``.
            max_time: Maximum training time in seconds, or None.
            max_epochs: Number of epochs.
            validation: Fraction of samples held out to monitor the discriminator loss.
            progress: Whether to show a progress bar.

        Returns:
            ``self``, with ``model_`` (``generator`` and ``discriminator``) and ``history_``
            (per epoch, the generator loss as ``train_loss`` and the held-out discriminator
            loss as ``val_loss``) set.
        """
        X, Y = self._check_XY(X, Y)
        g = self._generator()
        train, val = self._split(len(X), validation, g)
        self._fit_scaling(X[train])
        x, onehot = self._to_std(X), self._onehot(Y)
        with seeded(self.seed):
            model = self._build()
        self.model_ = model.to(self.device, self.dtype)
        G, D = self.model_["generator"], self.model_["discriminator"]
        opt_g = torch.optim.Adam(G.parameters(), lr=self.lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(D.parameters(), lr=self.lr, betas=(0.5, 0.999))
        ei = self._graph()

        def d_loss(idx: Tensor, fake: Tensor) -> Tensor:
            real_logit = D(x[idx], onehot[idx], ei)
            fake_logit = D(fake, onehot[idx], ei)
            return F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()

        def step(idx: Tensor) -> float:
            idx = train[idx]
            fake = G(self._noise(len(idx), g), onehot[idx], ei)
            loss_d = d_loss(idx, fake.detach())
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            loss_g = F.softplus(-D(fake, onehot[idx], ei)).mean()  # non-saturating
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            return loss_g.item()

        def evaluate() -> float:
            with torch.no_grad():
                return d_loss(val, G(self._noise(len(val), g), onehot[val], ei)).item()

        self.history_, self.best_epoch_ = train_loop(
            step,
            evaluate if len(val) else None,
            self.model_,
            num_samples=len(train),
            batch_size=self.batch_size,
            max_epochs=max_epochs,
            max_time=max_time,
            patience=None,
            generator=g,
            progress=progress,
            desc=type(self).__name__,
            early_stopping=False,
        )
        return self

    def sample(self, Y: Any, *, seed: int | None = None) -> Tensor:
        r"""Draws one signal for each row of label patterns.

        Arguments:
            Y: Labels ``[N, V]``.
            seed: Seed of the noise; defaults to the model's ``seed``.

        Returns:
            Signals ``[N, V, C]``.
        """
        self._check_fitted()
        Y = self._check_Y(Y)
        g = self._generator(seed)
        if len(Y) == 0:
            return self.loc_.new_empty(0, self.num_nodes, self.num_features)
        with torch.no_grad():
            G = self.model_["generator"]
            x = G(self._noise(len(Y), g), self._onehot(Y), self._graph())
        return self._from_std(x)
