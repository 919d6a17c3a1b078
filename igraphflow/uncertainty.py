r"""Uncertainty quantification: prediction sets for node labels and confidence regions in X space.

Two kinds of node-label sets come from one fitted :class:`~igraphflow.ConditionalGraphFlow`:

* **Gaussian confidence-region sets** (no calibration needed). Under the model,
  :math:`H_v | Y_v = k \sim \mathcal{N}(\mu_k + b_v, \Sigma_{vv})` (:math:`b_v = 0`,
  :math:`\Sigma_{vv} = \sigma^2 I_C` unless the latent noise was fitted), so the Mahalanobis
  distance :math:`d_{vk}^2 = \|H_v - \mu_k - b_v\|^2_{\Sigma_{vv}^{-1}} \sim \chi^2_C` and the set
  :math:`\{k : d_{vk}^2 \le \chi^2_{C, 1-\alpha}\}` contains the true label
  with probability :math:`1 - \alpha` *if the flow is exact*. Sets may be empty (a point far
  from every mean) or hold several labels (means closer than the ball radius). Under a mixture
  noise (see :meth:`~igraphflow.latent.GaussianMixtureLatent.fit_noise_`) the ellipses keep
  :math:`\Sigma_{vv}` and their size is the :math:`1 - \alpha` quantile of :math:`d_{vk}^2`
  over draws of the density (with the weights shared by all label patterns: the labels are
  unknown). Where the mean also moves with the whole label pattern
  (``latent.pattern_mean``), the other nodes' labels, unknown too, move each node's mean: the
  ellipses are those of the node's law given its own label alone, the other labels drawn from
  the class prior (:meth:`~igraphflow.latent.GaussianMixtureLatent.node_marginals`), sized by
  the same kind of draws. Labels absent from the training labels are in no set.
* **Split-conformal sets** (after :meth:`UncertaintyMixin.calibrate`). These hold the true label
  with probability at least :math:`1 - \alpha` whatever the quality of the flow, provided the
  calibration and test nodes are exchangeable.

Conformal score. We use the LAC ("least ambiguous set-valued classifier") score
:math:`s = 1 - P(Y_v = y | X)` of Sadinle, Lei and Wasserman: among all set-valued classifiers
with marginal coverage :math:`1 - \alpha` it gives the smallest expected set size, which is
what is compared against other classifiers. (APS gives better conditional coverage at the
price of larger sets; with ``K = 2`` labels, the common case here, the two hardly differ.)
The scores are stored as :math:`-\log P(Y_v = y | X)`, a monotone transform of
:math:`1 - P` that yields exactly the same sets but does not round to ties when the
probabilities saturate at 1 in floating point (ties would make coverage overshoot).

Exchangeability is at the level of graphs: the nodes of one graph are dependent. The scores of
all ``n V`` nodes of the ``n`` calibration graphs are pooled, and their threshold is the
:math:`\lceil (n+1) V (1-\alpha) \rceil`-th smallest: the test graph brings ``V`` scores, not
one, and with this rank the guarantee is *marginal over nodes* (a random node of a random test
graph) however strongly the nodes of a graph depend on each other (the rank of one score,
:math:`\lceil (nV+1)(1-\alpha) \rceil`, falls short of it when they do: with one calibration
graph of identical nodes it covers half the nodes at every ``alpha`` from :math:`1 / (V + 1)`).
The price is an excess coverage of order :math:`1 / n` (about :math:`(1 - \alpha) / n` where the
scores differ, up to about :math:`1 / (n + 1)` more where the nodes of a graph are near copies of
one another, from rounding to whole graphs), and sets of every
label below :math:`\alpha = 1 / (n + 1)` however many nodes the graphs have (``calibrate``
warns). With ``per_node=True`` each node gets its own quantile from its own ``n`` calibration
scores: the guarantee then holds for every node separately, at the price of coarser quantiles.

Uncertainty regions in X space are the preimages under :math:`F` of the confidence balls of
:math:`H | Y`: :meth:`UncertaintyMixin.in_region` tests membership, and
:meth:`UncertaintyMixin.region_boundary` traces the boundary for 2-D node features.

References:
    | Least Ambiguous Set-Valued Classifiers With Bounded Error Levels (Sadinle, Lei and
      Wasserman, 2019)
    | https://doi.org/10.1080/01621459.2017.1395341

    | A Gentle Introduction to Conformal Prediction and Distribution-Free Uncertainty
      Quantification (Angelopoulos and Bates, 2021)
    | https://arxiv.org/abs/2107.07511

    | Invertible Neural Networks for Graph Prediction (Xu, Cheng and Xie, 2022)
    | https://arxiv.org/abs/2206.01163
"""

from __future__ import annotations

__all__ = [
    "UncertaintyMixin",
    "conformal_quantile",
    "conformal_scores",
    "conformal_sets",
    "chi2_quantile",
    "precise_log_softmax",
    "set_coverage",
]

import copy
import math
import warnings

import torch
from scipy.stats import chi2
from torch import Tensor

from ._checks import ArrayLike, _as_tensor, as_count, as_flag, as_labels, as_real, finite_result
from ._chunks import in_chunks

# The layout of the extra state (one float64 tensor, so that it survives ``.cpu()`` and
# ``torch.load(weights_only=True)``): a header, then the sorted calibration scores row-wise.
# Version 2: scores from precise_log_softmax. Those of version 1 may come from a float32
# log_softmax, whose scores of confident nodes are exactly 0: below every score of today's.
_STATE_VERSION = 2
_HEADER = 5  # version, calibrated, alpha, per_node, scores per node (per_node) or in all

REGION_DRAWS = 2**14
r"""Draws of a mixture noise that size its confidence regions: the coverage of a region at
1 - alpha = 0.9 has a Monte Carlo standard error of about 0.002 (sqrt(0.9 * 0.1 / 2^14))."""


def _uncalibrated_state() -> Tensor:
    return torch.tensor([_STATE_VERSION, 0.0, math.nan, 0.0, 0.0], dtype=torch.float64)


def chi2_quantile(alpha: float, df: int) -> float:
    r"""The :math:`1 - \alpha` quantile of the chi-square law with ``df`` degrees of freedom.

    Example:
        >>> round(chi2_quantile(0.05, 1), 4)  # 1.96 ** 2
        3.8415
    """
    # isf, not ppf(1 - alpha): 1 - alpha rounds to 1 (an infinite quantile) below alpha ~ 1e-16.
    return float(chi2.isf(as_real(alpha, "alpha", "(0, 1)"), df=as_count(df, "df")))


def _as_scores(values, name: str, dims: int | None = None) -> Tensor:
    r"""``values`` as a floating tensor without NaN (infinities are scores too), of ``dims`` axes or at least one."""
    values = values if isinstance(values, Tensor) else _as_tensor(values, name)
    if (values.dim() != dims) if dims is not None else values.dim() == 0:
        shape = "shape [N, V, K]" if dims == 3 else "at least one axis"
        raise ValueError(f"{name} must have {shape}, got shape {list(values.shape)}")
    if not values.dtype.is_floating_point:
        raise ValueError(f"{name} must hold floating-point numbers, got dtype {values.dtype}")
    if not values.is_meta and torch.isnan(values).any():  # a meta tensor has no values to check
        raise ValueError(f"{name} holds NaN")
    return values


def conformal_quantile(sorted_scores: Tensor, alpha: float, group_size: int = 1) -> Tensor:
    r"""The split-conformal threshold: the :math:`\lceil (n/g+1)\, g\, (1-\alpha) \rceil`-th smallest score.

    With ``n`` calibration scores in ``n / g`` exchangeable groups of ``g = group_size`` (one
    group per graph, one score per node), and a test group exchangeable with them, a score
    :math:`s` drawn at random from the test group has :math:`P(s \le \hat q) \ge 1 - \alpha`,
    however the scores of one group depend on each other. ``g = 1`` is the usual rank
    :math:`\lceil (n+1)(1-\alpha) \rceil`. When the rank exceeds ``n`` (too few scores for this
    ``alpha``) the threshold is :math:`+\infty`: the set of all labels.

    Arguments:
        sorted_scores: Scores sorted ascending along the last axis, ``[..., n]``.
        alpha: The miscoverage level in ``(0, 1)``.
        group_size: The scores per exchangeable group; it divides ``n``.

    Returns:
        The thresholds ``[...]``.

    Example:
        >>> scores = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
        >>> conformal_quantile(scores, 0.2)  # ceil(10 * 0.8) = 8th smallest
        tensor(0.8000)
        >>> conformal_quantile(scores, 0.05)  # ceil(10 * 0.95) = 10 > 9
        tensor(inf)
        >>> conformal_quantile(scores, 0.2, group_size=3)  # ceil(4 * 3 * 0.8) = 10 > 9
        tensor(inf)
    """
    sorted_scores = _as_scores(sorted_scores, "sorted_scores")
    if not sorted_scores.is_meta and (sorted_scores[..., 1:] < sorted_scores[..., :-1]).any():
        raise ValueError("sorted_scores must be sorted ascending along the last axis")
    n = sorted_scores.size(-1)
    rank = _conformal_rank(n, alpha, group_size)
    if rank > n:
        return torch.full(sorted_scores.shape[:-1], math.inf, dtype=sorted_scores.dtype, device=sorted_scores.device)
    return sorted_scores[..., max(rank, 1) - 1]


def _conformal_rank(n: int, alpha: float, group_size: int) -> int:
    r"""The 1-based rank of :func:`conformal_quantile`'s threshold among ``n`` scores (``> n``: none)."""
    alpha = as_real(alpha, "alpha", "(0, 1)")
    group_size = as_count(group_size, "group_size")
    if n < 1:
        raise ValueError("conformal_quantile needs at least one calibration score")
    if n % group_size:
        raise ValueError(f"group_size {group_size} does not divide the {n} calibration scores")
    # A small tolerance keeps the rank from rounding up past an exact integer (for alpha = 0.3,
    # or 1 - 0.9, whose binary values lie a hair off the decimal ones).
    return math.ceil((n + group_size) * (1.0 - alpha) - 1e-9)


def conformal_scores(log_proba: Tensor, Y: Tensor) -> Tensor:
    r"""LAC non-conformity scores :math:`-\log P(Y_v = y_v | X)` of the true labels, ``[N, V]``.

    Arguments:
        log_proba: Log-probabilities of the labels, ``[N, V, K]``.
        Y: True labels ``[N, V]``.

    Example:
        >>> log_proba = torch.tensor([[[0.9, 0.1], [0.3, 0.7]]]).log()
        >>> conformal_scores(log_proba, torch.tensor([[0, 0]])).exp()  # 1 / P(true label)
        tensor([[1.1111, 3.3333]])
    """
    log_proba = _as_scores(log_proba, "log_proba", dims=3)
    num_samples, num_nodes, num_classes = log_proba.shape
    Y = as_labels(Y, num_nodes, num_classes, num_samples=num_samples, device=log_proba.device)
    return -log_proba.gather(-1, Y.unsqueeze(-1)).squeeze(-1)


def precise_log_softmax(logits: Tensor) -> Tensor:
    r"""``log_softmax`` over the last axis, in float64, exact in the tails.

    Computed around the most probable label ``t`` as :math:`\log P_k = (l_k - l_t) -
    \log(1 + \sum_{j \ne t} e^{l_j - l_t})`, the logarithm taken with ``log1p``: the top
    label's log-probability stays distinct from 0 up to logit gaps of about 700, where
    ``log_softmax`` rounds it to 0 beyond a gap of about 17 in float32 and 37 in float64 (ties
    among the conformal scores of confident nodes). Memory is that of the output.

    Arguments:
        logits: Unnormalised log-probabilities ``[..., K]``.

    Example:
        >>> logits = torch.tensor([0.0, -30.0])
        >>> torch.log_softmax(logits, -1)[0].item(), f"{precise_log_softmax(logits)[0].item():.6e}"
        (0.0, '-9.357623e-14')
    """
    logits = _as_scores(logits, "logits").double()
    if logits.size(-1) == 0:
        return logits
    # log P_k = (l_k - l_t) - log(1 + sum_{j != t} exp(l_j - l_t)), t the most probable label:
    # log1p keeps the top label's log(1 - small), which cancels in log_softmax, and a label
    # tied with the top gets exactly the same value.
    top = logits.argmax(-1, keepdim=True)
    shifted = logits - logits.gather(-1, top)
    rest = shifted.scatter(-1, top, -math.inf).exp().sum(-1, keepdim=True).log1p()
    return (shifted - rest).scatter(-1, top, -rest)


def conformal_sets(log_proba: Tensor, threshold: Tensor | float) -> Tensor:
    r"""The labels whose score :math:`-\log P(Y_v = k | X)` is at most ``threshold``, ``bool [N, V, K]``.

    Arguments:
        log_proba: Log-probabilities ``[N, V, K]``.
        threshold: A number, or one threshold per node ``[V]``.

    Example:
        >>> log_proba = torch.tensor([[[0.9, 0.1], [0.6, 0.4]]]).log()
        >>> conformal_sets(log_proba, -math.log(0.35))
        tensor([[[ True, False],
                 [ True,  True]]])
    """
    log_proba = _as_scores(log_proba, "log_proba", dims=3)
    if threshold is None or isinstance(threshold, (str, bytes)):
        raise ValueError(f"threshold must be a number or one per node, got {threshold!r}")
    threshold = _as_tensor(threshold, "threshold").to(dtype=log_proba.dtype, device=log_proba.device)
    if threshold.shape not in (torch.Size([]), log_proba.shape[1:2]):
        raise ValueError(f"threshold must be a number or one per node [{log_proba.size(1)}], got shape {list(threshold.shape)}")
    if torch.isnan(threshold).any():  # every comparison with NaN is False: all sets would be empty
        raise ValueError("threshold is NaN")
    if threshold.dim() == 1:
        threshold = threshold[:, None]
    return -log_proba <= threshold


def set_coverage(sets: Tensor, Y: Tensor) -> Tensor:
    r"""Whether each node's set holds its true label, ``bool [N, V]``.

    Example:
        >>> sets = torch.tensor([[[True, False], [True, True]]])
        >>> set_coverage(sets, torch.tensor([[1, 1]]))
        tensor([[False,  True]])
    """
    sets = _as_tensor(sets, "sets")
    if sets.dim() != 3:
        raise ValueError(f"sets must have shape [N, V, K], got {list(sets.shape)}")
    if sets.dtype != torch.bool:
        raise ValueError(f"sets must be a bool tensor, got dtype {sets.dtype}")
    num_samples, num_nodes, num_classes = sets.shape
    Y = as_labels(Y, num_nodes, num_classes, num_samples=num_samples, device=sets.device)
    return sets.gather(-1, Y.unsqueeze(-1)).squeeze(-1)


class UncertaintyMixin:
    r"""Prediction sets and confidence regions for :class:`~igraphflow.ConditionalGraphFlow`.

    The host class provides ``encode``, ``decode``, ``predict_proba``, ``latent``
    (a :class:`~igraphflow.latent.GaussianMixtureLatent`), ``head``, ``num_nodes``,
    ``num_features``, ``num_classes``, the input checks ``_signals`` and ``_labels`` and ``_warn_unseen``.
    The calibration is kept in the module's extra state, so it travels with ``state_dict``,
    :meth:`save` and :meth:`load`. A new fit forgets it (its scores belong to the old model):
    calibrate again after fitting.

    Example:
        >>> from igraphflow import ConditionalGraphFlow
        >>> _ = torch.manual_seed(0)
        >>> Y = torch.randint(0, 2, (80, 1))
        >>> X = torch.randn(80, 1, 2) + 3.0 * Y.unsqueeze(-1)
        >>> empty = torch.empty(2, 0, dtype=torch.long)
        >>> model = ConditionalGraphFlow(empty, 1, 2, 2, num_blocks=1, max_epochs=1, hidden=8, seed=0)
        >>> model = model.fit(X[:40], Y[:40], progress=False).calibrate(X[40:60], Y[40:60], alpha=0.1)
        >>> model.prediction_sets(X[60:]).shape, model.in_region(X[60:], Y[60:]).shape
        (torch.Size([20, 1, 2]), torch.Size([20]))
    """

    # Calibration state -------------------------------------------------------------------

    @property
    def is_calibrated(self) -> bool:
        r"""Whether :meth:`calibrate` has stored conformal scores."""
        return getattr(self, "_calibration_scores", None) is not None

    @property
    def calibration_scores_(self) -> Tensor | None:
        r"""The sorted calibration scores :math:`-\log P(Y_v = y_v | X)` of the ``n`` calibration
        graphs: ``[n V]`` pooled over their nodes, ``[V, n]`` per node, ``None`` before
        :meth:`calibrate`."""
        return getattr(self, "_calibration_scores", None)

    @property
    def calibration_alpha_(self) -> float | None:
        r"""The default ``alpha`` of :meth:`prediction_sets`, set by :meth:`calibrate`."""
        return getattr(self, "_calibration_alpha", None)

    def predict_log_proba(self, X: ArrayLike) -> Tensor:
        r""":math:`\log P(Y_v = k | X)`, ``[N, V, K]`` in float64: the log of :meth:`predict_proba`,
        computed from the logits by :func:`precise_log_softmax`, so that the scores of confident
        nodes do not round to 0 (probabilities saturate at 1 in float32). A label absent from the
        training labels gets :math:`-\infty` (probability 0): nothing was fitted to predict it."""
        self._check_fitted()
        X = self._signals(X)
        log_proba = self._log_proba(self.encode(X), self.standardizer(X))
        # Finite H far outside the training signals can still overflow the classifier.
        finite_result(log_proba[..., self.classes_seen], X, "X")
        return log_proba

    @torch.no_grad()
    def _log_proba(self, h: Tensor, x: Tensor) -> Tensor:
        r""":math:`\log P(Y_v = k | X)` from the latent ``h [N, V, C]`` and the standardised input
        ``x`` of the same signals (the head may read both), ``[N, V, K]`` in float64,
        :math:`-\infty` for the labels absent from the training labels."""
        # An unseen label's mean was placed, never fitted: the Bayes rule could give it the
        # inputs that land near it, with any probability.
        unseen = ~self.classes_seen
        # In float64: the products of the node features of signals far out overflow float32.
        head = None if self.head is None else copy.deepcopy(self.head).double()

        def log_proba(h_part: Tensor, x_part: Tensor) -> Tensor:
            if head is None:
                logits = self.latent.posterior_logits(h_part)
            else:
                logits = head(self._head_signals(h_part, x_part).double())
            return precise_log_softmax(logits.masked_fill(unseen, -math.inf))

        # In chunks: the graph head gathers every neighbourhood of every signal at once.
        return in_chunks(log_proba, h, x)

    @torch.no_grad()
    def calibrate(self, X_cal: ArrayLike, Y_cal: ArrayLike, alpha: float = 0.1, per_node: bool = False) -> UncertaintyMixin:
        r"""Split-conformal calibration on held-out graphs (not the training samples).

        Stores the sorted LAC scores of the true labels of every node, so that
        :meth:`prediction_sets` can serve any ``alpha`` afterwards with the finite-sample
        guarantee :math:`P(y_v \in \mathcal{C}(X)_v) \ge 1 - \alpha`.

        Arguments:
            X_cal: Calibration signals ``[n, V, C]``, exchangeable with the test signals and
                not used for fitting.
            Y_cal: Their labels ``[n, V]``.
            alpha: The default miscoverage level of :meth:`prediction_sets`.
            per_node: Pool the scores of all nodes (``False``: coverage marginal over nodes,
                ``n V`` scores) or keep one quantile per node (``True``: coverage for every
                node, ``n`` scores each).

        Returns:
            The model itself.
        """
        alpha, per_node = as_real(alpha, "alpha", "(0, 1)"), as_flag(per_node, "per_node")
        X_cal = self._signals(X_cal, name="X_cal")
        Y_cal = self._labels(Y_cal, num_samples=X_cal.size(0), name="Y_cal")
        self._warn_unseen(Y_cal, "Y_cal")
        if X_cal.size(0) < 1:
            raise ValueError("calibrate needs at least one calibration graph")
        scores = conformal_scores(self.predict_log_proba(X_cal), Y_cal).double().cpu()  # [n, V]
        scores = scores.T.contiguous() if per_node else scores.flatten()
        self._calibration_scores = scores.sort(dim=-1).values
        self._calibration_alpha = alpha
        self._warn_if_too_few(alpha, stacklevel=4)  # past calibrate's no_grad wrapper, to the caller
        return self

    def _warn_if_too_few(self, alpha: float, stacklevel: int):
        n = self._calibration_scores.size(-1)
        if _conformal_rank(n, alpha, self._score_group_size()) > n:
            graphs = n // self._score_group_size()
            warnings.warn(f"{graphs} calibration graphs are too few for alpha={alpha:g}: every set holds "
                          f"every label (about 1/alpha - 1 graphs are needed)", stacklevel=stacklevel)

    def conformal_threshold(self, alpha: float | None = None) -> Tensor:
        r"""The conformal threshold on :math:`-\log P(Y_v = k | X)`: a scalar, or ``[V]`` per node.

        ``alpha`` defaults to the level given to :meth:`calibrate`. Pooled over nodes, the rank
        counts the calibration scores graph by graph (:func:`conformal_quantile` with
        ``group_size = V``), per node one by one.
        """
        return self._threshold(alpha, stacklevel=4)

    def _threshold(self, alpha: float | None, stacklevel: int) -> Tensor:
        # stacklevel: from the warning up to the public caller, past any no_grad wrapper.
        if not self.is_calibrated:
            raise RuntimeError("this model is not calibrated: call calibrate(X_cal, Y_cal) first")
        alpha = self._calibration_alpha if alpha is None else as_real(alpha, "alpha", "(0, 1)")
        self._warn_if_too_few(alpha, stacklevel)
        return conformal_quantile(self._calibration_scores, alpha, group_size=self._score_group_size())

    def _score_group_size(self) -> int:
        # Pooled scores come in groups of V, one group per calibration graph; per node, one by one.
        return self.num_nodes if self._calibration_scores.dim() == 1 else 1

    # Prediction sets ---------------------------------------------------------------------

    @torch.no_grad()
    def prediction_sets(self, X: ArrayLike, alpha: float | None = None) -> Tensor:
        r"""Sets of node labels with coverage :math:`1 - \alpha`, ``bool [N, V, K]``.

        After :meth:`calibrate`, the split-conformal LAC sets
        :math:`\{k : -\log P(Y_v = k | X) \le \hat q_\alpha\}`; any ``alpha`` is served from
        the stored scores (default: the calibration level). Without calibration, the Gaussian
        confidence-region sets :math:`\{k : d_{vk}^2 \le \chi^2_{C, 1-\alpha}\}` (module docstring)
        (default ``alpha = 0.1``), whose coverage holds only as far as the flow is exact. Sets
        may be empty; an empty set counts as a miss.

        Arguments:
            X: Signals ``[N, V, C]``.
            alpha: The miscoverage level in ``(0, 1)`` (uncalibrated, at least that of
                :meth:`gaussian_sets`).

        Returns:
            ``sets[n, v, k]`` is True when label ``k`` is in the set of node ``v`` of graph ``n``.
        """
        if alpha is not None:
            alpha = as_real(alpha, "alpha", "(0, 1)")
        if self.is_calibrated:
            threshold = self._threshold(alpha, stacklevel=5).to(self.device)
            return conformal_sets(self.predict_log_proba(X), threshold)
        return self.gaussian_sets(X, 0.1 if alpha is None else alpha)

    @torch.no_grad()
    def gaussian_sets(self, X: ArrayLike, alpha: float = 0.1) -> Tensor:
        r"""The Gaussian confidence-region sets of :math:`H | Y` (calibrated or not), ``bool [N, V, K]``.

        A label absent from the training labels is in no set: its mean was never fitted. ``alpha``
        is at least ``1 /`` :data:`REGION_DRAWS` where the sets are sized by draws (see
        :meth:`in_region`)."""
        alpha = as_real(alpha, "alpha", "(0, 1)")
        self._check_fitted()
        distance = self.latent.squared_distances(self.encode(X))
        return (distance <= self._region_thresholds(alpha).unsqueeze(-1)) & self.classes_seen

    def _region_thresholds(self, alpha: float, Y: Tensor | None = None, joint: bool = False) -> Tensor:
        r"""The squared distances that bound the :math:`1 - \alpha` regions given the label
        patterns ``Y [N, V]``: of whole signals
        (:meth:`~igraphflow.latent.GaussianMixtureLatent.joint_squared_distance`), ``[N]``, or
        of each node (:meth:`~igraphflow.latent.GaussianMixtureLatent.squared_distances`),
        ``[N, V]``; without ``Y`` (labels unknown), ``[1]`` or ``[1, V]``.

        Chi-square quantiles under Gaussian noise; under a mixture noise, the quantiles of the
        same distances over :data:`REGION_DRAWS` draws of the density (a fixed seed), so that
        the ellipsoids of the Gaussian fit hold :math:`1 - \alpha` of the mixture: with the
        weights of each label pattern where they depend on the labels, else (and without ``Y``)
        with the shared weights. Every pattern's draws share their random numbers, so the
        distances are computed once per component and gathered pattern by pattern; node-wise,
        from each node's own law under each component (a Gaussian in ``C`` dimensions). Node-wise
        without ``Y``, where the mean moves with the label pattern, the draws add the shift
        that the other nodes' labels give each node
        (:meth:`~igraphflow.latent.GaussianMixtureLatent.pattern_shift_draws`), and the
        ellipses are those of :meth:`~igraphflow.latent.GaussianMixtureLatent.node_marginals`.
        """
        V, C = self.num_nodes, self.num_features
        latent, count = self.latent, 1 if Y is None else Y.size(0)
        shape = (count,) if joint else (count, V)
        # Labels unknown: where the mean moves with the label pattern, the other nodes' labels
        # move each node's too (GaussianMixtureLatent.node_marginals), by a shift no chi-square holds.
        shifted = Y is None and not joint and latent.pattern_mean
        if latent.noise_components == 1 and not shifted:
            return torch.full(shape, chi2_quantile(alpha, V * C if joint else C), dtype=torch.float64, device=self.device)
        if alpha < 1 / REGION_DRAWS:  # the largest draw would stand in for a rarer quantile
            raise ValueError(f"alpha must be at least 1/{REGION_DRAWS} here (the regions of this model are sized "
                             f"by {REGION_DRAWS} draws), got {alpha:g}")
        if count == 0:  # no signals asked about
            return torch.zeros(shape, dtype=torch.float64, device=self.device)
        tril = latent.scale_tril
        if latent.noise_components > 1:
            log_weights, which = torch.unique(latent.mixture_log_weights(Y), dim=0, return_inverse=True)
            centres, scales = latent.mixture_centres, latent.mixture_scales
        else:  # one standard Gaussian component
            log_weights, which = tril.new_zeros(1, 1), torch.zeros(count, dtype=torch.long, device=self.device)
            centres, scales = tril.new_zeros(1, V * C), tril.new_ones(1, V * C)
        generator = torch.Generator().manual_seed(0)
        noise, uniform = latent.standard_draws(REGION_DRAWS, generator, tril)
        draws = torch.arange(REGION_DRAWS, device=self.device)
        # Pattern p's draw r is draw r of its component: entry k R + r of the components' draws side by side.
        picks = [latent.mixture_components(w.expand(REGION_DRAWS, -1), uniform) * REGION_DRAWS + draws for w in log_weights]
        # The ceil(n (1 - alpha))-th smallest of n draws.
        rank = max(1, math.ceil(REGION_DRAWS * (1 - alpha)))

        def quantiles(distance) -> Tensor:
            r"""``distance(m) -> [R, ...]``, the distances of component ``m``'s draws: their quantile
            over each pattern's draws, ``[P, ...]``."""
            per_component = torch.cat([distance(m) for m in range(len(centres))])
            # Draws last and contiguous: a selection along the last dimension is about twice as fast.
            side_by_side = per_component.movedim(0, -1).contiguous()
            return torch.stack([side_by_side.index_select(-1, index).kthvalue(rank, dim=-1).values for index in picks]).double()

        if joint:
            return quantiles(lambda m: (centres[m] + scales[m] * noise).square().sum(1))[which]
        node_tril, shift = latent.node_scale_tril, None
        if shifted:
            node_tril, shift = latent.node_marginals()[1], latent.pattern_shift_draws(REGION_DRAWS, generator)
        # Node v of component m's draws is N(L_v c_m, L_v diag(s_m^2) L_v^T), L_v the node's C rows of
        # the factor: C standard normal numbers per node and draw (those of ``noise`` at the node)
        # give its law, where mapping whole D-dimensional draws took R D^2 operations per component.
        # Whitened by the node's ellipse L'_v, a draw is L'_v^-1 (L_v c_m + F_mv z + shift), F_mv F_mv^T
        # the covariance above: one C x C map of z per node and component.
        rows, standard = tril.view(V, C, V * C).double(), noise.view(REGION_DRAWS, V, C).transpose(0, 1)
        eye = torch.eye(C, dtype=torch.float64, device=self.device)
        whitening = torch.linalg.solve_triangular(node_tril.double(), eye.expand(V, C, C), upper=False)

        def node_quantiles(nodes: slice) -> Tensor:
            r"""The thresholds of the nodes ``nodes``, ``[P, len(nodes)]``."""
            z, white = standard[nodes], whitening[nodes]
            moved = 0.0 if shift is None else (shift[:, nodes].transpose(0, 1).double() @ white.mT).to(z.dtype)

            def distance(m: int) -> Tensor:
                scaled = rows[nodes] * scales[m].double()
                maps = white @ torch.linalg.cholesky(scaled @ scaled.mT)
                centre = (white @ (rows[nodes] @ centres[m].double()).unsqueeze(-1)).mT
                return (centre.to(z.dtype) + z @ maps.mT.to(z.dtype) + moved).square().sum(-1).T  # [R, nodes]

            return quantiles(distance)

        # In blocks of nodes: all components' distances of a block at once stay below 2^24 numbers.
        block = max(1, 2**24 // (REGION_DRAWS * len(centres)))
        return torch.cat([node_quantiles(slice(start, start + block)) for start in range(0, V, block)], dim=1)[which]

    # Regions in X space ------------------------------------------------------------------

    @torch.no_grad()
    def in_region(self, X: ArrayLike, Y: ArrayLike, alpha: float = 0.1, joint: bool = True) -> Tensor:
        r"""Whether ``X`` lies in the :math:`1 - \alpha` uncertainty region of ``X | Y``.

        The region is the preimage under :math:`F` of a confidence ball of :math:`H | Y`.

        Arguments:
            X: Signals ``[N, V, C]``.
            Y: Labels ``[N, V]``.
            alpha: The miscoverage level in ``(0, 1)``; at least ``1 /`` :data:`REGION_DRAWS`
                where the regions are sized by draws (a mixture noise).
            joint: ``True``: the joint region of all ``V C`` coordinates,
                :math:`\|H - \mu_Y - b\|^2_{\Sigma^{-1}} \le \chi^2_{VC, 1-\alpha}` (the mean
                :math:`\mu_Y + b` moved with the label pattern where it moves with it, see
                :meth:`~igraphflow.latent.GaussianMixtureLatent.conditional_mean`;
                :math:`\sum_v \|H_v - \mu_{Y_v}\|^2 / \sigma^2` for the isotropic latent),
                one answer per graph ``[N]``. ``False``: the node-wise regions
                :math:`d_{v Y_v}^2 \le \chi^2_{C, 1-\alpha}` (module docstring), ``[N, V]``.
                Under a mixture noise (``latent.noise_components > 1``) the same ellipsoids
                are sized by quantiles of draws of the density instead of the chi-square law.

        Returns:
            ``bool [N]`` (joint) or ``bool [N, V]`` (node-wise). For samples of the model's
            density (:meth:`sample` at ``temperature=1``) the fraction inside is
            :math:`1 - \alpha` in both cases; the default sampling temperature (chosen to match
            the spread of the training signals) widens or narrows the draws, not the region.
        """
        alpha, joint = as_real(alpha, "alpha", "(0, 1)"), as_flag(joint, "joint")
        self._check_fitted()
        X = self._signals(X)
        Y = self._labels(Y, num_samples=X.size(0))
        self._warn_unseen(Y)
        h = self.encode(X)
        threshold = self._region_thresholds(alpha, Y, joint)
        if joint:
            return self.latent.joint_squared_distance(h, Y) <= threshold
        return self.latent.node_squared_distance(h, Y) <= threshold

    @torch.no_grad()
    def region_boundary(
        self, label: int, alpha: float = 0.1, num_points: int = 200, node: int = 0, labels=None
    ) -> Tensor:
        r"""The boundary of the :math:`1 - \alpha` uncertainty region of node ``node`` given ``label``.

        The circle :math:`\mu_{label} + \sigma \sqrt{\chi^2_{2, 1-\alpha}} (\cos t, \sin t)` in the
        latent of node ``node`` (with a fitted noise, the ellipse
        :math:`\mu_{label} + b_v + \sqrt{\chi^2_{2, 1-\alpha}} L_v (\cos t, \sin t)`,
        :math:`L_v L_v^T = \Sigma_{vv}`, its centre moved with the label pattern where the mean
        moves with it, see :meth:`~igraphflow.latent.GaussianMixtureLatent.conditional_mean`; under a mixture noise its size is set by draws of the
        density, see :meth:`in_region`) is decoded by :math:`F^{-1}`. On a one-node graph this is the
        boundary of the region exactly. On a larger graph the other nodes are held at the means
        of their labels (``labels``, by default ``label`` everywhere) in the latent, not in
        :math:`X`: every decoded signal lies on the node's boundary, but the other nodes'
        decoded features move along the curve, so it is not a slice of the region at fixed
        neighbours in :math:`X`.

        Arguments:
            label: The class ``k`` of node ``node``.
            alpha: The miscoverage level in ``(0, 1)``; at least ``1 /`` :data:`REGION_DRAWS`
                where the regions are sized by draws (a mixture noise).
            num_points: Points on the curve (the first and last coincide).
            node: The node whose region is drawn.
            labels: Labels of all nodes ``[V]`` for the other nodes; its entry at ``node`` is
                replaced by ``label``.

        Returns:
            The closed curve in the features of node ``node``, ``[num_points, 2]``.
        """
        alpha = as_real(alpha, "alpha", "(0, 1)")
        if self.num_features != 2:
            raise ValueError(f"region_boundary needs 2 features per node, the model has {self.num_features}")
        self._check_fitted()
        label, node = as_count(label, "label", minimum=0), as_count(node, "node", minimum=0)
        num_points = as_count(num_points, "num_points", minimum=2)
        if label >= self.num_classes:
            raise ValueError(f"label must be in [0, num_classes={self.num_classes}), got {label}")
        if node >= self.num_nodes:
            raise ValueError(f"node must be in [0, num_nodes={self.num_nodes}), got {node}")
        if labels is None:
            labels = torch.full((self.num_nodes,), label, dtype=torch.long)
        labels = _as_tensor(labels, "labels")
        if labels.shape != (self.num_nodes,):  # [1, V] was reshaped silently, [2, V] and [V'] reported as [1, ...]
            raise ValueError(f"labels must have shape [num_nodes={self.num_nodes}], got {list(labels.shape)}")
        labels = self._labels(labels.unsqueeze(0), num_samples=1, name="labels")[0].clone()
        labels[node] = label
        self._warn_unseen(labels, "labels")
        latent = self.latent
        centre = latent._conditional_mean(labels.unsqueeze(0))[0].detach()  # labels checked above
        scale = latent.sigma * torch.eye(2, device=self.device, dtype=self.dtype)
        if latent.has_noise_covariance:
            scale = latent.node_scale_tril[node]
        angle = torch.linspace(0.0, 2.0 * math.pi, num_points, device=self.device, dtype=self.dtype)
        radius = self._region_thresholds(alpha, labels.unsqueeze(0))[0, node].sqrt()
        unit = radius * torch.stack([angle.cos(), angle.sin()], dim=-1)
        h = centre.expand(num_points, -1, -1).clone()
        h[:, node] = centre[node] + unit @ scale.T
        return self.decode(h)[:, node]

    # Saving ------------------------------------------------------------------------------

    def get_extra_state(self) -> Tensor:
        r"""The calibration as one float64 tensor (a header, then the sorted scores), so that it
        goes through ``state_dict``, ``.cpu()`` and ``torch.load(weights_only=True)``."""
        scores = getattr(self, "_calibration_scores", None)
        if scores is None:
            return _uncalibrated_state()
        per_node = float(scores.dim() == 2)
        header = torch.tensor(
            [_STATE_VERSION, 1.0, self._calibration_alpha, per_node, scores.size(-1)], dtype=torch.float64
        )
        return torch.cat([header, scores.flatten().double().cpu()])

    def set_extra_state(self, state):
        r"""Restores the calibration written by :meth:`get_extra_state`."""
        state = torch.as_tensor(state, dtype=torch.float64).cpu()
        if state.dim() != 1 or state.numel() < _HEADER:
            raise RuntimeError(f"unreadable calibration state of shape {list(state.shape)}")
        version, calibrated, alpha, per_node, n = state[:_HEADER].tolist()
        if version == 1 and calibrated and (state[_HEADER:] == 0).any():
            warnings.warn("the calibration was saved by an earlier version, whose scores of confident nodes "
                          "were rounded to 0: it is dropped; call calibrate(X_cal, Y_cal) again", stacklevel=2)
            self._forget_calibration()
            return
        version = _STATE_VERSION if version == 1 else version  # the same layout
        # alpha is NaN in an uncalibrated state; the other fields are whole numbers.
        whole = all(v.is_integer() for v in (calibrated, per_node, n))
        if version != _STATE_VERSION or not whole or (calibrated and not 0.0 < alpha < 1.0):
            raise RuntimeError(f"unreadable calibration state with header {state[:_HEADER].tolist()}")
        if not calibrated:
            self._forget_calibration()
            return
        per_node, n = bool(per_node), int(n)
        scores = state[_HEADER:]
        rows = self.num_nodes if per_node else 1
        if scores.numel() != rows * n:
            raise RuntimeError(f"calibration state holds {scores.numel()} scores, expected {rows} x {n}")
        if not per_node and n % self.num_nodes:
            raise RuntimeError(f"calibration state pools {n} scores, not a whole number of graphs of {self.num_nodes} nodes")
        self._calibration_scores = scores.reshape(rows, n).clone() if per_node else scores.clone()
        self._calibration_alpha = alpha

    def _forget_calibration(self):
        self._calibration_scores, self._calibration_alpha = None, None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before calibration existed have no extra state: load them as
        # uncalibrated instead of failing the strict key check.
        state_dict.setdefault(prefix + "_extra_state", _uncalibrated_state())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

