r"""The discrete-time invertible graph neural network (iGNN): contractive residual graph blocks."""

from __future__ import annotations

__all__ = ["IGNNBaseline", "LipSwish", "ContractiveGraphConv", "ResidualGraphBlock", "IGNNNet"]

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from .._checks import as_choice, as_count, as_flag, as_orders, as_real
from .._random import draw
from ..latent import GaussianMixtureLatent
from ..nn import make_conv
from ..nn.velocity import as_convolution
from ._common import LikelihoodBaseline

LogDet = Literal["auto", "exact", "series"]


class LipSwish(nn.Module):
    r"""The smooth 1-Lipschitz activation :math:`x \sigma(\beta x) / 1.1` of Residual Flows,
    with a learnable :math:`\beta > 0` (softplus-parametrised)."""

    def __init__(self) -> None:
        super().__init__()
        self.raw_beta = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(F.softplus(self.raw_beta) * x) / 1.1


class ContractiveGraphConv(nn.Module):
    r"""A graph convolution rescaled to operator norm one (plus its bias).

    The linear part :math:`A x = \mathrm{conv}(x) - b` of a graph convolution (L3Net: the
    learnable local filters *and* the channel mixing) is a linear map on
    :math:`\mathbb{R}^{V \times C}`; normalising only the channel weights with
    :func:`torch.nn.utils.parametrizations.spectral_norm` would not bound it, because the
    per-(node, neighbour) filter weights are learnable too. Its largest singular value is
    tracked by power iteration on the operator itself (the adjoint by a vector-Jacobian product),
    one step per training call as in spectral normalisation, and the output is
    :math:`A x / \hat\sigma(A) + b`.

    Arguments:
        conv: A graph convolution on ``[*, V, in_channels]`` (see :func:`igraphflow.nn.make_conv`)
            with an optional ``bias`` attribute.
        num_nodes: The number of nodes ``V``.
        in_channels: Input channels per node.
        out_channels: Output channels per node.
        init_iterations: Power iterations run at construction.

    Shapes:
        input ``[*, V, in_channels]``, output ``[*, V, out_channels]``.
    """

    def __init__(
        self, conv: nn.Module, num_nodes: int, in_channels: int, out_channels: int, init_iterations: int = 20
    ) -> None:
        super().__init__()
        self.conv = conv
        self.register_buffer("u", F.normalize(torch.randn(1, num_nodes, in_channels).flatten(), dim=0).view(1, num_nodes, in_channels))
        self.register_buffer("v", torch.zeros(1, num_nodes, out_channels))
        with torch.no_grad():
            for _ in range(init_iterations):
                self._power_step()

    def _linear(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        bias = getattr(self.conv, "bias", None)
        return out if bias is None else out - bias

    def _power_step(self) -> None:
        with torch.no_grad():
            v = self._linear(self.u)
            self.v.copy_(v / v.norm().clamp_min(1e-12))
        with torch.enable_grad():
            u = self.u.detach().clone().requires_grad_(True)
            (adjoint,) = torch.autograd.grad(self._linear(u), u, self.v)
        with torch.no_grad():
            self.u.copy_(adjoint / adjoint.norm().clamp_min(1e-12))

    def sigma(self) -> Tensor:
        r"""The estimate :math:`v^T A u` of the operator norm (differentiable in the weights)."""
        return (self.v * self._linear(self.u)).sum()

    def forward(self, x: Tensor) -> Tensor:
        if self.training and torch.is_grad_enabled():
            self._power_step()
        out = self._linear(x) / self.sigma().clamp_min(1e-12)
        bias = getattr(self.conv, "bias", None)
        return out if bias is None else out + bias


class ResidualGraphBlock(nn.Module):
    r"""One invertible residual block :math:`x \mapsto x + g(x)` with :math:`\mathrm{Lip}(g) < 1`.

    :math:`g` = graph convolution, LipSwish, node-wise linear layer, LipSwish, graph
    convolution, times ``lipschitz``. Every linear map has operator norm one (the graph
    convolutions by :class:`ContractiveGraphConv`, the node-wise layer by spectral
    normalisation) and the activations are 1-Lipschitz, so :math:`\mathrm{Lip}(g) \le`
    ``lipschitz`` (up to the power-iteration estimate): the block is invertible, its inverse is
    the limit of the fixed-point iteration :math:`x \leftarrow y - g(x)`, and
    :math:`\log|\det(I + J_g)| = \sum_{k \ge 1} (-1)^{k+1} \mathrm{tr}(J_g^k) / k`.

    Arguments:
        edge_index: The graph, ``[2, E]``.
        num_nodes: The number of nodes ``V``.
        num_features: Features per node ``C``.
        hidden: Hidden channels per node.
        conv: The graph convolution, ``"l3net"``, ``"cheb"`` or ``"gcn"``.
        orders: Hop radii of the convolutions (ignored by ``"gcn"``, which reaches one hop).
        lipschitz: The Lipschitz bound of ``g``, in ``(0, 1)``.

    Shapes:
        ``[N, V, C] -> [N, V, C]``.
    """

    def __init__(
        self,
        edge_index: Tensor,
        num_nodes: int,
        num_features: int,
        hidden: int,
        conv: str,
        orders: Sequence[int],
        lipschitz: float,
    ) -> None:
        super().__init__()
        self.lipschitz = float(lipschitz)
        self.conv_in = ContractiveGraphConv(
            make_conv(conv, num_features, hidden, edge_index, num_nodes, orders), num_nodes, num_features, hidden
        )
        self.node = spectral_norm(nn.Linear(hidden, hidden))
        self.conv_out = ContractiveGraphConv(
            make_conv(conv, hidden, num_features, edge_index, num_nodes, orders), num_nodes, hidden, num_features
        )
        self.act_in, self.act_hidden = LipSwish(), LipSwish()

    def residual(self, x: Tensor) -> Tensor:
        r"""The residual :math:`g(x)`."""
        h = self.act_in(self.conv_in(x))
        h = self.act_hidden(self.node(h))
        return self.lipschitz * self.conv_out(h)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.residual(x)

    @torch.no_grad()
    def inverse(self, y: Tensor, tol: float = 1e-6, max_iter: int = 200) -> Tensor:
        r"""Solves :math:`x + g(x) = y` by the fixed-point iteration :math:`x \leftarrow y - g(x)`
        (a contraction), until the largest change of a coordinate is below ``tol``."""
        x = y - self.residual(y)
        for _ in range(max_iter):
            new = y - self.residual(x)
            done = (new - x).abs().max() <= tol
            x = new
            if done:
                break
        return x


class IGNNNet(nn.Module):
    r"""The iGNN map :math:`F = T_L \circ \dots \circ T_1` with the Gaussian-mixture latent.

    Arguments:
        blocks: The residual blocks.
        latent: The latent :math:`p(H | Y)`.
    """

    def __init__(self, blocks: Sequence[ResidualGraphBlock], latent: GaussianMixtureLatent) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.latent = latent

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""``H = F(x)`` and the transport cost :math:`\sum_l \|g_l(x_l)\|^2` per sample."""
        cost = x.new_zeros(x.shape[0])
        for block in self.blocks:
            step = block.residual(x)
            cost = cost + step.square().flatten(1).sum(1)
            x = x + step
        return x, cost

    def logdet_exact(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r"""``(H, cost, log|det J_F(x)|)`` with the full Jacobian: the ``D = V * C`` rows of
        each sample's Jacobian are ``D`` vector-Jacobian products, taken at once on ``D``
        copies of the batch, then :func:`torch.linalg.slogdet`. Cost: ``D`` forward passes."""
        N, D = x.shape[0], x[0].numel()
        if N * D > 4096 and N > 1:  # bound the D copies of the batch held at once
            parts = [self.logdet_exact(part) for part in x.split(max(1, 4096 // D))]
            return tuple(torch.cat(column) for column in zip(*parts))
        copies = x.unsqueeze(1).expand(N, D, *x.shape[1:]).reshape(N * D, *x.shape[1:])
        copies = copies.detach().clone().requires_grad_(True)
        h, cost = self(copies)
        basis = torch.eye(D, dtype=x.dtype, device=x.device).expand(N, D, D).reshape(N * D, *x.shape[1:])
        (rows,) = torch.autograd.grad(h, copies, basis, create_graph=torch.is_grad_enabled() and self.training)
        jacobian = rows.reshape(N, D, D)
        logdet = torch.linalg.slogdet(jacobian).logabsdet
        return h.reshape(N, D, *x.shape[1:])[:, 0], cost.reshape(N, D)[:, 0], logdet

    def logdet_series(
        self, x: Tensor, terms: int, probes: int = 1, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        r"""``(H, cost, estimate of log|det J_F(x)|)`` by the Residual Flows power series.

        For each block, :math:`\log|\det(I + J_g)| = \sum_{k=1}^{n} (-1)^{k+1}
        \mathrm{tr}(J_g^k) / k` truncated at ``n = terms`` (the remainder is at most
        :math:`D \sum_{k > n} L^k / k` for :math:`\mathrm{Lip}(g) \le L`), with Hutchinson's
        estimate :math:`\mathrm{tr}(J^k) \approx \varepsilon^T J^k \varepsilon`
        (:math:`\varepsilon` standard Gaussian, ``probes`` per sample); :math:`\varepsilon^T J^k`
        is ``k`` vector-Jacobian products. Unbiased in the trace, biased by the truncation.
        The probes are drawn from ``generator`` (default: the global random state).
        """
        create = torch.is_grad_enabled() and self.training
        cost = x.new_zeros(x.shape[0])
        logdet = x.new_zeros(x.shape[0])
        if not x.requires_grad:
            x = x.detach().clone().requires_grad_(True)
        for block in self.blocks:
            step = block.residual(x)
            for _ in range(probes):
                eps = draw(torch.randn, x.shape, device=x.device, generator=generator, dtype=x.dtype)
                w = eps
                for k in range(1, terms + 1):
                    (w,) = torch.autograd.grad(step, x, w, retain_graph=True, create_graph=create)
                    logdet = logdet + (-1) ** (k + 1) / k * (w * eps).flatten(1).sum(1) / probes
            cost = cost + step.square().flatten(1).sum(1)
            x = x + step
        return x, cost, logdet

    @torch.no_grad()
    def inverse(self, h: Tensor, tol: float = 1e-6, max_iter: int = 200) -> Tensor:
        r"""``X = F^{-1}(H)``, block by block in reverse order."""
        for block in reversed(self.blocks):
            h = block.inverse(h, tol=tol, max_iter=max_iter)
        return h


class IGNNBaseline(LikelihoodBaseline):
    r"""Discrete-time iGNN: contractive residual graph blocks, trained end to end.

    The invertible map :math:`F`, a chain of residual blocks
    :math:`x_{l+1} = x_l + g_l(x_l)` (:class:`ResidualGraphBlock`: graph convolutions and a
    node-wise layer, smooth 1-Lipschitz activations, every linear map normalised to norm one,
    the residual scaled by ``lipschitz < 1``), carries the standardised signal to a latent of the
    same shape with the latent of :class:`~igraphflow.ConditionalGraphFlow`,
    :math:`p(H | Y) = \prod_v \mathcal{N}(H_v; \mu_{Y_v}, \sigma^2 I)` with learnable means
    (:class:`~igraphflow.latent.GaussianMixtureLatent`). The labels enter only through the
    latent; prediction is the Bayes rule of the mixture. Training minimises, over all blocks at
    once,

    .. math:: -\log p(F(X) | Y) - \log|\det J_F(X)| + \gamma \sum_l \|g_l(x_l)\|^2
              + w_b \cdot \mathrm{barrier}(\mu).

    The transport penalty (weight ``gamma``) and the barrier enter the training loss only: the
    validation loss used for early stopping and :meth:`log_prob` are the plain likelihood.

    Log-determinant: ``"exact"`` builds each sample's ``D x D`` Jacobian (``D = V * C``) from
    ``D`` vector-Jacobian products and takes :func:`torch.linalg.slogdet`; ``"series"`` is the
    Residual Flows estimator (truncated power series of each block, Hutchinson trace, see
    :meth:`IGNNNet.logdet_series`). ``"auto"`` trains exactly when ``D <= exact_max_dim`` and
    evaluates :meth:`log_prob` exactly when ``D <= eval_exact_max_dim``.

    Arguments:
        edge_index: The graph ``[2, E]``.
        num_nodes: Number of nodes V.
        num_features: Number of features per node C.
        num_classes: Number of node labels K.
        blocks: Number of residual blocks.
        hidden: Hidden channels per node.
        conv: The graph convolution, ``"l3net"``, ``"cheb"`` or ``"gcn"``.
        orders: Hop radii of the convolutions (L3Net bases; ChebNet uses the largest; ignored by
            ``"gcn"``, which reaches one hop).
        lipschitz: The Lipschitz bound of each residual, in ``(0, 1)``.
        sigma: Standard deviation of the latent components.
        separation: Minimum distance of the latent means in units of ``sigma``, restored after
            every optimizer step.
        gamma: Weight of the transport penalty.
        barrier_weight: Weight of the log-barrier on the means.
        logdet: ``"auto"``, ``"exact"`` or ``"series"`` (training and default evaluation).
        exact_max_dim: Largest ``D`` trained with the exact log-determinant under ``"auto"``.
        eval_exact_max_dim: Largest ``D`` evaluated exactly by :meth:`log_prob` under ``"auto"``.
        series_terms: Terms of the power series.
        tol: Tolerance of the fixed-point inverse (largest change of a coordinate).
        max_iter: Most fixed-point iterations per block.
        kwargs: Common settings of :class:`~igraphflow.baselines._common.ConditionalBaseline`:
            ``seed``, ``device``, ``dtype``, ``standardize``, ``batch_size``, ``lr``,
            ``patience``.

    Shapes:
        ``fit(X [N, V, C], Y [N, V])``, ``sample(Y [N, V]) -> [N, V, C]``,
        ``log_prob(X [N, V, C], Y [N, V]) -> [N]``, ``predict_proba(X) -> [N, V, K]``,
        ``predict(X) -> [N, V]``.

    References:
        | Invertible Neural Networks for Graph Prediction (Xu, Cheng and Xie, 2022)
        | https://arxiv.org/abs/2206.01163

        | Residual Flows for Invertible Generative Modeling (Chen et al., 2019)
        | https://arxiv.org/abs/1906.02735

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> X, Y = torch.randn(64, 3, 2, generator=g), torch.randint(2, (64, 3), generator=g)
        >>> edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> model = IGNNBaseline(edge_index, 3, 2, 2, blocks=2, hidden=8, seed=0)
        >>> model = model.fit(X, Y, max_epochs=1, progress=False)
        >>> model.sample(Y[:5]).shape, model.log_prob(X[:5], Y[:5]).shape
        (torch.Size([5, 3, 2]), torch.Size([5]))
        >>> model.predict(X[:5]).shape
        torch.Size([5, 3])
    """

    _settings = ("blocks", "hidden", "conv", "lipschitz", "gamma", "logdet")

    def __init__(
        self,
        edge_index: Any,
        num_nodes: int,
        num_features: int,
        num_classes: int,
        *,
        blocks: int = 6,
        hidden: int = 32,
        conv: str = "l3net",
        orders: Sequence[int] = (0, 1, 2),
        lipschitz: float = 0.9,
        sigma: float = 1.0,
        separation: float = 0.0,
        gamma: float = 0.05,
        barrier_weight: float = 1e-2,
        logdet: LogDet = "auto",
        exact_max_dim: int = 16,
        eval_exact_max_dim: int = 128,
        series_terms: int = 8,
        tol: float = 1e-6,
        max_iter: int = 200,
        **kwargs: Any,
    ) -> None:
        super().__init__(edge_index, num_nodes, num_features, num_classes, **kwargs)
        self.blocks = as_count(blocks, "blocks")
        self.hidden = as_count(hidden, "hidden")
        self.conv = as_convolution(conv)
        self.orders = as_orders(orders)
        # (0, 1): the blocks are invertible only when contractive.
        self.lipschitz = as_real(lipschitz, "lipschitz", "(0, 1)")
        self.sigma = as_real(sigma, "sigma", "(0, inf)")
        self.separation = as_real(separation, "separation", "[0, inf)")
        self.gamma = as_real(gamma, "gamma", "[0, inf)")
        self.barrier_weight = as_real(barrier_weight, "barrier_weight", "[0, inf)")
        self.logdet = as_choice(logdet, ("auto", "exact", "series"), "logdet")
        self.exact_max_dim = as_count(exact_max_dim, "exact_max_dim", minimum=0)
        self.eval_exact_max_dim = as_count(eval_exact_max_dim, "eval_exact_max_dim", minimum=0)
        self.series_terms = as_count(series_terms, "series_terms")
        self.tol = as_real(tol, "tol", "(0, inf)")
        self.max_iter = as_count(max_iter, "max_iter")
        self._eval_exact: bool | None = None

    # LikelihoodBaseline hooks ----------------------------------------------------------------

    def _build(self) -> nn.Module:
        V, C = self.num_nodes, self.num_features
        blocks = [
            ResidualGraphBlock(self.edge_index, V, C, self.hidden, self.conv, self.orders, self.lipschitz)
            for _ in range(self.blocks)
        ]
        return IGNNNet(blocks, GaussianMixtureLatent(self.num_classes, C, self.sigma, self.separation))

    def _after_step(self) -> None:
        # As in the JKO blocks: an Adam step may carry the means closer than ``separation``,
        # where the log-barrier, and so the loss, is NaN.
        self.model_.latent.project_()

    def _use_exact(self, training: bool) -> bool:
        if not training and self._eval_exact is not None:  # log_prob(exact=...) overrides the rule
            return self._eval_exact
        if self.logdet != "auto":
            return self.logdet == "exact"
        D = self.num_nodes * self.num_features
        return D <= (self.exact_max_dim if training else self.eval_exact_max_dim)

    def _log_prob_std(self, x: Tensor, Y: Tensor) -> Tensor:
        r"""``log p(x | Y)`` of standardised flattened signals; while training (the module in
        training mode with gradients on), the penalties are subtracted, so that the shared
        training loop minimises the full iGNN objective."""
        net: IGNNNet = self.model_
        training = net.training and torch.is_grad_enabled()
        x = x.reshape(-1, self.num_nodes, self.num_features)
        with torch.enable_grad():
            if self._use_exact(training):
                h, cost, logdet = net.logdet_exact(x)
            else:
                h, cost, logdet = net.logdet_series(x, self.series_terms, generator=self._probe_generator(training))
        out = net.latent.log_prob(h, Y) + logdet
        if training:
            return out - self.gamma * cost - self.barrier_weight * net.latent.barrier()
        return out.detach()

    def _probe_generator(self, training: bool) -> torch.Generator | None:
        r"""The generator of the Hutchinson probes: while training, the fit's (reproducible from
        ``seed``); otherwise one seeded with 0, so that an estimated log-density is the same at
        every call and the global random state is left alone."""
        return self._fit_generator if training else torch.Generator().manual_seed(0)

    def _sample_std(self, Y: Tensor, generator: torch.Generator) -> Tensor:
        net: IGNNNet = self.model_
        noise = draw(torch.randn, *Y.shape, self.num_features, device=self.device, generator=generator, dtype=self.dtype)
        h = net.latent.means[Y] + net.latent.sigma * noise
        return net.inverse(h, tol=self.tol, max_iter=self.max_iter)

    # Public API --------------------------------------------------------------------------------

    def fit(self, X: Any, Y: Any, **kwargs: Any) -> IGNNBaseline:
        r"""Fits the model (see :meth:`LikelihoodBaseline.fit
        <igraphflow.baselines._common.LikelihoodBaseline.fit>` for the arguments) and sets the
        class prior of the Bayes head to the label frequencies of all of ``Y`` (the validation
        rows included), smoothed by one count per class."""
        super().fit(X, Y, **kwargs)
        with torch.no_grad():
            self.model_.latent.set_prior(self._check_Y(Y))
        return self

    def log_prob(self, X: Any, Y: Any, *, exact: bool | None = None) -> Tensor:
        r"""Log-density ``log p(X | Y)`` of each sample, ``[N]`` (original units).

        Arguments:
            X: Signals ``[N, V, C]``.
            Y: Labels ``[N, V]``.
            exact: The exact log-determinant (True), the power-series estimate (False), or the
                rule of ``logdet`` (None). The estimate uses fixed probes (a generator seeded
                with 0 for each batch of ``max(batch_size, 1024)`` samples): it is deterministic
                and does not consume the global random state.
        """
        self._eval_exact = None if exact is None else as_flag(exact, "exact")
        try:
            return super().log_prob(X, Y)
        finally:
            self._eval_exact = None

    def encode(self, X: Any) -> Tensor:
        r"""The latent ``H = F(X)`` ``[N, V, C]`` of signals ``X`` (standardised first)."""
        self._check_fitted()
        X = self._check_X(X)
        with torch.no_grad():
            return self.model_(self._to_std(X))[0]

    def predict_proba(self, X: Any) -> Tensor:
        r""":math:`P(Y_v = k | X)` by the Bayes rule of the latent mixture, ``[N, V, K]``."""
        H = self.encode(X)  # checks first that the model is fitted
        with torch.no_grad():
            return self.model_.latent.posterior(H)

    def predict(self, X: Any) -> Tensor:
        r"""The most probable label of every node, ``[N, V]``."""
        return self.predict_proba(X).argmax(-1)
