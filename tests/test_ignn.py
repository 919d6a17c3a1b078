r"""Tests of the discrete-time iGNN baseline: invertibility, log-determinants, interface."""

import math
import warnings

import numpy as np
import pytest
import torch

from igraphflow.baselines import IGNNBaseline
from igraphflow.baselines.ignn import ContractiveGraphConv, IGNNNet, LipSwish, ResidualGraphBlock
from igraphflow.nn import make_conv

torch.set_num_threads(1)

V, C, K = 3, 2, 2
EDGES = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    Y = torch.randint(K, (n, V), generator=g)
    X = torch.randn(n, V, C, generator=g, dtype=torch.float64) + 2.0 * Y[..., None]
    return X, Y


def _fitted(**kw):
    X, Y = _data()
    settings = dict(blocks=2, hidden=8, seed=0, dtype=torch.float64, **kw)
    return IGNNBaseline(EDGES, V, C, K, **settings).fit(X, Y, max_epochs=2, progress=False), X, Y


@pytest.mark.parametrize("conv", ["l3net", "cheb"])
def test_inverse_of_forward(conv):
    model, X, _ = _fitted(conv=conv, tol=1e-12)
    net = model.model_
    with torch.no_grad():
        h, _ = net(X)
    assert (h - X).abs().max() > 1e-3  # the map is not the identity
    assert torch.allclose(net.inverse(h, tol=1e-12, max_iter=500), X, atol=1e-9)


def test_residuals_are_contractive():
    model, X, _ = _fitted(lipschitz=0.7)
    block = model.model_.blocks[0]
    a, b = X[:32], X[32:]
    with torch.no_grad():
        ratio = (block.residual(a) - block.residual(b)).flatten(1).norm(dim=1) / (a - b).flatten(1).norm(dim=1)
    assert ratio.max() < 0.7 + 1e-6


def test_contractive_conv_has_unit_norm():
    torch.manual_seed(0)
    layer = ContractiveGraphConv(make_conv("l3net", C, 4, EDGES, V, (0, 1, 2)), V, C, 4, init_iterations=100)
    layer = layer.double().eval()
    lin = lambda x: layer(x) - layer.conv.bias  # noqa: E731
    matrix = torch.autograd.functional.jacobian(lin, torch.zeros(1, V, C, dtype=torch.float64))
    assert torch.linalg.matrix_norm(matrix.reshape(V * 4, V * C), ord=2).item() == pytest.approx(1.0, abs=1e-6)


def test_exact_logdet_matches_autograd_jacobian():
    model, X, _ = _fitted()
    net = model.model_
    x = X[:5]
    _, _, logdet = net.logdet_exact(x)
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(lambda z: net(z.reshape(1, V, C))[0].flatten(), x[i].flatten())
        assert logdet[i].item() == pytest.approx(torch.linalg.slogdet(jac).logabsdet.item(), abs=1e-9)


def test_series_estimate_is_close_to_exact():
    model, X, _ = _fitted(lipschitz=0.5)
    net = model.model_
    x = X[:1]
    exact = net.logdet_exact(x)[2].item()
    torch.manual_seed(1)
    estimate = net.logdet_series(x.expand(4000, V, C), terms=20)[2].mean().item()
    assert estimate == pytest.approx(exact, abs=0.05)


def test_series_estimate_is_the_truncated_series_of_a_linear_residual():
    # g(x) = A x with eigenvalues 0.3-0.8: every term of sum_k (-1)^(k+1) tr(A^k) / k counts, and
    # the estimate averages to the series cut at `terms`, which at 40 terms is log det(I + A).
    g = torch.Generator().manual_seed(4)
    Q = torch.linalg.qr(torch.randn(V * C, V * C, generator=g, dtype=torch.float64)).Q
    A = Q @ torch.diag(torch.linspace(0.3, 0.8, V * C, dtype=torch.float64)) @ Q.T
    block = torch.nn.Module()
    block.residual = lambda x: (x.flatten(1) @ A.T).view_as(x)
    net = torch.nn.Module()
    net.blocks = [block]
    x = torch.randn(20000, V, C, generator=g, dtype=torch.float64)
    for terms, probes in ((3, 1), (5, 2)):
        series = sum((-1) ** (k + 1) * torch.linalg.matrix_power(A, k).trace() / k for k in range(1, terms + 1))
        h, _, estimate = IGNNNet.logdet_series(net, x, terms=terms, probes=probes, generator=g)
        assert estimate.mean().item() == pytest.approx(series.item(), abs=0.03)
        assert torch.allclose(h, x + block.residual(x))
    exact = torch.linalg.slogdet(torch.eye(V * C, dtype=torch.float64) + A).logabsdet
    estimate = IGNNNet.logdet_series(net, x, terms=40, generator=g)[2].mean()
    assert estimate.item() == pytest.approx(exact.item(), abs=0.05)


def test_log_prob_series_agrees_with_exact():
    model, X, Y = _fitted(lipschitz=0.5, series_terms=20)
    exact = model.log_prob(X[:8], Y[:8], exact=True)
    copies = 120  # one batch of log_prob: every copy gets its own probe
    series = model.log_prob(X[:8].repeat(copies, 1, 1), Y[:8].repeat(copies, 1), exact=False)
    series = series.reshape(copies, 8).mean(0)
    assert exact.shape == (8,) and torch.isfinite(exact).all()
    assert torch.allclose(series, exact, atol=0.1)


def test_log_prob_takes_the_estimator_asked_for_whatever_the_training_rule():
    # exact= was ignored unless logdet="auto".
    model, X, Y = _fitted(logdet="series")
    exact, estimate = model.log_prob(X[:8], Y[:8], exact=True), model.log_prob(X[:8], Y[:8], exact=False)
    assert torch.equal(estimate, model.log_prob(X[:8], Y[:8]))
    model.logdet = "exact"
    assert torch.equal(exact, model.log_prob(X[:8], Y[:8])) and not torch.allclose(exact, estimate)


def test_means_are_kept_at_the_minimum_separation():
    # Labels that say nothing of the signals pull the means together. Without the projection a
    # large step carried them closer than `separation`, where the barrier is NaN, and training
    # stopped on a non-finite loss at epoch 9.
    g = torch.Generator().manual_seed(0)
    Y = torch.randint(K, (64, V), generator=g)
    X = torch.randn(64, V, C, generator=g, dtype=torch.float64)
    model = IGNNBaseline(EDGES, V, C, K, blocks=2, hidden=8, seed=0, dtype=torch.float64, separation=1.5, lr=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(X, Y, max_epochs=30, validation=0.0, progress=False)
    latent = model.model_.latent
    assert latent.pairwise_distances().min().item() >= latent.min_distance - 1e-6
    losses = [epoch["train_loss"] for epoch in model.history_[1:]]  # the first row: before training
    assert len(losses) == 30 and all(math.isfinite(loss) for loss in losses)


def test_series_training_is_reproducible_and_log_prob_keeps_the_global_random_state():
    # D = 9 * 2 > exact_max_dim: training estimates the log-determinant with random probes.
    nodes = torch.arange(8)
    path = torch.stack([torch.cat([nodes, nodes + 1]), torch.cat([nodes + 1, nodes])])
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(64, 9, 2, generator=g), torch.randint(3, (64, 9), generator=g)

    def fit():
        return IGNNBaseline(path, 9, 2, 3, blocks=1, hidden=4, seed=0).fit(X, Y, max_epochs=2, progress=False)

    first, second = fit().model_.state_dict(), fit().model_.state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
    model = fit()
    state = torch.random.get_rng_state()
    estimate = model.log_prob(X[:4], Y[:4], exact=False)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(model.log_prob(X[:4], Y[:4], exact=False), estimate)


def test_shapes_and_interface():
    X, Y = _data()
    model = IGNNBaseline(EDGES, V, C, K, blocks=2, hidden=8, seed=0)
    assert repr(model).startswith("IGNNBaseline(num_nodes=3")
    assert model.fit(X.float(), Y, max_epochs=2, progress=False) is model
    assert len(model.history_) == 3
    assert model.sample(Y[:7]).shape == (7, V, C)
    assert torch.equal(model.sample(Y[:7]), model.sample(Y[:7]))  # seeded
    proba = model.predict_proba(X[:7])
    assert proba.shape == (7, V, K) and torch.allclose(proba.sum(-1), torch.ones(7, V))
    assert model.predict(X[:7]).shape == (7, V)
    assert model.encode(X[:7]).shape == (7, V, C)


def test_series_training_runs():
    model, X, Y = _fitted(logdet="series", series_terms=3)
    assert torch.isfinite(model.log_prob(X[:4], Y[:4])).all()
    assert all(torch.isfinite(torch.tensor(h["val_loss"])) for h in model.history_)


def test_bad_inputs():
    with pytest.raises(ValueError, match="lipschitz"):
        IGNNBaseline(EDGES, V, C, K, lipschitz=1.0)
    with pytest.raises(ValueError, match="logdet"):
        IGNNBaseline(EDGES, V, C, K, logdet="magic")
    with pytest.raises(ValueError, match="blocks"):
        IGNNBaseline(EDGES, V, C, K, blocks=0)
    with pytest.raises(ValueError, match="edge_index"):
        IGNNBaseline(torch.tensor([[0, 5], [5, 0]]), V, C, K)
    model = IGNNBaseline(EDGES, V, C, K, blocks=1, hidden=4)
    X, Y = _data(8)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.sample(Y)
    with pytest.raises(ValueError, match="X must have shape"):
        model.fit(X[:, :2], Y, max_epochs=1, progress=False)
    with pytest.raises(ValueError, match="labels in"):
        model.fit(X, Y + 5, max_epochs=1, progress=False)
    model.fit(X, Y, max_epochs=1, progress=False)
    with pytest.raises(ValueError, match="X must have shape"):
        model.predict(X[:, :, :1])
    with pytest.raises(ValueError, match="exact must be True or False, got 'no'"):
        model.log_prob(X, Y, exact="no")


def test_exact_logdet_in_chunks_matches_one_sample_at_a_time():
    model, X, _ = _fitted()
    net = model.model_
    x = X[: 4096 // X[0].numel() + 7]  # more copies than one chunk holds
    h, cost, logdet = net.logdet_exact(x)
    singles = [net.logdet_exact(xi.unsqueeze(0)) for xi in x[:3]]
    assert h.shape == x.shape and cost.shape == logdet.shape == (len(x),)
    assert torch.allclose(logdet[:3], torch.cat([s[2] for s in singles]))
    assert torch.allclose(h[:3], torch.cat([s[0] for s in singles]))


def test_counts_go_through_as_count():
    # blocks=np.int64(2) was refused, exact_max_dim=2.5 truncated to 2 and series_terms=True read as 1.
    model = IGNNBaseline(EDGES, V, C, K, blocks=np.int64(2), exact_max_dim=4.0)
    assert (model.blocks, model.exact_max_dim) == (2, 4) and type(model.blocks) is int
    for name, value in (("blocks", True), ("exact_max_dim", 2.5), ("eval_exact_max_dim", -1), ("series_terms", True),
                        ("max_iter", 0), ("orders", (0, 1.5))):
        with pytest.raises(ValueError, match=f"{name} must be an integer"):
            IGNNBaseline(EDGES, V, C, K, **{name: value})


@pytest.mark.parametrize("conv", ["l3net", "cheb", "gcn"])
def test_network_moves_to_another_device_after_construction(conv):
    # The power iterations at construction left a GCN's normalised graph on the CPU, where
    # moving the network did not reach it: no GCN model could be fitted on a GPU.
    net = IGNNBaseline(EDGES, V, C, K, blocks=2, hidden=8, conv=conv, seed=0)._build().to("meta")
    h, cost = net(torch.randn(4, V, C, device="meta"))
    assert h.device.type == cost.device.type == "meta" and h.shape == (4, V, C)


def test_transport_cost_is_the_squared_length_of_every_residual_step():
    model, X, _ = _fitted()
    net = model.model_
    x = X[:6]
    with torch.no_grad():
        h, cost = net(x)
        z, expected = x, torch.zeros(len(x), dtype=x.dtype)
        for block in net.blocks:  # sum_l ||g_l(x_l)||^2, one block at a time
            step = block.residual(z)
            expected = expected + (step**2).sum((1, 2))
            z = z + step
    assert torch.allclose(h, z, atol=1e-12)
    assert (expected > 0).all() and torch.allclose(cost, expected, rtol=1e-10, atol=1e-14)


def test_training_objective_is_log_likelihood_minus_transport_and_barrier():
    # The loss fit minimises: -(log N(F(x); mu_Y, sigma^2) + log|det J_F| - gamma cost - w_b barrier).
    gamma, w_b = 0.7, 0.3
    model, X, Y = _fitted(gamma=gamma, barrier_weight=w_b, sigma=0.8)
    net = model.model_
    x, y = X[:4], Y[:4]
    net.train()  # the penalties enter in training mode (one power step here; the reference reuses it)
    objective = model._log_prob_std(x.flatten(1), y).detach()
    net.eval()
    sigma, means = net.latent.sigma, net.latent.means.detach()
    expected = []
    for i in range(len(x)):
        def forward(z):
            return net(z.reshape(1, V, C))[0].flatten()

        with torch.no_grad():
            z, cost = x[i : i + 1], 0.0
            for block in net.blocks:
                step = block.residual(z)
                cost += step.square().sum().item()
                z = z + step
        jac = torch.autograd.functional.jacobian(forward, x[i].flatten())
        logdet = torch.linalg.slogdet(jac).logabsdet.item()
        latent = torch.distributions.Normal(means[y[i]], sigma).log_prob(z[0]).sum().item()
        expected.append(latent + logdet - gamma * cost)
    barrier = -torch.log(torch.pdist(means) / sigma).sum().item()  # separation 0: -sum log(|mu_i - mu_j| / sigma)
    expected = torch.tensor(expected, dtype=x.dtype) - w_b * barrier
    assert torch.allclose(objective, expected, atol=1e-8)


def test_auto_trains_exactly_up_to_and_including_exact_max_dim(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the series estimate was used")

    monkeypatch.setattr(IGNNNet, "logdet_series", refuse)
    X, Y = _data(16)
    model = IGNNBaseline(EDGES, V, C, K, blocks=1, hidden=4, seed=0, exact_max_dim=V * C)  # D == exact_max_dim
    model.fit(X, Y, max_epochs=1, progress=False)
    assert torch.isfinite(model.log_prob(X[:2], Y[:2])).all()


@pytest.mark.parametrize("beta", [0.1, 0.5, 1.0, 3.0, 20.0])
def test_lipswish_is_one_lipschitz(beta):
    # max_x d/dx [x sigmoid(beta x)] is about 1.0998 for every beta: the 1/1.1 brings it under 1.
    act = LipSwish().double()
    with torch.no_grad():
        act.raw_beta.fill_(math.log(math.expm1(beta)))  # softplus(raw_beta) = beta
    x = torch.linspace(-60.0, 60.0, 240001, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(act(x).sum(), x)
    assert 0.99 < slope.abs().max().item() <= 1.0


def test_samples_spread_around_the_class_means_with_latent_sigma():
    model, _, _ = _fitted(sigma=0.3, tol=1e-10)
    Y = torch.randint(K, (500, V), generator=torch.Generator().manual_seed(3))
    H = model.encode(model.sample(Y))  # back to the latent: means[Y] + sigma * standard noise
    residual = H - model.model_.latent.means.detach()[Y]
    assert residual.std().item() == pytest.approx(0.3, rel=0.05)
    assert residual.mean().abs().item() < 0.03


def test_contractive_conv_adds_its_bias_back():
    # The operator norm is taken of conv(x) - b: the output is A x / sigma + b, so b still counts.
    layer = ContractiveGraphConv(make_conv("l3net", C, 3, EDGES, V, (0, 1)), V, C, 3)
    with torch.no_grad():
        layer.conv.bias.fill_(0.3)
    torch.testing.assert_close(layer(torch.zeros(1, V, C)), torch.full((1, V, 3), 0.3))


def test_the_residual_scales_with_its_lipschitz_bound():
    blocks = []
    for lipschitz in (0.25, 0.5):
        torch.manual_seed(0)
        blocks.append(ResidualGraphBlock(EDGES, V, C, 8, "l3net", (0, 1), lipschitz).eval())
    x = torch.randn(16, V, C)
    with torch.no_grad():
        torch.testing.assert_close(blocks[1].residual(x), 2 * blocks[0].residual(x))


def test_log_prob_is_exact_up_to_eval_exact_max_dim_whatever_the_training_rule():
    # D = 6 trains with the series (exact_max_dim=4) and is evaluated exactly (eval_exact_max_dim=6).
    model, X, Y = _fitted(exact_max_dim=4, eval_exact_max_dim=6)
    assert torch.equal(model.log_prob(X[:8], Y[:8]), model.log_prob(X[:8], Y[:8], exact=True))
    model.eval_exact_max_dim = 5
    assert torch.equal(model.log_prob(X[:8], Y[:8]), model.log_prob(X[:8], Y[:8], exact=False))


def test_the_class_prior_is_the_label_frequencies_of_all_the_signals():
    X, _ = _data(n=64)
    Y = (torch.rand(64, V, generator=torch.Generator().manual_seed(1)) < 0.15).long()  # 15 % of class 1
    model = IGNNBaseline(EDGES, V, C, K, blocks=1, hidden=8, seed=0, dtype=torch.float64).fit(X, Y, max_epochs=1, progress=False)
    counts = torch.bincount(Y.flatten(), minlength=K).double() + 1
    torch.testing.assert_close(model.model_.latent.log_prior.exp().double(), counts / counts.sum())


def test_the_inverse_at_its_default_tolerance_recovers_the_signals():
    model, X, _ = _fitted()
    net = model.model_
    with torch.no_grad():
        assert (net.inverse(net(X)[0]) - X).abs().max() < 1e-7
