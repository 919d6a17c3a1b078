r"""Graph-signal datasets: simulations with a known density and real sensor networks.

One entry point, :func:`load`, returns a :class:`GraphDataset` (train and test signals
``X [N, V, C]``, node labels ``Y [N, V]``, one fixed graph ``edge_index`` and metadata);
:func:`available` lists the names, :func:`options` the options of each.

==================  =========================================================================
name                content
==================  =========================================================================
three_moons         one node, three noisy moons, 3 imbalanced classes (exact density)
three_node          3-node path, ``X = D^-1 (A + I) Z`` (exact density)
chordal             503-node chordal cycle graph, sparse smoothing (exact density)
linear_gaussian     random geometric graph, Gaussian latents (exact density)
graph_moons         random geometric graph, two-moons latents (exact density by quadrature)
solar_sim           simulated irradiance under moving clouds, ramp labels (no file needed)
solar_hope          HOPE-Melpitz 1 s irradiance, 50 stations, ramp labels (``path=`` needed)
traffic             22 traffic detectors, 15-min counts, anomaly labels (embedded file)
nsrdb               NSRDB PSM CSV downloads, one file per site (``paths=`` needed)
==================  =========================================================================

Example:
    >>> import igraphflow.datasets as D
    >>> "linear_gaussian" in D.available()
    True
    >>> data = D.load("linear_gaussian", seed=1, num_train=100, num_test=50)
    >>> data.X_train.shape, data.Y_train.shape
    (torch.Size([100, 12, 2]), torch.Size([100, 12]))
"""

from __future__ import annotations

from typing import Callable

from . import nsrdb as _nsrdb
from . import simulated as _simulated
from . import solar as _solar
from . import traffic as _traffic
from ._base import GraphDataset, Scaler, loader_options

# The loaders live in their modules (``simulated``, ``solar``, ``traffic``, ``nsrdb``), where
# their docstrings list the options; the package itself exposes ``load``, ``available`` and ``options``.
__all__ = ["GraphDataset", "Scaler", "available", "load", "options"]

_LOADERS: dict[str, Callable[..., GraphDataset]] = {
    "three_moons": _simulated.three_moons,
    "three_node": _simulated.three_node,
    "chordal": _simulated.chordal,
    "linear_gaussian": _simulated.linear_gaussian,
    "graph_moons": _simulated.graph_moons,
    "solar_sim": _solar.solar_sim,
    "solar_hope": _solar.solar_hope,
    "traffic": _traffic.traffic,
    "nsrdb": _nsrdb.nsrdb,
}


def available() -> list[str]:
    r"""Returns the names accepted by :func:`load`.

    Example:
        >>> available()[:3]
        ['three_moons', 'three_node', 'chordal']
    """
    return list(_LOADERS)


def options(name: str) -> list[str]:
    r"""The options :func:`load` takes for the dataset ``name`` (``path`` where it reads files).

    Example:
        >>> options("traffic")
        ['k', 'lags', 'log1p', 'min_history', 'path', 'q', 'resolution', 'seed', 'test_fraction']
        >>> "path" in options("solar_sim")
        False
    """
    _check_name(name)
    return loader_options(_LOADERS[name])


def _check_name(name: str):
    if not isinstance(name, str) or name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(_LOADERS)}")


def load(name: str, *, seed: int = 0, **options) -> GraphDataset:
    r"""Loads a dataset by name.

    Arguments:
        name: One of :func:`available`.
        seed: The random seed (simulations; real data are deterministic anyway).
        options: Dataset options, see the loader of the same name (e.g.
            :func:`igraphflow.datasets.simulated.linear_gaussian`).

    Returns:
        The :class:`GraphDataset`.

    Raises:
        ValueError: For an unknown name (the message lists the available ones), a seed that
            is not an integer >= 0, a count option (``num_train``, ``num_nodes``, ``lags``,
            ...) that is not an integer >= 1, or a real option (``noise``, ``p_one``,
            ``test_fraction``, ...) that is not a finite number in its range. The loaders
            check their options themselves, so calling one directly checks the same.
        TypeError: For an option the dataset does not take (the message names it).

    Example:
        >>> load("three_node", num_train=8, num_test=8).num_nodes
        3
        >>> load("mnist")
        Traceback (most recent call last):
        ...
        ValueError: unknown dataset 'mnist'; available: three_moons, three_node, ...
    """
    _check_name(name)
    return _LOADERS[name](seed=seed, **options)
