r"""The comparison of the papers: our flow against iGNN, cINN, NSF and cGAN on one dataset.

Every method is trained on the same training split under the same cap on its training time,
then generates one signal for the label pattern of every test graph. Reported (``metrics.json``):

- ``mmd`` (squared MMD, Gaussian kernel :math:`\alpha = 1`; all of
  :data:`~igraphflow.metrics.DEFAULT_ALPHAS` under ``mmd_alpha``) and ``energy`` (energy
  statistic) between generated and real test signals (flattened), by the protocol of the iGNN
  paper: within each of the 3 most frequent test label patterns, averaged with weights
  proportional to the pattern counts. When patterns rarely repeat (many nodes) that leaves too
  few samples; if any of the 3 most frequent patterns has fewer than ``min_pattern_count``
  (20) test samples, the statistics are computed on the whole test split instead (one
  generated signal per test label pattern, so the generated set follows the test label mix;
  the cross terms leave out the pairs of a test signal and the signal generated for its labels,
  which are dependent: with them, draws that land near their own test signal are rewarded
  beyond what their distribution earns, see :func:`~igraphflow.metrics.energy_distance`).
  The protocol used is recorded as ``protocol`` (``"top3_patterns"`` or ``"whole_test"``);
  the whole-test values are always recorded too (``mmd_whole``, ``energy_whole``).
- ``nll``: test negative log-likelihood per dimension (nats), exact log-determinant when
  ``D = V * C <= exact_max_dim`` (128), else Hutchinson / power-series estimates; ``None`` for
  the cGAN. At most ``max_eval`` (1000) test samples, a fixed random subset, enter it.
  ``nll_train`` is the same on as many training samples (a gap shows overfitting; ``None``
  with ``nll``).
- Each method generates ``draws`` (5) such sets with different seeds; ``mmd``, ``energy`` and
  the other sample statistics are their means (one set moves the energy by about as much as
  retraining with another seed does), the values of every set are kept in ``mmd_draws`` and
  ``energy_draws``, and the standard errors of the two means over the sets in ``mmd_se`` and
  ``energy_se`` (``None`` with one set): they say how far the means would move with other
  draws of the same fitted model, not with another fit.
- ``acc``: node-label accuracy of ``predict`` (our flow and iGNN), else ``None``.
- ``train_s``: wall time of ``fit``. It may exceed the cap: our flow fits its latent noise,
  sampling temperature and head after its blocks, and the baselines check the cap between
  batches (iGNN after a validation pass with the exact log-determinant).
- ``nonfinite_draws``: per generated set, the signals holding NaN or infinite values (a
  diverged model); they are scored with NaN as 0 and infinities as +-1e6, and warned about.

Figures (``samples.png``, ``pca.png``, ``training.png``) go next to ``metrics.json``, which is
written once every method is done; until then ``metrics.partial.json`` holds those done so far
and ``pending``, those to come.

Each method's result (its row, first generated set and training curve) is also written to
``methods/<method>.pt`` as soon as it is done, and kept. A run in the same folder, after an
interruption or not, reuses those of its methods and trains only the others, if everything
that determines a result is as recorded: the fields of the ``metrics.json`` header (dataset,
sizes, ``max_time``, ``seed``, ``draws``, ``nll_exact``, ``nll_num_samples``), the method's
settings, a digest of the data (signals, labels and graph: other dataset options or files
change it) and one of the code (igraphflow's source files and the versions of the libraries
the methods use). A method whose file records another run, or is damaged, is trained again (a
line on stderr says why); ``restart=True`` (``--restart``) trains every method again.

The baselines need zuko and FrEIA and the figures matplotlib: the ``baselines`` extra
(``pip install -e ".[baselines]"``). :func:`compare` checks them, the methods, their settings
and the test split before training anything.

Example:
    >>> import tempfile
    >>> from igraphflow.datasets import load
    >>> data = load("three_node", num_train=64, num_test=64)
    >>> with tempfile.TemporaryDirectory() as out:
    ...     result = compare(data, ["ignn"], max_time=1.0, seed=0, out_dir=out, figures=False)
    >>> {"mmd", "energy", "nll", "acc", "train_s"} <= set(result["methods"]["ignn"])
    True
"""

from __future__ import annotations

__all__ = ["ARGUMENT_ERRORS", "EXACT_MAX_DIM", "METHODS", "NSF_MAX_DIM", "add_budget_argument", "add_data_argument", "add_data_option_argument", "add_option_argument", "budget_seconds", "check_requirements", "check_settings", "compare", "default_methods", "evaluate", "evaluate_draws", "fit_method", "format_mean", "format_table", "key_value", "load_data_arguments", "main", "make_model", "method_log_prob", "method_settings", "non_negative_int", "parse_methods", "plot_curves", "plot_pca", "plot_samples", "positive_int", "reference_signals"]

import argparse
import ast
import functools
import hashlib
import importlib
import importlib.metadata
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import metrics as M
from ._checks import MAX_SEED, as_count, as_flag, as_output_dir, as_seed
from .checkpoint import atomic_file, load_checked, reading_contents, save_atomic
from .datasets import GraphDataset, available, load
from .datasets import options as dataset_options

METHODS = ("jko", "ignn", "cinn", "nsf", "cgan")

#: The largest ``D = V * C`` whose test likelihood is computed exactly (``D`` backward passes per
#: batch); estimated above.
EXACT_MAX_DIM = 128

NSF_MAX_DIM = 512
r"""The most dimensions ``D = V C`` of the signals on which the default methods include NSF: its
autoregressive inverse takes ``D`` passes one after the other for every draw (on ``chordal``,
``D = 1006``, sampling its test split took over 40 minutes and 13 GB)."""

#: What bad arguments raise before any training: a refused value, an option a model or dataset
#: does not take (TypeError), a missing file, a missing optional package.
ARGUMENT_ERRORS = (ValueError, TypeError, FileNotFoundError, ModuleNotFoundError)

_LABELS = {"jko": "JKO-iGNN (ours)", "ignn": "iGNN", "cinn": "cINN", "nsf": "NSF", "cgan": "cGAN"}

#: Optional packages of the ``baselines`` extra, per method (iGNN and the cGAN need none), and
#: those of the figures.
METHOD_PACKAGES = {"jko": (), "ignn": (), "cinn": ("FrEIA",), "nsf": ("zuko",), "cgan": ()}
FIGURE_PACKAGES = ("matplotlib",)

#: The fewest test signals :func:`evaluate` can score: the unbiased MMD and energy need two.
MIN_TEST_SAMPLES = 2

#: The kind tag of the files that keep a finished method's result (``methods/<method>.pt``).
FINISHED_KIND = "compare method result"


def parse_methods(methods: Sequence[str] | str) -> list[str]:
    r"""The methods named by ``methods`` (a list or a comma-separated string), checked.

    Raises:
        ValueError: If none is named, one is not in :data:`METHODS` or one is named twice.

    Example:
        >>> parse_methods(" jko, ignn")
        ['jko', 'ignn']
    """
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    methods = list(methods)
    if not methods:
        raise ValueError(f"no methods given; choose from {', '.join(METHODS)}")
    if unknown := [m for m in methods if m not in METHODS]:
        raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    if twice := sorted({m for m in methods if methods.count(m) > 1}):
        raise ValueError(f"methods named more than once: {twice}")
    return methods


def default_methods(num_dims: int) -> list[str]:
    r"""The methods compared when none are named: all of :data:`METHODS`, without NSF on signals
    of more than :data:`NSF_MAX_DIM` dimensions.

    Example:
        >>> default_methods(44), default_methods(1006)
        (['jko', 'ignn', 'cinn', 'nsf', 'cgan'], ['jko', 'ignn', 'cinn', 'cgan'])
    """
    return [m for m in METHODS if not (m == "nsf" and num_dims > NSF_MAX_DIM)]


def check_requirements(methods: Sequence[str], figures: bool) -> None:
    r"""Checks that the optional packages needed by ``methods`` (:data:`METHOD_PACKAGES`) and,
    if ``figures``, by the figures are installed.

    Raises:
        ModuleNotFoundError: Naming the missing package and the extra that installs it.
    """
    needed = [(package, f"the baseline {method}") for method in methods for package in METHOD_PACKAGES.get(method, ())]
    needed += [(package, "drawing the figures") for package in FIGURE_PACKAGES if figures]
    for package, purpose in needed:
        try:
            importlib.import_module(package)
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError(
                f"{purpose} needs the package {package} ({error}); install the 'baselines' extra: "
                f'pip install -e ".[baselines]"', name=package) from None


def make_model(method: str, data: GraphDataset, seed: int, **settings: Any) -> Any:
    r"""Builds an unfitted model of ``method`` for the graph of ``data``.

    Arguments:
        method: One of :data:`METHODS`.
        data: The dataset (its graph and sizes).
        seed: The seed of the model.
        settings: Extra constructor arguments.
    """
    args = (data.edge_index, data.num_nodes, data.num_features, data.num_classes)
    if method == "jko":
        from .flow import ConditionalGraphFlow

        return ConditionalGraphFlow(*args, seed=seed, device="cpu", **settings)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    check_requirements([method], figures=False)
    # The package imports a class when first asked for: the others may need packages not installed.
    from . import baselines

    classes = {"ignn": "IGNNBaseline", "cinn": "CINNBaseline", "nsf": "NSFBaseline", "cgan": "CGANBaseline"}
    return getattr(baselines, classes[method])(*args, seed=seed, **settings)


def check_settings(settings: dict[str, dict[str, Any]], data: GraphDataset, methods: Sequence[str] = METHODS) -> None:
    r"""Checks settings per method (as :func:`compare` takes them) by building each model with
    its settings for ``data``: a misspelt or refused setting fails here, not after the
    methods before it have trained.

    Raises:
        ValueError: Naming the method and its settings, for an unknown method, a method not
            among ``methods`` (its settings would go unused), the seed or the device (the
            comparison's own), or a setting its model does not take or refuses.

    Example:
        >>> check_settings({"jko": {"hiden": 8}}, load("three_node", num_train=8, num_test=8))
        Traceback (most recent call last):
        ...
        ValueError: bad jko settings {'hiden': 8}: ...unexpected keyword argument 'hiden'
    """
    if stray := sorted(set(settings) - set(METHODS)):  # a misspelt method's settings would go unused
        raise ValueError(f"settings for unknown methods {stray}; choose from {', '.join(METHODS)}")
    if idle := sorted(set(settings) - set(methods)):
        raise ValueError(f"settings for {idle}, which are not among the methods compared ({', '.join(methods)})")
    for method, values in settings.items():
        if fixed := sorted(set(values) & {"seed", "device"}):
            raise ValueError(f"{method} settings {fixed} are not settings of a comparison: the seed is compare's "
                             "own, and every method runs on the CPU so that their times compare")
        try:
            make_model(method, data, seed=0, **values)
        except (TypeError, ValueError) as error:
            raise ValueError(f"bad {method} settings {values}: {error}") from None


def fit_method(model: Any, method: str, data: GraphDataset, max_time: float | None) -> float:
    r"""Fits ``model`` (built by :func:`make_model`) on the training split; returns the seconds taken.

    Every method runs with its defaults; the baselines get an epoch cap that the time budget
    reaches first, so the budget (or their early stopping) ends their training.
    """
    start = time.perf_counter()
    if method == "jko":
        model.fit(data.X_train, data.Y_train, max_time=max_time, progress=False)
    else:
        model.fit(data.X_train, data.Y_train, max_time=max_time, max_epochs=100_000, progress=False)
    return time.perf_counter() - start


def method_log_prob(model: Any, method: str, X: Tensor, Y: Tensor, exact: bool) -> Tensor | None:
    r"""``log p(X | Y)`` per signal, ``[N]``, or ``None`` for a method without a likelihood (the cGAN).

    ``exact`` chooses the exact Jacobian trace over an estimate for the methods that have both.
    """
    if method == "cgan" or not hasattr(model, "log_prob"):
        return None
    if method in ("jko", "ignn"):
        return model.log_prob(X, Y, exact=exact)
    return model.log_prob(X, Y)


def _distances(gen: Tensor, real: Tensor, paired: bool = False) -> dict[str, float]:
    values = {f"mmd_{a:g}": v for a, v in M.mmd(gen, real, paired=paired).items()}
    return {**values, "energy": M.energy_distance(gen, real, paired=paired)}


def _split_alphas(values: dict[str, float]) -> dict[str, float]:
    return {key[len("mmd_"):]: v for key, v in values.items() if key.startswith("mmd_")}


def evaluate(
    data: GraphDataset,
    generated: Tensor,
    *,
    top_k: int = 3,
    min_pattern_count: int = 20,
) -> dict[str, Any]:
    r"""Sample-quality metrics of ``generated`` (one signal per test label pattern).

    Returns:
        ``{"protocol", "patterns", "mmd", "mmd_alpha", "energy", "mmd_whole", "energy_whole"}``,
        see the module docstring for the protocol.
    """
    real, Y = data.X_test, data.Y_test
    # generated[i] was drawn for the labels of real[i], so on the whole split the pairs (i, i)
    # are dependent and left out of the cross terms; within one label pattern every pair shares
    # the labels, and all pairs count.
    whole = _distances(generated, real, paired=True)
    out: dict[str, Any] = {"mmd_whole": whole["mmd_1"], "energy_whole": whole["energy"]}
    groups = M._frequent_patterns(Y, top_k, 2)
    if len(groups) == top_k and all(len(rows) >= min_pattern_count for _, rows in groups):
        value, details = M.conditional_metric(_distances, generated, real, Y, top_k, return_details=True)
        out.update(
            protocol="top3_patterns",
            patterns=[{"pattern": d["pattern"], "count": d["count"]} for d in details],
            mmd_alpha=_split_alphas(value),
            energy=value["energy"],
        )
    else:
        out.update(protocol="whole_test", patterns=None, mmd_alpha=_split_alphas(whole), energy=whole["energy"])
    out["mmd"] = out["mmd_alpha"]["1"]
    return out


def evaluate_draws(data: GraphDataset, draw: Callable[[int], Tensor], seeds: Sequence[int]) -> tuple[dict[str, Any], Tensor]:
    r""":func:`evaluate` averaged over several generated sets, ``draw(seed)`` for each seed.

    A set holding NaN or infinite values (a diverged model) is scored with NaN as 0 and
    infinities as +-1e6, so that one method does not stop a comparison; it is warned about and
    counted in ``nonfinite_draws``.

    Returns:
        The mean of every statistic (``mmd_alpha`` key by key), with ``mmd_draws`` and
        ``energy_draws`` listing the values of each set, ``mmd_se`` and ``energy_se`` the
        standard errors of their means (``None`` with one seed), ``nonfinite_draws`` the number
        of its signals that were not finite, and the first set (for figures).

    Example:
        >>> data = load("three_node", num_train=64, num_test=32)
        >>> row, first = evaluate_draws(data, lambda s: reference_signals(data, s), [0, 1])
        >>> len(row["energy_draws"]), first.shape
        (2, torch.Size([32, 3, 2]))
    """
    if len(seeds) == 0:
        raise ValueError("evaluate_draws needs at least one seed")
    first = None
    rows, nonfinite = [], []
    for seed in seeds:
        sample = draw(seed).detach().cpu().double()
        nonfinite.append(int((~torch.isfinite(sample.flatten(1))).any(1).sum()))
        if nonfinite[-1]:
            warnings.warn(f"{nonfinite[-1]} of {len(sample)} generated signals (draw seed {seed}) hold NaN or "
                          "infinite values: scored with NaN as 0 and infinities as +-1e6", stacklevel=2)
            sample = torch.nan_to_num(sample, nan=0.0, posinf=1e6, neginf=-1e6)
        first = sample if first is None else first
        rows.append(evaluate(data, sample))
    out = dict(rows[0])
    for key in ("energy", "mmd_whole", "energy_whole"):
        out[key] = float(np.mean([r[key] for r in rows]))
    out["mmd_alpha"] = {a: float(np.mean([r["mmd_alpha"][a] for r in rows])) for a in rows[0]["mmd_alpha"]}
    out["mmd"] = out["mmd_alpha"]["1"]
    out["mmd_draws"], out["energy_draws"] = [r["mmd"] for r in rows], [r["energy"] for r in rows]
    for key in ("mmd", "energy"):
        values = out[f"{key}_draws"]
        out[f"{key}_se"] = float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None
    out["nonfinite_draws"] = nonfinite
    return out, first


def reference_signals(data: GraphDataset, seed: int = 0) -> Tensor:
    r"""Real training signals standing in for generated ones: the metrics' floor on this split.

    For every test label pattern, the unused training signal whose label pattern is nearest
    (fewest nodes labelled differently; ties at random), so the reference is as conditional as
    the training data allow; no signal is used twice while there are enough (a repeated signal
    would inflate the kernel terms of the MMD). Scored by :func:`evaluate` like a method's
    samples, it shows what a model that reproduced the training distribution exactly would
    score: how much of a distance is sampling noise of the metric and drift between the
    training and test periods of a chronological split.

    Example:
        >>> data = load("three_node", num_train=64, num_test=8)
        >>> reference_signals(data).shape
        torch.Size([8, 3, 2])
    """
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data.X_train), generator=g)
    labels = data.Y_train[order]  # shuffled, so that argmin breaks ties at random
    free = torch.ones(len(order), dtype=torch.bool)
    rows = []
    for pattern in data.Y_test:
        if not free.any():  # fewer training than test signals: repeats are unavoidable
            free[:] = True
        mismatch = (labels != pattern).sum(1).masked_fill(~free, data.num_nodes + 1)
        best = int(mismatch.argmin())
        free[best] = False
        rows.append(int(order[best]))
    return data.X_train[rows]


def _curve(model: Any, method: str) -> list[float]:
    r"""The validation (else training) loss per epoch of a model's history, if it has one."""
    history = getattr(model, "history_", None) or []
    curve: list[float] = []
    for record in history:
        if isinstance(record, dict):
            value = record.get("val_loss")
            value = record.get("train_loss") if value is None else value
            if value is not None and math.isfinite(value):
                curve.append(float(value))
        else:  # a JKO block record: one objective per epoch
            curve.extend(float(v) for v in getattr(record, "val_loss", []))
    return curve


def _block_summary(model: Any) -> list[dict[str, Any]]:
    r"""Per JKO block: step size, RK4 steps of its map, epochs run, best epoch, whether the time
    share ended it, seconds, movement W2 (per dimension) and validation NLL per dimension after
    the block."""
    dims = model.num_nodes * model.num_features
    return [
        {
            "step_size": r.step_size,
            "map_steps": r.map_steps,
            "epochs": len(r.val_loss),
            "best_epoch": r.best_epoch,
            "stopped_by_time": r.stopped_by_time,
            "seconds": r.seconds,
            "w2_per_dim": r.w2 / dims,
            "val_nll_per_dim": r.val_nll_per_dim,
            "train_loss": r.train_loss[-1] if r.train_loss else None,
            "val_loss": min(r.val_loss) if r.val_loss else None,
        }
        for r in getattr(model, "history_", [])
    ]


def _train_and_evaluate(
    model: Any,
    method: str,
    data: GraphDataset,
    max_time: float,
    draw_seeds: Sequence[int],
    likelihood_sets: tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]],
    exact: bool,
) -> tuple[dict[str, Any], Tensor]:
    r"""Fits ``model`` and scores it: its row of ``metrics.json`` (keys sorted) and its first
    generated set. ``likelihood_sets`` are the test and training signals of the NLLs."""
    D = data.num_nodes * data.num_features
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        train_s = fit_method(model, method, data, max_time)
    start = time.perf_counter()
    row, sample = evaluate_draws(data, lambda s: model.sample(data.Y_test, seed=s), draw_seeds)
    (X_eval, Y_eval), (X_fit, Y_fit) = likelihood_sets
    lp = method_log_prob(model, method, X_eval, Y_eval, exact)
    row["nll"], row["nll_train"] = None, None
    if lp is not None:  # also on training samples: the gap shows overfitting
        row["nll"] = M.nll_per_dim(lp.detach().cpu(), D)
        row["nll_train"] = M.nll_per_dim(method_log_prob(model, method, X_fit, Y_fit, exact).detach().cpu(), D)
    row["acc"] = M.accuracy(model.predict(data.X_test).cpu(), data.Y_test) if hasattr(model, "predict") else None
    row["train_s"] = train_s
    row["eval_s"] = time.perf_counter() - start
    row["label"] = _LABELS[method]
    if method == "jko":
        row["num_blocks"] = model.num_blocks
        row["blocks"] = _block_summary(model)
        row["sample_temperature"] = float(model.latent.temperature)
        row["noise_components"] = model.latent.noise_components
        row["noise_label_weights"] = model.latent.noise_label_weights
        row["pattern_mean"] = model.latent.pattern_mean
        row["head_products"] = model.head_products
        row["head_input"] = model.head_input_
        row["settings"] = {k: v for k, v in model.config.items() if not isinstance(v, tuple)} | {
            k: list(v) for k, v in model.config.items() if isinstance(v, tuple)}
    return {k: row[k] for k in sorted(row)}, sample


def _data_digest(data: GraphDataset) -> str:
    r"""SHA-256 of the splits, their labels, the graph and the number of classes: the data a
    method trains and is scored on, whatever options or files they were loaded with."""
    hashed = hashlib.sha256(str(data.num_classes).encode())
    for tensor in (data.X_train, data.Y_train, data.X_test, data.Y_test, data.edge_index):
        # The bytes themselves, with shape and type: the same bytes in another shape are other signals.
        hashed.update(f"{tuple(tensor.shape)} {tensor.dtype}".encode())
        hashed.update(tensor.detach().cpu().contiguous().numpy())
    return hashed.hexdigest()


@functools.cache
def _code_digest() -> str:
    r"""SHA-256 of this package's source files and the versions of the libraries the methods
    use: a result of other code is no result of this one."""
    package = Path(__file__).resolve().parent
    hashed = hashlib.sha256()
    for name in ("torch", "torch_geometric", "torchdiffeq", "zuko", "FrEIA"):
        hashed.update(f"{name} {_version(name)}\n".encode())
    for path in sorted(package.rglob("*.py")):
        hashed.update(f"{path.relative_to(package).as_posix()}\n".encode())
        hashed.update(path.read_bytes())
    return hashed.hexdigest()


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _run_key(header: dict[str, Any], method: str, data_digest: str) -> dict[str, Any]:
    r"""What determines ``method``'s result in a run with the ``metrics.json`` ``header``: its
    fields, the method's settings, the :func:`_data_digest` and the :func:`_code_digest`;
    through JSON, as its file keeps it."""
    # The methods' rows and the true NLL are results, not what determines them.
    fields = {k: v for k, v in header.items() if k not in ("methods", "settings", "true_nll")}
    determined = {"settings": header["settings"].get(method, {}), "data": data_digest, "code": _code_digest()}
    return json.loads(_json_text(fields | determined))


def _finished_path(out_dir: Path, method: str) -> Path:
    r"""Where ``method``'s finished result is kept in ``out_dir``."""
    return out_dir / "methods" / f"{method}.pt"


def _write_finished(path: Path, key: dict[str, Any], row: dict[str, Any], sample: Tensor, curve: list[float]) -> None:
    r"""Keeps a finished method's result at ``path`` (atomically), with the ``key`` of its run."""
    # The key and row as metrics.json text: read back, they are what metrics.json would hold.
    payload = {"run": _json_text(key), "row": _json_text(row), "sample": sample, "curve": curve}
    save_atomic(payload, path, FINISHED_KIND)


def _read_finished(path: Path, data: GraphDataset) -> dict[str, Any]:
    r"""The ``run``, ``row``, ``sample`` and ``curve`` kept at ``path`` by :func:`_write_finished`.

    Raises:
        ValueError: Naming the file, where it is damaged or not such a file.
    """
    payload = load_checked(path, FINISHED_KIND)
    with reading_contents(path, FINISHED_KIND):
        run, row, sample = json.loads(payload["run"]), json.loads(payload["row"]), payload["sample"]
        if not (isinstance(run, dict) and isinstance(row, dict) and isinstance(sample, Tensor)
                and sample.shape == data.X_test.shape):
            raise ValueError(f"no run, row and sample of the test split's shape {tuple(data.X_test.shape)}")
        return {"run": run, "row": row, "sample": sample, "curve": [float(v) for v in payload["curve"]]}


_DIGESTS = {
    "data": "the data (signals, labels or graph: other dataset options or files)",
    "code": "the code (igraphflow's source files, or the version of torch, PyG, torchdiffeq, zuko or FrEIA)",
}


def _differences(recorded: dict[str, Any], key: dict[str, Any]) -> list[str]:
    r"""The fields in which the run ``key`` differs from the ``recorded`` one, in words."""
    changed = []
    for field in dict.fromkeys([*key, *recorded]):
        if recorded.get(field) != key.get(field):
            changed.append(_DIGESTS.get(field, f"{field} {recorded.get(field)!r}, now {key.get(field)!r}"))
    return changed


def _earlier_results(
    out_dir: Path, keys: dict[str, dict[str, Any]], data: GraphDataset, restart: bool
) -> dict[str, dict[str, Any]]:
    r"""The results of the methods in ``keys`` that an earlier run left in ``out_dir`` with
    the same key; with ``restart``, none: the files of every method are removed.

    A file that records another key, or is damaged, is passed over (and replaced once that
    method is trained again), with a line on stderr saying why.
    """
    if restart:
        for method in METHODS:
            _finished_path(out_dir, method).unlink(missing_ok=True)
        return {}
    found = {}
    for method, key in keys.items():
        path = _finished_path(out_dir, method)
        if not path.exists():
            continue
        try:
            earlier = _read_finished(path, data)
        except ValueError as error:
            print(f"compare: training {method} again: {error}", file=sys.stderr)
            continue
        if changed := _differences(earlier["run"], key):
            print(f"compare: training {method} again: {path} holds a run with other arguments ({'; '.join(changed)})",
                  file=sys.stderr)
            continue
        found[method] = earlier
    return found


def compare(
    dataset: GraphDataset,
    methods: Sequence[str] | str = METHODS,
    *,
    max_time: float = 60.0,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    settings: dict[str, dict[str, Any]] | None = None,
    exact_max_dim: int = EXACT_MAX_DIM,
    max_eval: int = 1000,
    figures: bool = True,
    draws: int = 5,
    restart: bool = False,
) -> dict[str, Any]:
    r"""Trains and evaluates ``methods`` on ``dataset``; writes ``metrics.json`` and figures.

    Arguments:
        dataset: The dataset; every method trains on ``X_train, Y_train`` and is evaluated on
            the test split.
        methods: Names from :data:`METHODS` (a list or a comma-separated string).
        max_time: The training budget of each method in seconds.
        seed: The seed of every model and of the generated samples.
        out_dir: Where ``metrics.json`` and the figures go (nothing is written if None).
        settings: Extra constructor arguments per method, e.g. ``{"ignn": {"blocks": 4}}``.
        exact_max_dim: The largest ``D = V * C`` whose test likelihood is computed exactly.
        max_eval: The most test samples used for the likelihood.
        figures: Whether to draw the figures.
        draws: Generated sets per method (seeds ``seed * draws + i``); the sample statistics
            are their means. The reference is averaged over as many tie-breaking seeds.
        restart: Discard the method results an earlier run left in ``out_dir`` and train
            every method; else those of the same arguments are reused (see below).

    Returns:
        ``{"dataset": name, "methods": {method: {"mmd", "energy", "nll", "acc", "train_s",
        ...}}, "reference": {"mmd", "energy", ...}, ...}``, as written to ``metrics.json``;
        ``reference`` scores real training signals (:func:`reference_signals`).
        Until the last method is done, ``metrics.partial.json`` holds the methods done so far
        (and ``pending``, those still to come): a method that fails loses none before it, and
        ``metrics.json`` is only ever a complete run. Each method's result is also kept in
        ``methods/<method>.pt``; a later call with the same ``out_dir`` reuses it (and says
        so on stderr) when the header fields, the method's settings, the data and the code
        are the same, so an interrupted comparison goes on where it stopped. The reference
        and the figures are computed again. A file of another run, or a damaged one, is
        trained over (stderr says why).
    """
    # Everything that can fail is checked before the first method trains.
    methods = parse_methods(methods)
    if not max_time > 0:
        raise ValueError(f"max_time must be positive, got {max_time!r}")
    draws, max_eval = as_count(draws, "draws"), as_count(max_eval, "max_eval")
    seed = as_seed(seed)
    if seed * draws + draws - 1 > MAX_SEED:  # else found only when the first method draws
        raise ValueError(f"seed {seed} is too large for {draws} draws: their seeds seed * draws + i pass {MAX_SEED}")
    exact_max_dim = as_count(exact_max_dim, "exact_max_dim", minimum=0)
    restart = as_flag(restart, "restart")
    if len(dataset.X_test) < MIN_TEST_SAMPLES:
        raise ValueError(f"the test split of {dataset.name} has {len(dataset.X_test)} signals; "
                         f"the MMD and energy need at least {MIN_TEST_SAMPLES}")
    settings = settings or {}
    check_requirements(methods, figures=figures and out_dir is not None)
    check_settings(settings, dataset, methods)
    if out_dir is not None:
        try:  # metrics.json records them
            _json_text(settings)
        except (TypeError, ValueError) as error:
            raise ValueError(f"settings {settings} cannot be written to metrics.json ({error}): "
                             "give numbers, strings, booleans, None, lists or tuples") from None
        out_dir = as_output_dir(out_dir, "out_dir")  # before hours of training, not after
    draw_seeds = [seed * draws + i for i in range(draws)]
    data = dataset
    D = data.num_nodes * data.num_features
    exact = D <= exact_max_dim
    g = torch.Generator().manual_seed(seed)
    n_eval = min(max_eval, len(data.X_test))
    eval_rows = torch.randperm(len(data.X_test), generator=g)[:n_eval].sort().values
    X_eval, Y_eval = data.X_test[eval_rows], data.Y_test[eval_rows]
    fit_rows = torch.randperm(len(data.X_train), generator=g)[:n_eval].sort().values
    X_fit, Y_fit = data.X_train[fit_rows], data.Y_train[fit_rows]

    result: dict[str, Any] = {
        "dataset": data.name,
        "methods": {},
        "num_nodes": data.num_nodes,
        "num_features": data.num_features,
        "num_train": len(data.X_train),
        "num_test": len(data.X_test),
        "max_time": max_time,
        "seed": seed,
        "draws": draws,
        "nll_exact": exact,
        "nll_num_samples": n_eval,
        "settings": {m: dict(v) for m, v in settings.items()},
    }
    finished: dict[str, dict[str, Any]] = {}
    if out_dir is not None:
        digest = _data_digest(data)
        keys = {method: _run_key(result, method, digest) for method in methods}
        finished = _earlier_results(out_dir, keys, data, restart)
        # An earlier run's results would pass for this one's: figures not drawn again, or with nothing to draw.
        for name in ("metrics.json", "metrics.partial.json", "samples.png", "pca.png", "training.png"):
            (out_dir / name).unlink(missing_ok=True)
    if data.true_log_prob is not None:
        with torch.no_grad():
            result["true_nll"] = M.nll_per_dim(data.true_log_prob(X_eval, Y_eval), D)
    generated: dict[str, Tensor] = {}
    curves: dict[str, list[float]] = {}
    for method in methods:
        if method in finished:
            print(f"compare: reusing {method} from {_finished_path(out_dir, method)} (finished earlier)", file=sys.stderr)
            row, sample, curve = finished[method]["row"], finished[method]["sample"], finished[method]["curve"]
        else:
            model = make_model(method, data, seed, **settings.get(method, {}))
            likelihood_sets = ((X_eval, Y_eval), (X_fit, Y_fit))
            row, sample = _train_and_evaluate(model, method, data, max_time, draw_seeds, likelihood_sets, exact)
            curve = _curve(model, method)
            if out_dir is not None:  # at once: an interruption loses nothing of this method
                _write_finished(_finished_path(out_dir, method), keys[method], row, sample, curve)
        result["methods"][method] = row
        generated[method] = sample
        curves[method] = curve
        if out_dir is not None:
            _write_json(out_dir / "metrics.partial.json", result | {"pending": methods[len(result["methods"]):]})

    reference = evaluate_draws(data, lambda s: reference_signals(data, s), draw_seeds)[0]
    result["reference"] = reference | {"label": "training data (reference)"}

    if out_dir is not None:
        _write_json(out_dir / "metrics.json", result)
        (out_dir / "metrics.partial.json").unlink(missing_ok=True)
        if figures:
            plot_samples(data, generated, out_dir / "samples.png")
            plot_pca(data, generated, out_dir / "pca.png")
            plot_curves(curves, out_dir / "training.png")
    return result


def _json_text(payload: Any) -> str:
    def number(value: Any) -> Any:  # NumPy scalars, as the settings' checks take them
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    return json.dumps(payload, indent=2, allow_nan=True, default=number) + "\n"


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    with atomic_file(path, "metrics path") as file:
        file.write(_json_text(payload).encode())


# Figures ------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panel_points(X: Tensor, node: int) -> tuple[np.ndarray, np.ndarray]:
    r"""The two coordinates plotted for ``node``: its first two features, else its feature
    and the next node's."""
    X = X.cpu().double().numpy()
    if X.shape[2] >= 2:
        return X[:, node, 0], X[:, node, 1]
    return X[:, node, 0], X[:, (node + 1) % X.shape[1], 0]


def plot_samples(data: GraphDataset, generated: dict[str, Tensor], path: Path, max_nodes: int = 3) -> None:
    r"""Generated against real node features within the most frequent test label patterns (the
    papers' scatter figures): one row per pattern, one column per method; real signals as
    circles, generated as crosses, one colour per node (the first ``max_nodes`` nodes). The
    signals may be on any device."""
    plt = _pyplot()
    groups = M._frequent_patterns(data.Y_test, 3, 2) or [(None, torch.arange(len(data.Y_test)))]
    methods = list(generated)
    nodes = range(min(max_nodes, data.num_nodes))
    fig, axes = plt.subplots(len(groups), len(methods), figsize=(2.6 * len(methods), 2.4 * len(groups)),
                             squeeze=False, sharex="row", sharey="row")
    colours = plt.get_cmap("tab10")
    for r, (pattern, rows) in enumerate(groups):
        for c, method in enumerate(methods):
            ax = axes[r, c]
            for v in nodes:
                ax.scatter(*_panel_points(data.X_test[rows], v), s=4, alpha=0.35, color=colours(v), marker="o")
                ax.scatter(*_panel_points(generated[method][rows], v), s=6, alpha=0.6, color=colours(v), marker="x")
            if r == 0:
                ax.set_title(_LABELS.get(method, method), fontsize=9)
            if c == 0:
                name = "all" if pattern is None else "".join(map(str, pattern.tolist()[:12]))
                ax.set_ylabel(f"Y={name}\n(n={len(rows)})", fontsize=8)
            ax.tick_params(labelsize=6)
    fig.suptitle(f"{data.name}: real (o) vs generated (x), nodes 0-{len(nodes) - 1}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def plot_pca(data: GraphDataset, generated: dict[str, Tensor], path: Path) -> None:
    r"""Real and generated test signals projected on the first two principal components of the
    real ones (NumPy SVD), one panel per method. The signals may be on any device."""
    plt = _pyplot()
    real = data.X_test.flatten(1).cpu().double().numpy()
    mean = real.mean(0)
    _, _, vt = np.linalg.svd(real - mean, full_matrices=False)
    basis = vt[:2].T if vt.shape[0] >= 2 else np.eye(real.shape[1], 2)
    methods = list(generated)
    fig, axes = plt.subplots(1, len(methods), figsize=(2.6 * len(methods), 2.6), squeeze=False,
                             sharex=True, sharey=True)
    for c, method in enumerate(methods):
        ax = axes[0, c]
        r = (real - mean) @ basis
        f = (generated[method].flatten(1).cpu().double().numpy() - mean) @ basis
        ax.scatter(r[:, 0], r[:, 1], s=3, alpha=0.3, label="real", color="tab:blue")
        ax.scatter(f[:, 0], f[:, 1], s=3, alpha=0.3, label="generated", color="tab:red")
        ax.set_title(_LABELS.get(method, method), fontsize=9)
        ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=6, markerscale=3)
    fig.suptitle(f"{data.name}: PCA of real vs generated test signals", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def plot_curves(curves: dict[str, list[float]], path: Path) -> None:
    r"""The validation loss per epoch of each method (JKO: the blocks one after the other)."""
    plt = _pyplot()
    methods = [m for m in curves if curves[m]]
    if not methods:
        return
    fig, axes = plt.subplots(1, len(methods), figsize=(2.6 * len(methods), 2.2), squeeze=False)
    for c, method in enumerate(methods):
        ax = axes[0, c]
        ax.plot(curves[method], lw=1)
        ax.set_title(_LABELS.get(method, method), fontsize=9)
        ax.set_xlabel("epoch", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0, 0].set_ylabel("validation loss", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


# Command line -------------------------------------------------------------------------------


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def non_negative_int(text: str) -> int:
    r"""An argparse type: a whole number ``>= 0``, such as a largest dimension."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    r"""An argparse type: a whole number ``>= 1``, such as a count of channels."""
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def budget_seconds(text: str) -> float:
    r"""An argparse type: a positive number of seconds (``inf``: no budget)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return seconds


def add_budget_argument(parser: argparse.ArgumentParser, default: float) -> None:
    r"""Adds ``--max-time SECONDS``, the training budget per method, checked positive when parsed.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_budget_argument(parser, 60.0)
        >>> parser.parse_args(["--max-time", "1.5"]).max_time
        1.5
    """
    parser.add_argument("--max-time", type=budget_seconds, default=default, help=f"training budget per method, seconds (default: {default:g})")


def key_value(text: str) -> tuple[str, Any]:
    r"""An argparse type: ``KEY=VALUE``, the value read as a Python literal where it is one (else the text).

    Example:
        >>> key_value("orders=(0, 1, 3)"), key_value("conv=cheb")
        (('orders', (0, 1, 3)), ('conv', 'cheb'))
    """
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, _value(value)


def method_settings(options: Sequence[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    r"""Model settings per method from ``(KEY, VALUE)`` pairs: ``KEY`` sets an argument of
    our flow (``jko``), ``METHOD.KEY`` one of ``METHOD``.

    Example:
        >>> method_settings([("hidden", 64), ("ignn.blocks", 4)])
        {'jko': {'hidden': 64}, 'ignn': {'blocks': 4}}
    """
    out: dict[str, dict[str, Any]] = {}
    for key, value in options:
        method, dot, name = key.partition(".")
        method, name = (method, name) if dot else ("jko", key)
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r} in option {key!r}; choose from {', '.join(METHODS)}")
        if not name:
            raise ValueError(f"option {key!r} names no setting; expected [METHOD.]KEY=VALUE")
        out.setdefault(method, {})[name] = value
    return out


def add_option_argument(parser: argparse.ArgumentParser) -> None:
    r"""Adds the repeatable ``--option [METHOD.]KEY=VALUE`` of model settings to ``parser``;
    :func:`method_settings` turns the parsed list into settings per method.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_option_argument(parser)
        >>> method_settings(parser.parse_args(["--option", "hidden=64"]).option)
        {'jko': {'hidden': 64}}
    """
    parser.add_argument("--option", action="append", type=key_value, default=[],
                        help="model setting KEY=VALUE of our flow (e.g. hidden=64, orders=(0,1,2,3)), "
                             "or METHOD.KEY=VALUE for another method (e.g. ignn.blocks=4); repeatable")


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    r"""Adds ``--data``, the files of a real dataset (given to :func:`igraphflow.datasets.load` as ``path``)."""
    parser.add_argument("--data", default=None, help="the files of a real dataset: the directory of solar_hope, the CSV of "
                        "traffic (default: $IGRAPHFLOW_DATA for solar_hope; for traffic the copy in datasets/ of the "
                        "source tree, which an editable install finds)")


def load_data_arguments(args: argparse.Namespace) -> GraphDataset:
    r"""The dataset that ``--dataset``, ``--data``, ``--data-option`` and ``--seed`` name.

    Raises:
        ValueError: For a seed given as a dataset option, files given both as ``--data`` and
            as ``--data-option path=...``, or ``--data`` for a dataset without a ``path``
            option; and what :func:`igraphflow.datasets.load` raises.
    """
    options = dict(args.data_option)
    if "seed" in options:
        raise ValueError("--data-option seed=...: the dataset's seed is --seed")
    if args.data is not None:
        if "path" in options:
            raise ValueError("the dataset's files are given twice: as --data and as --data-option path=...")
        if "path" not in (valid := dataset_options(args.dataset)):
            raise ValueError(f"--data: the dataset {args.dataset!r} takes no path (its options: {', '.join(valid)})")
        options["path"] = args.data
    return load(args.dataset, seed=args.seed, **options)


def add_data_option_argument(parser: argparse.ArgumentParser) -> None:
    r"""Adds the repeatable ``--data-option KEY=VALUE`` of dataset options to ``parser``
    (``dict(args.data_option)`` are the keyword arguments of :func:`igraphflow.datasets.load`).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_data_option_argument(parser)
        >>> dict(parser.parse_args(["--data-option", "num_train=500"]).data_option)
        {'num_train': 500}
    """
    parser.add_argument("--data-option", action="append", type=key_value, default=[],
                        help="dataset option KEY=VALUE (e.g. num_train=500), repeatable")


def main(argv: list[str] | None = None) -> int:
    r"""``igraphflow compare --dataset NAME --out DIR [--data PATH] [--methods ...]
    [--max-time SECONDS] [--seed N] [--draws N] [--option [METHOD.]KEY=VALUE ...]
    [--data-option KEY=VALUE ...] [--restart]``; returns the exit status.

    The same command run again after an interruption resumes: the methods finished in ``--out``
    with the same arguments are reused, the others trained (stderr names what differs)."""
    parser = argparse.ArgumentParser(prog="igraphflow compare", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help=f"a dataset name: {', '.join(available())}")
    parser.add_argument("--out", required=True,
                        help="output folder (metrics.json, figures; methods/ keeps each method's result as soon as it is "
                             "done: the same command run again reuses them and trains only the rest)")
    add_data_argument(parser)
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated, from {','.join(METHODS)} (default: all; without nsf above "
                             f"D = V * C = {NSF_MAX_DIM}, where its sampling takes hours)")
    add_budget_argument(parser, 60.0)
    parser.add_argument("--seed", type=int, default=0, help="seeds the training, the draws and a simulated dataset (default: 0)")
    parser.add_argument("--draws", type=positive_int, default=5, help="generated sets per method; statistics are their means (default: 5)")
    add_option_argument(parser)
    add_data_option_argument(parser)
    parser.add_argument("--exact-max-dim", type=non_negative_int, default=EXACT_MAX_DIM,
                        help=f"exact test likelihood up to this D = V * C, estimates above (default: {EXACT_MAX_DIM})")
    parser.add_argument("--no-figures", action="store_true",
                        help="write metrics.json only, without samples.png, pca.png and training.png")
    parser.add_argument("--restart", action="store_true",
                        help="discard the method results an earlier run left in --out and train every method; without "
                             "it they are reused where the dataset (its options and files), --max-time, --seed, "
                             "--draws, whether the likelihood is exact (--exact-max-dim), the method's --option and "
                             "the code are as recorded (the others are trained again, saying why)")
    args = parser.parse_args(argv)
    try:
        settings = method_settings(args.option)
        data = load_data_arguments(args)
        methods = default_methods(data.num_nodes * data.num_features) if args.methods is None else args.methods
        result = compare(data, methods, max_time=args.max_time, seed=args.seed, out_dir=args.out,
                         settings=settings, exact_max_dim=args.exact_max_dim, figures=not args.no_figures,
                         draws=args.draws, restart=args.restart)
    except ARGUMENT_ERRORS as error:
        parser.exit(2, f"igraphflow compare: error: {error}\n")
    print(format_table(result))
    return 0


def _cell(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def format_mean(row: dict[str, Any], key: str) -> str:
    r"""``row[key]`` of a method's row, with the standard error of the mean over the generated
    sets (``row[key + "_se"]``) where there are several.

    Example:
        >>> format_mean({"energy": 0.1234567, "energy_se": 0.0042}, "energy")
        '0.1235 ± 0.0042'
        >>> format_mean({"energy": 0.1234567, "energy_se": None}, "energy")
        '0.1235'
    """
    error = row.get(f"{key}_se")
    return _cell(row[key]) + ("" if error is None else f" ± {error:.2g}")


def format_table(result: dict[str, Any]) -> str:
    r"""A Markdown table of a :func:`compare` result; the MMD and the energy carry the standard
    errors of their means over the generated sets (``± se``) where there are several."""
    lines = [
        "| method | MMD (a=1) | MMD a=0.1 / 5 / 10 | energy | NLL/dim | acc | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = list(result["methods"].items()) + ([("reference", result["reference"])] if "reference" in result else [])
    for method, row in rows:
        alphas = " / ".join(_cell(row["mmd_alpha"].get(a), 3) for a in ("0.1", "5", "10"))
        lines.append(
            f"| {row.get('label', method)} | {format_mean(row, 'mmd')} | {alphas} | {format_mean(row, 'energy')} | "
            f"{_cell(row.get('nll'))} | {_cell(row.get('acc'), 3)} | {_cell(row.get('train_s'), 3)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
