r"""Traffic counts of 22 detectors at one signalised intersection, with anomaly labels.

The data (vehicle counts per 15 minutes, 2024-04-18 to 2024-05-13) ship with the project as
``datasets/traffic_detector_counts_15min.csv.gz`` next to the package directory; they come from
the sample data of the PyPI package ``traffic-anomaly`` (MIT licence, (c) 2024 Shawn Strasser,
see ``datasets/LICENSE-traffic-anomaly.txt``). The file is found relative to the installed
package, ``Path(igraphflow.__file__).resolve().parents[1] / "datasets"``, which is the source
tree for an editable install (``pip install -e .``); pass ``path=`` for another copy or for
another file of the same format (``timestamp`` then one count column per detector).

Anomaly label (as in the iGNN paper): a detector's count at time ``t`` is anomalous when it
exceeds the upper ``q``-quantile of the counts of the same detector at the same time of day on
all *previous* days (no future data; the first ``min_history`` days, which lack a history, are
dropped).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import igraphflow

from .._checks import check_input_file
from ._base import (
    GraphDataset, as_path, checked_options, knn_graph, lag_names, most_common_step, read_numeric_csv, series_samples,
)

__all__ = ["MAX_MISSING", "TRAFFIC_FILE", "aggregate", "anomaly_labels", "default_traffic_path", "fill_grid", "traffic"]

#: The longest gap :func:`fill_grid` fills: 4 readings, an hour of quarter hours (the embedded
#: file's longest gap holds 3).
MAX_MISSING = 4

TRAFFIC_FILE = "traffic_detector_counts_15min.csv.gz"


def default_traffic_path() -> Path:
    r"""The embedded traffic file: ``<project root>/datasets/traffic_detector_counts_15min.csv.gz``.

    Example:
        >>> default_traffic_path().name
        'traffic_detector_counts_15min.csv.gz'
    """
    return Path(igraphflow.__file__).resolve().parents[1] / "datasets" / TRAFFIC_FILE


def fill_grid(
    times: np.ndarray, values: np.ndarray, step: float, max_missing: int = MAX_MISSING
) -> tuple[np.ndarray, np.ndarray, int]:
    r"""Reindexes readings to the full regular grid and fills the gaps by linear interpolation in time.

    Arguments:
        times: Time stamps ``[T]`` (seconds, increasing, on a grid of ``step``).
        values: Readings ``[T, V]``.
        step: The grid step in seconds.
        max_missing: The most consecutive missing readings a gap may hold; a longer gap raises
            ``ValueError`` (a straight line across hours or days would be invented data).

    Returns:
        ``(grid_times, grid_values, num_filled)``.

    Example:
        >>> t, v, n = fill_grid(np.array([0.0, 10.0, 30.0]), np.array([[0.0], [1.0], [3.0]]), 10.0)
        >>> t.tolist(), v[:, 0].tolist(), n
        ([0.0, 10.0, 20.0, 30.0], [0.0, 1.0, 2.0, 3.0], 1)
    """
    offsets = (times - times[0]) / step
    off = ~np.isclose(offsets, np.round(offsets))
    if off.any():
        at = int(np.argmax(off))
        raise ValueError(f"the time stamp {np.datetime64(int(times[at]), 's')} UTC is off the regular grid of {step:g} s")
    missing = np.round(np.diff(offsets)).astype(np.int64) - 1
    if missing.size and missing.max() > max_missing:
        at = int(np.argmax(missing))
        raise ValueError(
            f"a gap of {missing[at]} missing readings after {np.datetime64(int(times[at]), 's')} UTC; at most "
            f"{max_missing} in a row are filled by interpolation"
        )
    grid = times[0] + step * np.arange(int(round(offsets[-1])) + 1)
    filled = np.stack([np.interp(grid, times, values[:, j]) for j in range(values.shape[1])], axis=1)
    return grid, filled, grid.size - times.size


def aggregate(times: np.ndarray, values: np.ndarray, step: float, resolution: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Sums gapless readings over aligned bins of ``resolution`` seconds (complete bins only).

    Example:
        >>> t, v = aggregate(np.arange(5.0) * 900, np.ones((5, 1)), 900.0, 1800.0)
        >>> t.tolist(), v[:, 0].tolist()
        ([0.0, 1800.0], [2.0, 2.0])
    """
    factor = int(round(resolution / step))
    if factor < 1 or not np.isclose(factor * step, resolution):
        raise ValueError(f"resolution {resolution / 60:g} min is not a multiple of the {step / 60:g} min step")
    if factor == 1:
        return times, values
    bins = np.floor(times / resolution + 1e-9).astype(np.int64)
    bins -= bins[0]
    count = np.bincount(bins)
    sums = np.zeros((count.size, values.shape[1]))
    np.add.at(sums, bins, values)
    keep = count == factor
    start = np.floor(times[0] / resolution + 1e-9) * resolution
    return start + resolution * np.nonzero(keep)[0].astype(np.float64), sums[keep]


def anomaly_labels(times: np.ndarray, counts: np.ndarray, q: float, min_history: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Labels ``counts[t] > quantile_q(counts at the same time of day on previous days)``.

    A reading's time-of-day slot counts the whole steps from the first stamp's time of day, so
    stamps at the start of each interval (00:00, 00:15, ...) and at its middle (00:07:30,
    00:22:30, ...) give the same labels.

    Arguments:
        times: Regular time stamps ``[T]`` (seconds; days are UTC/naive calendar days) whose
            step divides a day.
        counts: Counts ``[T, V]``.
        q: The quantile level in ``(0, 1)``.
        min_history: The number of previous days needed for a label.

    Returns:
        ``(labels [T, V] int64, defined [T] bool)``; labels are 0 where undefined.

    Raises:
        ValueError: If the step does not divide a day, or two readings fall on the same slot of
            one day (stamps off the regular grid).

    Example:
        >>> t = np.arange(4) * 86400.0  # one reading per day
        >>> y, ok = anomaly_labels(t, np.array([[1.0], [2.0], [1.5], [9.0]]), 0.9, 2)
        >>> y[:, 0].tolist(), ok.tolist()
        ([0, 0, 0, 1], [False, False, True, True])
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must lie in (0, 1), got {q}")
    step = float(np.min(np.diff(times)))
    slots = round(86400 / step)
    if slots < 1 or not np.isclose(slots * step, 86400):
        raise ValueError(f"readings every {step / 60:g} min do not divide a day into whole time-of-day slots")
    day = np.floor(times / 86400 + 1e-9).astype(np.int64)
    day -= day[0]
    # Floor, not round: stamps at the middle of each interval would round half to even, two to one slot.
    slot = np.floor(((times - times[0]) % 86400) / step + 1e-9).astype(np.int64)
    if np.unique(day * slots + slot).size < times.size:  # the later reading would overwrite the earlier one
        raise ValueError("two readings fall on the same time-of-day slot of one day (time stamps off a regular grid)")
    D, V = int(day[-1]) + 1, counts.shape[1]
    grid = np.full((D, slots, V), np.nan)
    grid[day, slot] = counts
    labels = np.zeros(counts.shape, dtype=np.int64)
    defined = np.zeros(times.shape, dtype=bool)
    for d in range(min_history, D):
        here = day == d
        history = grid[:d, slot[here]]  # [d, n, V]
        enough = (~np.isnan(history)).sum(0).min(1) >= min_history  # [n]
        reference = _nanquantile0(history, q)
        labels[here] = (counts[here] > reference) & enough[:, None]
        defined[np.nonzero(here)[0][enough]] = True
    return labels, defined


def _nanquantile0(a: np.ndarray, q: float) -> np.ndarray:
    # np.nanquantile(a, q, axis=0) with linear interpolation, vectorised (NaN where all NaN)
    s = np.sort(a, axis=0)  # NaNs sort last
    n = (~np.isnan(a)).sum(axis=0)
    pos = np.maximum(n - 1, 0) * q
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    v_lo = np.take_along_axis(s, lo[None], axis=0)[0]
    v_hi = np.take_along_axis(s, hi[None], axis=0)[0]
    out = v_lo + (pos - lo) * (v_hi - v_lo)
    return np.where(n > 0, out, np.nan)


@checked_options(q="(0, 1)", test_fraction="(0, 1)")
def traffic(
    *,
    seed: int = 0,
    path: str | os.PathLike | None = None,
    resolution: int = 15,
    q: float = 0.9,
    min_history: int = 7,
    lags: int = 2,
    log1p: bool = True,
    k: int = 3,
    test_fraction: float = 0.3,
) -> GraphDataset:
    r"""Detector counts at one intersection with iGNN-style anomaly labels.

    The 4 missing quarter hours are filled after reindexing to the full 15-min grid, by linear
    interpolation in time per detector (a file with a gap of more than :data:`MAX_MISSING`
    readings in a row raises); counts are then summed to ``resolution`` minutes.
    ``X`` holds the last ``lags`` counts up to ``t`` (``log1p`` optional), standardised with
    training statistics; ``Y`` is the anomaly label at ``t`` (same window). The graph joins
    each detector to the ``k`` detectors whose training-period series correlate most with its
    own (distance ``1 - Pearson correlation``), symmetric and connected.

    Arguments:
        seed: Unused (the data are fixed).
        path: A CSV (optionally gzipped) with ``timestamp`` and one count column per detector;
            default: the embedded file (:func:`default_traffic_path`).
        resolution: Minutes per reading: 15, 30 or 60 (any multiple of the file's step that
            divides a day, 1440 min, so that every reading has a time of day to compare with).
        q: The quantile level of the anomaly rule.
        min_history: Previous days required before labels are defined.
        lags: ``C``, the readings per sample.
        log1p: Whether features are ``log(1 + count)``.
        k: Neighbours per detector in the correlation graph.
        test_fraction: The last share of the labelled period used for testing.

    Returns:
        A :class:`GraphDataset` (no ``positions``, no ``true_log_prob``).

    Example:
        >>> data = traffic()
        >>> data.num_nodes, data.num_features, data.node_names[:3]
        (22, 2, ['d1', 'd2', 'd3'])
    """
    if 1440 % resolution:
        raise ValueError(f"resolution must divide a day (1440 min) into whole readings, got {resolution}")
    csv_path = as_path(path, "path") if path is not None else default_traffic_path()
    check_input_file(
        csv_path,
        missing=f"traffic: no such file {csv_path} (expected {TRAFFIC_FILE} in the project's datasets/ folder, "
        "or a file of the same format given by path=)",
        kind=f"a file (expected {TRAFFIC_FILE} or a file of its format)",
        prefix="traffic: ",
    )
    columns, times, counts = read_numeric_csv(csv_path, time_column="timestamp", min_rows=8)
    if len(columns) < 2:  # a graph needs two nodes
        raise ValueError(f"{csv_path}: needs at least 2 detector columns, found {columns}")
    if np.any(counts < 0):
        raise ValueError(f"{csv_path}: negative counts")
    # The most common step: the smallest would let one stray stamp regrid the whole series.
    differences, step = np.diff(times), most_common_step(times)
    if (short := differences < step * (1 - 1e-6)).any():
        at = int(np.argmax(short))
        first, second = (np.datetime64(int(t), "s") for t in times[at : at + 2])
        raise ValueError(
            f"{csv_path}: the readings at {first} and {second} UTC are {differences[at]:g} s apart, less than the "
            f"most common step of {step:g} s (a stray time stamp, or more gaps than readings)"
        )
    try:
        times, counts, num_filled = fill_grid(times, counts, step)
        times, counts = aggregate(times, counts, step, 60.0 * resolution)
        labels, defined = anomaly_labels(times, counts, q, min_history)
    except ValueError as error:
        raise ValueError(f"{csv_path}: {error}") from None
    if not defined.any():
        raise ValueError(f"{csv_path}: too few days for min_history={min_history}")
    first = max(0, int(np.argmax(defined)) - lags + 1)
    times, counts, labels, defined = times[first:], counts[first:], labels[first:], defined[first:]
    features = np.log1p(counts) if log1p else counts
    out = series_samples(
        features, labels, times,
        lags=lags, horizon=0, test_fraction=test_fraction, label_valid=defined, source=str(csv_path),
    )
    train_part = features[: int(out["train_ends"].max()) + 1]
    with np.errstate(all="ignore"):
        corr = np.corrcoef(train_part.T)
    corr = np.nan_to_num(corr, nan=0.0)
    name = "log1p(count)" if log1p else "count"
    return GraphDataset(
        out["X_train"], out["X_test"], out["Y_train"], out["Y_test"],
        edge_index=knn_graph(k, distances=1.0 - corr),
        num_classes=2,
        name="traffic",
        node_names=list(columns),
        positions=None,
        feature_names=lag_names(name, lags),
        scaler=out["scaler"],
        label_rule=(
            f"Y_v(t) = 1 iff count_v(t) > the {q:g}-quantile of count_v at the same time of day on all "
            f"previous days (at least {min_history}); same window as the features"
        ),
        provenance=(
            # The attribution belongs to that file (the embedded copy or the shared one), not to any CSV.
            ("traffic-anomaly (PyPI) sample data, MIT licence, (c) 2024 Shawn Strasser; " if csv_path.name == TRAFFIC_FILE else "")
            + f"{csv_path.name}: {num_filled} missing readings filled by linear interpolation, "
            f"{resolution} min counts, X = {name} lags standardised per node and lag with training statistics"
        ),
        time_train=out["time_train"],
        time_test=out["time_test"],
    )
