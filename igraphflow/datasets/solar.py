r"""Solar irradiance on sensor networks, with ramp-event labels.

Two sources share one pipeline (lag windows, future-ramp labels, chronological split,
standardisation fitted on the training split, symmetric k-nearest-neighbour graph):

* ``solar_sim``: generated on the fly (no file). Sensors in a plane see a clear-sky diurnal
  irradiance times the transmittance of a smooth random cloud field advected by the wind, so
  ramps travel across the sensor graph.
* ``solar_hope``: the HOPE-Melpitz campaign, 50 pyranometers at 1 s resolution (one hour of
  broken cumulus), read from a directory given by ``path=`` or the ``IGRAPHFLOW_DATA``
  environment variable.

Label rule (both): ``Y_v = 1`` iff ``|g_v(t + horizon) - g_v(t)| > ramp_threshold`` (W/m2),
where ``t`` is the time of the last feature reading: a *future* ramp, predicted from the
readings up to ``t``.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import torch

from ._base import (
    UNREADABLE,
    GraphDataset,
    _open_text,
    as_path,
    checked_options,
    column_list,
    knn_graph,
    lag_names,
    most_common_step,
    ramp_labels,
    read_numeric_csv,
    series_samples,
)

__all__ = ["HOPE_FILES", "resample_mean", "solar_hope", "solar_sim"]

HOPE_FILES = ("hope_melpitz_ghi_1s.csv.gz", "hope_melpitz_stations.csv")

_EPOCH_2024_06_01 = 1717200000.0  # 2024-06-01 00:00 UTC, the first simulated day


def _ramp_rule(horizon: int, threshold: float, step: float) -> str:
    return (
        f"Y_v = 1 iff |g_v(t + {horizon}) - g_v(t)| > {threshold:g} W/m2 (the change over the next "
        f"{horizon * step:g} s, end to end), t = time of the last feature reading (future ramp)"
    )


@checked_options(
    step_seconds="(0, inf)", extent="(0, inf)", wind_speed="[0, inf)", ramp_threshold="[0, inf)",
    test_fraction="(0, 1)", noise="[0, inf)",
)
def solar_sim(
    *,
    seed: int = 0,
    num_sensors: int = 30,
    num_days: int = 3,
    step_seconds: float = 10.0,
    extent: float = 3000.0,
    wind_speed: float = 10.0,
    k: int = 4,
    lags: int = 2,
    horizon: int = 1,
    ramp_threshold: float = 50.0,
    test_fraction: float = 0.3,
    noise: float = 3.0,
) -> GraphDataset:
    r"""Simulated irradiance of a sensor network under moving broken clouds.

    Sensors are uniform in an ``extent x extent`` metre square. Each day (07:00 to 17:00 UTC)
    the clear-sky irradiance ``1000 sin(pi (h - 6) / 12)^1.2`` W/m2 is multiplied by a cloud
    transmittance ``1 - 0.7 sigmoid((f - c) / 0.1)``, where ``f`` is a unit-variance smooth
    random field (48 random Fourier modes, wavelengths 500-3000 m, slowly evolving) advected
    by a wind of ``wind_speed`` m/s in a random direction per day, and ``c`` sets the day's
    cloud cover; Gaussian noise of ``noise`` W/m2 is added. Windows never span two days.

    Arguments:
        seed: The random seed.
        num_sensors: ``V``.
        num_days: Simulated days.
        step_seconds: The sampling interval.
        extent: The side of the square (metres).
        wind_speed: Cloud speed (m/s).
        k: Neighbours per sensor in the graph.
        lags: ``C``, the readings per sample.
        horizon: Steps ahead for the ramp label.
        ramp_threshold: The ramp threshold (W/m2).
        test_fraction: The share of the readings, the last ones, for testing (the split may
            fall within a day).
        noise: Measurement noise (W/m2).

    Returns:
        A :class:`GraphDataset` (``X`` standardised with training statistics; no
        ``true_log_prob``).

    Example:
        >>> data = solar_sim(num_sensors=8, num_days=1, step_seconds=60.0)
        >>> data.num_nodes, data.num_features, data.num_classes
        (8, 2, 2)
    """
    rng = np.random.default_rng(seed)
    if num_sensors < 2:
        raise ValueError(f"num_sensors must be at least 2, got {num_sensors}")
    V = num_sensors
    pos = rng.random((V, 2)) * extent
    steps = int(round(10 * 3600 / step_seconds))
    tod = 7 * 3600 + step_seconds * np.arange(steps)  # seconds of day
    clear = 1000.0 * np.sin(np.pi * (tod / 3600 - 6) / 12) ** 1.2
    M = 48
    series, times = [], []
    for day in range(num_days):
        wavelength = np.exp(rng.uniform(np.log(500.0), np.log(3000.0), M))
        direction = rng.uniform(0, 2 * np.pi, M)
        K = (2 * np.pi / wavelength)[:, None] * np.stack([np.cos(direction), np.sin(direction)], 1)  # [M, 2]
        phase = rng.uniform(0, 2 * np.pi, M)
        omega = 2 * np.pi / 1800.0 * 0.3 * rng.standard_normal(M)
        heading = rng.uniform(0, 2 * np.pi)
        wind = wind_speed * np.array([np.cos(heading), np.sin(heading)])
        cover = rng.uniform(0.0, 0.8)
        t = step_seconds * np.arange(steps)
        # f(x, t) = sqrt(2/M) sum_m cos(K_m . (x - wind t) + phase_m + omega_m t)
        space = np.exp(1j * (pos @ K.T + phase))  # [V, M]
        time = np.exp(1j * np.outer(t, omega - K @ wind))  # [T, M]
        field = math.sqrt(2.0 / M) * (time @ space.T).real  # [T, V]
        transmittance = 1.0 - 0.7 / (1.0 + np.exp(-(field - cover) / 0.1))
        ghi = clear[:, None] * transmittance + noise * rng.standard_normal((steps, V))
        series.append(np.maximum(ghi, 0.0))
        times.append(_EPOCH_2024_06_01 + day * 86400.0 + tod)
    ghi = np.concatenate(series)
    times = np.concatenate(times)
    out = series_samples(
        ghi,
        ramp_labels(ghi, horizon, ramp_threshold),
        times,
        lags=lags,
        horizon=horizon,
        test_fraction=test_fraction,
        source="solar_sim",
    )
    centred = pos - pos.mean(0)
    return GraphDataset(
        out["X_train"], out["X_test"], out["Y_train"], out["Y_test"],
        edge_index=knn_graph(k, positions=centred),
        num_classes=2,
        name="solar_sim",
        node_names=[f"s{i}" for i in range(V)],
        positions=torch.tensor(centred, dtype=torch.float32),
        feature_names=lag_names("ghi", lags),
        scaler=out["scaler"],
        label_rule=_ramp_rule(horizon, ramp_threshold, step_seconds),
        provenance=(
            f"simulated (seed {seed}): {V} sensors in a {extent:g} m square, {num_days} days 07-17 UTC "
            f"every {step_seconds:g} s, clear sky times an advected cloud field (wind {wind_speed:g} m/s); "
            "X = GHI lags standardised per node and lag with training statistics; positions in metres"
        ),
        time_train=out["time_train"],
        time_test=out["time_test"],
    )


def resample_mean(times: np.ndarray, values: np.ndarray, interval: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Averages readings over consecutive bins of ``interval`` seconds from the first stamp.

    Only complete bins (as many readings as the series' most common step gives) are kept; the bin is
    stamped with its start time.

    Arguments:
        times: Time stamps ``[T]`` (seconds, increasing).
        values: Readings ``[T, V]``.
        interval: The bin width in seconds.

    Returns:
        ``(bin_times, bin_means)``.

    Example:
        >>> t, v = resample_mean(np.arange(6.0), np.arange(6.0)[:, None], 2)
        >>> t.tolist(), v[:, 0].tolist()
        ([0.0, 2.0, 4.0], [0.5, 2.5, 4.5])
    """
    if interval <= 0:
        raise ValueError(f"resample interval must be positive, got {interval}")
    # The most common step: one stray stamp half a step off would make the smallest the step,
    # and then no bin would hold enough readings.
    step = most_common_step(times) if times.size > 1 else float(interval)
    # Bins of 7.5 readings would alternate 7 and 8 and drop the short ones; 0.5 would hold one
    # reading each yet be stamped as half a step.
    per_bin = round(interval / step)
    if per_bin < 1 or abs(interval / step - per_bin) > 1e-6:
        raise ValueError(f"resample interval {interval:g} s must be a whole multiple of the readings' step {step:g} s")
    bins = np.floor((times - times[0]) / interval + 1e-9).astype(np.int64)
    count = np.bincount(bins)
    sums = np.zeros((count.size, values.shape[1]))
    np.add.at(sums, bins, values)
    keep = count >= per_bin
    return times[0] + interval * np.nonzero(keep)[0].astype(np.float64), sums[keep] / count[keep, None]


def _data_dir(path: str | os.PathLike | None, expected: tuple[str, ...], name: str) -> Path:
    source = ""
    if path is None:
        path, source = os.environ.get("IGRAPHFLOW_DATA"), " (from IGRAPHFLOW_DATA)"
        if not path:
            raise FileNotFoundError(
                f"{name}: give path=DIR (--data DIR on the command line) or set IGRAPHFLOW_DATA "
                f"to a directory holding {', '.join(expected)}"
            )
    root = as_path(path, "path")
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: {root}{source} is not a directory (expected one holding {', '.join(expected)})")
    if directories := [f for f in expected if (root / f).is_dir()]:
        raise ValueError(f"{name}: {', '.join(directories)} in {root} should be files, not directories")
    missing = [f for f in expected if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{name}: {root}{source} lacks {', '.join(missing)} (expected files: {', '.join(expected)})")
    return root


def _read_stations(path: Path) -> dict[str, tuple[float, float]]:
    try:
        with _open_text(path) as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except UNREADABLE as err:
        raise ValueError(f"{path}: cannot be read as CSV ({err})") from None
    if not rows:
        raise ValueError(f"{path}: empty file")
    header = [c.strip() for c in rows[0]]
    missing = [c for c in ("station", "utm_e", "utm_n") if c not in header]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; found {column_list(header)}")
    i_s, i_e, i_n = header.index("station"), header.index("utm_e"), header.index("utm_n")
    out, at = {}, {}
    for line, r in enumerate(rows[1:], start=2):
        try:
            station, position = r[i_s].strip(), (float(r[i_e]), float(r[i_n]))
        except (ValueError, IndexError):
            raise ValueError(f"{path}: row {line}: non-numeric or missing utm coordinates") from None
        if not all(map(math.isfinite, position)):
            raise ValueError(f"{path}: row {line}: utm coordinates must be finite, got {position}")
        if station in out:
            raise ValueError(f"{path}: row {line}: station {station!r} listed twice")
        if position in at:  # the nearest neighbours of either would be an arbitrary pick
            raise ValueError(f"{path}: row {line}: station {station!r} has the position of station {at[position]!r}")
        out[station], at[position] = position, station
    return out


@checked_options(resample="(0, inf)", ramp_threshold="[0, inf)", test_fraction="(0, 1)")
def solar_hope(
    *,
    seed: int = 0,
    path: str | os.PathLike | None = None,
    resample: float = 10.0,
    stations: str | int = "all",
    k: int = 4,
    lags: int = 2,
    horizon: int = 1,
    ramp_threshold: float = 50.0,
    test_fraction: float = 0.3,
) -> GraphDataset:
    r"""HOPE-Melpitz global horizontal irradiance (50 stations, 1 s, 2013-09-08 09:15-10:15 UTC).

    The files stay where they are (``path`` or ``$IGRAPHFLOW_DATA``): ``hope_melpitz_ghi_1s.csv.gz``
    (``time_utc`` then one column per station) and ``hope_melpitz_stations.csv`` (``station``,
    ``utm_e``, ``utm_n`` in metres, a distinct position per station). Readings are averaged over
    ``resample`` seconds; the graph joins each station to its ``k`` nearest (UTM distance),
    symmetric and connected.

    Arguments:
        seed: Unused (the data are fixed); accepted for a uniform interface.
        path: The directory with the two files.
        resample: The averaging interval in seconds.
        stations: ``"all"`` or ``n``: the ``n`` stations nearest the network's centroid.
        k: Neighbours per station.
        lags: ``C``, the readings per sample.
        horizon: Steps ahead (of ``resample`` seconds) for the ramp label.
        ramp_threshold: The ramp threshold (W/m2).
        test_fraction: The last share of the hour used for testing.

    Returns:
        A :class:`GraphDataset` (``X`` standardised with training statistics; positions are
        UTM metres relative to the centroid of the chosen stations).

    Example:
        >>> data = solar_hope(path="/work/shared/data")  # doctest: +SKIP
        >>> data.num_nodes, data.num_features  # doctest: +SKIP
        (50, 2)
    """
    root = _data_dir(path, HOPE_FILES, "solar_hope")
    ghi_path, st_path = root / HOPE_FILES[0], root / HOPE_FILES[1]
    columns, times, values = read_numeric_csv(ghi_path, time_column="time_utc", min_rows=lags + horizon + 2)
    coords = _read_stations(st_path)
    unknown = [c for c in columns if c not in coords]
    if unknown:
        raise ValueError(f"{st_path}: no coordinates for stations {unknown}")
    pos = np.array([coords[c] for c in columns])
    if stations != "all":
        if isinstance(stations, bool) or not isinstance(stations, (int, np.integer)) or not 2 <= stations <= len(columns):
            raise ValueError(f"stations must be 'all' or an integer in [2, {len(columns)}], got {stations!r}")
        order = np.argsort(((pos - pos.mean(0)) ** 2).sum(1), kind="stable")[: int(stations)]
        keep = np.sort(order)
        columns, pos, values = [columns[i] for i in keep], pos[keep], values[:, keep]
    t, g = resample_mean(times, values, resample)
    out = series_samples(
        g,
        ramp_labels(g, horizon, ramp_threshold),
        t,
        lags=lags,
        horizon=horizon,
        test_fraction=test_fraction,
        source=str(ghi_path),
    )
    centred = pos - pos.mean(0)
    return GraphDataset(
        out["X_train"], out["X_test"], out["Y_train"], out["Y_test"],
        edge_index=knn_graph(k, positions=centred),
        num_classes=2,
        name="solar_hope",
        node_names=list(columns),
        positions=torch.tensor(centred, dtype=torch.float32),
        feature_names=lag_names("ghi", lags),
        scaler=out["scaler"],
        label_rule=_ramp_rule(horizon, ramp_threshold, float(resample)),
        provenance=(
            "HOPE-Melpitz campaign (High Definition Clouds and Precipitation for advancing Climate "
            "Prediction), Integrated Climate Data Center, University of Hamburg; one-hour extract "
            "from jranalli/solarspatialtools (BSD-3-Clause). "
            f"GHI averaged over {resample:g} s, standardised per node and lag with training statistics; "
            f"read from {root}"
        ),
        time_train=out["time_train"],
        time_test=out["time_test"],
    )
