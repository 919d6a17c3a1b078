r"""The conditional graph flow: one invertible map between :math:`X | Y` and :math:`H | Y`."""

from __future__ import annotations

__all__ = ["ConditionalGraphFlow"]

import collections
import contextlib
import copy
import dataclasses
import hashlib
import itertools
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._checks import (
    ArrayLike, MAX_SEED, as_choice, as_count, as_device, as_flag, as_labels, as_orders, as_output_dir, as_real, as_seconds, as_seed, as_signals,
    finite_result, warn_lost_resolution,
)
from ._chunks import chunk_size, in_chunks
from ._evidence import beats
from ._random import draw
from .checkpoint import load_checked, reading_contents, save_atomic
from .divergence import EXACT_CHUNK, rademacher
from .graph import check_edge_index, undirected_edges
from .jko import BlockRecord, any_rank_past, auto_batch_size, data_parallel_rank, train_block
from .latent import GaussianMixtureLatent
from .head import LATEST_MIN_SIGNALS, fit_head, graph_head, latest_losses, with_products
from .nn import GraphVelocityField
from .nn.velocity import as_convolution
from .ode import DIVERGENCES, ODEBlock
from .separability import REFERENCE_SEPARATION, linear_separability
from .standardize import Standardize
from .temperature import energy_temperature
from .uncertainty import UncertaintyMixin

CHECKPOINT_KIND = "igraphflow.ConditionalGraphFlow"
CLASSIFIERS = ("bayes", "linear", "graph")
HEAD_INPUTS = ("auto", "both", "latent", "input")
# What each head_input reads, (latent, input); "auto" starts as "both" until fit chooses.
HEAD_READS = {"auto": (True, True), "both": (True, True), "latent": (True, False), "input": (False, True)}
AUTO_SEPARATION = (2.0, REFERENCE_SEPARATION)
r"""The range of ``initial_separation="auto"``: 2 where the classes overlap, at most the iGNN
reference's separation."""
AUTO_SEPARATION_SHARE = 0.9
r"""``separation="auto"``: the share of the start of ``initial_separation="auto"`` that the means
keep while the blocks train, where the data start them further apart than 2."""
MAX_SOLVER_STEP = 1.0
r"""The largest RK4 step, ``max_step / steps``: over longer steps the discrete map of a trained
field need not be invertible (decoding missed encoded signals by up to 4 at 2.0). Shorter steps
can miss too, with a fast learning rate; :data:`ROUND_TRIP_TOLERANCE` tells after the fit."""
MAX_MAP_STEPS = 128
r"""The most RK4 steps ``map_tolerance`` gives a block of the fitted map."""
MAP_CHECK_SIGNALS = 256
r"""How many validation signals ``map_tolerance`` checks a block's map on."""
ROUND_TRIP_TOLERANCE = 1e-3
r"""How far decoding may miss the encoded validation signals after a fit (root mean square over
their values, as a fraction of the signals' spread around their mean) before
:meth:`ConditionalGraphFlow.fit` warns that the blocks do not invert. The default settings miss
by 1e-7 to 1e-5; one RK4 step across a block of
length 1 trained at ``lr=1e-2`` missed by more than the spread itself."""


def _capped_steps(steps: np.ndarray, max_step: float) -> np.ndarray:
    r"""The step sizes ``steps`` with none above ``max_step`` and the same sum (at most
    ``len(steps) * max_step``): those above are cut to it, and the others share the time they
    leave in proportion to their sizes, until none is above.

    Example:
        >>> _capped_steps(np.array([0.5, 0.5, 3.0]), 2.0).tolist()
        [1.0, 1.0, 2.0]
    """
    steps = steps.copy()
    while (steps > max_step * (1 + 1e-12)).any():
        capped = steps >= max_step * (1 - 1e-12)
        left = steps.sum() - max_step * capped.sum()
        steps[capped] = max_step
        steps[~capped] *= left / steps[~capped].sum()
    return steps


def _check_solver_step(config: dict):
    for name in ("steps", "train_steps"):
        if config["max_step"] / config[name] > MAX_SOLVER_STEP:
            raise ValueError(
                f"max_step / {name} = {config['max_step'] / config[name]:g}: RK4 steps longer than "
                f"{MAX_SOLVER_STEP:g} may not give an invertible map; take more {name} or a smaller max_step"
            )


QUIET_EXACT_DIM = 128
r"""Up to this many dimensions ``D = V C``, :meth:`ConditionalGraphFlow.log_prob` takes the exact
trace without a progress bar unless asked; above it the trace costs seconds per signal on a CPU
(about 4 s per block on the 1006 dimensions of the 503-node ``chordal`` graph), and the bar shows
how long the call will take."""


TEMPERATURE_SIGNALS = (64, 512, 2**16)
r"""How many training signals ``sample_temperature="auto"`` compares decoded draws with: at
least 64 (with fewer the temperature stays 1) and at most 512, and no more than
``2**16 / (V * C)`` above 64 (each candidate temperature decodes them all)."""


@dataclasses.dataclass
class _FitData:
    r"""The training and validation samples of one fit, its random source, the seed of the split
    and, for a checkpointed fit, a data fingerprint."""

    x: Tensor
    y: Tensor
    x_val: Tensor
    y_val: Tensor
    generator: torch.Generator
    fingerprint: str | None  # SHA-256 of X and Y
    split_seed: int
    index: Tensor  # the rows of X that ``x`` holds, in its order


def _listed(values: list, most: int = 10) -> str:
    r"""``values`` as a list, the first ``most`` of them where there are more."""
    return str(values) if len(values) <= most else f"{str(values[:most])[:-1]}, ... ({len(values)} in all)]"


def _is_auto(value) -> bool:
    return isinstance(value, str) and value == "auto"


class ConditionalGraphFlow(UncertaintyMixin, nn.Module):
    r"""A conditional normalizing flow on graph signals, trained block by block (JKO).

    An invertible map :math:`F`, a per-node standardisation followed by a chain of neural-ODE
    blocks whose velocity fields are graph convolutions, carries node features
    :math:`X \in \mathbb{R}^{V \times C}` to a latent :math:`H = F(X)` of the same shape, with
    :math:`p(H | Y) = \prod_v \mathcal{N}(H_v; \mu_{Y_v}, \sigma^2 I)`, the target the blocks are
    trained towards (after training, the latent is refitted to the encoded signals, see ``fit_noise``).
    The labels enter only through the latent, so one model generates :math:`X | Y`, predicts :math:`P(Y_v | X)` and
    evaluates :math:`\log p(X | Y) = \log p(F(X) | Y) + \log |\det \partial F / \partial X|`.

    Arguments:
        edge_index: The graph shared by all samples, ``[2, E]``, taken as undirected: an edge
            given in one direction counts in both, self loops and repeated edges are dropped.
        num_nodes: The number of nodes ``V``.
        num_features: Features per node ``C``.
        num_classes: The number of node labels ``K``.
        conv: The graph convolution of the velocity fields: ``"l3net"``, ``"cheb"`` or ``"gcn"``.
        num_blocks: The number of ODE blocks (JKO steps), or ``"auto"``: add blocks until the
            newest moves the samples by less than ``w2_tolerance``.
        max_blocks: The most blocks ``"auto"`` adds.
        w2_tolerance: The stopping threshold of ``"auto"``: the mean squared movement
            :math:`\mathbb{E}\|T_k(x) - x\|^2` of the newest block, per dimension (of the
            standardised signals, see ``standardize``).
        hidden: Hidden channels of the velocity fields.
        sigma: The standard deviation of the latent components.
        orders: Hop radii of the convolutions (L3Net bases; ChebNet uses the largest).
        steps: The fewest RK4 steps per block of the fitted map: what ``encode``,
            ``decode``, ``log_prob`` and ``sample`` integrate (``map_tolerance`` doubles them
            where a block needs more). Fewer are cheaper but can leave a trained block that
            integrating backwards does not undo (``fit`` warns, see
            :data:`ROUND_TRIP_TOLERANCE`): 2 did so on both real series under a 60 s budget.
            With fields trained on 2 steps for longer (120 s on the real series), 4 missed by
            up to 1.4 in the latent, and the model's own draws fell outside their regions;
            8 miss by 1e-3 at most (``experiments/RESULTS.md``, "How finely the map must
            integrate").
        map_tolerance: After a block trains, ``fit`` doubles its steps (from ``steps``, up to
            :data:`MAX_MAP_STEPS`) until twice as many would move no validation signal by more
            than this (root mean square over its values, in the standardised units the blocks
            see; :meth:`~igraphflow.ode.ODEBlock.settle_steps`). ``None`` keeps ``steps`` for
            every block. On the real series the first block, which meets the signals' bounds,
            gets 16 (solar_hope; traffic after 120 s of training) and the others keep 8
            (``experiments/RESULTS.md``, "Steps per block").
        train_steps: RK4 steps per block while the block trains. A training step on 2 costs
            half that on 4, so under a time budget a block gets twice the steps, and the fit
            is better (``experiments/RESULTS.md``). The map integrates the trained field on
            ``steps``: it inverts where the 2-step map need not (its ODE does). The blocks
            after it, the noise, temperature and head see the signals integrated on
            ``steps``.
        first_step: The time step :math:`h_1` of the first block.
        step_growth: The ratio :math:`h_{k+1} / h_k` of the geometric schedule; the JKO
            trajectory converges exponentially, so later blocks take longer steps.
        max_step: The largest time step of the schedule: ``steps`` RK4 steps across a longer
            interval would integrate the field (and its log-determinant) too coarsely.
            ``max_step / steps`` must not exceed :data:`MAX_SOLVER_STEP` (models saved before
            this rule load, but neither fit nor retrain).
        separation: The minimum distance of the latent means in units of ``sigma`` while the
            blocks train, see :class:`~igraphflow.latent.GaussianMixtureLatent`, or ``"auto"``:
            :data:`AUTO_SEPARATION_SHARE` of where ``initial_separation="auto"`` starts them, where
            that is further apart than 2 (the classes of the signals are that separable), else 0:
            the means may move apart, not back together. Trained with the first blocks, they
            follow the barely transformed signals, and the longer those blocks train, the closer
            they settle where the classes separate only once the mixing is undone; the later
            blocks then stall (``experiments/RESULTS.md``, "Longer blocks and the means they
            pull together"). What the fit chose: :attr:`separation_`. The noise fit after
            training (``fit_noise``) moves the means to the encoded class centres, which may lie
            closer.
        initial_separation: How far apart the latent means start, in units of ``sigma``, or
            ``"auto"``: as far apart as a linear classifier finds the classes of the training
            signals (:func:`~igraphflow.separability.linear_separability`), between 2 and the
            iGNN reference's :math:`2\Phi^{-1}(0.9999) \approx 7.4`. Trained with the blocks,
            the means follow the encoded classes, so means that start too close stay close and
            the flow never separates well-separated classes.
        train_means: Train the latent means with every block, as the iGNN does. ``False``: they
            stay where they start while the blocks train, a fixed target for every JKO step (the
            proximal step of the gradient flow of :math:`\mathrm{KL}(\rho \| p_H)` for a fixed
            :math:`p_H`), and the noise fit (``fit_noise``) moves them to the encoded class
            centres afterwards. Held, they cost likelihood where the classes overlap or curve
            (three_moons, solar_hope; ``experiments/RESULTS.md``, "Longer blocks and the means
            they pull together").
        barrier_weight: The weight of the log-barrier on the means.
        classifier: What :meth:`predict_proba` uses: ``"graph"`` (a softmax layer on the means
            of :math:`H` over the ``orders``-hop neighbourhoods of ``v``,
            :class:`~igraphflow.nn.HopMeans`), ``"linear"`` (a
            softmax layer on :math:`H_v`) or ``"bayes"`` (the Bayes rule of the latent mixture,
            whose label prior is independent across nodes). The graph head also averages the
            pairwise products of each node's features (up to :data:`~igraphflow.head.MAX_PRODUCT_FEATURES`
            features) where they predict the validation labels better, a quadratic classifier
            for labels that follow the spread of the features rather than their level
            (:attr:`head_products`). The heads are fitted by
            cross-entropy on the final latent, and the input with ``head_input`` (of
            :data:`~igraphflow.separability.MAX_ROWS` nodes of the signals drawn at random, on
            large data); the graph head also sees the evidence that
            neighbours carry about :math:`Y_v` when labels are spatially correlated.
        head_input: What the ``"graph"`` or ``"linear"`` head reads: ``"both"`` the latent
            :math:`H` and the standardised input :math:`X`, the features of each node side by
            side; ``"latent"`` :math:`H` alone; ``"input"`` :math:`X` alone (functions of
            :math:`H` all the same: :math:`X = F^{-1}(H)`); ``"auto"``: ``"both"`` or
            ``"input"``: ``"both"`` where it predicts the latest tenth of the training signals
            (the last rows of ``X`` in the order given), fitted on the others, with less
            cross-entropy than the input alone by more than two standard errors (with fewer
            than :data:`~igraphflow.head.LATEST_MIN_SIGNALS` signals, ``"both"``), the smaller
            head otherwise (what the fit chose: :attr:`head_input_`). The flow
            shapes :math:`H` for the likelihood of the training signals: where later signals
            drift from them, as in the real series, the input can carry their labels better,
            and where the classes are curved in :math:`X`, :math:`H` does
            (``experiments/RESULTS.md``, "The head reads the input too").
        fit_noise: After the blocks are trained, replace the latent by the Gaussian fitted to
            the encoded training signals when that fits the validation samples better
            (:meth:`~igraphflow.latent.GaussianMixtureLatent.fit_noise_`):
            :math:`p(H | Y) = \mathcal{N}(\mu'_Y + b, \Sigma)`, with the class means refitted.
            A flow trained for a limited time leaves :math:`H - \mu_Y` correlated across nodes
            and off the means; sampling the isotropic latent then decodes too widely spread
            signals, or in the wrong place. Where the whole label pattern moves the signals
            (many events with a higher level everywhere), the mean moves with it where that
            validates (``latent.pattern_mean``). Where a mixture of diagonal Gaussians fits the
            whitened residuals better still, it becomes the noise (``latent.noise_components``),
            its weights moved by each node's label where that fits better still
            (``latent.noise_label_weights``).
            The blocks train towards the isotropic latent, unless ``fit_noise_first``. Signals of more than
            :data:`~igraphflow.latent.MAX_NOISE_DIM` dimensions keep the isotropic latent (a
            ``D x D`` covariance would not fit).
        fit_noise_first: Fit the noise as ``fit_noise`` does to the standardised training signals
            before the first block too, so that the blocks train towards that latent rather
            than the isotropic one (refitted after them all the same). A state that every node
            shares and the labels do not explain (a common level that takes one of two values)
            the blocks cannot fold into one Gaussian: on such data the default sampled the
            all-0 label pattern in the upper state 10-12 % of the time against 51 % in the data,
            and this option 48-51 %, with the better likelihood. It costs test likelihood on the
            real series, and accuracy where the flow has to separate the classes itself
            (``experiments/RESULTS.md``, "The noise fitted before the blocks"). Needs ``fit_noise``.
        sample_temperature: The factor on the latent noise when sampling, or ``"auto"``: the one
            whose decoded draws are closest, in the energy distance, to the training signals
            (64 to 512 of them, fewer on larger graphs, with their labels), kept only where
            they are closer than the draws at 1 by more than two standard errors; else 1, as
            with fewer than 64 signals (:data:`TEMPERATURE_SIGNALS`,
            :func:`~igraphflow.temperature.energy_temperature`).
            A flow trained for a limited time may decode Gaussian draws to signals less (or
            more) spread than the data; an exact flow gets 1, and so does a mixture noise
            (see ``fit_noise``). It changes :meth:`sample` only, never the likelihood or the
            predictions.
        classification_weight: The weight of the cross-entropy of the mixture's Bayes rule added
            to every block's JKO objective (0: a purely generative fit), see
            :func:`~igraphflow.jko.jko_objective`.
        divergence: The divergence estimator used in training: ``"finite_difference"``
            (Hutchinson's estimate through a finite difference, no second backward pass),
            ``"hutchinson"`` (through a vector-Jacobian product), or ``"exact"`` (small graphs).
            With the same probes the first two train nearly the same model; the finite
            difference takes 1.2-1.5x less time per step, so more steps under a time budget
            (``experiments/RESULTS.md``). Test likelihoods never use it.
        batch_size: Samples per training step; ``"auto"`` takes a sixteenth of the training
            samples, between 32 and 256, so that small datasets still get many steps per block.
        lr: The Adam learning rate. ``5e-3`` fits the real series faster under a time budget
            but stalls the later blocks on small mixing graphs such as three_node
            (``experiments/RESULTS.md``, "Learning rate").
        max_epochs: The most epochs per block, a cap for blocks whose validation objective
            still falls (``patience`` ends the others). At 40 the first blocks of the real series
            were cut while still improving (``experiments/RESULTS.md``, "Longer blocks and the
            means they pull together").
        patience: Epochs without validation improvement before a block stops (0: after its
            first epoch).
        validation: The fraction of the training samples held out for early stopping (at
            least one sample, and at least one left to train on).
        standardize: Model the signals standardised per node and feature (by the mean and
            standard deviation of the training signals, :class:`~igraphflow.standardize.Standardize`,
            a fixed affine first step whose log-determinant enters the likelihood), so that the
            blocks see unit-scale signals whatever the units of ``X``. ``False``: the blocks see
            ``X`` as it is.
        device: Where to compute; the GPU when one is available if ``None``.
        seed: Seeds the initialisation, the validation split, the batches and the probes.

    The inference methods (:meth:`encode`, :meth:`decode`, :meth:`log_prob`, :meth:`sample`,
    :meth:`predict_proba` and those built on them) compute without gradients: their outputs
    are detached. Gradients with respect to ``X`` go through the blocks themselves
    (``model.blocks``, on ``model.standardizer(X)``).

    Example:
        >>> from igraphflow.graph import check_edge_index
        >>> edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> Y = torch.randint(0, 2, (64, 3))
        >>> X = torch.randn(64, 3, 2) + 2.0 * Y.unsqueeze(-1)
        >>> model = ConditionalGraphFlow(edge_index, 3, 2, 2, num_blocks=2, max_epochs=1, seed=0)
        >>> model = model.fit(X, Y, progress=False)
        >>> model.log_prob(X[:4], Y[:4]).shape, model.sample(Y[:4]).shape, model.predict(X[:4]).shape
        (torch.Size([4]), torch.Size([4, 3, 2]), torch.Size([4, 3]))
    """

    def __init__(
        self,
        edge_index: Tensor,
        num_nodes: int,
        num_features: int,
        num_classes: int,
        *,
        conv: Literal["l3net", "cheb", "gcn"] = "l3net",
        num_blocks: int | Literal["auto"] = 6,
        max_blocks: int = 16,
        w2_tolerance: float = 2e-3,
        hidden: int = 32,
        sigma: float = 1.0,
        orders: Sequence[int] = (0, 1, 2),
        steps: int = 8,
        map_tolerance: float | None = 1e-3,
        train_steps: int = 2,
        first_step: float = 0.25,
        step_growth: float = 1.5,
        max_step: float = 2.0,
        separation: float | Literal["auto"] = "auto",
        initial_separation: float | Literal["auto"] = "auto",
        train_means: bool = True,
        barrier_weight: float = 1e-2,
        classifier: Literal["bayes", "linear", "graph"] = "graph",
        head_input: Literal["auto", "both", "latent", "input"] = "auto",
        fit_noise: bool = True,
        fit_noise_first: bool = False,
        sample_temperature: float | Literal["auto"] = "auto",
        classification_weight: float = 0.0,
        divergence: Literal["hutchinson", "finite_difference", "exact"] = "finite_difference",
        batch_size: int | Literal["auto"] = "auto",
        lr: float = 2e-3,
        max_epochs: int = 100,
        patience: int = 5,
        validation: float = 0.1,
        standardize: bool = True,
        device: str | torch.device | None = None,
        seed: int | None = None,
    ):
        super().__init__()
        # as_count returns plain ints, and refuses 2.5 (int() would truncate it) and True.
        num_nodes, num_features = as_count(num_nodes, "num_nodes"), as_count(num_features, "num_features")
        num_classes, max_blocks = as_count(num_classes, "num_classes"), as_count(max_blocks, "max_blocks")
        hidden, max_epochs = as_count(hidden, "hidden"), as_count(max_epochs, "max_epochs")
        steps, train_steps = as_count(steps, "steps"), as_count(train_steps, "train_steps")
        patience, orders = as_count(patience, "patience", minimum=0), as_orders(orders)
        # "auto" or a number: an array compared with "auto" would give no single truth value.
        # "auto" as a plain str (a NumPy string would be saved as one), else a checked number.
        num_blocks = "auto" if _is_auto(num_blocks) else as_count(num_blocks, "num_blocks")
        batch_size = "auto" if _is_auto(batch_size) else as_count(batch_size, "batch_size")
        initial_separation = "auto" if _is_auto(initial_separation) else as_real(initial_separation, "initial_separation", "(0, inf)")
        separation = "auto" if _is_auto(separation) else as_real(separation, "separation", "[0, inf)")
        sample_temperature = "auto" if _is_auto(sample_temperature) else as_real(sample_temperature, "sample_temperature", "(0, inf)")
        map_tolerance = None if map_tolerance is None else as_real(map_tolerance, "map_tolerance", "(0, inf)")
        if seed is not None:
            seed = as_seed(seed)
        conv = as_convolution(conv)  # here too: with num_blocks="auto" no block is built before fit
        classifier = as_choice(classifier, CLASSIFIERS, "classifier")
        divergence = as_choice(divergence, DIVERGENCES, "divergence")
        # as_real refuses NaN, infinities and strings, which float() let through.
        positive, non_negative = "(0, inf)", "[0, inf)"
        reals = dict(
            w2_tolerance=(w2_tolerance, non_negative), sigma=(sigma, positive), first_step=(first_step, positive),
            step_growth=(step_growth, positive), max_step=(max_step, positive),
            barrier_weight=(barrier_weight, non_negative), classification_weight=(classification_weight, non_negative),
            lr=(lr, positive), validation=(validation, "(0, 1)"),
        )
        reals = {name: as_real(value, name, interval) for name, (value, interval) in reals.items()}
        self.config = dict(
            num_nodes=num_nodes, num_features=num_features, num_classes=num_classes, conv=conv,
            num_blocks=num_blocks, max_blocks=max_blocks, w2_tolerance=reals["w2_tolerance"], hidden=hidden,
            sigma=reals["sigma"], orders=orders, steps=steps, map_tolerance=map_tolerance, train_steps=train_steps,
            first_step=reals["first_step"],
            step_growth=reals["step_growth"], max_step=reals["max_step"], separation=separation,
            initial_separation=initial_separation, train_means=as_flag(train_means, "train_means"),
            barrier_weight=reals["barrier_weight"], classifier=classifier, head_input=as_choice(head_input, HEAD_INPUTS, "head_input"),
            fit_noise=as_flag(fit_noise, "fit_noise"),
            fit_noise_first=as_flag(fit_noise_first, "fit_noise_first"),
            sample_temperature=sample_temperature,
            classification_weight=reals["classification_weight"], divergence=divergence, batch_size=batch_size,
            lr=reals["lr"], max_epochs=max_epochs, patience=patience, validation=reals["validation"],
            standardize=as_flag(standardize, "standardize"), seed=seed,
        )
        _check_solver_step(self.config)
        if self.config["fit_noise_first"] and not self.config["fit_noise"]:
            raise ValueError("fit_noise_first=True needs fit_noise=True: the noise fitted before the blocks is refitted after them")
        self.num_nodes, self.num_features, self.num_classes = num_nodes, num_features, num_classes
        self.register_buffer("edge_index", check_edge_index(edge_index, num_nodes))
        self.register_buffer("fitted", torch.tensor(False))
        self.register_buffer("classes_seen", torch.ones(num_classes, dtype=torch.bool))
        # Whether fit kept the products of the node features in the graph head: its shape follows.
        self.register_buffer("head_uses_products", torch.tensor(False))
        # The minimum distance of the means (units of sigma) while the blocks train: "auto" is resolved by fit.
        self.register_buffer("means_separation", torch.tensor(0.0))
        # What the head reads, (latent, input): "auto" is resolved by fit, and the head's width follows.
        self.register_buffer("head_reads", torch.tensor(HEAD_READS[self.config["head_input"]]))
        self._initialise()
        self.to(as_device(device))

    # Construction -----------------------------------------------------------------------

    def _initialise(self):
        r"""Builds the untrained latent, head and blocks, the same for the same ``seed``, and forgets any fit."""
        c = self.config
        # A model moved to another dtype (``.double()``) keeps it through a new fit.
        dtype = self.dtype if hasattr(self, "latent") else torch.get_default_dtype()
        # The CPU generator alone (the modules are built there): torch.manual_seed would also
        # reseed every CUDA generator, which fork_rng(devices=[]) does not restore.
        with torch.random.fork_rng(devices=[]):
            if c["seed"] is not None:
                torch.default_generator.manual_seed(c["seed"])
            start = AUTO_SEPARATION[0] if c["initial_separation"] == "auto" else c["initial_separation"]
            separation = 0.0 if c["separation"] == "auto" else c["separation"]  # "auto": fit sets it
            self.means_separation.fill_(separation)
            self.latent = GaussianMixtureLatent(self.num_classes, self.num_features, c["sigma"], separation, start)
            self.latent.means.requires_grad_(c["train_means"])  # the blocks train what requires gradients
            self.head_reads.copy_(torch.tensor(HEAD_READS[c["head_input"]]))
            self.head = self._make_head(HEAD_READS[c["head_input"]])
        self.latent.to(dtype)
        self.standardizer = Standardize(self.num_nodes, self.num_features)
        self.blocks = nn.ModuleList()
        self._set_depth(0 if self._auto_depth() else c["num_blocks"])
        self.fitted.fill_(False)
        self.head_uses_products.fill_(False)
        self._forget_calibration()
        self.history_: list[BlockRecord] = []
        self.to(self.device, dtype)

    def _set_means_separation(self):
        self.latent.min_distance = float(self.means_separation) * self.latent.sigma

    def _make_head(self, reads: tuple[bool, bool]) -> nn.Module | None:
        r"""An unfitted head of the ``classifier`` for the node features that ``reads``, (latent, input)."""
        c, width = self.config, self._head_width(reads)
        if c["classifier"] == "linear":
            return nn.Linear(width, c["num_classes"])
        if c["classifier"] == "graph":
            return graph_head(self.edge_index, c["num_nodes"], width, c["num_classes"], c["orders"])
        return None

    def _head_width(self, reads: tuple[bool, bool]) -> int:
        r"""The node features of a head that ``reads`` (latent, input): ``C`` for each part."""
        return self.num_features * sum(reads)

    @property
    def _head_features(self) -> int:
        r"""The node features the head reads: those of :math:`H`, of the input, or of both (:attr:`head_reads`)."""
        return self._head_width(self.head_reads.tolist())

    def _head_signals(self, h: Tensor, x: Tensor, reads: tuple[bool, bool] | None = None) -> Tensor:
        r"""What the head reads of the latent ``h`` and the standardised input ``x``, ``[N, V, C']``:
        the parts that ``reads`` (by default :attr:`head_reads`) names."""
        reads = self.head_reads.tolist() if reads is None else reads
        return torch.cat([part for part, read in zip((h, x), reads) if read], dim=-1)

    def _unfitted_head(self, reads: tuple[bool, bool]) -> nn.Module | None:
        r"""A new head for ``reads``, on the model's device and dtype, without drawing from the
        global random stream (its weights are fitted or loaded next)."""
        with torch.random.fork_rng(devices=[]):
            head = self._make_head(reads)
        return None if head is None else head.to(self.device, self.dtype)

    def _read_by_head(self, reads: tuple[bool, bool]):
        r"""Sets what the head reads, and gives it that width (unfitted) where it changes."""
        if tuple(self.head_reads.tolist()) != tuple(reads):
            self.head_reads.copy_(torch.tensor(reads))
            self.head = self._unfitted_head(reads)

    def _choose_head_reads(self, x: Tensor, h: Tensor, data: _FitData) -> tuple[bool, bool]:
        r"""For ``head_input="auto"``: the head on both :math:`H` and the input where it predicts
        the latest tenth of the training signals (in the order given), fitted on the others,
        better than the head on the input alone by more than two standard errors of the
        per-signal difference in cross-entropy (:func:`~igraphflow.head.latest_losses`); else
        the input alone, the smaller head."""
        if data.index.numel() < LATEST_MIN_SIGNALS:  # too few for the choice to be more than chance
            return HEAD_READS["both"]
        order = data.index.argsort()
        h, x, y = h[order], x[order], data.y[order]
        both, alone = (
            latest_losses(self._unfitted_head(reads), self._head_width(reads), self._head_signals(h, x, reads), y, data.generator)
            for reads in (HEAD_READS["both"], HEAD_READS["input"])
        )
        return HEAD_READS["both"] if beats(-both, -alone) else HEAD_READS["input"]

    def _make_block(self, start: float, end: float) -> ODEBlock:
        c = self.config
        field = GraphVelocityField(
            self.edge_index.cpu(), self.num_nodes, self.num_features, c["hidden"], c["conv"], c["orders"]
        )
        return ODEBlock(field, start, end, steps=c["steps"])

    @property
    def device(self) -> torch.device:
        return self.edge_index.device

    @property
    def dtype(self) -> torch.dtype:
        r"""The floating-point type of the weights, to which inputs are cast: torch's default dtype
        when built, the saved one when loaded, or as moved (e.g. by ``.double()``); float32 or
        float64 (a model moved to half precision refuses every call)."""
        return self.latent.means.dtype

    @property
    def num_blocks(self) -> int:
        r"""The number of ODE blocks in the flow."""
        return len(self.blocks)

    def _signals(self, X, name: str = "X") -> Tensor:
        if self.dtype not in (torch.float32, torch.float64):
            # float16 / bfloat16: no CPU triangular solve, and log-determinants and inverses to
            # 1e-3 at best.
            raise TypeError(f"this model computes in {str(self.dtype).removeprefix('torch.')}; ConditionalGraphFlow "
                            "needs float32 or float64: move it back with .float() or .double()")
        self._check_not_meta()
        return as_signals(X, self.num_nodes, self.num_features, name=name, device=self.device, dtype=self.dtype)

    def _labels(self, Y, num_samples: int | None = None, name: str = "Y") -> Tensor:
        return as_labels(Y, self.num_nodes, self.num_classes, num_samples=num_samples, name=name, device=self.device)

    def _warn_unseen(self, Y: Tensor, name: str = "Y"):
        r"""Warns where ``Y`` holds labels that the fit never saw: their latent means were placed,
        never fitted, so densities, draws and regions computed for them mean nothing."""
        if self.classes_seen.all():  # the usual case: no pass over the labels
            return
        unseen = sorted(set(Y.unique().tolist()) - set(self.classes_seen.nonzero().flatten().tolist()))
        if unseen:
            # stacklevel: the caller of the public method that called this one, past its no_grad wrapper.
            warnings.warn(f"{name} holds labels {_listed(unseen)} that never occurred in the training labels: the model "
                          "knows nothing of them, and what it computes for them means nothing", stacklevel=4)

    # Training ---------------------------------------------------------------------------

    def fit(
        self,
        X: ArrayLike,
        Y: ArrayLike,
        *,
        max_time: float | None = None,
        progress: bool = True,
        checkpoint_dir: str | os.PathLike | None = None,
    ) -> ConditionalGraphFlow:
        r"""Trains the flow block by block on graph signals ``X [N, V, C]`` with labels ``Y [N, V]``.

        A fraction ``validation`` of the samples is held out for early stopping. Each block is
        trained on the samples pushed through the blocks before it, without gradients. With
        ``num_blocks="auto"``, blocks are added until the newest one moves the samples by less
        than ``w2_tolerance`` (mean squared distance per dimension), at most ``max_blocks``.
        Every fit starts from the untrained model (the same one for the same ``seed``), not
        from the previous fit, and forgets its calibration; :meth:`refine` and
        :meth:`reparameterize` continue a fit. A fit that raises or is interrupted leaves the
        model as it was before it.

        Arguments:
            X: Node features, numpy or torch, ``[N, V, C]``.
            Y: Node labels in ``0..K-1``, ``[N, V]``; a label that never occurs is warned about.
            max_time: A cap on the training time of the blocks in seconds, shared equally
                among the blocks still to train. A block whose share runs out keeps its best
                state; blocks that get no time at all are dropped (with a warning), so the model
                stays invertible and usable. A block that starts trains at least one batch,
                scores the validation samples before and after it and pushes every training
                signal through itself, which may take longer than a small budget on a large
                graph (about 45 s for 2000 signals on 2000 nodes on one CPU core). Decoding the
                encoded validation signals (to check that the blocks invert), fitting the
                noise, the sampling temperature and the head on the
                encoded signals come after, on top of the cap (seconds on small graphs, tens of
                seconds on larger ones: the temperature decodes up to 512 signals a dozen times).
            progress: Show a progress bar.
            checkpoint_dir: Write a checkpoint there after every finished block (atomically);
                a fit started again with the same settings, data and directory resumes after
                the last finished block and ends with the same model as an uninterrupted fit
                (without ``max_time``; with it, the blocks still to train share a new
                ``max_time``, so they may train for more or less time than they would have).

        Returns:
            The fitted model.

        Raises:
            ValueError: Where the inputs are malformed, or the signals of ``X`` are all equal.

        Warns:
            UserWarning: Where a label never occurs in ``Y``; where the model's dtype rounds a
                node feature of ``X`` to fewer than 100 steps per standard deviation (a large
                offset in float32); where the classifier predicts the training labels no better
                than their frequencies do; where decoding the encoded validation signals misses
                them by more than :data:`ROUND_TRIP_TOLERANCE` (blocks too long for their RK4
                steps, or trained too fast).
        """
        _check_solver_step(self.config)
        max_time, progress = as_seconds(max_time), as_flag(progress, "progress")
        data = self._split(X, Y, fingerprint=checkpoint_dir is not None)
        warn_lost_resolution(X, self.dtype)  # first: it says why signals can become all the same
        if not ((data.x != data.x[:1]).any() or (data.x_val != data.x[:1]).any()):
            # The noise fit would shrink to a point: a density of +100 nats there, -1e7 beside it.
            raise ValueError(f"the {len(data.x) + len(data.x_val)} signals of X are all the same in "
                             f"{str(self.dtype).removeprefix('torch.')}: there is no spread to fit a density to")
        # The checkpoint is checked before the model is reset: a refused one leaves the fit as it was.
        path = None if checkpoint_dir is None else as_output_dir(checkpoint_dir, "checkpoint_dir") / "fit.pt"
        checkpoint = None if path is None else self._read_checkpoint(path, data)
        if checkpoint is not None and self.config["seed"] is None and "split_seed" in checkpoint:
            # Without a seed the split was drawn: the resumed blocks must validate on the same samples.
            fingerprint = data.fingerprint
            data = self._split(X, Y, split_seed=as_seed(checkpoint["split_seed"], "split_seed"))
            data.fingerprint = fingerprint
        # Only the training part counts: the blocks, the noise and the head never see the rest.
        absent = sorted(set(range(self.num_classes)) - set(data.y.unique().tolist()))
        if absent:
            # Their means are placed but never fitted: signals sampled for them mean nothing.
            held_out = sorted(set(absent) & set(data.y_val.unique().tolist()))
            where = f" but among the samples held out for validation ({_listed(held_out)})" if held_out else ""
            warnings.warn(f"labels {_listed(absent)} never occur in Y{where}: the model cannot generate or predict them "
                          "from data", stacklevel=2)
        with self._kept_on_error():  # an interrupted fit leaves the previous one
            self._initialise()
            self.classes_seen.fill_(True)
            self.classes_seen[absent] = False
            if self.config["standardize"]:
                self.standardizer.fit_(data.x)
            data = self._standardized(data)
            self.latent.set_prior(data.y)
            if self.config["initial_separation"] == "auto":
                separation = linear_separability(data.x, data.y, self.edge_index, self.num_classes, self.config["orders"])
                spacing = min(max(separation, AUTO_SEPARATION[0]), AUTO_SEPARATION[1])
                self.latent.place_means_(spacing)
                if self.config["separation"] == "auto" and spacing > AUTO_SEPARATION[0]:
                    self.means_separation.fill_(AUTO_SEPARATION_SHARE * spacing)
                    self._set_means_separation()
            start, settled = 0, False
            if checkpoint is not None:
                start, settled = self._resume(path, checkpoint, data)
            self._train_blocks(data, start, max_time, progress, checkpoint_dir, depth_settled=settled)
        return self

    @contextlib.contextmanager
    def _kept_on_error(self) -> Iterator[None]:
        r"""Puts the model back as it was (modules, weights, history, calibration) when the
        block raises or is interrupted."""
        modules, state, history = dict(self._modules), copy.deepcopy(self.state_dict()), self.history_
        try:
            yield
        except BaseException:
            for name, module in modules.items():  # a new fit builds new modules
                setattr(self, name, module)
            self.history_ = history
            self.load_state_dict(state)
            raise

    def _split(self, X, Y, fingerprint: bool = False, split_seed: int | None = None) -> _FitData:
        X = self._signals(X)
        Y = self._labels(Y, num_samples=X.size(0))
        if X.size(0) < 2:
            raise ValueError(f"fit needs at least 2 samples, got {X.size(0)}")
        if split_seed is None:
            split_seed = self.config["seed"] if self.config["seed"] is not None else int(torch.randint(2**31, ()))
        generator = torch.Generator().manual_seed(split_seed)
        order = draw(torch.randperm, X.size(0), device=self.device, generator=generator)
        # At least one sample on each side, whatever the fraction.
        num_val = min(X.size(0) - 1, max(1, int(round(self.config["validation"] * X.size(0)))))
        val, train = order[:num_val], order[num_val:]
        digest = None
        if fingerprint:  # only a checkpoint needs it
            # The bytes themselves: sums would not tell permuted rows, nodes or labels apart.
            hashed = hashlib.sha256(X.cpu().numpy().tobytes())
            hashed.update(Y.cpu().numpy().tobytes())
            digest = hashed.hexdigest()
        return _FitData(X[train], Y[train], X[val], Y[val], generator, digest, split_seed, train)

    def _standardized(self, data: _FitData) -> _FitData:
        r"""``data`` in the coordinates the blocks see."""
        return dataclasses.replace(data, x=self.standardizer(data.x), x_val=self.standardizer(data.x_val))

    def _auto_depth(self) -> bool:
        return self.config["num_blocks"] == "auto"

    def _set_depth(self, num_blocks: int):
        r"""Drops or appends (untrained) blocks until there are ``num_blocks``."""
        del self.blocks[num_blocks:]
        while len(self.blocks) < num_blocks:
            self._append_block()

    def _append_block(self):
        c = self.config
        index = len(self.blocks)
        start = float(self.blocks[-1].interval[1]) if index else 0.0
        step = min(c["max_step"], c["first_step"] * c["step_growth"] ** index)
        # Each block's initialisation depends on (seed, index) alone, however it is created.
        with torch.random.fork_rng(devices=[]):
            if c["seed"] is not None:
                # Modulo the seeds torch takes: the same seed as before wherever that fitted.
                torch.default_generator.manual_seed((c["seed"] * 1009 + index) % (MAX_SEED + 1))
            self.blocks.append(self._make_block(start, start + step).to(self.device, self.dtype))

    def _train_blocks(
        self, data: _FitData, start: int, max_time: float, progress: bool, checkpoint_dir, retrain: bool = False, depth_settled: bool = False
    ) -> None:
        r"""Trains blocks ``start, start + 1, ...`` on ``data`` pushed through the blocks before them.

        When time runs out, blocks never trained are dropped; with ``retrain``, every block was
        trained before, so all are kept. ``depth_settled``: a resumed ``num_blocks="auto"`` fit
        whose stopping rule had fired, so no block is added.
        """
        c = self.config
        began = time.monotonic()
        deadline = began + max_time
        dims = self.num_nodes * self.num_features
        x, x_val, val_logdet = data.x, data.x_val, data.x_val.new_zeros(data.x_val.size(0))
        if not c["fit_noise_first"]:
            self.latent.reset_noise_()  # the blocks train towards the isotropic latent
        elif start == 0:  # a resumed fit keeps the noise its checkpoint holds
            self.latent.fit_noise_(x, data.y, x_val, data.y_val, seed=int(torch.randint(2**31, (), generator=data.generator)))
        # A noise fit moves the means to the encoded class centres, maybe closer than the
        # barrier allows: its logarithm would be NaN and no epoch could beat it.
        self.latent.project_()
        for index, block in enumerate(self.blocks[:start]):
            x, x_val, val_logdet = self._push(block, index, x, x_val, val_logdet)[:3]
        adding = self._auto_depth() and not (retrain or depth_settled)
        total = c["max_blocks"] if adding else len(self.blocks)
        batch_size = auto_batch_size(x.size(0)) if c["batch_size"] == "auto" else c["batch_size"]
        # A resumed fit says so: its bar starts past the blocks its checkpoint holds.
        bar = tqdm(total=total, initial=start, desc=f"JKO blocks (resumed after {start})" if start else "JKO blocks",
                   disable=not progress, unit="block")
        index = start
        while index < total:
            now = time.monotonic()
            if any_rank_past(deadline, self.device):  # every process stops before the same block
                break
            if index == len(self.blocks):
                self._append_block()
            block = self.blocks[index]
            # Share what is left of the time budget equally among the blocks still to train.
            record = train_block(
                index, block, self.latent, (x, data.y), (x_val, data.y_val),
                divergence=c["divergence"], batch_size=batch_size, lr=c["lr"], max_epochs=c["max_epochs"],
                patience=c["patience"], barrier_weight=c["barrier_weight"], steps=c["train_steps"],
                classification_weight=c["classification_weight"],
                deadline=now + (deadline - now) / (total - index), generator=data.generator,
                on_epoch=lambda r: bar.set_postfix(epoch=len(r.val_loss), val=f"{r.val_loss[-1]:.4f}"),
            )
            if record.val_loss and not np.isfinite(record.val_loss).any():
                # stacklevel: the caller of fit, or of refine / reparameterize (through _retrain).
                warnings.warn(f"block {index}: every epoch's validation objective was NaN or infinite (is lr too "
                              "large?); the block keeps its starting state", stacklevel=4 if retrain else 3)
            record.map_steps = self._settle_steps(block, index, x_val, stacklevel=4 if retrain else 3)
            x, x_val, val_logdet, record.w2 = self._push(block, index, x, x_val, val_logdet)
            log_likelihood = self.latent.log_prob(x_val, data.y_val) + val_logdet + self.standardizer.log_abs_det()
            record.val_nll_per_dim = -log_likelihood.mean().item() / dims
            self.history_.append(record)
            bar.set_postfix(w2=f"{record.w2:.3g}", val_nll=f"{record.val_nll_per_dim:.4f}")
            bar.update()
            index += 1
            settled = adding and record.w2 / dims < c["w2_tolerance"]
            if checkpoint_dir is not None and data_parallel_rank()[0] == 0:
                self._checkpoint(Path(checkpoint_dir) / "fit.pt", index, data, settled)
            if settled:
                break
        bar.close()
        if index < total and not (adding or retrain):
            # A model of fewer blocks than asked for, which only history_ would tell otherwise.
            warnings.warn(f"max_time ({max_time:g} s) ran out after {index} of {total} blocks ({time.monotonic() - began:.1f} s, "
                          "with the validation passes and the push of the training signals through each block): the "
                          f"model keeps {index}; give a longer max_time or fewer blocks", stacklevel=3)
        if retrain:
            # Blocks the time did not reach are kept as they were: the noise and head must see
            # the signals pushed through them too.
            with torch.no_grad():
                for block in self.blocks[index:]:
                    x, x_val = in_chunks(block, x), in_chunks(block, x_val)
        else:
            del self.blocks[index:]
        self._warn_not_invertible(x_val, data, stacklevel=5 if retrain else 4)
        # Tens of seconds on large graphs: shown too.
        with tqdm(total=3, desc="noise, temperature, head", disable=not progress, unit="fit") as finish:
            if c["fit_noise"]:
                self.latent.fit_noise_(x, data.y, x_val, data.y_val, seed=int(torch.randint(2**31, (), generator=data.generator)))
            finish.update()
            self.latent.temperature.fill_(self._sample_temperature(data))
            finish.update()
            if self.head is not None:
                if c["head_input"] == "auto":
                    self._read_by_head(self._choose_head_reads(data.x, x, data))
                train, val = (self._head_signals(x, data.x), data.y), (self._head_signals(x_val, data.x_val), data.y_val)
                self.head = fit_head(self.head, self._head_features, train, val, data.generator)
                self.head_uses_products.fill_(isinstance(self.head, nn.Sequential) and self.head[0].products)
            finish.update()
        h, inputs, y = torch.cat([x, x_val]), torch.cat([data.x, data.x_val]), torch.cat([data.y, data.y_val])
        self._warn_uninformative_classifier(h, inputs, y, stacklevel=5 if retrain else 4)
        self.fitted.fill_(True)

    def _sample_temperature(self, data: _FitData) -> float:
        if self.config["sample_temperature"] != "auto":
            return self.config["sample_temperature"]
        if self.latent.noise_components > 1:
            # The mixture was kept because it fits the shape of the encoded signals; draws of it
            # are taken as fitted (scaled, they decoded further from held-out signals).
            return 1.0
        X, Y = torch.cat([data.x, data.x_val]), torch.cat([data.y, data.y_val])
        least, most, values = TEMPERATURE_SIGNALS
        if X.size(0) < least:  # the distances between so few signals say little about their spread
            return 1.0
        count = min(most, max(least, values // (self.num_nodes * self.num_features)))
        keep = draw(torch.randperm, X.size(0), device=self.device, generator=data.generator)[:count]
        # The same noise at every temperature, so the distance is smooth in it.
        seed = int(torch.randint(2**31, (), generator=data.generator))

        def decoded(temperature: float) -> Tensor:
            noise = torch.Generator().manual_seed(seed)
            # The backward solves alone: their error (that of the solver) is far below what the
            # statistic can tell apart, and the fixed-point correction would triple the cost.
            return in_chunks(lambda h: self._inverse_all(h, corrections=0), self.latent.sample(Y[keep], noise, temperature))

        return energy_temperature(decoded, X[keep])

    def _settle_steps(self, block: ODEBlock, index: int, x_val: Tensor, stacklevel: int) -> int:
        r"""Sets the steps of a block just trained: ``steps``, doubled as ``map_tolerance`` asks."""
        c = self.config
        block.steps = c["steps"]
        if c["map_tolerance"] is None:
            return block.steps
        change = block.settle_steps(x_val[:MAP_CHECK_SIGNALS], c["map_tolerance"], MAX_MAP_STEPS)
        if change > c["map_tolerance"]:
            warnings.warn(f"block {index}: on {block.steps} RK4 steps (MAX_MAP_STEPS) its map still moves a validation "
                          f"signal by {change:.3g} from twice as many (map_tolerance={c['map_tolerance']:g}): its field "
                          "is rough; encodings and likelihoods are those of the discrete map", stacklevel=stacklevel + 1)
        return block.steps

    @torch.no_grad()
    def _push(self, block: ODEBlock, index: int, x: Tensor, x_val: Tensor, val_logdet: Tensor) -> tuple[Tensor, Tensor, Tensor, float]:
        moved = in_chunks(block, x)
        w2 = (moved - x).square().flatten(1).sum(1).mean().item()
        # A probe fixed by the block's index, so that a resumed fit tracks the same validation likelihood.
        probe = rademacher(x_val.shape, like=x_val, generator=torch.Generator().manual_seed(index))
        x_val, logdet = in_chunks(lambda x, noise: block.transform(x, divergence="hutchinson", noise=noise), x_val, probe)
        return moved, x_val, val_logdet + logdet, w2

    def _checkpoint(self, path: Path, finished: int, data: _FitData, depth_settled: bool):
        payload = self._payload()
        payload.update(finished=finished, depth_settled=depth_settled, generator=data.generator.get_state(),
                       fingerprint=data.fingerprint, split_seed=data.split_seed)
        save_atomic(payload, path, CHECKPOINT_KIND)

    def _read_checkpoint(self, path: Path, data: _FitData) -> dict | None:
        r"""The checkpoint of an interrupted fit at ``path`` (``None`` if there is none), checked against
        this fit and restored into a copy of the model, so that one refused leaves the model as it is."""
        if not path.exists():
            return None
        if not path.is_file():  # found now, not when the first block is written
            raise ValueError(f"{path} is not a file: the fit's checkpoint goes there; use another checkpoint directory")
        payload = load_checked(path, CHECKPOINT_KIND, map_location="cpu")
        if "finished" not in payload:  # save and fit write the same kind; only a fit counts its blocks
            raise ValueError(f"{path} holds a model written by save, not the checkpoint of a fit; use another checkpoint directory")
        with reading_contents(path, CHECKPOINT_KIND):
            saved = dict(payload["config"])
        ours = self.config
        if saved != ours:  # first: the graph is read against the number of nodes
            changed = sorted(k for k in saved.keys() | ours.keys() if saved.get(k) != ours.get(k))
            raise ValueError(f"{path} holds a fit with other settings ({', '.join(changed)}); use another checkpoint directory")
        with reading_contents(path, CHECKPOINT_KIND):
            graph = self._is_graph(payload["edge_index"])
            same_data = isinstance(payload["fingerprint"], str) and payload["fingerprint"] == data.fingerprint
            dtype = payload["state_dict"]["latent.means"].dtype
        if not graph:
            raise ValueError(f"{path} holds a fit on another graph; use another checkpoint directory")
        if dtype != self.dtype:
            raise ValueError(f"{path} holds a fit in {dtype}, this model computes in {self.dtype}: resume it with a model "
                             f"in {dtype} (model.to({dtype}); on the command line, train with --float64 exactly when "
                             "the first run had it), or use another checkpoint directory")
        if not same_data:
            raise ValueError(f"{path} holds a fit on other data; use another checkpoint directory")
        with reading_contents(path, CHECKPOINT_KIND):
            restored = copy.deepcopy(self)
            restored._restore(payload)
            as_count(payload["finished"], "finished", minimum=0, maximum=len(restored.blocks))
            torch.Generator().set_state(payload["generator"])
            if "split_seed" in payload:
                as_seed(payload["split_seed"], "split_seed")
        return payload

    def _resume(self, path: Path, payload: dict, data: _FitData) -> tuple[int, bool]:
        r"""Restores the blocks a checkpointed fit finished (read by :meth:`_read_checkpoint`); returns
        their number and whether its depth was settled."""
        self._restore(payload)
        data.generator.set_state(payload["generator"])
        return int(payload["finished"]), payload.get("depth_settled") is True

    # Trajectory tools ------------------------------------------------------------------

    @torch.no_grad()
    def w2_per_block(self, X: ArrayLike, Y: ArrayLike | None = None) -> list[float]:
        r"""The movement :math:`\mathbb{E}\|T_k(x) - x\|^2` of each block on ``X`` pushed through the blocks before it
        (in the standardised coordinates the blocks see, see ``standardize``).

        The JKO trajectory converges to the latent, so the movement shrinks along the flow.
        ``Y`` is accepted for symmetry with the other methods (checked, not used): the flow
        does not depend on labels.
        """
        self._check_fitted()
        x = self.standardizer(self._signals(X))
        if x.size(0) == 0:  # a mean over no signals is NaN
            raise ValueError("w2_per_block needs at least one signal, got X of shape [0, ...]")
        if Y is not None:
            self._labels(Y, num_samples=x.size(0))
        out = []
        for block in self.blocks:
            moved = in_chunks(block, x)
            out.append((moved - x).square().flatten(1).sum(1).mean().item())
            x = moved
        return out

    def reparameterize(self, X: ArrayLike, Y: ArrayLike, *, max_time: float | None = None, progress: bool = True) -> ConditionalGraphFlow:
        r"""Moves the block boundaries so that every block moves the same distance, then retrains warm-started.

        The trained flow is a path :math:`x(t)`, :math:`t \in [0, T]`. Its length
        :math:`L(t)`, the root-mean-square movement summed over the solver's grid, is
        measured on ``X``; the new boundaries :math:`s_k` split it into equal lengths,
        :math:`L(s_k) = k L(T) / B`, so each block's movement
        :math:`W_k = \mathbb{E}\|T_k(x) - x\|^2 \approx (L(T) / B)^2` is the same. Resizing
        each step alone, :math:`h_k \propto h_k / \sqrt{W_k}`, would ignore that a block's
        movement depends on where the blocks before it stop. The total time is kept, and no
        block is made longer than ``max_step`` (where the flow stands nearly still at the end,
        the last blocks would be): those are cut to it, and the others share the time they
        leave in proportion to their lengths. Each new
        block starts as a copy of the old block holding its interval's midpoint (the field
        depends on absolute time, so that is the same field there) and is retrained (JKO
        objective) on the data pushed through the retrained blocks before it. A retrained block
        moves somewhat differently from the old path it replaces, so evening the movements out
        may take two or three calls (``benchmarks/results/jko_tools.md``: max/min W2 from about
        9 to below 2 in three). The model changes, so its calibration is forgotten.

        Arguments:
            X: The training signals, ``[N, V, C]``.
            Y: Their labels, ``[N, V]``.
            max_time: A cap on the retraining time in seconds.
            progress: Show a progress bar.
        """
        self._check_fitted()
        _check_solver_step(self.config)
        max_time, progress = as_seconds(max_time), as_flag(progress, "progress")
        data = self._standardized(self._split(X, Y))
        if not self.blocks:  # a fit given no time: the identity map has no path to divide
            return self._retrain(self.blocks, data, max_time, progress)
        x = self.standardizer(self._signals(X))
        times, lengths = [torch.zeros(1)], [torch.zeros(1)]
        with torch.no_grad():
            for block in self.blocks:
                path = in_chunks(lambda part, block=block: block.trajectory(part).transpose(0, 1), x)
                segments = (path[:, 1:] - path[:, :-1]).square().flatten(2).sum(2).mean(0).sqrt().cpu()
                times.append(block.grid()[1:].cpu())
                lengths.append(lengths[-1][-1] + segments.cumsum(0))
                x = path[:, -1]
        times, lengths = torch.cat(times).double().numpy(), torch.cat(lengths).double().numpy()
        # A tiny share of time in the length keeps it strictly increasing where the flow stands
        # still, so that its piecewise-linear inverse is a function and no block is empty.
        lengths = lengths + 1e-6 * lengths[-1] * times / times[-1]
        bounds = np.interp(np.linspace(0.0, lengths[-1], len(self.blocks) + 1), lengths, times)
        bounds = np.concatenate([[0.0], np.cumsum(_capped_steps(np.diff(bounds), self.config["max_step"]))])
        ends = [float(b.interval[1]) for b in self.blocks]
        blocks = nn.ModuleList()
        for start, end in itertools.pairwise(bounds):
            parent = self.blocks[min(int(np.searchsorted(ends, (start + end) / 2)), len(ends) - 1)]
            child = copy.deepcopy(parent)
            child.set_interval(float(start), float(end))
            blocks.append(child)
        return self._retrain(blocks, data, max_time, progress)

    def refine(self, X: ArrayLike, Y: ArrayLike, factor: int = 2, *, max_time: float | None = None, progress: bool = True) -> ConditionalGraphFlow:
        r"""Splits every block's interval into ``factor`` sub-intervals (``factor`` times the blocks) and retrains.

        Each sub-block starts as a copy of its parent: the velocity field depends on absolute
        time, so the refined chain starts as the same map, integrated more finely; each
        sub-block is then retrained with its own, shorter JKO step. The model changes, so its
        calibration is forgotten.

        Arguments:
            X: The training signals, ``[N, V, C]``.
            Y: Their labels, ``[N, V]``.
            factor: Sub-intervals per block.
            max_time: A cap on the retraining time in seconds.
            progress: Show a progress bar.
        """
        self._check_fitted()
        _check_solver_step(self.config)
        # Checked before the blocks are split: a model left refined but not retrained would
        # not match its settings.
        factor, max_time = as_count(factor, "factor"), as_seconds(max_time)
        data = self._standardized(self._split(X, Y))
        progress = as_flag(progress, "progress")
        refined = nn.ModuleList()
        for parent in self.blocks:
            t0, h = float(parent.interval[0]), parent.step_size / factor
            for part in range(factor):
                child = copy.deepcopy(parent)
                child.set_interval(t0 + part * h, t0 + (part + 1) * h)
                refined.append(child)
        return self._retrain(refined, data, max_time, progress)

    def _retrain(self, blocks: nn.ModuleList, data: _FitData, max_time: float, progress: bool) -> ConditionalGraphFlow:
        r"""Retrains ``blocks`` (warm-started) in place of the model's; a retraining that raises
        (or is interrupted) leaves the model as it was."""
        with self._kept_on_error():
            self.blocks = blocks
            # The calibration scores were those of the old map and head.
            self._forget_calibration()
            self.history_ = []
            self._train_blocks(data, 0, max_time, progress, None, retrain=True)
        return self

    @property
    def head_input_(self) -> str:
        r"""What the head reads: ``"both"``, ``"latent"`` or ``"input"``, as ``head_input`` gives
        it or, for ``"auto"``, as :meth:`fit` chose it."""
        return next(name for name, reads in HEAD_READS.items() if name != "auto" and reads == tuple(self.head_reads.tolist()))

    @property
    def separation_(self) -> float:
        r"""The minimum distance of the latent means in units of ``sigma`` while the blocks train
        (``separation``; under ``"auto"`` what :meth:`fit` chose)."""
        return float(self.means_separation)

    @property
    def head_products(self) -> bool:
        r"""Whether the graph head uses the products of the node features: :meth:`fit` takes
        them where they predict the validation labels better (``classifier="graph"`` with at
        most :data:`~igraphflow.head.MAX_PRODUCT_FEATURES` features)."""
        return bool(self.head_uses_products)

    def _warn_not_invertible(self, h_val: Tensor, data: _FitData, stacklevel: int):
        r"""Warns where decoding ``h_val``, the validation signals encoded by the blocks, misses
        them by more than :data:`ROUND_TRIP_TOLERANCE`: the blocks' integrated divergence is then
        not the log-determinant of the map they apply, and samples do not come from the density
        that ``log_prob`` reports."""
        if not len(self.blocks):
            return
        with torch.no_grad():
            missed = (in_chunks(self._inverse_all, h_val) - data.x_val).square().mean().sqrt().item()
        # Over all the signals: fit refuses them when they are all the same, but one side may be a single one.
        signals = torch.cat([data.x, data.x_val])
        spread = (signals - signals.mean(0)).square().mean().sqrt().item()
        if missed > ROUND_TRIP_TOLERANCE * spread:
            c = self.config
            warnings.warn(
                f"the trained blocks do not invert: decoding the encoded validation signals misses them by "
                f"{missed / spread:.3g} of the signals' spread (root mean square; more than {ROUND_TRIP_TOLERANCE:g}), "
                "so encodings, samples and likelihoods are not those of one invertible map. Fit with more RK4 "
                f"steps per block (steps={c['steps']}, train_steps={c['train_steps']}), shorter blocks "
                f"(max_step={c['max_step']:g}, first_step={c['first_step']:g}) or a smaller lr ({c['lr']:g})",
                stacklevel=stacklevel,
            )

    def _warn_uninformative_classifier(self, h: Tensor, x: Tensor, y: Tensor, stacklevel: int):
        # On its own training signals any of the classifiers can match the label frequencies;
        # one that does no better predicts nothing from X, which predictions would not show.
        # A label held out for validation alone has probability 0 (never trained on): left out.
        seen = self.classes_seen[y]
        cross_entropy = -self._log_proba(h, x).gather(-1, y.unsqueeze(-1)).squeeze(-1)[seen].mean().item()
        y = y[seen]
        frequencies = torch.bincount(y.flatten(), minlength=self.num_classes).double() / y.numel()
        frequencies = frequencies[frequencies > 0]
        entropy = -(frequencies * frequencies.log()).sum().item()
        if entropy > 0 and cross_entropy > 0.99 * entropy:
            warnings.warn(
                f"the classifier ({self.config['classifier']}) predicts the training labels no better than their "
                f"frequencies do (cross-entropy {cross_entropy:.4f} against {entropy:.4f} nats per node): its "
                "probabilities carry nothing of X. The labels may not depend on X, or depend on it in a way "
                "shared class means cannot hold, such as a class effect of opposite sign at different nodes",
                stacklevel=stacklevel,
            )

    # Inference --------------------------------------------------------------------------

    def forward(self, *args, **kwargs):
        # nn.Module would answer with torch's "missing the required forward function".
        raise TypeError("a ConditionalGraphFlow is not called: use encode(X) for H = F(X), log_prob(X, Y), "
                        "predict_proba(X) or sample(Y)")

    def _check_not_meta(self):
        if self.device.type == "meta":  # shapes without values: every answer would fail inside torch
            # Not .to_empty(): it leaves the graph's buffers (edge list, supports) uninitialised too.
            raise RuntimeError("this model is on the meta device, which holds no weights: load it again "
                               "(ConditionalGraphFlow.load), or build a new one on a real device and fit it")

    def _check_fitted(self):
        self._check_not_meta()
        if not bool(self.fitted):
            raise RuntimeError("this ConditionalGraphFlow is not fitted yet: call fit(X, Y) first")

    @torch.no_grad()
    def encode(self, X: ArrayLike) -> Tensor:
        r"""The latent :math:`H = F(X)`, ``[N, V, C]``.

        Raises:
            ValueError: Where ``H`` is not finite: signals far outside the training signals
                (near the dtype's largest values) overflow the flow, and every answer built on
                ``H`` (probabilities, densities, regions) would be NaN.
        """
        self._check_fitted()
        X = self._signals(X)
        return finite_result(in_chunks(self._forward_all, self.standardizer(X)), X, "X")

    def _forward_all(self, h: Tensor) -> Tensor:
        for block in self.blocks:
            h = block(h)
        return h

    @torch.no_grad()
    def decode(self, H: ArrayLike) -> Tensor:
        r"""The graph signals :math:`X = F^{-1}(H)`, ``[N, V, C]``."""
        self._check_fitted()
        return self._decoded(self._signals(H, name="H"))

    def _decoded(self, H: Tensor, warn: bool = False) -> Tensor:
        r""":math:`F^{-1}(H)` of checked latents; overflowing signals raise, or are warned about with ``warn``."""
        return finite_result(self.standardizer.inverse(in_chunks(self._inverse_all, H)), H, "H", warn=warn)

    def _inverse_all(self, x: Tensor, corrections: int = 1) -> Tensor:
        for block in reversed(self.blocks):
            x = block.inverse(x, corrections)
        return x

    @torch.no_grad()
    def log_prob(
        self,
        X: ArrayLike,
        Y: ArrayLike,
        exact: bool = True,
        batch_size: int = 1024,
        seed: int | None = None,
        progress: bool | None = None,
    ) -> Tensor:
        r"""The natural log-density :math:`\log p(X | Y)` of each graph signal, ``[N]``.

        Arguments:
            X: Node features ``[N, V, C]``.
            Y: Node labels ``[N, V]``.
            exact: The exact Jacobian trace (``D = V * C`` vector-Jacobian products per
                evaluation, so about ``D`` times the cost of the estimate: tenths of a second
                per signal on a CPU from ``D`` of about 50) or, if ``False``, Hutchinson's
                unbiased estimate (one probe).
            batch_size: The most samples evaluated at once (fewer on large graphs, and
                ``batch_size // min(64, V C)`` for the exact trace).
            seed: Seeds the probes of the estimate (``exact=False``): the same seed and batch
                size give the same estimate, on a CPU or a GPU.
            progress: Show a progress bar over the signals; by default shown for the exact
                trace above :data:`QUIET_EXACT_DIM` dimensions, where it takes seconds per
                signal.
        """
        self._check_fitted()
        exact, batch_size = as_flag(exact, "exact"), as_count(batch_size, "batch_size")
        dims = self.num_nodes * self.num_features
        progress = (exact and dims > QUIET_EXACT_DIM) if progress is None else as_flag(progress, "progress")
        generator = None if seed is None else torch.Generator().manual_seed(as_seed(seed))
        X = self._signals(X)
        Y = self._labels(Y, num_samples=X.size(0))
        self._warn_unseen(Y)
        divergence = "exact" if exact else "hutchinson"
        # The exact trace batches D copies of the input, so take fewer samples at once.
        batch_size = min(batch_size, chunk_size(X))
        if exact:
            batch_size = max(1, batch_size // min(EXACT_CHUNK, dims))
        latents, logdets = [], []
        with tqdm(total=X.size(0), desc="log_prob", unit="signal", disable=not progress) as bar:
            for x in self.standardizer(X).split(batch_size):
                logdet = x.new_zeros(x.size(0))
                for block in self.blocks:
                    probe = None if exact else rademacher(x.shape, like=x, generator=generator)
                    x, step = block.transform(x, divergence=divergence, noise=probe)
                    logdet += step
                latents.append(x)
                logdets.append(logdet)
                bar.update(x.size(0))
        H, logdet = torch.cat(latents), torch.cat(logdets)
        # A log-density of -inf is one too small for the dtype; an infinite latent or log-det an overflow.
        finite_result(torch.cat([H.flatten(1), logdet.unsqueeze(1)], 1), X, "X")
        return self.latent.log_prob(H, Y) + logdet + self.standardizer.log_abs_det()

    @torch.no_grad()
    def sample(self, Y: ArrayLike, seed: int | None = None, temperature: float | None = None) -> Tensor:
        r"""One graph signal :math:`X \sim p(X | Y)` per label pattern row of ``Y [N, V]``, ``[N, V, C]``.

        Arguments:
            Y: Node labels ``[N, V]``.
            seed: Seeds the latent noise.
            temperature: The factor on the latent noise; by default the one ``fit`` chose
                (``sample_temperature``, available as ``latent.temperature``).

        Draws that overflow when decoded (at an extreme temperature, or from a diverged fit)
        are warned about and returned as computed, NaN or infinite, beside the finite ones.
        """
        self._check_fitted()
        Y = self._labels(Y)
        self._warn_unseen(Y)
        if temperature is not None:
            temperature = as_real(temperature, "temperature", "(0, inf)")
        # A CPU generator: the same seed gives the same samples on a CPU and on a GPU.
        generator = None if seed is None else torch.Generator().manual_seed(as_seed(seed))
        H = self._signals(self.latent.sample(Y, generator=generator, temperature=temperature), name="H")
        return self._decoded(H, warn=True)

    @torch.no_grad()
    def predict_proba(self, X: ArrayLike) -> Tensor:
        r""":math:`P(Y_v = k | X)` for every node, ``[N, V, K]``."""
        return self.predict_log_proba(X).exp().to(self.dtype)

    def predict(self, X: ArrayLike) -> Tensor:
        r"""The most probable label of every node, ``[N, V]``."""
        return self.predict_proba(X).argmax(-1)

    # Saving -----------------------------------------------------------------------------

    def _payload(self) -> dict:
        return dict(
            config=self.config,
            blocks=len(self.blocks),
            edge_index=self.edge_index.cpu(),
            state_dict={k: v.cpu() for k, v in self.state_dict().items()},
            history=[dataclasses.asdict(r) for r in self.history_],
        )

    def _restore(self, payload: dict):
        # Files written before "blocks" was saved: the blocks in the weights.
        depth = payload.get("blocks", len({k.split(".")[1] for k in payload["state_dict"] if k.startswith("blocks.")}))
        self._set_depth(as_count(depth, "blocks", minimum=0))
        # The saved dtype, not the default one: loading into float32 weights would round float64 ones.
        means = payload["state_dict"].get("latent.means")
        if isinstance(means, Tensor) and means.is_floating_point():
            self.to(dtype=means.dtype)
        # Files written before the classes seen were recorded: all of them; before the graph head
        # could take the products of the features: without them; before the means' separation
        # was recorded: the setting's. (The edge list stays the model's own: _load_from_state_dict.)
        defaults = {"classes_seen": torch.ones_like(self.classes_seen), "head_uses_products": torch.tensor(False),
                    "head_reads": self.head_reads.clone(), "means_separation": self.means_separation.clone()}
        # Before the blocks' steps were saved: the setting's, as each block was built.
        defaults.update({f"blocks.{index}.solver_steps": block.solver_steps.clone() for index, block in enumerate(self.blocks)})
        self.load_state_dict({**defaults, **payload["state_dict"]})
        self._set_means_separation()
        # Weights or noise of a diverged or damaged fit would answer every call with NaN.
        tensors = itertools.chain(self.named_parameters(), self.named_buffers())
        broken = [name for name, value in tensors if value.is_floating_point() and not torch.isfinite(value).all()]
        if broken:
            raise ValueError(f"its weights or buffers hold NaN or infinite values ({', '.join(broken[:3])})")
        self.history_ = [BlockRecord(**r) for r in payload.get("history", [])]

    def _is_graph(self, edge_index: Tensor) -> bool:
        r"""Whether ``edge_index`` is this model's graph as its layers see it (whatever the order,
        the directions listed or the duplicates)."""
        ours, theirs = (undirected_edges(e, self.num_nodes).cpu() for e in (self.edge_index, edge_index))
        return torch.equal(ours, theirs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        r"""As :meth:`torch.nn.Module.load_state_dict`; the model must have been built with the same
        settings (only the graph is checked: :meth:`save` and :meth:`load` carry the settings).
        With ``strict=False`` what ``state_dict`` lacks is left as it is (and listed as missing);
        with ``strict=True`` the parts older checkpoints lack (standardisation, calibration,
        temperature) take their neutral values."""
        reads = state_dict.get("head_reads")
        if isinstance(reads, Tensor) and reads.shape == self.head_reads.shape and self.head is not None:
            self._read_by_head(tuple(reads.tolist()))  # the head's width follows what the fit chose
        products = state_dict.get("head_uses_products")
        if isinstance(products, Tensor) and products.numel() == 1 and isinstance(self.head, nn.Sequential):
            if bool(products) != self.head[0].products:  # the head's shape follows the fit's choice
                self.head = with_products(self.head, self._head_features, bool(products))
        if strict:
            return super().load_state_dict(state_dict, strict, assign)
        own = self.state_dict()
        metadata = getattr(state_dict, "_metadata", own._metadata)  # module versions, as torch keeps them
        if any(key.startswith("latent.") for key in state_dict):
            # A latent state without noise buffers is one without a fitted noise, not a partial one.
            own = {key: value for key, value in own.items() if key.removeprefix("latent.") not in GaussianMixtureLatent.NOISE_BUFFERS}
        merged = collections.OrderedDict({**own, **state_dict})
        merged._metadata = metadata
        result = super().load_state_dict(merged, strict, assign)
        return result._replace(missing_keys=[key for key in own if key not in state_dict])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The layers keep the graph in buffers that are not saved: the weights of a model on
        # another graph would be computed on this one's, under that graph's edge list.
        key = prefix + "edge_index"
        if isinstance(state_dict.get(key), Tensor):
            if not self._is_graph(check_edge_index(state_dict[key], self.num_nodes)):
                raise ValueError("the state_dict is that of a model on another graph: build the model on its graph, "
                                 "or load a file written by save with ConditionalGraphFlow.load")
            state_dict[key] = self.edge_index
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def save(self, path: str | os.PathLike) -> None:
        r"""Writes the model (settings, graph, weights, training history) to ``path``, atomically."""
        save_atomic(self._payload(), path, CHECKPOINT_KIND)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> ConditionalGraphFlow:
        r"""Reads a model written by :meth:`save`.

        Raises:
            ValueError: When the file is not a ``ConditionalGraphFlow`` checkpoint, or is one whose
                contents are damaged or written by another version.
        """
        payload = load_checked(path, CHECKPOINT_KIND, map_location="cpu")
        if "finished" in payload:
            raise ValueError(
                f"{path} is a checkpoint written by fit(..., checkpoint_dir=...) ({payload['finished']} blocks trained), "
                "not by save: fit again with that directory to finish the fit; load reads files written by save"
            )
        with reading_contents(path, CHECKPOINT_KIND):
            config = payload.get("config", {})
            if not isinstance(config, dict):
                raise ValueError(f"its config is a {type(config).__name__}, not a dict")
            config, dims = dict(config), ("num_nodes", "num_features", "num_classes")
            if isinstance(payload.get("state_dict"), dict) and "standardizer.loc" not in payload["state_dict"]:
                config.setdefault("standardize", False)  # saved before the flow standardised its input
            config.setdefault("head_input", "latent")  # saved before the head read the input
            missing = [k for k in ("edge_index", "state_dict") if k not in payload] + [f"config[{k!r}]" for k in dims if k not in config]
            if missing:
                raise ValueError(f"it lacks {', '.join(missing)}")
            # A model saved before MAX_SOLVER_STEP existed is built under it, then keeps its own
            # setting: it loads and answers, and fit, refine and reparameterize refuse it.
            if isinstance(config.get("steps"), int):
                config.setdefault("train_steps", config["steps"])  # saved before training took its own steps
            max_step = config.get("max_step")
            solver_steps = [config.get(name) for name in ("steps", "train_steps")]
            if isinstance(max_step, float) and all(isinstance(n, int) for n in solver_steps):
                config["max_step"] = min(max_step, MAX_SOLVER_STEP * min(solver_steps))
            model = cls(payload["edge_index"], *(config.pop(k) for k in dims), **config, device="cpu")
            if isinstance(max_step, float):
                model.config["max_step"] = max_step
            model._restore(payload)
        return model.to(as_device(device))

    def extra_repr(self) -> str:
        c = self.config
        return f"num_nodes={self.num_nodes}, num_features={self.num_features}, num_classes={self.num_classes}, conv={c['conv']!r}"
