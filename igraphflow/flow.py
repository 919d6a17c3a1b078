r"""The conditional graph flow: one invertible map between :math:`X | Y` and :math:`H | Y`."""

from __future__ import annotations

__all__ = ["ConditionalGraphFlow"]

import dataclasses
import math
import os
import time
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._checks import as_labels, as_signals
from .checkpoint import load_checked, save_atomic
from .graph import check_edge_index
from .jko import BlockRecord, train_block
from .latent import GaussianMixtureLatent
from .nn import GraphVelocityField
from .ode import DIVERGENCES, ODEBlock
from .uncertainty import UncertaintyMixin

CHECKPOINT_KIND = "igraphflow.ConditionalGraphFlow"


def _resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class ConditionalGraphFlow(UncertaintyMixin, nn.Module):
    r"""A conditional normalizing flow on graph signals, trained block by block (JKO).

    An invertible map :math:`F`, a chain of neural-ODE blocks whose velocity fields are graph
    convolutions, carries node features :math:`X \in \mathbb{R}^{V \times C}` to a latent
    :math:`H = F(X)` of the same shape, with
    :math:`p(H | Y) = \prod_v \mathcal{N}(H_v; \mu_{Y_v}, \sigma^2 I)`. The labels enter only
    through the latent, so one model generates :math:`X | Y`, predicts :math:`P(Y_v | X)` and
    evaluates :math:`\log p(X | Y) = \log p(F(X) | Y) + \log |\det \partial F / \partial X|`.

    Arguments:
        edge_index: The graph shared by all samples, ``[2, E]``.
        num_nodes: The number of nodes ``V``.
        num_features: Features per node ``C``.
        num_classes: The number of node labels ``K``.
        conv: The graph convolution of the velocity fields: ``"l3net"``, ``"cheb"`` or ``"gcn"``.
        num_blocks: The number of ODE blocks (JKO steps).
        hidden: Hidden channels of the velocity fields.
        sigma: The standard deviation of the latent components.
        orders: Hop radii of the convolutions (L3Net bases; ChebNet uses the largest).
        steps: RK4 steps per block.
        first_step: The time step :math:`h_1` of the first block.
        step_growth: The ratio :math:`h_{k+1} / h_k` of the geometric schedule; the JKO
            trajectory converges exponentially, so later blocks take longer steps.
        separation: The minimum distance of the latent means in units of ``sigma``, see
            :class:`~igraphflow.latent.GaussianMixtureLatent`.
        barrier_weight: The weight of the log-barrier on the means.
        classifier: ``"bayes"`` (the Bayes rule of the latent mixture) or ``"linear"`` (a
            softmax layer on :math:`H_v`, fitted by cross-entropy on the final latent).
        divergence: The divergence estimator used in training, ``"hutchinson"`` or
            ``"finite_difference"`` (``"exact"`` is possible for small graphs).
        batch_size: Samples per training step.
        lr: The Adam learning rate.
        max_epochs: The most epochs per block.
        patience: Epochs without validation improvement before a block stops.
        validation: The fraction of the training samples held out for early stopping.
        device: Where to compute; the GPU when one is available if ``None``.
        seed: Seeds the initialisation, the validation split, the batches and the probes.

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
        num_blocks: int = 6,
        hidden: int = 32,
        sigma: float = 1.0,
        orders: Sequence[int] = (0, 1, 2),
        steps: int = 4,
        first_step: float = 0.25,
        step_growth: float = 1.5,
        separation: float = 0.0,
        barrier_weight: float = 1e-2,
        classifier: Literal["bayes", "linear"] = "bayes",
        divergence: Literal["hutchinson", "finite_difference", "exact"] = "hutchinson",
        batch_size: int = 256,
        lr: float = 2e-3,
        max_epochs: int = 40,
        patience: int = 5,
        validation: float = 0.1,
        device: str | torch.device | None = None,
        seed: int | None = None,
    ):
        super().__init__()
        for name, value in (("num_nodes", num_nodes), ("num_features", num_features), ("num_blocks", num_blocks)):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes}")
        if classifier not in ("bayes", "linear"):
            raise ValueError(f"classifier must be 'bayes' or 'linear', got {classifier!r}")
        if divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
        if not 0.0 < validation < 1.0:
            raise ValueError(f"validation must be a fraction in (0, 1), got {validation}")
        if first_step <= 0 or step_growth <= 0:
            raise ValueError(f"first_step and step_growth must be positive, got {first_step}, {step_growth}")
        self.config = dict(
            num_nodes=int(num_nodes), num_features=int(num_features), num_classes=int(num_classes), conv=conv,
            num_blocks=int(num_blocks), hidden=int(hidden), sigma=float(sigma), orders=tuple(int(m) for m in orders),
            steps=int(steps), first_step=float(first_step), step_growth=float(step_growth),
            separation=float(separation), barrier_weight=float(barrier_weight), classifier=classifier,
            divergence=divergence, batch_size=int(batch_size), lr=float(lr), max_epochs=int(max_epochs),
            patience=int(patience), validation=float(validation), seed=seed,
        )
        self.num_nodes, self.num_features, self.num_classes = int(num_nodes), int(num_features), int(num_classes)
        self.seed = seed
        self.register_buffer("edge_index", check_edge_index(edge_index, num_nodes))
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.latent = GaussianMixtureLatent(num_classes, num_features, sigma, separation)
            self.head = nn.Linear(num_features, num_classes) if classifier == "linear" else None
            self.blocks = nn.ModuleList(self._make_block(t0, t1) for t0, t1 in self._intervals(num_blocks))
        self.register_buffer("fitted", torch.tensor(False))
        self.history_: list[BlockRecord] = []
        self.to(_resolve_device(device))

    # Construction -----------------------------------------------------------------------

    def _intervals(self, num_blocks: int) -> list[tuple[float, float]]:
        steps = [self.config["first_step"] * self.config["step_growth"] ** k for k in range(num_blocks)]
        ends = [sum(steps[: k + 1]) for k in range(num_blocks)]
        return list(zip([0.0] + ends[:-1], ends))

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
    def num_blocks(self) -> int:
        r"""The number of ODE blocks in the flow."""
        return len(self.blocks)

    def _signals(self, X, name: str = "X") -> Tensor:
        return as_signals(X, self.num_nodes, self.num_features, name=name, device=self.device)

    def _labels(self, Y, num_samples: int | None = None, name: str = "Y") -> Tensor:
        return as_labels(Y, self.num_nodes, self.num_classes, num_samples=num_samples, name=name, device=self.device)

    # Training ---------------------------------------------------------------------------

    def fit(self, X, Y, *, max_time: float | None = None, progress: bool = True) -> ConditionalGraphFlow:
        r"""Trains the flow block by block on graph signals ``X [N, V, C]`` with labels ``Y [N, V]``.

        A fraction ``validation`` of the samples is held out for early stopping. Each block is
        trained on the samples pushed through the blocks before it, without gradients.

        Arguments:
            X: Node features, numpy or torch, ``[N, V, C]``.
            Y: Node labels in ``0..K-1``, ``[N, V]``.
            max_time: A cap on the training time in seconds. When it is reached the block in
                training keeps its best state and the blocks not yet trained are dropped, so
                the model stays invertible and usable.
            progress: Show a progress bar.

        Returns:
            The fitted model.
        """
        X = self._signals(X)
        Y = self._labels(Y, num_samples=X.size(0))
        if X.size(0) < 2:
            raise ValueError(f"fit needs at least 2 samples, got {X.size(0)}")
        c = self.config
        generator = torch.Generator()
        generator.manual_seed(self.seed if self.seed is not None else int(torch.randint(2**31, ())))
        order = torch.randperm(X.size(0), generator=generator).to(self.device)
        num_val = max(1, int(round(c["validation"] * X.size(0))))
        val, train = order[:num_val], order[num_val:]
        x, y, x_val, y_val = X[train], Y[train], X[val], Y[val]
        self.latent.set_prior(y)
        deadline = time.monotonic() + (max_time if max_time is not None else math.inf)
        self.history_ = []
        val_logdet = torch.zeros(x_val.size(0), device=self.device)
        bar = tqdm(total=len(self.blocks), desc="JKO blocks", disable=not progress, unit="block")
        for index, block in enumerate(self.blocks):
            record = train_block(
                index, block, self.latent, (x, y), (x_val, y_val),
                divergence=c["divergence"], batch_size=c["batch_size"], lr=c["lr"], max_epochs=c["max_epochs"],
                patience=c["patience"], barrier_weight=c["barrier_weight"], deadline=deadline,
                generator=generator,
                on_epoch=lambda r: bar.set_postfix(epoch=len(r.val_loss), val=f"{r.val_loss[-1]:.4f}"),
            )
            with torch.no_grad():
                moved = block(x)
                record.w2 = (moved - x).square().flatten(1).sum(1).mean().item()
                x = moved
                x_val, logdet = block.transform(x_val, divergence="hutchinson")
                val_logdet += logdet
                nll = -(self.latent.log_prob(x_val, y_val) + val_logdet).mean().item()
                record.val_nll_per_dim = nll / (self.num_nodes * self.num_features)
            self.history_.append(record)
            bar.set_postfix(w2=f"{record.w2:.3g}", val_nll=f"{record.val_nll_per_dim:.4f}")
            bar.update()
            if record.stopped_by_time:
                del self.blocks[index + 1 :]
                break
        bar.close()
        if self.head is not None:
            self._fit_head(x, y)
        self.config["num_blocks"] = len(self.blocks)
        self.fitted.fill_(True)
        return self

    def _fit_head(self, h: Tensor, y: Tensor, max_iter: int = 200):
        # Multinomial logistic regression on the final latent: convex, so full-batch L-BFGS
        # reaches its optimum in a few dozen steps; H is detached, so the flow is unchanged.
        optimizer = torch.optim.LBFGS(self.head.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")
        features, targets = h.detach().flatten(0, 1), y.flatten()

        def closure():
            optimizer.zero_grad()
            loss = F.cross_entropy(self.head(features), targets) + 1e-4 * self.head.weight.square().sum()
            loss.backward()
            return loss

        optimizer.step(closure)

    # Inference --------------------------------------------------------------------------

    def _check_fitted(self):
        if not bool(self.fitted):
            raise RuntimeError("this ConditionalGraphFlow is not fitted yet: call fit(X, Y) first")

    @torch.no_grad()
    def encode(self, X) -> Tensor:
        r"""The latent :math:`H = F(X)`, ``[N, V, C]``."""
        h = self._signals(X)
        for block in self.blocks:
            h = block(h)
        return h

    @torch.no_grad()
    def decode(self, H) -> Tensor:
        r"""The graph signals :math:`X = F^{-1}(H)`, ``[N, V, C]``."""
        x = self._signals(H, name="H")
        for block in reversed(self.blocks):
            x = block.inverse(x)
        return x

    @torch.no_grad()
    def log_prob(self, X, Y, exact: bool = True, batch_size: int = 1024) -> Tensor:
        r"""The natural log-density :math:`\log p(X | Y)` of each graph signal, ``[N]``.

        Arguments:
            X: Node features ``[N, V, C]``.
            Y: Node labels ``[N, V]``.
            exact: The exact Jacobian trace (``D = V * C`` vector-Jacobian products per
                evaluation) or, if ``False``, Hutchinson's unbiased estimate (one probe).
            batch_size: Samples evaluated at once.
        """
        self._check_fitted()
        X = self._signals(X)
        Y = self._labels(Y, num_samples=X.size(0))
        divergence = "exact" if exact else "hutchinson"
        # The exact trace batches D copies of the input, so take fewer samples at once.
        if exact:
            batch_size = max(1, batch_size // min(64, X[0].numel()))
        out = []
        for x, y in zip(X.split(batch_size), Y.split(batch_size)):
            logdet = torch.zeros(x.size(0), device=self.device)
            for block in self.blocks:
                x, step = block.transform(x, divergence=divergence)
                logdet += step
            out.append(self.latent.log_prob(x, y) + logdet)
        return torch.cat(out)

    @torch.no_grad()
    def sample(self, Y, seed: int | None = None) -> Tensor:
        r"""One graph signal :math:`X \sim p(X | Y)` per label pattern row of ``Y [N, V]``, ``[N, V, C]``."""
        self._check_fitted()
        Y = self._labels(Y)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(seed)
        return self.decode(self.latent.sample(Y, generator=generator))

    @torch.no_grad()
    def predict_proba(self, X) -> Tensor:
        r""":math:`P(Y_v = k | X)` for every node, ``[N, V, K]``."""
        self._check_fitted()
        h = self.encode(X)
        if self.head is not None:
            return torch.softmax(self.head(h), dim=-1)
        return self.latent.posterior(h)

    def predict(self, X) -> Tensor:
        r"""The most probable label of every node, ``[N, V]``."""
        return self.predict_proba(X).argmax(-1)

    # Saving -----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike):
        r"""Writes the model (settings, graph, weights, training history) to ``path``, atomically."""
        payload = dict(
            config=self.config,
            edge_index=self.edge_index.cpu(),
            state_dict={k: v.cpu() for k, v in self.state_dict().items()},
            history=[dataclasses.asdict(r) for r in self.history_],
        )
        save_atomic(payload, path, CHECKPOINT_KIND)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> ConditionalGraphFlow:
        r"""Reads a model written by :meth:`save`.

        Raises:
            ValueError: When the file is not a ``ConditionalGraphFlow`` checkpoint.
        """
        payload = load_checked(path, CHECKPOINT_KIND, map_location="cpu")
        config = dict(payload["config"])
        dims = [config.pop(k) for k in ("num_nodes", "num_features", "num_classes")]
        model = cls(payload["edge_index"], *dims, **config, device="cpu")
        try:
            model.load_state_dict(payload["state_dict"])
        except RuntimeError as error:
            raise ValueError(f"{path}: the weights do not match the saved settings: {error}") from None
        model.history_ = [BlockRecord(**r) for r in payload.get("history", [])]
        return model.to(_resolve_device(device))

    def extra_repr(self) -> str:
        c = self.config
        return f"num_nodes={self.num_nodes}, num_features={self.num_features}, num_classes={self.num_classes}, conv={c['conv']!r}"
