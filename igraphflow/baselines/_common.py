r"""Machinery shared by the baselines: input checks, standardisation, seeding, training loop.

Every baseline derives from :class:`ConditionalBaseline`, which owns the common interface
(``__init__`` stores settings, ``fit`` returns ``self``, learned state ends in ``_``). A
likelihood model derives from :class:`LikelihoodBaseline` and only says how to build its
network, how to evaluate a log-density and how to sample, in standardised coordinates.
"""

from __future__ import annotations

__all__ = [
    "ConditionalBaseline",
    "LikelihoodBaseline",
    "batched_edge_index",
    "seeded",
    "train_loop",
]

import abc
import contextlib
import copy
import inspect
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import as_count, as_device, as_flag, as_labels, as_real, as_seconds, as_seed, as_signals
from ..checkpoint import load_checked, reading_contents, save_atomic
from ..graph import check_edge_index


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    r"""Runs a block under ``torch.manual_seed(seed)`` and NumPy's ``seed`` without changing
    NumPy's global random state, nor torch's, outside the block. When ``seed`` is None, torch's
    global state runs on, and NumPy is seeded from it: ``torch.manual_seed`` alone then makes a
    run reproducible (FrEIA draws its permutations from NumPy)."""
    np_state = np.random.get_state()
    try:
        if seed is None:
            np.random.seed(int(torch.randint(2**32, ())))
            yield
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                np.random.seed(seed % 2**32)
                yield
    finally:
        np.random.set_state(np_state)


def batched_edge_index(edge_index: Tensor, num_nodes: int, batch_size: int) -> Tensor:
    r"""Edge indices of ``batch_size`` disjoint copies of one graph (a block-diagonal graph).

    Copy ``b`` holds nodes ``b * num_nodes`` to ``(b + 1) * num_nodes - 1``, so a batch of
    signals ``[B, V, C]`` reshaped to ``[B * V, C]`` lines up with it.

    Example:
        >>> batched_edge_index(torch.tensor([[0], [1]]), num_nodes=2, batch_size=3)
        tensor([[0, 2, 4],
                [1, 3, 5]])
    """
    offsets = torch.arange(batch_size, device=edge_index.device) * num_nodes
    return (edge_index[:, None, :] + offsets[None, :, None]).reshape(2, -1)


def train_loop(
    step: Callable[[Tensor], float],
    evaluate: Callable[[], float] | None,
    module: nn.Module,
    *,
    num_samples: int,
    batch_size: int,
    max_epochs: int,
    max_time: float | None,
    patience: int | None,
    generator: torch.Generator,
    progress: bool,
    desc: str,
    early_stopping: bool = True,
) -> tuple[list[dict[str, float]], int]:
    r"""Mini-batch training with a time cap, early stopping and restore of the best state.

    Arguments:
        step: Takes the indices of a batch of training samples, updates the parameters and
            returns the training loss of the batch.
        evaluate: Returns the validation loss (lower is better), or None for no validation;
            with validation, the state of ``module`` with the lowest validation loss is
            restored at the end and training stops after ``patience`` epochs without
            improvement.
        module: The module whose state is checkpointed.
        num_samples: Number of training samples.
        batch_size: Batch size.
        max_epochs: Maximum number of passes over the training set.
        max_time: Maximum training time in seconds (checked after every batch), or None.
        patience: Epochs without improvement before stopping, or None to never stop early.
        generator: Random generator of the batch order.
        progress: Whether to show a progress bar.
        desc: Label of the progress bar.
        early_stopping: With False, the validation loss is only recorded: no early stop and
            the last state is kept.

    Returns:
        The history (one dictionary per epoch, epoch 0 being the state before training) and
        the epoch of the returned state.
    """
    max_epochs, max_time = as_count(max_epochs, "max_epochs"), as_seconds(max_time)
    start = time.perf_counter()
    module.eval()
    initial = evaluate() if evaluate is not None else None
    history = [{"epoch": 0, "train_loss": math.nan, "val_loss": initial, "time": 0.0}]
    best = initial if early_stopping else None
    if best is not None and not math.isfinite(best):
        best = math.inf
    best_state = copy.deepcopy(module.state_dict()) if best is not None else None
    best_epoch = 0
    stale = 0
    out_of_time = False

    bar = tqdm(range(1, max_epochs + 1), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        module.train()
        order = torch.randperm(num_samples, generator=generator)
        losses, sizes = [], []
        for begin in range(0, num_samples, batch_size):
            idx = order[begin : begin + batch_size]
            losses.append(step(idx))
            sizes.append(len(idx))
            if time.perf_counter() - start >= max_time:
                out_of_time = True
                break
        module.eval()
        train_loss = float(np.average(losses, weights=sizes))
        val_loss = evaluate() if evaluate is not None else None
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "time": time.perf_counter() - start,
            }
        )
        shown = "-" if val_loss is None else f"{val_loss:.4g}"
        bar.set_postfix(train=f"{train_loss:.4g}", val=shown)

        if not math.isfinite(train_loss) or (val_loss is not None and not math.isfinite(val_loss)):
            warnings.warn(
                f"{desc}: non-finite loss at epoch {epoch}; stopping"
                + (f" and restoring epoch {best_epoch}" if best_state is not None else ""),
                RuntimeWarning,
                stacklevel=3,
            )
            break
        if best is not None:
            if val_loss < best:
                best, best_epoch, stale = val_loss, epoch, 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                stale += 1
                if patience is not None and stale >= patience:
                    break
        else:
            best_epoch = epoch
        if out_of_time:
            break
    bar.close()

    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return history, best_epoch


class ConditionalBaseline(abc.ABC):
    r"""Common interface of the conditional baselines for graph signals ``X | Y``.

    Arguments:
        edge_index: The graph, ``[2, E]`` node indices in ``[0, num_nodes)``.
        num_nodes: Number of nodes V.
        num_features: Number of features per node C.
        num_classes: Number of node labels K.
        seed: Seed of the initialisation, data split, batch order and sampling noise; None
            uses (and advances) the global random state.
        device: Device of the model (default CPU).
        dtype: Floating-point type of the model (default float32).
        standardize: Whether to model the signals standardised per node and feature with the
            training mean and standard deviation (densities are reported in the original
            units).
        batch_size: Mini-batch size.
        lr: Learning rate of Adam.
        patience: Epochs without validation improvement before stopping (None: never).
    """

    #: Names of the settings shown by ``repr`` (subclasses extend it).
    _settings: tuple[str, ...] = ()

    def __init__(
        self,
        edge_index: Any,
        num_nodes: int,
        num_features: int,
        num_classes: int,
        *,
        seed: int | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        standardize: bool = True,
        batch_size: int = 256,
        lr: float = 1e-3,
        patience: int | None = 20,
    ) -> None:
        num_nodes, num_features = as_count(num_nodes, "num_nodes"), as_count(num_features, "num_features")
        num_classes, batch_size = as_count(num_classes, "num_classes"), as_count(batch_size, "batch_size")
        if patience is not None:
            patience = as_count(patience, "patience")
        if seed is not None:
            seed = as_seed(seed)
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point type, got {dtype}")
        self.num_nodes, self.num_features, self.num_classes = num_nodes, num_features, num_classes
        self.edge_index = check_edge_index(edge_index, num_nodes)
        self.seed = seed
        self.device = as_device("cpu" if device is None else device)
        self.dtype = dtype
        self.standardize = as_flag(standardize, "standardize")
        self.batch_size = batch_size
        self.lr = as_real(lr, "lr", "(0, inf)")
        self.patience = patience

    def __repr__(self) -> str:
        names = ("num_nodes", "num_features", "num_classes") + self._settings + ("seed",)
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{type(self).__name__}({args})"

    # Input checks ---------------------------------------------------------------------------

    def _check_Y(self, Y: Any) -> Tensor:
        return as_labels(Y, self.num_nodes, self.num_classes, device=self.device)

    def _check_X(self, X: Any, num_samples: int | None = None) -> Tensor:
        return as_signals(X, self.num_nodes, self.num_features, num_samples=num_samples, device=self.device, dtype=self.dtype)

    def _check_XY(self, X: Any, Y: Any) -> tuple[Tensor, Tensor]:
        Y = self._check_Y(Y)
        return self._check_X(X, num_samples=len(Y)), Y

    def _check_fitted(self) -> None:
        if not hasattr(self, "scale_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit first")

    # Saving --------------------------------------------------------------------------------

    @abc.abstractmethod
    def _build(self) -> nn.Module:
        r"""The untrained network of the subclass, stored in ``model_`` by ``fit``."""

    @classmethod
    def _kind(cls) -> str:
        return f"igraphflow.baselines.{cls.__name__}"

    def _settings_dict(self) -> dict[str, Any]:
        r"""The constructor's arguments (of this class and the ones above it), read back."""
        names = []
        for klass in type(self).__mro__:
            if "__init__" in vars(klass) and klass is not object:
                for name, param in inspect.signature(klass.__init__).parameters.items():
                    if name not in ("self", "device") and param.kind is not param.VAR_KEYWORD and name not in names:
                        names.append(name)
        return {name: getattr(self, name) for name in names}

    def save(self, path: str | os.PathLike) -> None:
        r"""Writes the fitted model (settings, graph, weights, scaling, history) to ``path``, atomically.

        Example:
            >>> import tempfile, pathlib
            >>> from igraphflow.baselines import NSFBaseline
            >>> X, Y = torch.randn(64, 2, 1), torch.randint(0, 2, (64, 2))
            >>> model = NSFBaseline(torch.tensor([[0, 1], [1, 0]]), 2, 1, 2, seed=0).fit(X, Y, max_epochs=2, progress=False)
            >>> path = pathlib.Path(tempfile.mkdtemp()) / "nsf.pt"
            >>> model.save(path)
            >>> torch.equal(NSFBaseline.load(path).log_prob(X, Y), model.log_prob(X, Y))
            True
        """
        self._check_fitted()
        payload = dict(
            settings=self._settings_dict(),
            state_dict={k: v.cpu() for k, v in self.model_.state_dict().items()},
            scaling=(self.loc_.cpu(), self.scale_.cpu()),
            history=self.history_,
            best_epoch=self.best_epoch_,
        )
        save_atomic(payload, path, self._kind())

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> ConditionalBaseline:
        r"""Reads a model written by :meth:`save` of the same class, onto ``device`` (default CPU).

        Raises:
            ValueError: When the file is not a checkpoint of this class, or is one whose contents
                are damaged or written by another version.
        """
        device = as_device("cpu" if device is None else device)  # a bad one is not the file's fault
        payload = load_checked(path, cls._kind(), map_location="cpu")
        with reading_contents(path, cls._kind()):
            model = cls(**payload["settings"], device=device)
            with seeded(model.seed):
                network = model._build()
            # Moved first: loading float64 weights into the float32 network would round them.
            network = network.to(model.device, model.dtype)
            network.load_state_dict(payload["state_dict"])
            # In evaluation mode, as fit leaves it: a training-mode spectral norm would move the weights.
            model.model_ = network.eval()
            model.loc_, model.scale_ = (t.to(model.device, model.dtype) for t in payload["scaling"])
            model.history_, model.best_epoch_ = list(payload["history"]), payload["best_epoch"]
        return model

    # Shared pieces --------------------------------------------------------------------------

    def _onehot(self, Y: Tensor) -> Tensor:
        r"""One-hot labels ``[N, V, K]`` in the model's dtype."""
        return F.one_hot(Y, self.num_classes).to(self.dtype)

    def _generator(self, seed: int | None = None) -> torch.Generator:
        r"""A CPU generator seeded with ``seed``, else the model's seed, else drawn from the
        global random state (so that ``torch.manual_seed`` also makes runs reproducible).
        Noise is drawn on the CPU and moved to the device: samples do not depend on it."""
        seed = self.seed if seed is None else as_seed(seed)
        if seed is None:
            seed = int(torch.randint(2**62, ()))
        return torch.Generator().manual_seed(seed)

    def _fit_scaling(self, X: Tensor) -> None:
        if self.standardize:
            self.loc_ = X.mean(0)
            self.scale_ = X.std(0).clamp_min(1e-6) if len(X) > 1 else torch.ones_like(X[0])
        else:
            self.loc_ = torch.zeros_like(X[0])
            self.scale_ = torch.ones_like(X[0])

    def _to_std(self, X: Tensor) -> Tensor:
        return (X - self.loc_) / self.scale_

    def _from_std(self, X: Tensor) -> Tensor:
        return X * self.scale_ + self.loc_

    def _split(
        self, n: int, validation: float, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        r"""A random split of ``range(n)`` into training and validation indices."""
        validation = as_real(validation, "validation", "[0, 1)")
        n_val = int(round(validation * n))
        if validation > 0 and n_val == 0:
            n_val = 1
        if n - n_val < 1:
            raise ValueError(f"too few samples ({n}) for a validation fraction of {validation}")
        perm = torch.randperm(n, generator=generator)
        return perm[n_val:].sort().values, perm[:n_val].sort().values


class LikelihoodBaseline(ConditionalBaseline):
    r"""A conditional density model of ``X | Y`` trained by maximum likelihood.

    Subclasses implement :meth:`_build` (the network, after which it is stored in
    ``model_``), :meth:`_log_prob_std` and :meth:`_sample_std`, all on standardised signals
    flattened to ``[N, V * C]``.
    """

    #: The generator of the running :meth:`fit` (split, batch order), None outside it. A subclass
    #: whose training loss is random draws that noise from it, so that a seeded fit is reproducible.
    _fit_generator: torch.Generator | None = None

    @abc.abstractmethod
    def _log_prob_std(self, x: Tensor, Y: Tensor) -> Tensor:
        r"""``log p(x | Y)`` of standardised, flattened signals ``[N, V * C]``."""

    @abc.abstractmethod
    def _sample_std(self, Y: Tensor, generator: torch.Generator) -> Tensor:
        r"""Standardised, flattened samples ``[N, V * C]`` for label patterns ``Y``."""

    def _after_step(self) -> None:
        r"""Called after every optimizer step of :meth:`fit`, e.g. to bring parameters back
        into their allowed set; nothing by default."""

    def fit(
        self,
        X: Any,
        Y: Any,
        *,
        max_time: float | None = None,
        max_epochs: int = 500,
        validation: float = 0.1,
        progress: bool = True,
    ) -> LikelihoodBaseline:
        r"""Fits the model by maximum likelihood with early stopping.

        A random fraction ``validation`` of the samples is held out; the parameters with the
        best validation log-likelihood are kept, and training stops after ``patience`` epochs
        without improvement. With ``validation=0`` the last parameters are kept.

        Arguments:
            X: Signals ``[N, V, C]`` (NumPy array or tensor).
            Y: Labels ``[N, V]`` in ``[0, K)``.
            max_time: Maximum training time in seconds, or None.
            max_epochs: Maximum number of epochs.
            validation: Fraction of the samples held out for early stopping.
            progress: Whether to show a progress bar.

        Returns:
            ``self``, with ``model_``, ``history_`` (per-epoch losses, the negative
            log-likelihood per sample) and ``best_epoch_`` set.
        """
        X, Y = self._check_XY(X, Y)
        g = self._generator()
        train, val = self._split(len(X), validation, g)
        self._fit_scaling(X[train])
        x = self._to_std(X).flatten(1)
        with seeded(self.seed):
            model = self._build()
        self.model_ = model.to(self.device, self.dtype)
        optimizer = torch.optim.Adam(self.model_.parameters(), lr=self.lr)

        def step(idx: Tensor) -> float:
            idx = train[idx]
            loss = -self._log_prob_std(x[idx], Y[idx]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            self._after_step()
            return loss.item()

        def evaluate() -> float:
            with torch.no_grad():
                return -torch.cat(
                    [
                        self._log_prob_std(x[idx], Y[idx])
                        for idx in val.split(max(self.batch_size, 1024))
                    ]
                ).mean().item()

        self._fit_generator = g
        try:
            self.history_, self.best_epoch_ = train_loop(
                step,
                evaluate if len(val) else None,
                self.model_,
                num_samples=len(train),
                batch_size=self.batch_size,
                max_epochs=max_epochs,
                max_time=max_time,
                patience=self.patience,
                generator=g,
                progress=progress,
                desc=type(self).__name__,
            )
        finally:
            self._fit_generator = None
        return self

    def log_prob(self, X: Any, Y: Any) -> Tensor:
        r"""Log-density ``log p(X | Y)`` (natural logarithm) of each sample.

        Arguments:
            X: Signals ``[N, V, C]``.
            Y: Labels ``[N, V]``.

        Returns:
            The log-densities ``[N]``, in the units of the original (unstandardised) signals.
        """
        self._check_fitted()
        X, Y = self._check_XY(X, Y)
        if len(X) == 0:  # the flows' reshapes cannot infer the size of an empty batch
            return X.new_empty(0)
        with torch.no_grad():
            out = [
                self._log_prob_std(self._to_std(X[i]).flatten(1), Y[i])
                for i in torch.arange(len(X)).split(max(self.batch_size, 1024))
            ]
        return torch.cat(out) - self.scale_.log().sum()

    def sample(self, Y: Any, *, seed: int | None = None) -> Tensor:
        r"""Draws one signal for each row of label patterns.

        Arguments:
            Y: Labels ``[N, V]``.
            seed: Seed of the noise; defaults to the model's ``seed``, so that with a seed the
                same labels give the same signals at every call (as in scikit-learn).

        Returns:
            Signals ``[N, V, C]``.
        """
        self._check_fitted()
        Y = self._check_Y(Y)
        g = self._generator(seed)
        if len(Y) == 0:
            return self.loc_.new_empty(0, self.num_nodes, self.num_features)
        with torch.no_grad():
            x = self._sample_std(Y, g)
        return self._from_std(x.reshape(len(Y), self.num_nodes, self.num_features))
