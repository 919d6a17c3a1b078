r"""NSRDB PSM CSV downloads (one file per site) as a sensor graph with ramp labels.

The National Solar Radiation Database (NREL) delivers PSM time series as CSV files with two
metadata lines (keys such as ``Latitude``, ``Longitude``, then their values), a header row
``Year,Month,Day,Hour,Minute,DHI,DNI,GHI,...`` and one row per time step. Each file becomes one
node; sites are placed by an equirectangular projection of latitude/longitude (km) and joined
by a symmetric k-nearest-neighbour graph. Labels follow the solar ramp rule of
:mod:`igraphflow.datasets.solar`.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Sequence

import numpy as np
import torch

from .._checks import as_real, check_input_file
from ._base import (
    UNREADABLE, GraphDataset, _open_text, as_path, checked_options, knn_graph, lag_names, ramp_labels, read_numeric_csv,
    series_samples,
)

__all__ = ["nsrdb", "read_psm_csv"]

_TIME_COLUMNS = ("Year", "Month", "Day", "Hour", "Minute")


def read_psm_csv(path: str | os.PathLike, feature: str = "DHI") -> tuple[dict[str, str], np.ndarray, np.ndarray]:
    r"""Reads one NSRDB PSM CSV file.

    Arguments:
        path: The file (optionally gzipped).
        feature: The column to return (``DHI``, ``DNI``, ``GHI``, ...).

    Returns:
        ``(metadata, times, values)``: the metadata dict (first two lines), POSIX seconds
        ``[T]`` (the stamps as written, read as UTC) and the feature ``[T]``.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If ``path`` is a directory; else naming the file and the problem (among them a ``Latitude`` outside
            ``[-90, 90]`` or a ``Longitude`` outside ``[-180, 180]``, in degrees).

    Example:
        >>> meta, times, dhi = read_psm_csv("nsrdb_site.csv", "DHI")  # doctest: +SKIP
        >>> float(meta["Latitude"]), dhi.shape  # doctest: +SKIP
        (39.74, (17520,))
    """
    path = as_path(path, "path")
    if not isinstance(feature, str):
        raise ValueError(f"feature must be a column name (str), got {type(feature).__name__} {feature!r}")
    expected = "(expected an NSRDB PSM CSV download)"
    check_input_file(path, missing=f"nsrdb: no such file {path} {expected}", kind=f"a file {expected}", prefix="nsrdb: ")
    try:
        with _open_text(path) as f:
            head = [next(csv.reader([f.readline()]), []) for _ in range(2)]
    except UNREADABLE as err:
        raise ValueError(f"{path}: cannot be read as CSV ({err})") from None
    keys, vals = ([c.strip() for c in row] for row in head)
    meta = dict(zip(keys, vals))
    for key, interval in (("Latitude", "[-90, 90]"), ("Longitude", "[-180, 180]")):
        try:
            degrees = float(meta[key])
        except (KeyError, ValueError):
            raise ValueError(
                f"{path}: the two metadata lines must give a numeric {key} (NSRDB PSM CSV format)"
            ) from None
        as_real(degrees, f"{path}: {key} (degrees)", interval)
    columns, _, values = read_numeric_csv(path, skip_lines=2, required=_TIME_COLUMNS + (feature,), min_rows=3)
    ix = [columns.index(c) for c in _TIME_COLUMNS]
    stamps = values[:, ix]
    if (fractional := np.nonzero(np.isfinite(stamps) & (stamps != np.round(stamps)))[0]).size:  # int() cut 9.5 to 9
        raise ValueError(f"{path}: invalid date in Year..Minute (data row {fractional[0] + 1} holds a fraction: "
                         f"{stamps[fractional[0]].tolist()})")
    try:
        times = np.array(
            [datetime(*(int(v) for v in row[ix]), tzinfo=timezone.utc).timestamp() for row in values]
        )
    except ValueError as err:
        raise ValueError(f"{path}: invalid date in Year..Minute ({err})") from None
    if np.any(np.diff(times) <= 0):
        raise ValueError(f"{path}: time stamps must be strictly increasing")
    return meta, times, values[:, columns.index(feature)]


def _first_repeat(items: list) -> tuple[int, int] | None:
    r"""``(first, i)`` for the first item ``i`` equal to an earlier one, ``items[first]``; ``None`` when all differ."""
    for i, item in enumerate(items):
        if item in items[:i]:
            return items.index(item), i
    return None


@checked_options(ramp_threshold="[0, inf)", test_fraction="(0, 1)")
def nsrdb(
    *,
    seed: int = 0,
    paths: Sequence[str | os.PathLike] | None = None,
    feature: str = "DHI",
    k: int = 4,
    lags: int = 2,
    horizon: int = 1,
    ramp_threshold: float = 50.0,
    daylight_only: bool = True,
    test_fraction: float = 0.3,
) -> GraphDataset:
    r"""Sites of NSRDB PSM downloads as nodes, one irradiance component as the signal.

    The time stamps common to all files are used. With ``daylight_only`` readings where the
    feature is 0 at every site (night) are dropped, and no window spans them.

    Arguments:
        seed: Unused (the data are fixed).
        paths: One PSM CSV per site (at least 2), a list of ``str`` or ``os.PathLike``.
        feature: The column used as signal.
        k: Neighbours per site.
        lags: ``C``, the readings per sample.
        horizon: Steps ahead for the ramp label.
        ramp_threshold: The ramp threshold (W/m2).
        daylight_only: Drop night readings.
        test_fraction: The share of the time stamps (night included), the last ones, used for testing.

    Returns:
        A :class:`GraphDataset` (positions in km from the sites' mean latitude/longitude).

    Example:
        >>> data = nsrdb(paths=["site1.csv", "site2.csv", "site3.csv"])  # doctest: +SKIP
    """
    if not paths or isinstance(paths, (str, os.PathLike)):
        raise FileNotFoundError(
            "nsrdb: give paths=[...] with one NSRDB PSM CSV file per site (at least 2); "
            "on the command line --data-option \"paths=['site1.csv','site2.csv']\""
        )
    if not isinstance(paths, Iterable):
        raise ValueError(f"paths must be a list of files, one per site, got {type(paths).__name__} {paths!r}")
    paths = [as_path(p, f"paths[{i}]") for i, p in enumerate(paths)]
    if directories := [str(p) for p in paths if p.is_dir()]:
        raise ValueError(f"nsrdb: {directories} are directories, not files (expected NSRDB PSM CSV downloads)")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"nsrdb: missing files {missing} (expected NSRDB PSM CSV downloads)")
    if len(paths) < 2:
        raise ValueError("nsrdb: at least 2 sites (files) are needed for a graph")
    # One file given twice would be two nodes with the same series at the same place.
    if repeat := _first_repeat([path.resolve() for path in paths]):
        first, i = repeat
        raise ValueError(f"nsrdb: paths[{first}] and paths[{i}] are the same file {str(paths[i])!r}; give each site once")
    sites = [read_psm_csv(p, feature) for p in paths]
    common = sites[0][1]
    for _, t, _ in sites[1:]:
        common = np.intersect1d(common, t)
    if common.size < lags + horizon + 2:
        raise ValueError(f"nsrdb: the files share only {common.size} time stamps")
    series = np.stack([v[np.searchsorted(t, common)] for _, t, v in sites], axis=1)
    valid = (series > 0).any(axis=1) if daylight_only else None
    out = series_samples(
        series,
        ramp_labels(series, horizon, ramp_threshold),
        common,
        lags=lags,
        horizon=horizon,
        test_fraction=test_fraction,
        valid=valid,
        source="nsrdb",
    )
    lat = np.array([float(m["Latitude"]) for m, _, _ in sites])
    lon = np.array([float(m["Longitude"]) for m, _, _ in sites])
    # As solar_hope's stations: two sites at one place would be two nodes no distance can tell apart.
    if repeat := _first_repeat(list(zip(lat.tolist(), lon.tolist()))):
        first, i = repeat
        raise ValueError(f"nsrdb: paths[{first}] and paths[{i}] are sites at the same position "
                         f"(latitude {lat[i]}, longitude {lon[i]}); give each site once")
    R = 6371.0
    pos = np.stack([R * np.radians(lon - lon.mean()) * math.cos(math.radians(lat.mean())), R * np.radians(lat - lat.mean())], 1)
    names = [str(m.get("Location ID") or p.stem) for (m, _, _), p in zip(sites, paths)]
    if len(set(names)) < len(names):
        names = [f"{n}_{i}" for i, n in enumerate(names)]
    step = float(np.median(np.diff(common)))
    return GraphDataset(
        out["X_train"], out["X_test"], out["Y_train"], out["Y_test"],
        edge_index=knn_graph(k, positions=pos),
        num_classes=2,
        name="nsrdb",
        node_names=names,
        positions=torch.tensor(pos, dtype=torch.float32),
        feature_names=lag_names(feature.lower(), lags),
        scaler=out["scaler"],
        label_rule=(
            f"Y_v = 1 iff |{feature}_v(t + {horizon}) - {feature}_v(t)| > {ramp_threshold:g} W/m2 "
            f"(within {horizon * step / 60:g} min), t = time of the last feature reading (future ramp)"
        ),
        provenance=(
            "NSRDB (NREL National Solar Radiation Database) PSM CSV files "
            f"{', '.join(p.name for p in paths)}; {feature} standardised per node and lag with training statistics"
        ),
        time_train=out["time_train"],
        time_test=out["time_test"],
    )
