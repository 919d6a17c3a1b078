"""Tests of igraphflow.datasets: shapes, determinism, graphs, splits, densities, bad input."""

import gzip
import math
import os
import pickle
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import scipy.integrate
import scipy.stats
import torch
from torch_geometric.utils import contains_self_loops, is_undirected

import igraphflow.datasets as D
from igraphflow.datasets._base import chronological_windows, knn_graph, ramp_labels, series_samples
from igraphflow.datasets.simulated import TWO_MOONS, THREE_MOONS, _sample_moons, moon_log_density, smoothing_operator
from igraphflow.datasets.nsrdb import read_psm_csv
from igraphflow.datasets.solar import resample_mean
from igraphflow.datasets.traffic import MAX_MISSING, anomaly_labels, fill_grid

torch.set_num_threads(1)

SMALL = {
    "three_moons": dict(num_train=200, num_test=100),
    "three_node": dict(num_train=160, num_test=80),
    "chordal": dict(num_train=60, num_test=30),
    "linear_gaussian": dict(num_train=200, num_test=100),
    "graph_moons": dict(num_train=200, num_test=100),
    "solar_sim": dict(num_days=2, step_seconds=30.0),
}
SIMULATED = ["three_moons", "three_node", "chordal", "linear_gaussian", "graph_moons"]


def shared_data() -> Path | None:
    for root in (os.environ.get("IGRAPHFLOW_DATA"), Path(__file__).resolve().parents[1].parent / "shared" / "data"):
        if root and all((Path(root) / f).is_file() for f in D.solar.HOPE_FILES):
            return Path(root)
    return None


def check_graph(data):
    ei, V = data.edge_index, data.num_nodes
    assert ei.dtype == torch.int64 and ei.shape[0] == 2
    assert is_undirected(ei, num_nodes=V)
    assert not contains_self_loops(ei)
    G = nx.Graph()
    G.add_nodes_from(range(V))
    G.add_edges_from(ei.t().tolist())
    assert nx.is_connected(G)
    assert len(set(map(tuple, ei.t().tolist()))) == ei.shape[1]  # no duplicate edges


def check_basic(data):
    N, Nt = data.X_train.shape[0], data.X_test.shape[0]
    V, C = data.num_nodes, data.num_features
    assert data.X_train.dtype == data.X_test.dtype == torch.float32
    assert data.Y_train.dtype == data.Y_test.dtype == torch.int64
    assert data.X_test.shape == (Nt, V, C) and data.Y_train.shape == (N, V) and data.Y_test.shape == (Nt, V)
    assert torch.isfinite(data.X_train).all() and torch.isfinite(data.X_test).all()
    assert int(data.Y_train.min()) >= 0 and int(data.Y_train.max()) < data.num_classes
    assert set(data.Y_train.unique().tolist()) == set(range(data.num_classes))
    assert set(data.Y_test.unique().tolist()) == set(range(data.num_classes))
    assert len(data.node_names) == V and len(data.feature_names) == C
    assert data.positions is None or data.positions.shape == (V, 2)
    assert data.label_rule and data.provenance
    check_graph(data)
    text = repr(data)
    assert data.name in text and len(text) < 300
    assert data.label_rule in data.summary()


@pytest.mark.parametrize("name", list(SMALL))
def test_simulated_basic_and_deterministic(name):
    a = D.load(name, seed=3, **SMALL[name])
    b = D.load(name, seed=3, **SMALL[name])
    c = D.load(name, seed=4, **SMALL[name])
    check_basic(a)
    for key in ("X_train", "X_test", "Y_train", "Y_test", "edge_index"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    assert not torch.equal(a.X_train, c.X_train)
    if name in SIMULATED:
        assert a.X_train.shape[0] == SMALL[name]["num_train"]
        assert a.X_test.shape[0] == SMALL[name]["num_test"]
        assert a.scaler.is_identity and a.time_train is None
        lp = a.true_log_prob(a.X_test, a.Y_test)
        assert lp.shape == (a.X_test.shape[0],) and torch.isfinite(lp).all()
        # batch shapes are kept
        assert a.true_log_prob(a.X_test[:4].reshape(2, 2, a.num_nodes, -1), a.Y_test[:4].reshape(2, 2, -1)).shape == (2, 2)


def test_available_and_defaults_are_fast():
    assert D.available() == [
        "three_moons", "three_node", "chordal", "linear_gaussian", "graph_moons",
        "solar_sim", "solar_hope", "traffic", "nsrdb",
    ]
    data = D.load("three_moons")
    assert data.num_nodes == 1 and data.edge_index.shape == (2, 0) and data.num_classes == 3
    balance = data.label_balance()
    assert balance[0] > balance[1] > balance[2] > 0.1
    data = D.load("linear_gaussian")
    assert data.X_train.shape == (4000, 12, 2) and data.X_test.shape == (2000, 12, 2)
    assert abs(data.Y_train.float().mean().item() - 0.5) < 0.03


# ----------------------------------------------------------------------------- exact densities


def full_gaussian_logpdf(P, means, sigma, X, Y):
    """Reference: X = (P kron I_C) z, z ~ N(means[Y], sigma^2 I) in the flattened (V*C) space."""
    V, C = X.shape[-2:]
    M = np.kron(P, np.eye(C))
    out = []
    for x, y in zip(X.double().numpy(), Y.numpy()):
        mean = M @ means[y].reshape(-1)
        out.append(scipy.stats.multivariate_normal(mean, sigma**2 * M @ M.T).logpdf(x.reshape(-1)))
    return np.array(out)


def test_three_node_operator_and_density():
    data = D.load("three_node", num_train=16, num_test=24, num_features=2, sigma=0.5, mean_shift=1.0)
    P = smoothing_operator(nx.path_graph(3), 0.0, self_loops=True).toarray()
    np.testing.assert_allclose(P, [[1 / 2, 1 / 2, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 2, 1 / 2]])
    assert np.linalg.det(P) == pytest.approx(-1 / 12)
    # all 8 label patterns equally often
    codes = (data.Y_train * torch.tensor([4, 2, 1])).sum(1)
    assert torch.bincount(codes, minlength=8).tolist() == [2] * 8
    means = np.array([[-1.0, -1.0], [1.0, 1.0]])
    ref = full_gaussian_logpdf(P, means, 0.5, data.X_test, data.Y_test)
    np.testing.assert_allclose(data.true_log_prob(data.X_test, data.Y_test).numpy(), ref, rtol=1e-6, atol=1e-4)



def test_three_node_asymmetry_breaks_the_mirror_symmetry():
    mirror = [2, 1, 0]
    gaps = {}
    for asymmetry in (0.0, 1.0):
        data = D.load("three_node", num_train=16, num_test=24, asymmetry=asymmetry)
        P = smoothing_operator(nx.path_graph(3), 0.0, self_loops=True).toarray()
        P[0, 1] += asymmetry
        ref = full_gaussian_logpdf(P, np.array([[-1.0, -1.0], [1.0, 1.0]]), 0.5, data.X_test, data.Y_test)
        np.testing.assert_allclose(data.true_log_prob(data.X_test, data.Y_test).numpy(), ref, rtol=1e-6, atol=1e-4)
        mirrored = data.true_log_prob(data.X_test[:, mirror], data.Y_test[:, mirror])
        gaps[asymmetry] = (mirrored - data.true_log_prob(data.X_test, data.Y_test)).abs().max().item()
    assert gaps[0.0] < 1e-9 and gaps[1.0] > 1.0  # p(X | Y) = p(mirror X | mirror Y) only without asymmetry
    with pytest.raises(ValueError, match="singular"):
        D.load("three_node", num_train=8, num_test=8, asymmetry=-0.5)

def test_linear_gaussian_density_against_scipy():
    data = D.load("linear_gaussian", seed=2, num_nodes=5, num_features=2, num_train=10, num_test=20, smoothing=0.5)
    G = nx.Graph()
    G.add_nodes_from(range(5))
    G.add_edges_from(data.edge_index.t().tolist())
    A = nx.to_numpy_array(G, nodelist=range(5))
    P = 0.5 * np.eye(5) + 0.5 * A / A.sum(1, keepdims=True)
    means = np.array([[-1.0, -1.0], [1.0, 1.0]])
    ref = full_gaussian_logpdf(P, means, 1.0, data.X_test, data.Y_test)
    np.testing.assert_allclose(data.true_log_prob(data.X_test, data.Y_test).numpy(), ref, rtol=1e-6, atol=1e-4)


def test_smoothing_operator_ignores_self_loops_and_edge_weights():
    # P = (1 - d) I + d D^-1 A, with A the 0/1 adjacency without its diagonal, written out here.
    G = nx.path_graph(4)
    G.add_edge(1, 1)  # a self-loop is no neighbour
    G.add_edge(2, 3, weight=5.0)
    A = np.array([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0]], dtype=float)
    expected = 0.7 * np.eye(4) + 0.3 * A / A.sum(1, keepdims=True)
    np.testing.assert_allclose(smoothing_operator(G, 0.3).toarray(), expected)
    B = A + np.eye(4)
    np.testing.assert_allclose(smoothing_operator(G, 0.3, self_loops=True).toarray(), B / B.sum(1, keepdims=True))


@pytest.mark.parametrize("name", ["linear_gaussian", "graph_moons"])
def test_smoothing_that_makes_the_mixing_operator_singular_is_named(name):
    # On 2 nodes the only connected graph is one edge, where d = 0.5 gives P = [[.5, .5], [.5, .5]].
    with pytest.raises(ValueError, match=r"smoothing=0.5 makes the mixing operator .* singular .* 2 nodes; use a smaller smoothing"):
        D.load(name, num_nodes=2, num_train=8, num_test=8)
    assert D.load(name, num_nodes=2, num_train=8, num_test=8, smoothing=0.3).X_train.shape[1] == 2
    # With a radius beyond the unit square's diagonal every graph is complete, where D^-1 A has
    # the eigenvalue -1 / 9 and d = 0.9 makes P singular: no retry can help.
    with pytest.raises(ValueError, match=r"smoothing=0.9 makes .* every connected random geometric graph drawn"):
        D.load(name, num_nodes=10, smoothing=0.9, radius=2.0, num_train=8, num_test=8)


@pytest.mark.parametrize("name", ["linear_gaussian", "graph_moons"])
def test_radius_too_small_to_connect_the_graph_is_named(name):
    # Even grown by 10% every 20 attempts, a radius of 0.01 joins no 5 points of the unit square.
    with pytest.raises(ValueError, match=r"radius=0.01 is too small to connect 5 nodes: .* use a larger radius"):
        D.load(name, num_nodes=5, radius=0.01, num_train=8, num_test=8)


def test_chordal_graph_and_density():
    data = D.load("chordal", num_train=4, num_test=6)
    assert data.num_nodes == 503
    assert (data.Y_train.sum(1) == 251).all()
    check_graph(data)
    lg = data.true_log_prob
    G = nx.Graph(nx.chordal_cycle_graph(503))
    G.remove_edges_from(list(nx.selfloop_edges(G)))
    A = nx.to_numpy_array(G, nodelist=range(503))
    P = 0.8 * np.eye(503) + 0.2 * A / A.sum(1, keepdims=True)
    assert lg.log_abs_det == pytest.approx(np.linalg.slogdet(P)[1], rel=1e-9)
    small = D.load("chordal", num_nodes=13, num_train=4, num_test=6, sigma=0.7)
    G = nx.Graph(nx.chordal_cycle_graph(13))
    G.remove_edges_from(list(nx.selfloop_edges(G)))
    A = nx.to_numpy_array(G, nodelist=range(13))
    P = 0.8 * np.eye(13) + 0.2 * A / A.sum(1, keepdims=True)
    ref = full_gaussian_logpdf(P, np.array([[-1.0, -1.0], [1.0, 1.0]]), 0.7, small.X_test, small.Y_test)
    np.testing.assert_allclose(small.true_log_prob(small.X_test, small.Y_test).numpy(), ref, rtol=1e-6, atol=1e-4)


def _graph_operator(data, smoothing: float) -> np.ndarray:
    r"""``(1 - d) I + d D^-1 A`` of the dataset's own graph, written out here."""
    G = nx.Graph()
    G.add_nodes_from(range(data.num_nodes))
    G.add_edges_from(data.edge_index.t().tolist())
    A = nx.to_numpy_array(G, nodelist=range(data.num_nodes))
    return (1 - smoothing) * np.eye(data.num_nodes) + smoothing * A / A.sum(1, keepdims=True)


@pytest.mark.parametrize("name", ["three_node", "linear_gaussian", "chordal"])
def test_gaussian_samples_unmix_to_white_noise_around_the_class_means(name):
    # The densities are checked against scipy above; this checks that the samples follow them:
    # X = P Z with Z_v ~ N(mu_{Y_v}, sigma^2 I), so P^-1 X - mu_Y is white noise of scale sigma.
    options = {"three_node": dict(asymmetry=1.0, sigma=0.7), "linear_gaussian": dict(num_nodes=6, smoothing=0.5),
               "chordal": dict(num_nodes=13, sigma=0.7)}[name]
    sigma = options.get("sigma", 1.0)  # linear_gaussian's is fixed
    data = D.load(name, num_train=4, num_test=4000, **options)
    if name == "three_node":
        P = smoothing_operator(nx.path_graph(3), 0.0, self_loops=True).toarray()
        P[0, 1] += 1.0
    else:
        P = _graph_operator(data, 0.5 if name == "linear_gaussian" else 0.2)
    means = np.array([[-1.0, -1.0], [1.0, 1.0]])
    noise = np.linalg.solve(P, data.X_test.double().numpy()) - means[data.Y_test.numpy()]  # [N, V, C]
    flat = noise.reshape(len(noise), -1)
    np.testing.assert_allclose(flat.mean(0), 0.0, atol=5 * sigma / len(flat) ** 0.5)
    np.testing.assert_allclose(np.cov(flat.T) / sigma**2, np.eye(flat.shape[1]), atol=0.12)


@pytest.mark.parametrize("arcs,label", [(TWO_MOONS, 0), (TWO_MOONS, 1), (THREE_MOONS, 2)])
def test_moon_density_normalises(arcs, label):
    h = 0.01
    xs = np.arange(-1.6, 4.1, h)
    ys = np.arange(-1.1, 1.6, h)
    xx, yy = np.meshgrid(xs, ys)
    z = torch.tensor(np.stack([xx.ravel(), yy.ravel()], 1))
    p = moon_log_density(z, torch.full((z.shape[0],), label), arcs, noise=0.1, num_points=512).exp()
    assert float(p.sum()) * h * h == pytest.approx(1.0, abs=2e-3)
    # Monte Carlo: the sampler puts the mass the density says into a few regions
    n = 20000
    samples = _sample_moons(np.random.default_rng(0), np.full(n, label), arcs, 0.1)
    cx, cy, _ = arcs[label]
    for region in (lambda x, y: x < cx - 0.5, lambda x, y: x > cx + 0.3, lambda x, y: np.abs(y - cy) < 0.4):
        mass = float(p.numpy()[region(xx.ravel(), yy.ravel())].sum()) * h * h
        freq = region(samples[:, 0], samples[:, 1]).mean()
        assert abs(freq - mass) < 4 * math.sqrt(mass * (1 - mass) / n) + 2e-3


def test_moon_density_against_adaptive_quadrature_and_samples():
    noise = 0.1
    z = np.array([[0.1, 0.95], [0.9, 0.4], [1.0, -0.45], [0.5, 0.0]])
    for label in (0, 1):
        cx, cy, start = TWO_MOONS[label]
        lp = moon_log_density(torch.tensor(z), torch.full((4,), label), TWO_MOONS, noise).numpy()
        for zi, l in zip(z, lp):
            f = lambda th: math.exp(-((zi[0] - cx - math.cos(th)) ** 2 + (zi[1] - cy - math.sin(th)) ** 2) / (2 * noise**2))
            val, _ = scipy.integrate.quad(f, start, start + math.pi, limit=200, epsabs=0, epsrel=1e-10)
            ref = math.log(val / math.pi / (2 * math.pi * noise**2))
            # the midpoint rule is exact to ~1e-10 where the arc passes near z, and within
            # ~(h / noise^2)^2 / 24 relative where the density peaks at an end of the arc
            assert l == pytest.approx(ref, abs=1e-8 if l > -5 else 5e-4)
    # on graph_moons samples, the density ranks the true labels above the swapped ones
    data = D.load("graph_moons", num_nodes=6, num_train=10, num_test=400)
    lp_true = data.true_log_prob(data.X_test, data.Y_test)
    lp_swap = data.true_log_prob(data.X_test, 1 - data.Y_test)
    assert (lp_true > lp_swap).float().mean() > 0.95


def test_graph_moons_density_matches_unmixing():
    data = D.load("graph_moons", seed=1, num_nodes=7, num_train=5, num_test=50, noise=0.15)
    G = nx.Graph()
    G.add_nodes_from(range(7))
    G.add_edges_from(data.edge_index.t().tolist())
    A = nx.to_numpy_array(G, nodelist=range(7))
    P = 0.5 * np.eye(7) + 0.5 * A / A.sum(1, keepdims=True)
    Z = np.einsum("uv,nvc->nuc", np.linalg.inv(P), data.X_test.double().numpy())
    per_node = moon_log_density(torch.tensor(Z.reshape(-1, 2)), data.Y_test.reshape(-1), TWO_MOONS, 0.15)
    ref = per_node.reshape(50, 7).sum(1) - 2 * np.linalg.slogdet(P)[1]
    torch.testing.assert_close(data.true_log_prob(data.X_test, data.Y_test), ref, rtol=1e-6, atol=1e-4)
    # the latents are moons: the upper one lies above the lower one on average
    Zt = torch.tensor(Z)
    assert Zt[..., 1][data.Y_test == 0].mean() > Zt[..., 1][data.Y_test == 1].mean() + 0.5


@pytest.mark.parametrize("name", ["three_moons", "linear_gaussian", "graph_moons"])
def test_true_log_prob_refuses_labels_outside_the_classes(name):
    data = D.load(name, num_train=8, num_test=8, **({} if name == "three_moons" else dict(num_nodes=4)))
    X, Y, K = data.X_test, data.Y_test, data.num_classes
    # -1 read class K-1 (a NumPy index) or uninitialised memory; 0.5 was truncated to class 0
    cases = [(-1, r"labels in \[-1, -1\], outside \[0, num_classes"), (K, "outside"), (0.5, "integer class labels")]
    for bad, match in cases:
        with pytest.raises(ValueError, match=f"Y .*{match}"):
            data.true_log_prob(X, torch.full(Y.shape, bad))
    with pytest.raises(ValueError, match="labels holds labels in"):
        moon_log_density(torch.zeros(3, 2), torch.tensor([0, 1, 2]), TWO_MOONS)
    with pytest.raises(ValueError, match=r"z must have shape \[M, 2\], got \[3, 1\]"):
        moon_log_density(torch.zeros(3, 1), torch.tensor([0, 1, 0]), TWO_MOONS)


def test_a_feature_that_is_no_column_name_is_named(tmp_path):
    with pytest.raises(ValueError, match="feature must be a column name"):
        read_psm_csv(tmp_path / "site.csv", feature=None)


@pytest.mark.parametrize("name", ["three_moons", "three_node"])
def test_densities_are_computed_on_the_device_of_the_input(name):
    data = D.load(name, num_train=8, num_test=8)
    X, Y = data.X_test, data.Y_test
    ref = data.true_log_prob(X, Y)
    z, labels = X[:, 0].double(), Y[:, 0]
    ref_moon = moon_log_density(z, labels, THREE_MOONS)
    # A tensor made without device= lands on the meta device here, and no value can be read there.
    with torch.device("meta"):
        lp = data.true_log_prob(X, Y)
        lp_moon = moon_log_density(z, labels, THREE_MOONS)
    assert lp.device == X.device and lp_moon.device == z.device
    torch.testing.assert_close(lp, ref)
    torch.testing.assert_close(lp_moon, ref_moon)


# ----------------------------------------------------------------------------- time series


def check_chronological(data):
    assert data.time_train is not None and data.time_test is not None
    assert data.time_train.shape == (data.X_train.shape[0], 2)
    assert float(data.time_train[:, 1].max()) < float(data.time_test[:, 0].min())
    assert (torch.diff(data.time_train[:, 0]) > 0).all() and (torch.diff(data.time_test[:, 0]) > 0).all()


def test_solar_sim():
    data = D.load("solar_sim", seed=1, num_days=2, step_seconds=20.0)
    check_basic(data)
    check_chronological(data)
    ones = data.Y_train.float().mean().item()
    assert 0.1 <= ones <= 0.5
    # standardised with the training statistics only
    assert data.X_train.mean(0).abs().max() < 1e-4
    assert (data.X_train.std(0, unbiased=False) - 1).abs().max() < 1e-3
    raw = data.scaler.inverse_transform(data.X_train)
    assert raw.min() >= 0 and raw.max() < 1100  # W/m2
    # windows never span the night: the two readings of a sample are one step apart
    assert torch.allclose(data.time_train[:, 1] - data.time_train[:, 0], torch.tensor(40.0, dtype=torch.float64))


def test_solar_sim_defaults():
    data = D.load("solar_sim")
    assert data.num_nodes == 30 and data.num_features == 2
    assert 0.1 <= data.Y_train.float().mean().item() <= 0.5
    assert 0.1 <= data.Y_test.float().mean().item() <= 0.5


def test_traffic_embedded():
    data = D.load("traffic")
    check_basic(data)
    check_chronological(data)
    assert data.num_nodes == 22 and data.node_names[0] == "d1" and data.positions is None
    assert 0.05 <= data.Y_train.float().mean().item() <= 0.5
    first = 1713398400.0  # 2024-04-18 00:00, the first stamp of the file
    assert float(data.time_train[:, 1].min()) >= first + 7 * 86400  # the days without history are dropped
    assert "4 missing readings filled" in data.provenance
    hourly = D.load("traffic", resolution=60, log1p=False, lags=3)
    assert hourly.num_features == 3 and hourly.X_train.shape[0] < data.X_train.shape[0] / 3.5
    raw = hourly.scaler.inverse_transform(hourly.X_train)
    whole = ((raw - raw.round()).abs() < 1e-3).float().mean()
    assert whole > 0.99  # hourly sums of whole counts, but for the hours with a filled quarter


def test_traffic_has_no_leakage(tmp_path):
    """Changing the last days changes nothing in the training split (labels, features, graph)."""
    src = D.traffic.default_traffic_path()
    with gzip.open(src, "rt") as f:
        lines = f.read().splitlines()
    rows = [line.split(",") for line in lines[1:]]
    for r in rows[-3 * 96:]:
        r[1:] = [str(int(float(c)) * 5 + 7) for c in r[1:]]
    path = tmp_path / "counts.csv"
    path.write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n")
    a, b = D.load("traffic"), D.load("traffic", path=path)
    for key in ("X_train", "Y_train", "edge_index", "time_train"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    assert not torch.equal(a.X_test, b.X_test)


def test_traffic_labels_are_the_same_for_stamps_at_the_middle_of_each_interval(tmp_path):
    src = D.traffic.default_traffic_path()
    with gzip.open(src, "rt") as f:
        lines = f.read().splitlines()
    shifted = [lines[0]]
    for line in lines[1:]:  # 00:07:30, 00:22:30, ...: round-half-to-even put two quarter hours on one slot
        stamp, counts = line.split(",", 1)
        shifted.append(f"{datetime.fromisoformat(stamp) + timedelta(minutes=7, seconds=30)},{counts}")
    path = tmp_path / "centred.csv"
    path.write_text("\n".join(shifted) + "\n")
    a, b = D.load("traffic"), D.load("traffic", path=path)
    assert torch.equal(a.Y_train, b.Y_train) and torch.equal(a.Y_test, b.Y_test)
    # ten identical days hold no anomaly, whichever instant of its interval a reading is stamped with
    times = 900.0 * np.arange(96 * 10) + 450.0
    counts = np.tile(96.0 - np.arange(96), 10)[:, None].repeat(2, 1)
    labels, defined = anomaly_labels(times, counts, 0.9, 7)
    assert labels.sum() == 0 and defined.sum() == 96 * 3


def test_traffic_readings_must_recur_at_the_same_times_of_day():
    for resolution in (105, 2880):  # 105 min compared different times of day; 2880 raised an IndexError
        with pytest.raises(ValueError, match=f"resolution must divide a day \\(1440 min\\).*got {resolution}"):
            D.load("traffic", resolution=resolution)
    with pytest.raises(ValueError, match="readings every 105 min do not divide a day"):
        anomaly_labels(6300.0 * np.arange(100), np.ones((100, 2)), 0.9, 2)
    # off the grid: the last reading of day 1 fell on the slot of its first, one overwriting the other
    times = np.array([30.0, 30.0 + 21600, 86400.0, 86400.0 + 64830])
    with pytest.raises(ValueError, match="two readings fall on the same time-of-day slot of one day"):
        anomaly_labels(times, np.ones((4, 2)), 0.9, 1)


def test_nsrdb(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, (lat, lon) in enumerate([(39.7, -105.2), (39.8, -105.1), (39.75, -105.0), (39.6, -105.3)]):
        lines = [
            "Source,Location ID,City,State,Country,Latitude,Longitude,Time Zone,Elevation",
            f"NSRDB,{1000 + i},-,-,-,{lat},{lon},-7,1800",
            "Year,Month,Day,Hour,Minute,DHI,DNI,GHI,Temperature",
        ]
        for day in range(1, 6):
            for hour in range(24):
                for minute in (0, 30):
                    h = hour + minute / 60
                    base = max(0.0, math.sin(math.pi * (h - 6) / 12)) * 300
                    dhi = base * rng.uniform(0.3, 1.0) if base > 0 else 0.0
                    lines.append(f"2020,6,{day},{hour},{minute},{dhi:.1f},{2 * base:.1f},{3 * base:.1f},20")
        path = tmp_path / f"site{i}.csv"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    data = D.load("nsrdb", paths=paths, k=2)
    check_basic(data)
    check_chronological(data)
    assert data.node_names == ["1000", "1001", "1002", "1003"]
    assert data.feature_names == ["dhi[t-1]", "dhi[t]"]
    # positions in km: 0.1 degree of latitude is about 11 km
    assert float(data.positions[1, 1] - data.positions[0, 1]) == pytest.approx(11.12, rel=1e-2)
    # night readings (zero everywhere) are not used
    raw = data.scaler.inverse_transform(data.X_train)
    assert (raw.abs().sum((1, 2)) > 0).all()

    # corrupt files
    bad = tmp_path / "bad.csv"
    text = paths[0].read_text().splitlines()
    bad.write_text("\n".join(text[:10] + ["2020,6,9,1,0,abc,0,0,20"] + text[10:]) + "\n")
    with pytest.raises(ValueError, match=r"bad\.csv.*non-numeric"):
        D.load("nsrdb", paths=[paths[1], bad])
    bad.write_text("\n".join(text[:2] + ["Year,Month,Day,Hour,Minute,GHI"] + [",".join(r.split(",")[:5] + ["1"]) for r in text[3:]]))
    with pytest.raises(ValueError, match=r"bad\.csv.*missing columns.*DHI"):
        D.load("nsrdb", paths=[paths[1], bad])
    bad.write_text("\n".join(text[:4]))
    with pytest.raises(ValueError, match=r"bad\.csv.*too few rows"):
        D.load("nsrdb", paths=[paths[1], bad])
    bad.write_text("\n".join(["Source,City", "NSRDB,x"] + text[2:]))
    with pytest.raises(ValueError, match=r"bad\.csv.*Latitude"):
        D.load("nsrdb", paths=[paths[1], bad])
    bad.write_bytes(bytes(range(256)) * 4)  # not text: a UnicodeDecodeError from the header lines
    with pytest.raises(ValueError, match=r"bad\.csv: cannot be read as CSV"):
        D.load("nsrdb", paths=[paths[1], bad])
    gz = tmp_path / "cut.csv.gz"
    gz.write_bytes(gzip.compress(paths[0].read_bytes())[:20])  # an EOFError from the header lines
    with pytest.raises(ValueError, match=r"cut\.csv\.gz: cannot be read as CSV"):
        D.load("nsrdb", paths=[paths[1], gz])
    with pytest.raises(FileNotFoundError, match="missing"):
        D.load("nsrdb", paths=[paths[1], tmp_path / "nope.csv"])
    with pytest.raises(FileNotFoundError, match="PSM CSV"):
        D.load("nsrdb")
    with pytest.raises(ValueError, match=r"paths\[0\] and paths\[2\] are the same file"):
        D.load("nsrdb", paths=[paths[1], paths[0], tmp_path / ".." / tmp_path.name / "site1.csv"])


def write_psm(path, lat, lon):
    lines = ["Source,Location ID,Latitude,Longitude", f"NSRDB,{path.stem},{lat},{lon}", "Year,Month,Day,Hour,Minute,DHI"]
    lines += [f"2020,6,1,{hour},{minute},{(hour * 60 + minute) % 97}" for hour in range(24) for minute in (0, 30)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "lat, lon, match",
    [
        # scipy's "data must be finite", without the file
        ("nan", -105.0, r"Latitude \(degrees\) must be a finite number in \[-90, 90\], got nan"),
        ("inf", -105.0, "Latitude"),  # math domain error
        (39.75, "-inf", "Longitude"),
        (999, -105.0, r"Latitude .* got 999"),  # loaded 70000 km north of the others
        (39.75, 720, r"Longitude \(degrees\) must be a finite number in \[-180, 180\], got 720"),
    ],
)
def test_nsrdb_site_positions_must_be_on_the_globe(tmp_path, lat, lon, match):
    good = [write_psm(tmp_path / "a.csv", 39.7, -105.2), write_psm(tmp_path / "b.csv", 39.8, -105.1)]
    write_psm(tmp_path / "bad.csv", lat, lon)
    with pytest.raises(ValueError, match=rf"bad\.csv: {match}"):
        D.load("nsrdb", paths=good + [tmp_path / "bad.csv"], daylight_only=False)
    assert D.load("nsrdb", paths=good, daylight_only=False).num_nodes == 2


def test_nsrdb_sites_at_the_same_position_are_refused(tmp_path):
    # Accepted before, while solar_hope refuses two stations at one position.
    paths = [write_psm(tmp_path / "a.csv", 39.7, -105.2), write_psm(tmp_path / "b.csv", 39.8, -105.1),
             write_psm(tmp_path / "c.csv", 39.7, -105.2)]
    with pytest.raises(ValueError, match=r"paths\[0\] and paths\[2\] are sites at the same position \(latitude 39.7, longitude -105.2\)"):
        D.load("nsrdb", paths=paths, daylight_only=False)


def test_nsrdb_time_stamps_with_fractions_are_refused(tmp_path):
    # int() cut every Hour of 9.5 to 9, without a word.
    path = write_psm(tmp_path / "site.csv", 39.7, -105.2)
    lines = path.read_text().splitlines()
    lines[5] = lines[5].replace("2020,6,1,1,0,", "2020,6,1,1.5,0,")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"site\.csv: invalid date in Year\.\.Minute \(data row 3 holds a fraction: "
                                         r"\[2020.0, 6.0, 1.0, 1.5, 0.0\]\)"):
        read_psm_csv(path, "DHI")


def test_solar_hope():
    root = shared_data()
    if root is None:
        pytest.skip("the HOPE-Melpitz files are not available (set IGRAPHFLOW_DATA)")
    data = D.load("solar_hope", path=root)
    check_basic(data)
    check_chronological(data)
    assert data.num_nodes == 50 and data.node_names[0] == "s2"
    assert 0.1 <= data.Y_train.float().mean().item() <= 0.5
    small = D.load("solar_hope", path=root, stations=10, k=3, resample=5, lags=3)
    check_basic(small)
    assert small.num_nodes == 10 and small.num_features == 3
    assert small.X_train.shape[0] > data.X_train.shape[0]
    assert float(small.positions.norm(dim=1).max()) < float(data.positions.norm(dim=1).max())


def test_solar_hope_keeps_the_stations_nearest_the_centroid_and_averages_whole_bins():
    root = shared_data()
    if root is None:
        pytest.skip("the HOPE-Melpitz files are not available (set IGRAPHFLOW_DATA)")
    data = D.load("solar_hope", path=root, stations=5, k=2, resample=10, lags=2)
    # The files read directly: station positions, and the first 20 one-second readings.
    rows = [line.split(",") for line in (root / "hope_melpitz_stations.csv").read_text().splitlines()[1:]]
    utm = {r[0]: (float(r[3]), float(r[4])) for r in rows}
    with gzip.open(root / "hope_melpitz_ghi_1s.csv.gz", "rt") as f:
        header = f.readline().strip().split(",")[1:]
        first = np.array([[float(x) for x in f.readline().split(",")[1:]] for _ in range(20)])
    pos = np.array([utm[name] for name in header])
    nearest = np.sort(np.argsort(((pos - pos.mean(0)) ** 2).sum(1), kind="stable")[:5])
    assert data.node_names == [header[i] for i in nearest]
    chosen = pos[nearest]
    np.testing.assert_allclose(data.positions.numpy(), chosen - chosen.mean(0), atol=1e-3)
    # The first window: the means of readings 0-9 and 10-19 of each station, stamped from 09:15:00.
    np.testing.assert_allclose(data.scaler.inverse_transform(data.X_train[0]).numpy(),
                               first[:, nearest].reshape(2, 10, 5).mean(1).T, rtol=1e-5)
    start = datetime(2013, 9, 8, 9, 15, tzinfo=timezone.utc).timestamp()
    assert data.time_train[0].tolist() == [start, start + 20]
    # The hour ends with one reading at 10:15:00: that bin is incomplete and dropped, so the
    # last label is that of the bin at 10:14:50.
    assert data.time_test[-1].tolist() == [start + 3570, start + 3590]


# ----------------------------------------------------------------------------- bad input


def test_bad_names_and_options(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; available: three_moons"):
        D.options("mnist")
    with pytest.raises(ValueError, match="available: three_moons.*traffic"):
        D.load("moons3")
    with pytest.raises(TypeError, match="'num_trian'"):
        D.load("linear_gaussian", num_trian=10)
    with pytest.raises(ValueError, match="p_one"):
        D.load("linear_gaussian", p_one=1.5)
    with pytest.raises(ValueError, match="stations"):
        root = shared_data()
        if root is None:
            raise ValueError("stations")  # nothing to check without the files
        D.load("solar_hope", path=root, stations="some")
    monkeypatch.delenv("IGRAPHFLOW_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="hope_melpitz_ghi_1s.csv.gz.*hope_melpitz_stations.csv"):
        D.load("solar_hope")
    with pytest.raises(FileNotFoundError, match="hope_melpitz_ghi_1s.csv.gz"):
        D.load("solar_hope", path=tmp_path)
    monkeypatch.setenv("IGRAPHFLOW_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"nowhere \(from IGRAPHFLOW_DATA\) is not a directory .*hope_melpitz_stations.csv"):
        D.load("solar_hope")
    (tmp_path / "file").write_text("")
    with pytest.raises(FileNotFoundError, match="file is not a directory"):  # a path given: not blamed on the variable
        D.load("solar_hope", path=tmp_path / "file")
    with pytest.raises(FileNotFoundError, match="traffic_detector_counts_15min"):
        D.load("traffic", path=tmp_path / "counts.csv")


def test_bad_traffic_csv(tmp_path):
    src = D.traffic.default_traffic_path()
    with gzip.open(src, "rt") as f:
        lines = f.read().splitlines()
    path = tmp_path / "counts.csv"
    path.write_text("\n".join(lines[:100] + [lines[100].rsplit(",", 1)[0] + ",n/a"] + lines[101:]))
    with pytest.raises(ValueError, match=r"counts\.csv.*non-numeric cell 'n/a' in row 101, column 'd28'"):
        D.load("traffic", path=path)
    path.write_text("\n".join(["time," + lines[0].split(",", 1)[1]] + lines[1:]))
    with pytest.raises(ValueError, match=r"counts\.csv.*missing columns \['timestamp'\]"):
        D.load("traffic", path=path)
    path.write_text("\n".join(lines[:4]))
    with pytest.raises(ValueError, match=r"counts\.csv.*too few rows"):
        D.load("traffic", path=path)
    path.write_text("\n".join(lines[:96 * 3]))
    with pytest.raises(ValueError, match=r"counts\.csv.*too few days"):
        D.load("traffic", path=path)
    path.write_text("\n".join(lines[:50] + [lines[51].split(",", 1)[0] + ",1"] + lines[52:]))
    with pytest.raises(ValueError, match=r"counts\.csv.*row 51 has 2 cells"):
        D.load("traffic", path=path)
    # Two days were filled by a straight line between the counts around them.
    path.write_text("\n".join(lines[:500] + lines[701:]))
    with pytest.raises(ValueError, match=r"counts\.csv: a gap of 201 missing readings after 2024-04-23T05:15:00 UTC"):
        D.load("traffic", path=path)
    path.write_text("\n".join(",".join(line.split(",")[:2]) for line in lines))
    with pytest.raises(ValueError, match=r"counts\.csv: needs at least 2 detector columns, found \['d1'\]"):
        D.load("traffic", path=path)
    path.write_text("\n".join(line.split(",")[0] for line in lines))  # numpy's "need at least one array to stack"
    with pytest.raises(ValueError, match=r"counts\.csv: no value columns besides 'timestamp'"):
        D.load("traffic", path=path)
    path.write_text("\n".join([lines[0].replace(",d2,", ",d1,")] + lines[1:]))
    with pytest.raises(ValueError, match=r"counts\.csv: repeated columns \['d1'\]"):
        D.load("traffic", path=path)
    path.write_text("\ufeff" + "\n".join(lines), encoding="utf-8")  # a byte-order mark is not part of 'timestamp'
    assert torch.equal(D.load("traffic", path=path).X_train, D.load("traffic").X_train)


def test_directories_are_not_reported_as_missing_files(tmp_path):
    # They were: "traffic: no such file ...", "nsrdb: missing files [...]".
    with pytest.raises(ValueError, match=f"traffic: {re.escape(str(tmp_path))} is a directory, not a file"):
        D.load("traffic", path=tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match=r"nsrdb: \[.*/a'\] are directories, not files"):
        D.load("nsrdb", paths=[tmp_path, tmp_path / "a"])
    with pytest.raises(ValueError, match=f"nsrdb: {re.escape(str(tmp_path))} is a directory, not a file"):
        read_psm_csv(tmp_path, "DHI")
    for name in D.solar.HOPE_FILES:
        (tmp_path / name).mkdir()
    with pytest.raises(ValueError, match="solar_hope: hope_melpitz_ghi_1s.csv.gz, hope_melpitz_stations.csv in .* should be files"):
        D.load("solar_hope", path=tmp_path)


def test_column_names_of_a_binary_file_are_cut_short(tmp_path):
    # A binary file read as CSV put its raw bytes, thousands of them, in the message.
    path = tmp_path / "garbage.csv"
    path.write_bytes(b"\x00\x01garbage" * 1000 + b"," * 10 + b"\n" + b"1,2\n" * 10)
    found = r"missing columns ['timestamp']; found ['\x00\x01garbage\x00\x01garbage\x00\x..., '', '', '', '', ... (6 more)]"
    with pytest.raises(ValueError, match=re.escape(found) + "$"):
        D.load("traffic", path=path)


def test_bad_hope_stations_file(tmp_path):
    root = shared_data()
    if root is None:
        pytest.skip("the HOPE-Melpitz files are not available (set IGRAPHFLOW_DATA)")
    ghi, stations = (Path(root) / name for name in D.solar.HOPE_FILES)
    (tmp_path / ghi.name).symlink_to(ghi)
    lines = stations.read_text().splitlines()
    column = lines[0].split(",").index("utm_e")
    broken = lines[1].split(",")
    broken[column] = "nan"
    cases = [
        ("\n".join(lines[:2] + [",".join(broken)] + lines[3:]).encode(), "row 3: utm coordinates must be finite"),
        ("\n".join(lines + [lines[1]]).encode(), f"row {len(lines) + 1}: station 's2' listed twice"),
        ("\n".join(lines).encode("utf-16"), "cannot be read as CSV"),  # a bare UnicodeDecodeError
    ]
    for content, message in cases:
        (tmp_path / stations.name).write_bytes(content)
        with pytest.raises(ValueError, match=f"{stations.name}: {message}"):
            D.load("solar_hope", path=tmp_path)
    (tmp_path / stations.name).write_bytes(b"\xef\xbb\xbf" + stations.read_bytes())  # a byte-order mark
    assert torch.equal(D.load("solar_hope", path=tmp_path).positions, D.load("solar_hope", path=root).positions)


def test_hope_stations_at_one_position_are_refused(tmp_path):
    # The k nearest neighbours of stations at one position are an arbitrary pick among them.
    stamps = [f"2013-09-08 09:15:{second:02d}" for second in range(40)]
    rows = [f"{stamp},{100 + i},{120 + 2 * i},{90 + 3 * (i % 5)}" for i, stamp in enumerate(stamps)]
    (tmp_path / D.solar.HOPE_FILES[0]).write_bytes(gzip.compress("\n".join(["time_utc,s1,s2,s3"] + rows).encode()))
    stations = tmp_path / D.solar.HOPE_FILES[1]
    stations.write_text("station,utm_e,utm_n\ns1,0,0\ns2,10,0\ns3,0,10\n")
    assert D.load("solar_hope", path=tmp_path, resample=2, k=1).num_nodes == 3
    stations.write_text("station,utm_e,utm_n\ns1,0,0\ns2,0,0\ns3,0,0\n")
    with pytest.raises(ValueError, match=f"{stations.name}: row 3: station 's2' has the position of station 's1'"):
        D.load("solar_hope", path=tmp_path, resample=2, k=1)


@pytest.mark.parametrize("name", ["three_node", "graph_moons"])
def test_pickle_roundtrip(name):
    data = D.load(name, num_train=10, num_test=10)
    copy = pickle.loads(pickle.dumps(data))
    assert torch.equal(copy.X_test, data.X_test)
    torch.testing.assert_close(copy.true_log_prob(copy.X_test, copy.Y_test), data.true_log_prob(data.X_test, data.Y_test))


def test_scaler_roundtrip():
    X = torch.randn(50, 4, 3) * 3 + 2
    s = D.Scaler.fit(X)
    assert s.mean.shape == (4, 3)
    torch.testing.assert_close(s.inverse_transform(s.transform(X)), X)
    assert D.Scaler.identity(4, 3).is_identity and not s.is_identity


def test_scaler_standardises_with_the_population_std_and_leaves_constant_columns_unscaled():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(20, 3, 2, generator=g) * 4 + 1
    X[:, 1, 0] = 5.0  # a constant column
    s = D.Scaler.fit(X)
    ref = X.double().numpy()
    std = ref.std(axis=0, ddof=0)  # numpy's population std
    std[1, 0] = 1.0
    np.testing.assert_allclose(s.mean.numpy(), ref.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(s.std.numpy(), std, rtol=1e-5)
    np.testing.assert_allclose(s.transform(X).numpy(), (ref - ref.mean(axis=0)) / std, atol=1e-5)
    Z = torch.randn(4, 3, 2, generator=g)
    np.testing.assert_allclose(s.inverse_transform(Z).numpy(), Z.numpy() * std + ref.mean(axis=0), rtol=1e-5, atol=1e-5)


def test_resample_mean_stamps_bins_from_the_first_time_and_drops_an_incomplete_last_bin():
    times = 1000.0 + np.arange(8.0)
    values = np.stack([np.arange(8.0), np.arange(8.0) ** 2], axis=1)
    t, v = resample_mean(times, values, 3.0)
    # Bins [1000, 1003) and [1003, 1006); the two readings from 1006 make no whole bin.
    assert t.tolist() == [1000.0, 1003.0]
    np.testing.assert_allclose(v, [[1.0, 5.0 / 3.0], [4.0, 50.0 / 3.0]])


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("three_node", dict(num_train=1.5), "num_train must be an integer >= 1, got 1.5"),
        ("three_node", dict(num_test=0), "num_test"),
        ("three_node", dict(num_features=0), "num_features"),  # made signals [N, 3, 0]
        ("chordal", dict(num_nodes=11.5), "num_nodes"),  # made an 11-node graph
        ("graph_moons", dict(num_points=0), "num_points"),
        ("solar_sim", dict(lags=1.5), "lags"),
        ("solar_sim", dict(num_sensors=2.5), "num_sensors"),  # made a 2-sensor network
        ("three_node", dict(seed=-1), "seed must be an integer >= 0"),
        ("three_node", dict(seed=1.5), "seed"),
    ],
)
def test_load_checks_counts_and_seed(name, options, match):
    small = dict(num_train=8, num_test=8) if name != "solar_sim" else dict(num_sensors=4, num_days=1)
    with pytest.raises(ValueError, match=match):
        D.load(name, **(small | options))


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("traffic", dict(path=123), r"path must be a file or directory path \(str or os.PathLike\), got int 123"),
        ("solar_hope", dict(path=["data"]), r"path must be a file or directory path .* got list \['data'\]"),
        ("nsrdb", dict(paths=[1, 2]), r"paths\[0\] must be a file or directory path .* got int 1"),
        ("nsrdb", dict(paths=123), "paths must be a list of files, one per site, got int 123"),
        ("three_moons", dict(weights="abc"), "weights must be three finite non-negative numbers"),
        ("three_moons", dict(weights={"a": 1}), "weights must be three"),
        ("three_moons", dict(weights={1: 0, 2: 0, 3: 0}), "weights must be three"),  # its keys are no weights
        ("three_moons", dict(weights={0.2, 0.3, 0.5}), "weights must be three"),  # a set has no order
        ("three_moons", dict(weights=("0.5", "0.3", "0.2")), "weights must be three"),  # read as numbers
    ],
)
def test_options_of_the_wrong_type_are_named(name, options, match):
    with pytest.raises(ValueError, match=match):
        D.load(name, **options)


def test_load_accepts_integral_floats_and_numpy_integers():
    data = D.load("three_node", num_train=12.0, num_test=np.int64(5), seed=np.int64(3))
    assert (len(data.X_train), len(data.X_test)) == (12, 5)
    torch.testing.assert_close(data.X_train, D.load("three_node", num_train=12, num_test=5, seed=3).X_train)
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load(["three_node"])


MODULES = {"solar_sim": D.solar, "solar_hope": D.solar, "traffic": D.traffic, "nsrdb": D.nsrdb}
BAD_REALS = [
    ("three_moons", dict(noise=0.0)),  # a zero-width moon has no density
    ("three_moons", dict(noise=math.nan)),
    ("three_moons", dict(weights=(0.5, math.nan, 0.2))),
    ("three_node", dict(sigma=-1.0)),
    ("three_node", dict(sigma="0.5")),
    ("three_node", dict(sigma=True)),
    ("three_node", dict(mean_shift=math.inf)),
    ("three_node", dict(asymmetry=math.nan)),
    ("chordal", dict(smoothing=1.0)),
    ("chordal", dict(sigma=0.0)),
    ("linear_gaussian", dict(smoothing=-0.1)),
    ("linear_gaussian", dict(p_one=math.nan)),
    ("linear_gaussian", dict(radius=0.0)),
    ("linear_gaussian", dict(mean_shift=math.nan)),
    ("graph_moons", dict(noise=-1.0)),
    ("graph_moons", dict(radius=math.nan)),
    ("solar_sim", dict(step_seconds=math.nan)),
    ("solar_sim", dict(extent=0.0)),
    ("solar_sim", dict(wind_speed=-1.0)),
    ("solar_sim", dict(ramp_threshold=-5.0)),  # every reading a ramp
    ("solar_sim", dict(test_fraction=1.0)),
    ("solar_sim", dict(noise=math.nan)),
    ("solar_hope", dict(resample=0.0)),
    ("solar_hope", dict(ramp_threshold=math.nan)),
    ("solar_hope", dict(test_fraction=0.0)),
    ("traffic", dict(q=1.0)),
    ("traffic", dict(test_fraction=math.nan)),
    ("nsrdb", dict(ramp_threshold=-1.0)),
    ("nsrdb", dict(test_fraction=1.5)),
]


@pytest.mark.parametrize("name, options", BAD_REALS)
def test_real_options_are_range_checked_by_load_and_by_the_loader(name, options):
    # Checked before any file is read or any sample drawn, whichever way the loader is called.
    (option,) = options
    loader = getattr(MODULES.get(name, D.simulated), name)
    for call in (lambda: D.load(name, **options), lambda: loader(**options)):
        with pytest.raises(ValueError, match=f"{option} must be"):
            call()


def test_loaders_called_directly_check_counts_seed_and_option_names():
    with pytest.raises(ValueError, match="num_train must be an integer >= 1, got 1.5"):
        D.simulated.three_node(num_train=1.5, num_test=8)
    with pytest.raises(ValueError, match="lags must be an integer >= 1, got True"):
        D.solar.solar_sim(lags=True, num_sensors=4, num_days=1)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        D.simulated.linear_gaussian(seed=-1, num_train=8, num_test=8)
    with pytest.raises(TypeError, match="unknown option 'num_trian' for dataset 'three_node'; valid options: "):
        D.simulated.three_node(num_trian=8)
    with pytest.raises(ValueError, match="log1p must be True or False"):  # "no" was read as True
        D.traffic.traffic(log1p="no")


def test_resampling_takes_whole_multiples_of_the_step():
    times, values = np.arange(30.0), np.arange(30.0)[:, None]
    assert len(resample_mean(times, values, 3.0)[0]) == 10
    for interval in (7.5, 0.5):  # every other bin dropped; one reading stamped as half a step
        with pytest.raises(ValueError, match=f"resample interval {interval:g} s must be a whole multiple of the readings' step 1 s"):
            resample_mean(times, values, interval)
    # One stray stamp half a step off made 0.5 s the step: no bin held 6 readings, none was kept.
    stray = times.copy()
    stray[13] += 0.5
    t, v = resample_mean(stray, values, 3.0)
    assert t.tolist() == resample_mean(times, values, 3.0)[0].tolist() and np.allclose(v, np.arange(1.0, 30.0, 3.0)[:, None])
    data = D.simulated.linear_gaussian(num_nodes=np.int64(5), num_train=8.0, num_test=8, p_one=np.float32(0.25), radius=None)
    assert data.num_nodes == 5 and len(data.X_train) == 8 and "Bernoulli(0.25)" in data.label_rule


def test_series_are_standardised_before_they_are_cast_to_float32():
    # Cast first, a series offset by 1e8 kept 2 distinct values of 137, and a reading of 1e39
    # became infinite without a word.
    g = np.random.default_rng(0)
    counts = g.integers(0, 200, size=(400, 3)).astype(np.float64)
    labels, times = np.zeros((400, 3), dtype=np.int64), np.arange(400) * 60.0
    plain, shifted = (series_samples(c, labels, times, lags=2, horizon=0, test_fraction=0.25)
                      for c in (counts, counts + np.array([0.0, 1e8, 0.0])))
    assert torch.unique(shifted["X_train"][:, 1, 0]).numel() == torch.unique(plain["X_train"][:, 1, 0]).numel() > 150
    torch.testing.assert_close(shifted["X_train"], plain["X_train"], atol=1e-3, rtol=0)
    huge = counts.copy()
    huge[10, 0] = 1e39
    assert torch.isfinite(series_samples(huge, labels, times, lags=2, horizon=0, test_fraction=0.25)["X_train"]).all()
    with pytest.raises(ValueError, match="the standardised test signals exceed float32"):
        huge[390, 0] = 1e300
        series_samples(huge, labels, times, lags=2, horizon=0, test_fraction=0.25, source="counts")


def test_a_stray_traffic_stamp_is_named_not_regridded(tmp_path):
    # One reading 5 minutes after a quarter hour made 5 minutes the step: the series was
    # regridded, thousands of readings invented, and counts summed three to one.
    with gzip.open(D.traffic.default_traffic_path(), "rt") as f:
        lines = f.read().splitlines()
    stamp, counts = lines[200].split(",", 1)
    stray = f"{datetime.fromisoformat(stamp) + timedelta(minutes=5)},{counts}"
    path = tmp_path / "stray.csv"
    path.write_text("\n".join(lines[:201] + [stray] + lines[201:]) + "\n")
    near = rf"the readings at {datetime.fromisoformat(stamp).isoformat()} and .* UTC are 300 s apart, less than the most common step of 900 s"
    with pytest.raises(ValueError, match=rf"stray\.csv: {near}"):
        D.load("traffic", path=path)
    path.write_text("\n".join(lines[:1] + [stray] + lines[201:]) + "\n")  # the stray one first: named, not its successor
    with pytest.raises(ValueError, match=rf"the readings at {stray.split(',')[0].replace(' ', 'T')} and"):
        D.load("traffic", path=path)
    # Every other reading missing over most of the series: 30 min is the most common difference.
    path.write_text("\n".join(lines[:1] + lines[1:2000:2] + lines[2000:]) + "\n")
    with pytest.raises(ValueError, match="900 s apart, less than the most common step of 1800 s"):
        D.load("traffic", path=path)


def test_the_traffic_attribution_goes_with_its_file_only(tmp_path):
    assert "Shawn Strasser" in D.load("traffic").provenance
    with gzip.open(D.traffic.default_traffic_path(), "rt") as f:
        (tmp_path / "counts.csv").write_text(f.read())
    assert "Shawn Strasser" not in D.load("traffic", path=tmp_path / "counts.csv").provenance


def test_none_is_refused_where_the_default_is_a_number():
    # None passed every range check, then failed inside the loader with a TypeError.
    for name, option in (("solar_sim", "noise"), ("traffic", "q"), ("three_moons", "noise")):
        with pytest.raises(ValueError, match=f"{option} must be a finite number .*got None"):
            D.load(name, **{option: None})
    assert D.load("chordal", num_nodes=11, num_train=4, num_test=4, seed=0).num_nodes == 11


def test_chordal_needs_a_prime():
    with pytest.raises(ValueError, match="num_nodes must be a prime of at least 3, got 15"):
        D.load("chordal", num_nodes=15, num_train=4, num_test=4)


def test_a_dataset_refuses_an_asymmetric_graph_self_loops_and_labels_out_of_range():
    X, Y = torch.zeros(4, 3, 1), torch.zeros(4, 3, dtype=torch.long)
    path = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    D.GraphDataset(X, X, Y, Y, edge_index=path, num_classes=2, name="ok")
    for edge_index in (torch.tensor([[0, 1], [1, 2]]), torch.cat([path, torch.tensor([[0], [0]])], 1)):
        with pytest.raises(ValueError, match="symmetric .* without self loops"):
            D.GraphDataset(X, X, Y, Y, edge_index=edge_index, num_classes=2, name="bad")
    with pytest.raises(ValueError, match=r"Y_train holds labels outside 0\.\.1"):
        D.GraphDataset(X, X, Y + 5, Y, edge_index=path, num_classes=2, name="bad")


def test_csv_errors_name_the_line_in_the_file(tmp_path):
    # Rows were counted from the data: off by every skipped and blank line before them.
    from igraphflow.datasets._base import read_numeric_csv

    path = tmp_path / "values.csv"
    path.write_text("# a preamble\n# of two lines\nt,a,b\n2024-01-01 00:00,1,2\n\n\n2024-01-01 00:15,1,x\n")
    with pytest.raises(ValueError, match=r"non-numeric cell 'x' in row 7, column 'b'"):
        read_numeric_csv(path, time_column="t", skip_lines=2)
    path.write_text("t,a,b\n2024-01-01 00:00,1,2\n\n2024-01-01 00:15,1\n")
    with pytest.raises(ValueError, match="row 4 has 2 cells"):
        read_numeric_csv(path, time_column="t")
    path.write_text("t,a,b\n\n2024-01-01 00:00,1,2\nnot a time,1,2\n")
    with pytest.raises(ValueError, match="row 4: cannot parse the time stamp 'not a time'"):
        read_numeric_csv(path, time_column="t")


def test_counts_and_reals_refuse_one_element_arrays_alike():
    from igraphflow._checks import as_count, as_real

    for value in (torch.tensor([3]), np.array([3])):
        with pytest.raises(ValueError, match="num_nodes must be an integer"):
            as_count(value, "num_nodes")
        with pytest.raises(ValueError, match="noise must be a finite number"):
            as_real(value, "noise", "(0, inf)")
    assert as_count(torch.tensor(3), "num_nodes") == as_count(np.array(3), "num_nodes") == 3


def test_a_change_of_exactly_the_threshold_is_no_ramp():
    # The rule is |g(t + h) - g(t)| > threshold, strictly.
    g = np.array([[0.0, 0.0], [50.0, -50.5], [100.0, 0.0], [100.0, 0.0]])
    assert ramp_labels(g, 1, 50.0).tolist() == [[0, 1], [0, 1], [0, 0], [0, 0]]
    assert ramp_labels(g, 2, 100.0)[:, 0].tolist() == [0, 0, 0, 0]


def test_a_stray_stamp_closer_than_the_step_breaks_the_windows():
    # 3.4 lies between 3 and 4: neither 3 -> 3.4 nor 3.4 -> 4 is a regular step.
    times = np.array([0.0, 1.0, 2.0, 3.0, 3.4, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0])
    train, test = chronological_windows(times, lags=2, horizon=1, test_fraction=0.3, step=1.0)
    ends = np.concatenate([train, test])
    assert len(train) > 0 and len(test) > 0
    for t in ends:  # the readings t-1 .. t+1 of each window are one step apart
        assert np.allclose(np.diff(times[t - 1 : t + 2]), 1.0), times[t - 1 : t + 2]
    assert not np.isin([3, 4, 5], ends).any()  # the windows that would span 3.4
    assert np.isin([1, 2, 6], ends).all()


def test_anomaly_reference_is_the_quantile_of_earlier_days_only():
    # One reading a day: a reading is anomalous when above the q-quantile of the readings of
    # strictly earlier days; counting the day itself raised the reference.
    rng = np.random.default_rng(0)
    days, q, min_history = 15, 0.7, 3
    counts = rng.normal(20.0, 3.0, size=(days, 4))
    labels, defined = anomaly_labels(86400.0 * np.arange(days), counts, q, min_history)
    assert defined.tolist() == [False] * min_history + [True] * (days - min_history)
    expected = np.zeros_like(labels)
    for d in range(min_history, days):
        expected[d] = counts[d] > np.nanquantile(counts[:d], q, axis=0)
    assert np.array_equal(labels, expected) and expected.sum() > 0
    # by hand: the median of 0 and 10 is 5, so 6 is above it; with 6 itself the median would be 6
    labels, _ = anomaly_labels(86400.0 * np.arange(3), np.array([[0.0], [10.0], [6.0]]), 0.5, 2)
    assert labels[:, 0].tolist() == [0, 0, 1]


def test_windows_of_one_reading_and_no_horizon_fall_on_one_side_of_the_split_only():
    tr, te = chronological_windows(np.arange(10.0), lags=1, horizon=0, test_fraction=0.3)
    assert tr.tolist() == list(range(7)) and te.tolist() == [7, 8, 9]


def test_knn_graph_joins_every_node_to_its_k_nearest():
    # Against the brute-force neighbours of a distance matrix, by positions (KD tree) and by distances.
    rng = np.random.default_rng(3)
    pos = rng.random((15, 2))
    dist = np.sqrt(((pos[:, None] - pos[None]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    nearest = np.argsort(dist, axis=1)[:, :3]
    for edges in (knn_graph(3, positions=pos), knn_graph(3, distances=np.where(np.isinf(dist), 0.0, dist))):
        pairs = set(map(tuple, edges.T.tolist()))
        assert all((i, int(j)) in pairs for i in range(15) for j in nearest[i])
    line = knn_graph(1, distances=np.abs(np.subtract.outer(np.arange(4.0), np.arange(4.0))))
    assert set(map(tuple, line.T.tolist())) == {(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2)}


@pytest.mark.parametrize("name", ["linear_gaussian", "graph_moons"])
def test_p_one_is_the_share_of_label_one(name):
    data = D.load(name, p_one=0.2, num_train=2000, num_test=100)
    assert data.Y_train.float().mean().item() == pytest.approx(0.2, abs=0.02)
    balance = data.label_balance()
    assert balance.sum().item() == pytest.approx(1.0) and balance[1].item() == pytest.approx(data.Y_train.double().mean().item())


def test_solar_sim_positions_are_centred_and_noise_sets_the_measurement_noise():
    quiet = D.load("solar_sim", num_days=1, step_seconds=60.0, noise=0.001)
    noisy = D.load("solar_sim", num_days=1, step_seconds=60.0, noise=30.0)
    assert quiet.positions.mean(0).abs().max() < 1e-3
    # The same seed draws the same clouds: the readings differ by the noise alone, away from the clip at 0.
    a, b = (d.scaler.inverse_transform(d.X_train) for d in (quiet, noisy))
    bright = a > 200
    assert (b - a)[bright].std().item() == pytest.approx(30.0, rel=0.1)


def test_traffic_features_are_log1p_of_the_counts():
    counts, logs = D.load("traffic", log1p=False), D.load("traffic")
    raw, logged = counts.scaler.inverse_transform(counts.X_train), logs.scaler.inverse_transform(logs.X_train)
    torch.testing.assert_close(logged, torch.log1p(raw), atol=1e-4, rtol=1e-5)
    assert (raw.abs() < 1e-5).float().mean() > 0.05  # zero counts are there, and log1p keeps them finite


def test_fill_grid_fills_gaps_of_at_most_max_missing_readings():
    for missing in (MAX_MISSING, MAX_MISSING + 1):
        times = np.concatenate([[0.0], (missing + 1 + np.arange(3)) * 900.0])
        values = times[:, None] / 900.0
        if missing > MAX_MISSING:
            with pytest.raises(ValueError, match=f"a gap of {missing} missing readings"):
                fill_grid(times, values, 900.0)
        else:
            grid, filled, count = fill_grid(times, values, 900.0)
            assert count == missing and filled[:, 0].tolist() == list(range(len(grid)))


def test_nsrdb_keeps_readings_where_any_site_has_daylight_and_measures_longitude_at_its_latitude(tmp_path):
    # Site a is shaded in the morning (0 until noon) while site b reads light from 06:00.
    paths = []
    for name, lon, start in (("a", 10.0, 12), ("b", 11.0, 6)):
        lines = ["Source,Location ID,Latitude,Longitude", f"NSRDB,{name},60.0,{lon}", "Year,Month,Day,Hour,Minute,DHI"]
        lines += [f"2020,6,{day},{hour},{minute},{(100 + 10 * hour + minute) if start <= hour < 18 else 0}"
                  for day in (1, 2, 3) for hour in range(24) for minute in (0, 30)]
        paths.append(tmp_path / f"{name}.csv")
        paths[-1].write_text("\n".join(lines) + "\n")
    data = D.load("nsrdb", paths=paths, k=1)
    raw = torch.cat([data.scaler.inverse_transform(x) for x in (data.X_train, data.X_test)])
    assert ((raw[:, 0, -1].abs() < 1e-3) & (raw[:, 1, -1] > 1)).any()
    assert (raw.abs().sum((1, 2)) > 0).all()  # the night, dark at both, is left out
    # One degree of longitude at 60 degrees north: 6371 km * pi / 180 * cos(60 degrees).
    assert float(data.positions[1, 0] - data.positions[0, 0]) == pytest.approx(6371 * math.pi / 180 * 0.5, rel=1e-4)
