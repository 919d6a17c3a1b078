r"""The Gaussian-mixture latent :math:`p(H | Y) = \prod_v \mathcal{N}(H_v; \mu_{Y_v}, \sigma^2 I)`,
optionally with a fitted noise: :math:`p(H | Y) = \mathcal{N}(\mathrm{vec}(\mu_Y + b + A g(Y)), \Sigma)`,
or :math:`H = \mu_Y + b + A g(Y) + L u` with :math:`L L^T = \Sigma` and :math:`u` a mixture of
diagonal Gaussians whose weights may depend on the labels :math:`Y`, node by node; :math:`A g(Y)`
(when it validates) moves the mean with the whole label pattern."""

from __future__ import annotations

__all__ = [
    "GaussianMixtureLatent",
    "MAX_NOISE_DIM",
    "MAX_PATTERN_WEIGHTS",
    "MIXTURE_COMPONENTS",
    "MIXTURE_LABEL_PENALTIES",
    "PATTERN_PENALTIES",
    "SHRINKAGES",
]

import math
import warnings
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import _as_tensor, as_count, as_labels, as_real
from ._evidence import beats
from ._random import draw

MAX_NOISE_DIM = 4096
r"""The largest ``V * C`` for which :meth:`GaussianMixtureLatent.fit_noise_` fits a full covariance."""

SHRINKAGES = (0.01, 0.03, 0.1, 0.3, 1.0)
r"""The candidate weights :math:`\lambda` of the scaled identity in the fitted covariance."""

MIXTURE_COMPONENTS = (2, 4, 8, 16, 32)
r"""The candidate numbers of components of the fitted noise mixture (one component: the Gaussian)."""

MIXTURE_LABEL_PENALTIES = (0.01, 0.1, 1.0, 10.0, 100.0)
r"""The candidate weights :math:`\lambda` of the penalty :math:`\lambda \|B\|^2` on what each node's
label adds to the mixture's log-weights, which pulls them towards the weights shared by all labels
(see :meth:`GaussianMixtureLatent.fit_noise_`)."""

PATTERN_PENALTIES = (0.001, 0.01, 0.1, 1.0, 10.0)
r"""The candidate weights :math:`\lambda` of the ridge :math:`\lambda \|A\|^2` on how the latent mean
moves with the label pattern (see :meth:`GaussianMixtureLatent.fit_noise_`)."""

MAX_PATTERN_WEIGHTS = 2**22
r"""The most numbers the map from every node's label to the latent mean may hold (``V K x V C``);
above it only the label frequencies of the whole pattern move the mean."""


def _gaussian_log_density(squared_distance: Tensor, log_scale, dims: int) -> Tensor:
    r""":math:`\log \mathcal{N}` from the Mahalanobis distance, :math:`\log \det` of the scale and the dimension."""
    return -0.5 * squared_distance - log_scale - 0.5 * dims * math.log(2 * math.pi)


def _diagonal_log_densities(u: Tensor, centres: Tensor, scales: Tensor) -> Tensor:
    r""":math:`\log \mathcal{N}(u_n; c_m, \mathrm{diag}(s_m^2))` for every signal and component, ``[N, M]``."""
    # sum_d ((u_d - c_md) / s_md)^2 expanded into products, so no [N, M, D] tensor is formed.
    precision = scales.pow(-2)
    squared = u.square() @ precision.T - 2 * u @ (centres * precision).T + (centres.square() * precision).sum(1)
    return _gaussian_log_density(squared, scales.log().sum(1), u.size(1))


def _label_log_weights(shared: Tensor, label_logits: Tensor, y: Tensor) -> Tensor:
    r"""The mixture's log-weights for the labels ``y [N, V]``, ``[N, M]``:
    :math:`\log \mathrm{softmax}_m(s_m + \sum_v B_{v, y_v, m})`, with the shared log-weights
    ``shared [M]`` and what each node's label adds, ``label_logits`` :math:`B` ``[V, K, M]``."""
    return _indicator_log_weights(shared, label_logits, _label_indicators(y, label_logits))


def _label_indicators(y: Tensor, label_logits: Tensor) -> Tensor:
    r"""The one-hot labels ``[N, V K]`` that :func:`_indicator_log_weights` takes."""
    return F.one_hot(y, label_logits.size(1)).flatten(1).to(label_logits)


def _indicator_log_weights(shared: Tensor, label_logits: Tensor, indicators: Tensor) -> Tensor:
    r""":func:`_label_log_weights` of one-hot labels ``[N, V K]``: a product, no ``[N, V, M]`` tensor."""
    return torch.log_softmax(shared + indicators @ label_logits.flatten(0, 1), dim=1)


def _fit_label_logits(
    log_densities: Tensor, y: Tensor, shared: Tensor, num_classes: int, penalty: float, start: Tensor | None = None
) -> Tensor:
    r"""What each node's label adds to the mixture's log-weights, ``[V, K, M]``, with the components fixed.

    Maximises :math:`\frac1N \sum_n \log \sum_m w_m(y_n)\, \mathcal{N}_m(u_n) - \frac{\lambda}{N}
    \|B\|^2` (:func:`_label_log_weights`) by L-BFGS from ``start``, by default :math:`B = 0`
    (the shared weights).

    Arguments:
        log_densities: :math:`\log \mathcal{N}_m(u_n)` of the training signals, ``[N, M]``.
        y: Their labels ``[N, V]``.
        shared: The shared log-weights ``[M]``.
        num_classes: ``K``.
        penalty: :math:`\lambda`.
        start: Where L-BFGS starts, ``[V, K, M]``.
    """
    shape = (y.size(1), num_classes, len(shared))
    label_logits = (log_densities.new_zeros(shape) if start is None else start.clone()).requires_grad_()
    optimizer = torch.optim.LBFGS([label_logits], max_iter=100, line_search_fn="strong_wolfe")
    indicators = _label_indicators(y, label_logits)  # once, not at every evaluation

    def objective() -> Tensor:
        optimizer.zero_grad()
        fit = torch.logsumexp(_indicator_log_weights(shared, label_logits, indicators) + log_densities, dim=1).mean()
        loss = penalty * label_logits.square().sum() / len(y) - fit
        loss.backward()
        return loss

    with torch.enable_grad():  # fit_noise_ may run under no_grad
        optimizer.step(objective)
    return label_logits.detach()


def _additive_fit(r: Tensor, y: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    r"""Least squares ``r[n, v] ~ shift[y[n, v]] + offset[v]``: ``(shift [K, C], offset [V, C])``.

    Solved exactly (alternating updates took thousands of sweeps where a label is rare at some
    nodes and common at others): each offset is the mean of ``r[:, v] - shift[y[:, v]]``, and
    with the offsets eliminated the shifts solve ``K x K`` normal equations. Their one free
    direction, a constant added to every shift and taken from every offset, is fixed by the
    smallest shifts (the pseudo-inverse). A class absent from ``y`` keeps a zero shift.
    """
    # The free direction's eigenvalue rounds to about 1e-13 of the largest in float64 (1e-4 in
    # float32), which the pseudo-inverse's default cut would keep: the shifts would run off
    # along it. A rare label at a node still has eigenvalues above 1e-7 of it.
    r64 = r.double()
    onehot = F.one_hot(y, num_classes).to(r64)  # [N, V, K]
    cross = onehot.sum(0)  # [V, K]: how often each node has each label
    node_means = r64.mean(0)  # [V, C]
    system = torch.diag(cross.sum(0)) - cross.T @ cross / r.size(0)
    right = torch.einsum("nvk,nvc->kc", onehot, r64) - cross.T @ node_means
    shift = torch.linalg.pinv(system, rtol=1e-10, hermitian=True) @ right
    return shift.to(r.dtype), (node_means - cross @ shift / r.size(0)).to(r.dtype)


def _pattern_features(y: Tensor, num_classes: int, per_node: bool, like: Tensor) -> Tensor:
    r"""What the label pattern ``y [N, V]`` tells the latent mean: every node's one-hot label,
    ``[N, V K]``, or (``per_node=False``) the frequency of each label in the pattern, ``[N, K]``."""
    onehot = F.one_hot(y, num_classes).to(like)
    return onehot.flatten(1) if per_node else onehot.mean(1)


def _ridge_path(features: Tensor, r: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
    r"""For each penalty of :data:`PATTERN_PENALTIES`, the ridge regression of ``r [N, D]`` on
    ``features [N, P]`` (no intercept), :math:`A = (G^T G + \lambda N I)^{-1} G^T r`, ``[P, D]``,
    and its leave-one-out residuals ``[N, D]`` (each row predicted by the fit without it), exact
    in closed form.

    Example:
        >>> G, r = torch.randn(50, 3, dtype=torch.float64), torch.randn(50, 2, dtype=torch.float64)
        >>> weights, held_out = next(_ridge_path(G, r))
        >>> weights.shape, held_out.shape
        (torch.Size([3, 2]), torch.Size([50, 2]))
    """
    # One SVD serves every penalty: A = V diag(s / (s^2 + lambda N)) U^T r, and the fit's
    # leverages are the rows of U squared, weighted by s^2 / (s^2 + lambda N).
    left, singular, right = torch.linalg.svd(features, full_matrices=False)
    projected = left.T @ r
    for penalty in PATTERN_PENALTIES:
        kept = singular.square() / (singular.square() + penalty * len(r))
        residual = r - left @ (kept.unsqueeze(1) * projected)
        leverage = left.square() @ kept
        weights = right.T @ ((kept / singular.clamp_min(torch.finfo(r.dtype).tiny)).unsqueeze(1) * projected)
        yield weights, residual / (1 - leverage).unsqueeze(1)


def _pattern_fit(r: Tensor, y: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor] | None:
    r"""The ridge regression (:func:`_ridge_path`) of the residuals ``r [N, D]`` on the centred
    :func:`_pattern_features` of the labels ``y`` with the lowest leave-one-out error:
    ``(centre [P], weights [P, D], leave-one-out residuals [N, D])``, or ``None`` when none has a
    lower one than zero.

    Both kinds of features are tried, the labels of every node (when the weights stay within
    :data:`MAX_PATTERN_WEIGHTS`) and the label frequencies, each with every penalty.
    """
    best, best_error = None, r.square().mean().item()
    for per_node in (False, True):
        if per_node and y.size(1) * num_classes * r.size(1) > MAX_PATTERN_WEIGHTS:
            continue
        features = _pattern_features(y, num_classes, per_node, r)
        centre = features.mean(0)
        for weights, held_out in _ridge_path(features - centre, r):
            error = held_out.square().mean().item()
            if error < best_error:
                best, best_error = (centre, weights, held_out), error
    return best


def _pattern_shift(y: Tensor, centre: Tensor, weights: Tensor, num_classes: int) -> Tensor:
    r"""How far the label patterns ``y [N, V]`` move the mean under :func:`_pattern_fit`'s
    ``centre [P]`` and ``weights [P, ...]``, ``[N, D]``; the size of ``centre`` tells the kind of
    features (``K``: the label frequencies, the same thing as the labels when ``V = 1``)."""
    per_node = centre.numel() != num_classes
    return (_pattern_features(y, num_classes, per_node, weights) - centre) @ weights.flatten(1)


def _covariance_fit(r: Tensor, r_val: Tensor) -> tuple[np.ndarray, float, Tensor] | None:
    r"""The Gaussian :math:`\mathcal{N}(0, (1 - \lambda) S + \lambda \bar s I)` of the residuals
    ``r [N, D]`` (:math:`S` their second moment, :math:`\bar s` its mean diagonal) whose
    :math:`\lambda` (:data:`SHRINKAGES`) scores ``r_val`` best: ``(held-out log-likelihoods,
    lambda, Cholesky factor)``, or ``None`` when no candidate is positive definite."""
    covariance = r.T @ r / r.size(0)
    identity = covariance.diagonal().mean() * torch.eye(r.size(1), dtype=r.dtype, device=r.device)
    best = None
    for shrinkage in SHRINKAGES:
        tril, info = torch.linalg.cholesky_ex((1 - shrinkage) * covariance + shrinkage * identity)
        if info:
            continue
        scores = _gaussian_scores(r_val, tril)
        if best is None or scores.mean() > best[0].mean():
            best = scores, shrinkage, tril
    return best


def _gaussian_scores(r: Tensor, tril: Tensor) -> np.ndarray:
    r""":math:`\log \mathcal{N}(r_n; 0, L L^T)` of every row of ``r [N, D]``, ``[N]``."""
    z = torch.linalg.solve_triangular(tril, r.T, upper=False)
    return _gaussian_log_density(z.square().sum(0), tril.diagonal().log().sum(), r.size(1)).cpu().numpy()


class GaussianMixtureLatent(nn.Module):
    r"""Per-node Gaussian latent with one learnable mean per class and a log-barrier between means.

    The ``K`` means live in :math:`\mathbb{R}^C`; a label pattern ``Y`` picks the mean of each
    node. The barrier :math:`-\sum_{i<j} \log(\|\mu_i - \mu_j\| - c)` keeps the means at least
    ``c = separation * sigma`` apart; the means start feasible, and a step that would cross the
    barrier is projected back.

    Arguments:
        num_classes: The number of labels ``K``.
        num_features: Features per node ``C``.
        sigma: The standard deviation of every component.
        separation: The minimum distance between means, in units of ``sigma``. With ``0`` the
            barrier only keeps the means distinct. Large values (the iGNN reference used
            :math:`2\Phi^{-1}(0.9999) \approx 7.4`) widen classification margins, but force
            class-conditionals apart even where the data overlap, which costs likelihood.
        initial_separation: How far apart the means start, in units of ``sigma`` (at least
            ``1.5 * separation``): evenly spaced on a circle, or on a line when ``C = 1`` or
            ``K = 2``. Trained means move from there; see :meth:`place_means_`.

    Shapes:
        ``h [N, V, C]``, ``y [N, V]``; :meth:`log_prob` gives ``[N]``.

    Example:
        >>> latent = GaussianMixtureLatent(num_classes=2, num_features=2)
        >>> y = torch.tensor([[0, 1, 1]])
        >>> h = latent.sample(y)
        >>> h.shape, latent.log_prob(h, y).shape
        (torch.Size([1, 3, 2]), torch.Size([1]))
    """

    #: The buffers of the fitted noise, ``None`` until it is fitted: a state without them has none.
    NOISE_BUFFERS = ("offset", "scale_tril", "pattern_centre", "pattern_weights", "mixture_logits", "mixture_centres",
                     "mixture_scales", "mixture_label_logits")

    def __init__(
        self, num_classes: int, num_features: int, sigma: float = 1.0, separation: float = 0.0, initial_separation: float = 2.0
    ):
        super().__init__()
        sigma, separation = as_real(sigma, "sigma", "(0, inf)"), as_real(separation, "separation", "[0, inf)")
        initial_separation = as_real(initial_separation, "initial_separation", "[0, inf)")
        num_classes, num_features = as_count(num_classes, "num_classes"), as_count(num_features, "num_features")
        self.num_classes, self.num_features = num_classes, num_features
        self.sigma, self.min_distance = sigma, separation * sigma
        self.means = nn.Parameter(self._evenly_spaced(initial_separation))
        self.register_buffer("log_prior", torch.full((num_classes,), -math.log(num_classes)))
        # The fitted noise (fit_noise_, which also moves the means): offset b [V, C] and the
        # Cholesky factor of Sigma [VC, VC]; None: isotropic sigma around the means.
        self.register_buffer("offset", None)
        self.register_buffer("scale_tril", None)
        # How the mean moves with the label pattern (with a fitted covariance, when it
        # validates): A g(Y) = (g(Y) - pattern_centre) @ pattern_weights, centre [P] and
        # weights [P, V, C], P = K (label frequencies) or V K (every node's label).
        self.register_buffer("pattern_centre", None)
        self.register_buffer("pattern_weights", None)
        # A mixture noise (when it validates better): u = L^{-1} (h - conditional_mean(y)) is a
        # mixture of diagonal Gaussians, log-weights [M], centres and scales [M, VC]; None: u ~ N(0, I).
        self.register_buffer("mixture_logits", None)
        self.register_buffer("mixture_centres", None)
        self.register_buffer("mixture_scales", None)
        # What each node's label adds to the log-weights, [V, K, M]; None: every label pattern
        # takes mixture_logits.
        self.register_buffer("mixture_label_logits", None)
        # Scales the noise of sample() alone; log_prob keeps the fitted density.
        self.register_buffer("temperature", torch.tensor(1.0))

    def _evenly_spaced(self, separation: float) -> Tensor:
        # Neighbours separation * sigma or 1.5 c apart, whichever is larger: feasible either way.
        if not separation > 0:
            raise ValueError(f"initial_separation must be positive, got {separation}")
        spacing = max(float(separation) * self.sigma, 1.5 * self.min_distance)
        means = torch.zeros(self.num_classes, self.num_features)
        k = torch.arange(self.num_classes, dtype=torch.float32)
        if self.num_features == 1 or self.num_classes <= 2:
            means[:, 0] = spacing * (k - (self.num_classes - 1) / 2)
        else:
            radius = spacing / (2 * math.sin(math.pi / self.num_classes))
            angle = 2 * math.pi * k / self.num_classes
            means[:, 0], means[:, 1] = radius * torch.cos(angle), radius * torch.sin(angle)
        return means

    @torch.no_grad()
    def place_means_(self, separation: float):
        r"""Puts the means back at their evenly spaced start, neighbours ``separation * sigma`` apart
        (at least ``1.5 c``).

        Where they start decides how far apart the flow learns to put the classes (see
        :mod:`igraphflow.separability`), whether the blocks train them (they follow the
        encoded classes from there) or not.

        Example:
            >>> latent = GaussianMixtureLatent(num_classes=2, num_features=2)
            >>> latent.place_means_(5.0)
            >>> latent.pairwise_distances().tolist()
            [5.0]
        """
        self.means.copy_(self._evenly_spaced(separation).to(self.means))

    def set_prior(self, y: Tensor):
        r"""Sets the class prior :math:`\pi_k` to the label frequencies in ``y`` (smoothed by one count)."""
        counts = torch.bincount(y.flatten(), minlength=self.num_classes).to(self.log_prior) + 1
        self.log_prior.copy_((counts / counts.sum()).log())

    # Noise model ------------------------------------------------------------------------

    @property
    def has_noise_covariance(self) -> bool:
        r"""Whether :meth:`fit_noise_` replaced the isotropic noise by a fitted covariance."""
        return self.scale_tril is not None

    @property
    def pattern_mean(self) -> bool:
        r"""Whether the mean moves with the whole label pattern, :math:`A g(Y)` (see :meth:`fit_noise_`)."""
        return self.pattern_weights is not None

    @property
    def noise_components(self) -> int:
        r"""The number of components of the fitted noise mixture; 1 for Gaussian noise."""
        return 1 if self.mixture_logits is None else self.mixture_logits.numel()

    @property
    def noise_label_weights(self) -> bool:
        r"""Whether the weights of the noise mixture depend on the labels (else one set for all)."""
        return self.mixture_label_logits is not None

    def mixture_log_weights(self, y: Tensor | None = None) -> Tensor:
        r"""The log-weights of the noise mixture for each label pattern ``y [N, V]``, ``[N, M]``:
        the shared ones moved by each node's label where they depend on the labels
        (:attr:`noise_label_weights`); without ``y``, the shared ones, ``[1, M]``.

        Example:
            >>> latent = GaussianMixtureLatent(num_classes=2, num_features=2)
            >>> latent.mixture_logits = torch.tensor([0.5, 0.5]).log()
            >>> latent.mixture_log_weights(torch.zeros(3, 4, dtype=torch.long)).exp()
            tensor([[0.5000, 0.5000],
                    [0.5000, 0.5000],
                    [0.5000, 0.5000]])
        """
        if self.mixture_logits is None:
            raise ValueError("the latent has no mixture noise")
        shared = torch.log_softmax(self.mixture_logits, 0)
        log_weights = shared.expand(1 if y is None else y.size(0), -1)
        if y is None or self.mixture_label_logits is None:
            return log_weights
        return _label_log_weights(shared, self.mixture_label_logits, y)

    def draw_noise(self, log_weights: Tensor, generator: torch.Generator | None = None) -> Tensor:
        r"""Draws the whitened noise :math:`u`, one ``[VC]`` row per row of the mixture's
        ``log_weights [N, M]`` (see :meth:`mixture_log_weights`), ``[N, VC]``, at temperature 1.

        Example:
            >>> latent = GaussianMixtureLatent(num_classes=2, num_features=2)
            >>> latent.mixture_centres = torch.tensor([[-5.0] * 6, [5.0] * 6])
            >>> latent.mixture_scales = torch.ones(2, 6)
            >>> u = latent.draw_noise(torch.tensor([[0.0, -math.inf]]).expand(4, 2))  # the first component only
            >>> u.shape, bool((u < 0).all())
            (torch.Size([4, 6]), True)
        """
        noise, uniform = self.standard_draws(log_weights.size(0), generator, log_weights)
        component = self.mixture_components(log_weights, uniform)
        return self.mixture_centres[component] + self.mixture_scales[component] * noise

    def standard_draws(self, num_draws: int, generator: torch.Generator | None, like: Tensor) -> tuple[Tensor, Tensor]:
        r"""The random numbers of :meth:`draw_noise` (or of the Gaussian noise, without a mixture):
        standard normal ``[num_draws, VC]`` and
        uniform ``[num_draws]`` (the latter picks each draw's component), in the dtype and on the
        device of ``like``."""
        options = dict(device=like.device, generator=generator, dtype=torch.float64)
        # Drawn in float64 whatever the dtype: torch's streams differ between dtypes, and a seed
        # should give the same samples in float32 and float64, up to rounding.
        dims = self.scale_tril.size(0) if self.mixture_centres is None else self.mixture_centres.size(1)
        noise = draw(torch.randn, (num_draws, dims), **options).to(like.dtype)
        return noise, draw(torch.rand, num_draws, **options).to(like.dtype)

    @staticmethod
    def mixture_components(log_weights: Tensor, uniform: Tensor) -> Tensor:
        r"""The component of each draw under the weights of its row of ``log_weights [N, M]``: the
        inverse of their cumulative sum at ``uniform [N]``, ``[N]``."""
        cumulative = log_weights.softmax(1).cumsum(1)
        return torch.searchsorted(cumulative, uniform.unsqueeze(1)).squeeze(1).clamp_max(cumulative.size(1) - 1)

    def reset_noise_(self):
        r"""Back to the isotropic noise :math:`\sigma^2 I` around the means (the JKO target), at temperature 1."""
        self.offset = self.scale_tril = self.pattern_centre = self.pattern_weights = None
        self.mixture_logits = self.mixture_centres = self.mixture_scales = None
        self.mixture_label_logits = None
        self.temperature.fill_(1.0)

    @property
    def node_scale_tril(self) -> Tensor | None:
        r"""The Cholesky factors of the node blocks :math:`\Sigma_{vv}` of the fitted covariance,
        ``[V, C, C]``, or ``None`` when the noise is isotropic."""
        if self.scale_tril is None:
            return None
        # Sigma_vv = L_v L_v^T, with L_v the node's C rows of the full factor.
        rows = self.scale_tril.view(-1, self.num_features, self.scale_tril.size(1))
        return torch.linalg.cholesky(rows @ rows.transpose(-1, -2))

    def conditional_mean(self, y: Tensor) -> Tensor:
        r"""The mean of :math:`H` given the labels ``y [N, V]``, ``[N, V, C]``: :math:`\mu_{y_v}`,
        plus the fitted offset :math:`b_v` and the pattern's :math:`A g(y)` where :meth:`fit_noise_`
        kept them.

        Example:
            >>> latent = GaussianMixtureLatent(num_classes=2, num_features=1)
            >>> latent.conditional_mean(torch.tensor([[0, 1]]))
            tensor([[[-1.],
                     [ 1.]]], grad_fn=<IndexBackward0>)
        """
        return self._conditional_mean(self._labels(y))

    def _conditional_mean(self, y: Tensor) -> Tensor:
        mean = self.means[y]
        if self.offset is not None:
            mean = mean + self.offset
        if self.pattern_weights is not None:
            mean = mean + _pattern_shift(y, self.pattern_centre, self.pattern_weights, self.num_classes).view_as(mean)
        return mean

    def _residual(self, h: Tensor, y: Tensor) -> Tensor:
        return h - self._conditional_mean(y)

    def _whitened(self, h: Tensor, y: Tensor) -> Tensor:
        r""":math:`u = L^{-1} \mathrm{vec}(h - m_y)`, ``[N, VC]``, :math:`m_y` the :meth:`conditional_mean`
        (needs a fitted covariance)."""
        r = self._residual(h, y).flatten(1)
        return torch.linalg.solve_triangular(self.scale_tril, r.T, upper=False).T

    def joint_squared_distance(self, h: Tensor, y: Tensor) -> Tensor:
        r"""The Mahalanobis distance :math:`\|h - m_y\|^2_{\Sigma^{-1}}` of whole signals from their
        :meth:`conditional_mean` :math:`m_y`, ``[N]``
        (a :math:`\chi^2_{VC}` variable under Gaussian noise)."""
        if self.scale_tril is None:
            return self._residual(h, y).flatten(1).square().sum(1) / self.sigma**2
        return self._whitened(h, y).square().sum(1)

    def squared_distances(self, h: Tensor) -> Tensor:
        r"""The Mahalanobis distance of every node's :math:`h_v` to every class under the node's
        law given its own label alone (:meth:`node_marginals`), ``[N, V, K]`` (a
        :math:`\chi^2_C` variable for the true class under Gaussian noise, unless the mean moves
        with the label pattern)."""
        return self._marginal_distances(h)[0]

    def _marginal_distances(self, h: Tensor) -> tuple[Tensor, Tensor]:
        r""":meth:`squared_distances` and the factors ``[V, C, C]`` of :meth:`node_marginals` they were measured by."""
        centres, tril = self.node_marginals()
        return self._node_whitened(h.unsqueeze(-2) - centres, tril).square().sum(-1), tril

    def node_squared_distance(self, h: Tensor, y: Tensor) -> Tensor:
        r"""The distance of each node's :math:`h_v` from its mean given the whole pattern ``y``
        (:meth:`conditional_mean`) under :math:`\Sigma_{vv}`, ``[N, V]`` (the same as
        :meth:`squared_distances` at the true class unless the mean moves with the pattern)."""
        node_tril = self.node_scale_tril
        if node_tril is None:
            return self._residual(h, y).square().sum(-1) / self.sigma**2
        return self._node_whitened(self._residual(h, y), node_tril).square().sum(-1)

    def _label_maps(self) -> tuple[Tensor, Tensor]:
        r"""What the one-hot label of node ``u`` adds to the mean of node ``v`` under the pattern
        mean, ``[V (u), V (v), K, C]`` (a view, for label frequencies: every label counts
        ``1 / V``), and what each node's own label adds to its own mean, ``[V, K, C]``."""
        weights, K = self.pattern_weights, self.num_classes
        V = weights.size(1)
        if self.pattern_centre.numel() == K:
            maps = (weights / V).unsqueeze(0).expand(V, -1, -1, -1).transpose(1, 2)
        else:
            maps = weights.view(V, K, V, -1).transpose(1, 2)
        return maps, maps.diagonal(dim1=0, dim2=1).permute(2, 0, 1)

    def node_marginals(self) -> tuple[Tensor, Tensor]:
        r"""The law of each node's :math:`h_v` given its own label alone: centres ``[V, K, C]`` and
        the Cholesky factors of its covariance ``[V, C, C]`` (a leading dimension of 1 for the
        isotropic latent: the same at every node).

        Without a pattern mean this is :math:`\mathcal{N}(\mu_k + b_v, \Sigma_{vv})`. Where the
        mean moves with the label pattern, :math:`A g(y)`, the other nodes' labels move node
        ``v`` too; drawn from the class prior independently across nodes (the model's prior, as
        in :meth:`posterior`), they give the centre :math:`\mathbb{E}[m_v(y) | y_v = k]` and add
        the covariance of their shift to :math:`\Sigma_{vv}` (the Gaussian of the same first
        two moments; the shift itself is the same for every ``k``, see
        :meth:`pattern_shift_draws`). The noise is the Gaussian :math:`\Sigma_\lambda`, as in
        :meth:`class_log_likelihood`: a mixture noise is left out, and so is the mean that its
        weights add where they depend on the labels (:attr:`noise_label_weights`).
        """
        if self.scale_tril is None:
            eye = torch.eye(self.num_features, dtype=self.means.dtype, device=self.means.device)
            return self.means.unsqueeze(0), (self.sigma * eye).unsqueeze(0)
        centres, node_tril = self.means + self.offset.unsqueeze(1), self.node_scale_tril
        if self.pattern_weights is None:
            return centres, node_tril
        prior, (maps, own) = self.log_prior.exp(), self._label_maps()
        expected = prior if self.pattern_centre.numel() == self.num_classes else prior.repeat(maps.size(0))
        at_prior = ((expected - self.pattern_centre) @ self.pattern_weights.flatten(1)).view_as(self.offset)
        eye = torch.eye(self.num_classes, dtype=prior.dtype, device=prior.device)
        centres = centres + at_prior.unsqueeze(1) + torch.einsum("jk,vkc->vjc", eye - prior, own)
        label_covariance = torch.diag(prior) - torch.outer(prior, prior)
        shift_covariance = (torch.einsum("uvkc,kl,uvld->vcd", maps, label_covariance, maps)
                            - torch.einsum("vkc,kl,vld->vcd", own, label_covariance, own))
        covariance = node_tril @ node_tril.transpose(-1, -2) + shift_covariance
        return centres, torch.linalg.cholesky(covariance)

    def pattern_shift_draws(self, num_draws: int, generator: torch.Generator | None) -> Tensor:
        r"""Draws of how the other nodes' labels move each node's mean around its centre in
        :meth:`node_marginals`, ``[num_draws, V, C]``: the labels drawn from the class prior,
        independently across nodes. The same law whatever the node's own label, which the
        pattern mean adds linearly (needs :attr:`pattern_mean`)."""
        prior, (maps, own) = self.log_prior.exp(), self._label_maps()
        V, K = maps.size(0), self.num_classes
        options = dict(device=prior.device, generator=generator, dtype=torch.float64)
        labels = torch.searchsorted(prior.double().cumsum(0), draw(torch.rand, (num_draws, V), **options)).clamp_max(K - 1)
        per_node = self.pattern_centre.numel() != K

        def shifts(labels: Tensor) -> Tensor:
            deviation = torch.zeros(*labels.shape, K, dtype=prior.dtype, device=prior.device)
            deviation = deviation.scatter_(-1, labels.unsqueeze(-1), 1.0) - prior  # [r, V, K]
            features = deviation.flatten(1) if per_node else deviation.mean(1)
            everyone = (features @ self.pattern_weights.flatten(1)).view(len(labels), V, -1)
            return everyone - torch.einsum("rvk,vkc->rvc", deviation, own)

        # In chunks of draws: all of them at once took gigabytes on graphs of thousands of nodes.
        return torch.cat([shifts(part) for part in labels.split(max(1, 2**22 // (V * K)))])

    @staticmethod
    def _node_whitened(r: Tensor, node_tril: Tensor) -> Tensor:
        r""":math:`L_v^{-1} r_v` for residuals ``r [N, V, ..., C]`` and factors ``[V, C, C]`` (or
        ``[1, C, C]``: the same at every node)."""
        # The V small inverses once: a solve broadcast against r would copy them N K times.
        eye = torch.eye(node_tril.size(-1), dtype=node_tril.dtype, device=node_tril.device)
        inverse = torch.linalg.solve_triangular(node_tril, eye.expand_as(node_tril), upper=False)
        flat = r.reshape(r.size(0), r.size(1), math.prod(r.shape[2:-1]), r.size(-1))  # [N, V, M, C]
        return torch.einsum("vij,nvmj->nvmi", inverse.expand(r.size(1), -1, -1), flat).reshape(r.shape)

    def class_log_likelihood(self, h: Tensor) -> Tensor:
        r""":math:`\log p(h_v | Y_v = k)` for every node and class, ``[N, V, K]``: the Gaussian of
        :meth:`node_marginals` (:math:`\mathcal{N}(\mu_k + b_v, \Sigma_{vv})` unless the mean
        moves with the label pattern; :math:`\Sigma_{vv} = \sigma^2 I` unless a covariance was
        fitted)."""
        distance, tril = self._marginal_distances(h)
        log_scale = tril.diagonal(dim1=-2, dim2=-1).log().sum(-1, keepdim=True)  # [V, 1]
        return _gaussian_log_density(distance, log_scale, self.num_features)

    def _labels(self, y, h: Tensor | None = None) -> Tensor:
        r"""``y`` checked as labels ``[N, V]`` of this latent's classes (and of the signals ``h [N, V, C]``)."""
        if h is not None and (h.dim() != 3 or h.size(-1) != self.num_features):
            raise ValueError(f"h must have shape [N, V, num_features={self.num_features}], got {list(h.shape)}")
        y = _as_tensor(y, "y")
        if h is None and y.dim() != 2:
            raise ValueError(f"y must have shape [N, V], got {list(y.shape)}")
        num_nodes = y.size(1) if h is None else h.size(1)
        num_samples = None if h is None else h.size(0)
        return as_labels(y, num_nodes, self.num_classes, num_samples=num_samples, name="y", device=self.means.device)

    def log_prob(self, h: Tensor, y: Tensor) -> Tensor:
        r""":math:`\log p(h | y)`, summed over nodes and features, ``[N]``."""
        y = self._labels(y, h)
        dims = math.prod(h.shape[1:])
        if self.scale_tril is None:
            return _gaussian_log_density(self.joint_squared_distance(h, y), dims * math.log(self.sigma), dims)
        log_scale = self.scale_tril.diagonal().log().sum()
        u = self._whitened(h, y)
        if self.mixture_logits is None:
            return _gaussian_log_density(u.square().sum(1), log_scale, dims)
        components = _diagonal_log_densities(u, self.mixture_centres, self.mixture_scales)
        return torch.logsumexp(self.mixture_log_weights(y) + components, dim=1) - log_scale

    def posterior(self, h: Tensor) -> Tensor:
        r"""The Bayes rule of the mixture, :math:`P(Y_v = k | h_v)`, ``[N, V, K]``."""
        return self.log_posterior(h).exp()

    def posterior_logits(self, h: Tensor) -> Tensor:
        r""":math:`\log \pi_k + \log p(h_v | Y_v = k)` (:meth:`class_log_likelihood`) up to a
        term shared by all classes, ``[N, V, K]``: the Bayes rule before normalisation.

        With :math:`a = L_v^{-1} h_v` and :math:`m_k = L_v^{-1} c_{vk}`, the term
        :math:`-\|a\|^2 / 2` of every class is left out: far from the training signals it is
        far larger than the differences between the classes, which it would round away.
        """
        centres, tril = self.node_marginals()
        whitened_h = self._node_whitened(h.unsqueeze(-2), tril)  # [N, V, 1, C]
        whitened_centres = self._node_whitened(centres.unsqueeze(0), tril)[0]  # [V, K, C]
        log_scale = tril.diagonal(dim1=-2, dim2=-1).log().sum(-1, keepdim=True)
        linear = (whitened_h * whitened_centres).sum(-1)
        return self.log_prior + linear - 0.5 * whitened_centres.square().sum(-1) - log_scale

    def log_posterior(self, h: Tensor) -> Tensor:
        r""":math:`\log P(Y_v = k | h_v)`, ``[N, V, K]``, computed without passing through
        probabilities, in the dtype of ``h`` (for the scores of confident nodes, exact in the
        tails, see :func:`~igraphflow.uncertainty.precise_log_softmax`)."""
        return torch.log_softmax(self.posterior_logits(h), dim=-1)

    def sample(self, y: Tensor, generator: torch.Generator | None = None, temperature: float | None = None) -> Tensor:
        r"""Draws :math:`h \sim p(h | y)`, ``[N, V, C]``, its noise scaled by ``temperature`` (by
        default the buffer ``temperature``, 1 unless the flow chose another, see
        :func:`~igraphflow.temperature.energy_temperature`)."""
        y = self._labels(y)
        mean = self._conditional_mean(y)
        temperature = self.temperature if temperature is None else temperature
        if self.mixture_logits is not None:
            u = self.draw_noise(self.mixture_log_weights(y), generator)
            return mean + (temperature * u @ self.scale_tril.T).view_as(mean)
        # Drawn in float64 whatever the dtype: torch's streams differ between dtypes, and a seed
        # should give the same samples in float32 and float64, up to rounding.
        noise = draw(torch.randn, mean.shape, device=mean.device, generator=generator, dtype=torch.float64).to(mean.dtype)
        if self.scale_tril is None:
            return mean + self.sigma * (noise * temperature)
        return mean + (temperature * noise.flatten(1) @ self.scale_tril.T).view_as(mean)

    @torch.no_grad()
    def fit_noise_(self, h: Tensor, y: Tensor, h_val: Tensor, y_val: Tensor, seed: int | None = None) -> float | None:
        r"""Fits the latent to encoded training signals; keeps what validates best.

        A flow trained for a limited time leaves :math:`H - \mu_Y` correlated across nodes,
        narrower than :math:`\sigma` in some directions and off the means, so draws from the
        isotropic latent decode too wide or in the wrong place. The candidates are the
        isotropic :math:`\sigma^2 I` around the means as they are, and the Gaussian
        maximum-likelihood fit :math:`\mathcal{N}(\mu'_y + b, \Sigma_\lambda)`: class means
        :math:`\mu'_k` and node offsets :math:`b_v` (least squares, the sum
        :math:`\mu'_{y_v} + b_v` fitting the class centre of every node), and the covariance
        :math:`\Sigma_\lambda = (1 - \lambda) S + \lambda\, \bar s I` of the residuals, shrunk
        towards its mean variance :math:`\bar s` (:data:`SHRINKAGES`; needed when there are
        few samples per dimension). The one with the highest log-likelihood on ``h_val`` is
        kept; the means change only with it. A full covariance is tried only when
        ``V * C <=`` :data:`MAX_NOISE_DIM`.

        The label pattern as a whole may move the signal too (on sensor graphs, a pattern
        with many events comes with a higher level at every node, events or not), which means
        shared by all nodes cannot express. So the fitted mean may also move with the pattern,
        :math:`\mu'_{y_v} + b_v + A g(y)`: a ridge regression of the residuals on the centred
        labels of every node or on the label frequencies of the pattern (:func:`_pattern_fit`,
        the kind and penalty with the lowest leave-one-out error), kept only where it gains
        more than two standard errors of log-likelihood, under the covariance fitted without
        it, on the signals it did not see (the training signals left out one at a time, and
        ``h_val``; :attr:`pattern_mean`); the covariance is then refitted around it.

        With a covariance kept, the whitened residuals :math:`u = L^{-1}(h - \mu'_y - b)`
        (:math:`L L^T = \Sigma_\lambda`) of a flow trained for a limited time may still be far
        from :math:`\mathcal{N}(0, I)` (skewed, heavy-tailed or with several modes).
        Mixtures of diagonal Gaussians in :math:`u` (:data:`MIXTURE_COMPONENTS`, fitted by EM
        with scikit-learn) replace :math:`\mathcal{N}(0, I)` when the best of them gains more
        than two standard errors of log-likelihood on ``h_val`` over the better of
        :math:`\mathcal{N}(0, I)` and one diagonal Gaussian (so not for a mere rescaling of
        :math:`u`); they change :meth:`log_prob` and :meth:`sample`, while the
        node-wise quantities (:meth:`class_log_likelihood`, :meth:`squared_distances`) keep the
        Gaussian :math:`\Sigma_\lambda`. The residuals of different labels may have
        different shapes (one class skewed, another not), which weights shared by all labels
        would mix: each mixture is also tried with weights that depend on the labels, node by
        node, :math:`w(y) = \mathrm{softmax}(s + \sum_v B_{v, y_v})` (the same components, the
        shared log-weights :math:`s` moved by what each node's label adds, fitted by maximum
        likelihood with a penalty :math:`\lambda \|B\|^2`, :data:`MIXTURE_LABEL_PENALTIES`),
        kept under the same two-standard-error rule, and only where they beat the same
        mixture's weights refitted for all labels at once by two standard errors too, the
        penalty being the one that validates best (:attr:`noise_label_weights`); they reach
        label patterns not seen in training.

        Arguments:
            h, y: Encoded training signals ``[N, V, C]`` and their labels ``[N, V]``.
            h_val, y_val: Encoded held-out signals and labels.
            seed: Seeds the initialisation of the mixtures (0 if ``None``).

        Returns:
            The chosen :math:`\lambda`, or ``None`` when the isotropic noise was kept.

        Example:
            >>> latent = GaussianMixtureLatent(num_classes=2, num_features=2)
            >>> y = torch.randint(0, 2, (500, 3))
            >>> h = latent.sample(y) * torch.tensor([1.0, 0.2])  # the second feature too narrow
            >>> latent.fit_noise_(h[:400], y[:400], h[400:], y[400:]) is not None
            True
        """
        self.reset_noise_()
        dims = h[0].numel()
        if dims > MAX_NOISE_DIM or h.size(0) < 2:
            return None
        isotropic = self.log_prob(h_val, y_val).double().mean().item()
        r, r_val = (self._residual(a, b).double() for a, b in ((h, y), (h_val, y_val)))
        shift, offset = _additive_fit(r, y, self.num_classes)
        centred, centred_val = ((a - shift[b] - offset).flatten(1) for a, b in ((r, y), (r_val, y_val)))
        fit = _covariance_fit(centred, centred_val)
        pattern = _pattern_fit(centred, y, self.num_classes) if fit is not None else None
        if pattern is not None:
            centre, weights, held_out = pattern
            moved = [a - _pattern_shift(b, centre, weights, self.num_classes) for a, b in ((centred, y), (centred_val, y_val))]
            # Kept for a gain beyond two standard errors on every signal it did not see: the
            # training ones left out one at a time, and the held-out ones. Judged under the
            # covariance without it: covariances refitted to nearly the same residuals differ
            # by a gain too steady for its standard error to judge.
            tril = fit[2]
            scores = np.concatenate([_gaussian_scores(held_out, tril), _gaussian_scores(moved[1], tril)])
            moved_fit = _covariance_fit(*moved) if beats(scores, np.concatenate([_gaussian_scores(centred, tril), fit[0]])) else None
            if moved_fit is None:
                pattern = None
            else:
                fit, (centred, centred_val) = moved_fit, moved
        if fit is None or fit[0].mean() <= isotropic:
            return None
        _, shrinkage, tril = fit
        # No variance below what the model's dtype resolves: the residuals of constant signals
        # are 1e-17 in float64, but the stored means and offsets round by about eps |h|, and
        # the density would then lie 2000 standard deviations from the training signals.
        resolution = 4 * torch.finfo(self.means.dtype).eps * max(1.0, h.abs().max().item())
        floored = tril @ tril.T + resolution**2 * torch.eye(len(tril), dtype=tril.dtype, device=tril.device)
        tril = torch.linalg.cholesky(floored)
        self.means += shift.to(self.means)
        self.offset = offset.to(self.means)
        self.scale_tril = tril.to(self.means)
        if pattern is not None:
            self.pattern_centre, self.pattern_weights = centre.to(self.means), weights.view(-1, *h.shape[1:]).to(self.means)
        whitened = [torch.linalg.solve_triangular(tril, a.T, upper=False).T for a in (centred, centred_val)]
        self._fit_mixture_(whitened[0], y, whitened[1], y_val, seed)
        return shrinkage

    def _fit_mixture_(self, u: Tensor, y: Tensor, u_val: Tensor, y_val: Tensor, seed: int | None):
        r"""Replaces :math:`u \sim \mathcal{N}(0, I)` by the mixture that validates best, if any does."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        if len(u_val) < 2:  # no standard error from one held-out signal: keep the Gaussian
            return
        standard = _gaussian_log_density(u_val.square().sum(1), 0.0, u.size(1)).cpu().numpy()
        points, held_out = u.cpu().numpy(), u_val.cpu().numpy()  # for scikit-learn

        def fitted(components: int) -> GaussianMixture:
            mixture = GaussianMixture(components, covariance_type="diag", reg_covar=1e-3, random_state=seed or 0)
            with warnings.catch_warnings():
                # an EM cut at max_iter is still a density, and the held-out score judges it
                warnings.simplefilter("ignore", ConvergenceWarning)
                return mixture.fit(points)

        # The reference: the better of N(0, I) and one diagonal Gaussian, so that a mixture is
        # kept for what one Gaussian cannot fit (modes, skew, tails), not for a rescaling of u.
        reference = max(standard, fitted(1).score_samples(held_out), key=lambda scores: scores.mean())
        like = dict(dtype=u.dtype, device=u.device)
        best, best_score = None, reference.mean()
        for components in MIXTURE_COMPONENTS:
            if components > len(points) // 2:  # too few signals to place so many components
                break
            mixture = fitted(components)
            shared = torch.as_tensor(mixture.weights_, **like).log()
            centres = torch.as_tensor(mixture.means_, **like)
            scales = torch.as_tensor(mixture.covariances_, **like).sqrt()
            labelled = self._label_weights_candidate(u, y, u_val, y_val, shared, centres, scales)
            candidates = [(mixture.score_samples(held_out), None), labelled]
            for scores, label_logits in filter(None, candidates):
                # Only a gain beyond two standard errors over the held-out signals.
                if beats(scores, reference) and scores.mean() > best_score:
                    best, best_score = (shared, centres, scales, label_logits), scores.mean()
        if best is not None:
            shared, centres, scales, label_logits = (None if a is None else a.to(self.means) for a in best)
            self.mixture_logits, self.mixture_centres, self.mixture_scales = shared, centres, scales
            self.mixture_label_logits = label_logits

    def _label_weights_candidate(
        self, u: Tensor, y: Tensor, u_val: Tensor, y_val: Tensor, shared: Tensor, centres: Tensor, scales: Tensor
    ) -> tuple[np.ndarray, Tensor] | None:
        r"""Weights of the mixture ``(shared, centres, scales)`` that depend on the labels, with their
        held-out scores, when they validate better than its weights for all labels by two
        standard errors; else ``None``.

        The penalty (:data:`MIXTURE_LABEL_PENALTIES`) is the one that validates best along the
        path from the strongest down (stopped where the held-out score first falls), and that
        one is tested. The weights for all labels are refitted the same way first: an EM cut short
        leaves weights that any refit improves, whatever the labels.
        """
        densities, val_densities = (_diagonal_log_densities(a, centres, scales) for a in (u, u_val))

        def validated(labels: Tensor, labels_val: Tensor, num_classes: int, penalty: float, start: Tensor | None = None
                      ) -> tuple[np.ndarray, Tensor]:
            label_logits = _fit_label_logits(densities, labels, shared, num_classes, penalty, start)
            log_weights = _label_log_weights(shared, label_logits, labels_val)
            return torch.logsumexp(log_weights + val_densities, 1).cpu().numpy(), label_logits

        unlabelled, _ = validated(y.new_zeros(len(y), 1), y_val.new_zeros(len(y_val), 1), 1, 0.0)
        # A ridge path: from the strongest penalty down, each fit started where the last ended
        # (a few L-BFGS steps instead of a fit from zero), stopped where the held-out score
        # first falls. Measured on traffic and chordal, that score has one peak along the path.
        best = None
        for penalty in sorted(MIXTURE_LABEL_PENALTIES, reverse=True):
            candidate = validated(y, y_val, self.num_classes, penalty, None if best is None else best[1])
            if best is not None and candidate[0].mean() <= best[0].mean():
                break
            best = candidate
        scores, label_logits = best
        return (scores, label_logits) if beats(scores, unlabelled) else None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The noise buffers exist only once fitted: give them the saved shapes, in the model's
        # dtype, before loading.
        for name in self.NOISE_BUFFERS:
            saved = state_dict.get(prefix + name)
            setattr(self, name, None if saved is None else torch.empty_like(saved, device=self.means.device, dtype=self.means.dtype))
        # Checkpoints written before the sampling temperature existed sampled at temperature 1.
        state_dict.setdefault(prefix + "temperature", torch.tensor(1.0))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._check_noise()

    def _check_noise(self):
        r"""Refuses a loaded noise that no fit writes: it would sample and score wrongly, not fail."""
        dims = None if self.scale_tril is None else self.scale_tril.size(0)
        problems = []
        if self.temperature.item() <= 0:  # NaN is the flow's to report, with the other non-finite values
            problems.append(f"temperature {self.temperature.item():g} is not positive")
        if (self.scale_tril is None) != (self.offset is None):
            problems.append("offset and scale_tril come only together")
        elif dims is not None and not (self.offset.numel() == dims and self.scale_tril.shape == (dims, dims)
                                       and bool((self.scale_tril.diagonal() > 0).all())):
            problems.append("scale_tril is not the positive Cholesky factor of the offset's dimensions")
        centre, weights = self.pattern_centre, self.pattern_weights
        if (centre is None) != (weights is None):
            problems.append("pattern_centre and pattern_weights come only together")
        elif weights is not None:
            if dims is None:
                problems.append("a mean that moves with the label pattern needs a covariance")
            elif not (weights.dim() == 3 and weights.size(2) == self.num_features and weights.shape[1:].numel() == dims
                      and centre.dim() == 1 and centre.numel() in (self.num_classes, weights.size(1) * self.num_classes)
                      and weights.size(0) == centre.numel()
                      and bool(torch.isfinite(weights).all() and torch.isfinite(centre).all())):
                problems.append("the pattern weights do not match the nodes, the classes and the features")
        mixture = (self.mixture_logits, self.mixture_centres, self.mixture_scales)
        if any(a is not None for a in mixture):
            if dims is None or any(a is None for a in mixture):
                problems.append("a mixture noise needs its weights, centres, scales and a covariance")
            elif not (self.mixture_centres.shape == self.mixture_scales.shape == (self.mixture_logits.numel(), dims)
                      and bool((self.mixture_scales > 0).all())):
                problems.append("the mixture's weights, centres and positive scales do not match")
        label_logits = self.mixture_label_logits
        if label_logits is not None:
            if self.mixture_logits is None:
                problems.append("weights that depend on the labels need a mixture noise")
            elif not (label_logits.dim() == 3 and label_logits.size(0) * self.num_features == dims
                      and label_logits.shape[1:] == (self.num_classes, self.mixture_logits.numel())
                      and bool(torch.isfinite(label_logits).all())):
                problems.append("the label weights do not match the nodes, the classes and the mixture")
        if problems:
            raise ValueError("the latent noise is inconsistent: " + "; ".join(problems))

    def pairwise_distances(self) -> Tensor:
        r"""The distances :math:`\|\mu_i - \mu_j\|` for :math:`i < j`."""
        i, j = torch.triu_indices(self.num_classes, self.num_classes, offset=1)
        return (self.means[i] - self.means[j]).norm(dim=-1)

    def barrier(self) -> Tensor:
        r"""The log-barrier :math:`-\sum_{i<j} \log(\|\mu_i - \mu_j\| - c)`, in units of ``sigma``."""
        return -torch.log((self.pairwise_distances() - self.min_distance) / self.sigma).sum()

    @torch.no_grad()
    def project_(self, margin: float = 1e-3, max_sweeps: int = 100):
        r"""Pushes apart, symmetrically, any pair of means closer than ``c`` (plus a margin).

        Moving one pair may bring another closer, so the sweeps repeat until every pair is
        feasible.
        """
        target = self.min_distance + margin * self.sigma
        for _ in range(max_sweeps):
            feasible = True
            for i in range(self.num_classes):
                for j in range(i + 1, self.num_classes):
                    diff = self.means[i] - self.means[j]
                    distance = diff.norm()
                    if distance < target:
                        feasible = False
                        direction = diff / distance if distance > 0 else torch.eye(self.num_features)[0].to(diff)
                        shift = (0.5 * (target - distance) + 1e-6 * self.sigma) * direction
                        self.means[i] += shift
                        self.means[j] -= shift
            if feasible:
                return
