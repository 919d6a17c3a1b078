import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.linear_model import LogisticRegression
from torch import nn

from igraphflow import separability
from igraphflow.separability import REFERENCE_SEPARATION, fit_softmax, linear_separability, separation_of_accuracy

NO_EDGES = torch.empty(2, 0, dtype=torch.long)


@pytest.mark.parametrize("distance", [0.5, 2.0, 5.0])
def test_separation_of_accuracy_inverts_the_bayes_accuracy(distance):
    # Two unit-variance Gaussians `distance` apart, equal priors: the Bayes rule is right with
    # probability Phi(distance / 2).
    assert separation_of_accuracy(norm.cdf(distance / 2)) == pytest.approx(distance)


def test_separation_of_accuracy_at_chance_and_certainty():
    assert separation_of_accuracy(0.5) == 0.0 and separation_of_accuracy(0.3) == 0.0
    assert math.isfinite(separation_of_accuracy(1.0))
    assert REFERENCE_SEPARATION == pytest.approx(2 * norm.ppf(0.9999))


def test_fit_softmax_matches_scikit_learn():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(600, 3, generator=g, dtype=torch.float64)
    targets = (features @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + torch.randn(600, generator=g, dtype=torch.float64) > 0).long()
    layer = nn.Linear(3, 2).double()
    fit_softmax(layer, features, targets, weight_decay=0.0)
    reference = LogisticRegression(C=1e12, tol=1e-10, max_iter=10_000).fit(features.numpy(), targets.numpy())
    # A two-class softmax layer is logistic regression on the difference of its two rows.
    weight = (layer.weight[1] - layer.weight[0]).detach().numpy()
    bias = (layer.bias[1] - layer.bias[0]).item()
    assert weight == pytest.approx(reference.coef_[0], abs=1e-3)
    assert bias == pytest.approx(reference.intercept_[0], abs=1e-3)


@pytest.mark.parametrize("offset, scale", [(300.0, 1.0), (1000.0, 200.0), (0.0, 1e-4)])
def test_fit_softmax_is_the_same_fit_in_any_units(offset, scale):
    # float32 L-BFGS on raw features 300 away from zero stayed at chance (cross-entropy log 2).
    g = torch.Generator().manual_seed(1)
    features = torch.randn(800, 2, generator=g)
    targets = (features[:, 0] - features[:, 1] + 0.3 * torch.randn(800, generator=g) > 0).long()
    torch.manual_seed(0)
    reference = fit_softmax(nn.Linear(2, 2), features, targets)
    torch.manual_seed(0)
    moved = offset + scale * features
    layer = fit_softmax(nn.Linear(2, 2), moved, targets)
    assert torch.allclose(layer(moved).log_softmax(-1), reference(features).log_softmax(-1), atol=2e-3)
    assert (layer(moved).argmax(-1) == targets).float().mean() > 0.9


def test_fit_softmax_weight_decay_is_on_the_weights_of_the_standardised_features():
    # scikit-learn's C * sum(losses) + |W|^2 / 2 is the mean loss + weight_decay * |W|^2 for
    # C = 1 / (2 n weight_decay); the features standardised by hand as in the test below.
    g = torch.Generator().manual_seed(5)
    n, weight_decay = 301, 0.05
    raw = torch.randn(n, 2, generator=g, dtype=torch.float64)
    mixing = torch.tensor([[2.0, -1.0, 0.0], [0.5, 1.5, -1.0]], dtype=torch.float64)
    targets = (raw @ mixing + torch.randn(n, 3, generator=g, dtype=torch.float64)).argmax(-1)
    features = raw * torch.tensor([100.0, 0.01], dtype=torch.float64) + torch.tensor([50.0, -3.0], dtype=torch.float64)
    layer = fit_softmax(nn.Linear(2, 3).double(), features, targets, weight_decay=weight_decay)
    array = features.numpy()
    quartiles = np.quantile(array, [0.25, 0.75], axis=0, method="inverted_cdf")
    standardised = (array - np.median(array, axis=0)) / ((quartiles[1] - quartiles[0]) / (norm.ppf(0.75) - norm.ppf(0.25)))
    reference = LogisticRegression(C=1 / (2 * n * weight_decay), tol=1e-10, max_iter=10_000).fit(standardised, targets.numpy())
    log_probs = layer(features).log_softmax(-1).detach().numpy()
    assert log_probs == pytest.approx(reference.predict_log_proba(standardised), abs=1e-3)


def test_fit_softmax_starts_from_the_layer_as_it_is():
    # A fitted layer is already at the optimum: one more step leaves it there, in any units.
    g = torch.Generator().manual_seed(1)
    features = torch.randn(400, 2, generator=g, dtype=torch.float64)
    targets = (features[:, 0] - features[:, 1] + 0.5 * torch.randn(400, generator=g, dtype=torch.float64) > 0).long()
    features = 300.0 + 50.0 * features
    layer = fit_softmax(nn.Linear(2, 2).double(), features, targets)
    fitted = layer(features).log_softmax(-1).detach()
    fit_softmax(layer, features, targets, max_iter=1)
    torch.testing.assert_close(layer(features).log_softmax(-1).detach(), fitted)


def test_fit_softmax_is_not_thrown_by_one_extreme_signal():
    # Scaled by the standard deviation, the one row at 1e4 shrank the others to about 1e-3 and
    # the weight decay kept the layer at one class for all of them.
    g = torch.Generator().manual_seed(3)
    targets = torch.randint(0, 2, (200,), generator=g)
    features = 2.0 * targets[:, None] + torch.randn(200, 2, generator=g)
    features[0], targets[0] = 1e4, 1  # on the side of its class
    layer = fit_softmax(nn.Linear(2, 2), features, targets)
    assert (layer(features[1:]).argmax(-1) == targets[1:]).float().mean() > 0.8


def test_features_are_standardised_by_median_and_interquartile_range():
    from igraphflow.separability import _robust_centre_and_scale

    g = torch.Generator().manual_seed(4)
    gaussian = torch.randn(101, 2, generator=g, dtype=torch.float64) * torch.tensor([3.0, 0.5])
    constant = torch.full((101,), 7.0, dtype=torch.float64)  # not scaled
    one_spike = (torch.arange(101) == 5).double()  # no interquartile range: the standard deviation
    features = torch.column_stack([gaussian, constant, one_spike])
    centre, scale = _robust_centre_and_scale(features)
    array = features.numpy()
    quartiles = np.quantile(array, [0.25, 0.75], axis=0, method="inverted_cdf")
    expected = (quartiles[1] - quartiles[0]) / (norm.ppf(0.75) - norm.ppf(0.25))
    expected[2], expected[3] = 1.0, array[:, 3].std()
    assert centre.numpy() == pytest.approx(np.median(array, axis=0))
    assert scale.numpy() == pytest.approx(expected)
    # On Gaussian columns the interquartile range in standard deviations is the standard deviation.
    assert scale[:2].numpy() == pytest.approx([3.0, 0.5], rel=0.2)


def test_fit_softmax_takes_a_layer_without_bias():
    g = torch.Generator().manual_seed(2)
    features = torch.randn(400, 2, generator=g)
    targets = (features[:, 0] > 0).long()
    layer = fit_softmax(nn.Linear(2, 2, bias=False), 50.0 * features, targets)
    assert layer.bias is None and (layer(50.0 * features).argmax(-1) == targets).float().mean() > 0.95
    # Features away from zero: it is logistic regression without an intercept on them as they are.
    features = (torch.randn(600, 2, generator=g) + torch.tensor([3.0, -1.0])).double()
    targets = (features[:, 0] - 3.0 + 0.5 * torch.randn(600, generator=g, dtype=torch.float64) > 0).long()
    layer = fit_softmax(nn.Linear(2, 2, bias=False).double(), features, targets, weight_decay=0.0)
    reference = LogisticRegression(fit_intercept=False, C=1e12, tol=1e-10, max_iter=10_000).fit(features.numpy(), targets.numpy())
    assert (layer.weight[1] - layer.weight[0]).detach().numpy() == pytest.approx(reference.coef_[0], abs=1e-3)


@pytest.mark.parametrize("distance", [1.0, 3.0])
def test_linear_separability_recovers_the_distance_of_two_gaussians(distance):
    g = torch.Generator().manual_seed(1)
    Y = torch.randint(0, 2, (20000, 2), generator=g)
    X = torch.randn(20000, 2, 1, generator=g) + distance * Y.unsqueeze(-1)
    assert linear_separability(X, Y, NO_EDGES, num_classes=2) == pytest.approx(distance, abs=0.1)


def test_linear_separability_sees_the_neighbours():
    g = torch.Generator().manual_seed(2)
    # Both nodes share a label that shows only in node 1's features.
    Y = torch.randint(0, 2, (4000, 1), generator=g).expand(4000, 2)
    X = torch.randn(4000, 2, 1, generator=g)
    X[:, 1, 0] += 4.0 * Y[:, 1]
    path = torch.tensor([[0, 1], [1, 0]])
    # Through the 1-hop mean both nodes see the label (2 Y, noise variance 1/2): 2 sqrt(2) apart.
    assert linear_separability(X, Y, path, num_classes=2) == pytest.approx(2 * math.sqrt(2), abs=0.15)
    assert linear_separability(X[:, :1], Y[:, :1], NO_EDGES, num_classes=2) < 0.2


def test_linear_separability_with_order_0_sees_no_neighbours():
    # The 0-hop means are the nodes' own signals: the graph makes no difference.
    g = torch.Generator().manual_seed(2)
    Y = torch.randint(0, 2, (1000, 1), generator=g).expand(1000, 2)
    X = torch.randn(1000, 2, 1, generator=g)
    X[:, 1, 0] += 4.0 * Y[:, 1]
    path = torch.tensor([[0, 1], [1, 0]])
    alone = linear_separability(X, Y, NO_EDGES, num_classes=2, orders=(0,))
    assert linear_separability(X, Y, path, num_classes=2, orders=(0,)) == alone
    assert linear_separability(X, Y, path, num_classes=2) > alone + 0.5  # with the default orders, they do


def test_linear_separability_fits_on_the_first_max_rows_node_rows(monkeypatch):
    # 12 node rows of 4 nodes: the first 3 signals.
    g = torch.Generator().manual_seed(6)
    Y = torch.randint(0, 2, (50, 4), generator=g)
    X = torch.randn(50, 4, 1, generator=g) + 1.5 * Y.unsqueeze(-1)
    first = linear_separability(X[:3], Y[:3], NO_EDGES, num_classes=2)
    monkeypatch.setattr(separability, "MAX_ROWS", 12)
    assert linear_separability(X, Y, NO_EDGES, num_classes=2) == first


def test_linear_separability_balances_the_classes():
    # Three labels in four are 0 and the features say nothing: predicting 0 everywhere is 75 %
    # accurate, but no better than chance on each class.
    g = torch.Generator().manual_seed(3)
    Y = (torch.rand(4000, 3, generator=g) < 0.25).long()
    assert linear_separability(torch.randn(4000, 3, 2, generator=g), Y, NO_EDGES, num_classes=2) < 0.2


def test_linear_separability_draws_no_random_numbers():
    Y = torch.randint(0, 3, (200, 4))
    X = torch.randn(200, 4, 2) + Y.unsqueeze(-1)
    state = torch.get_rng_state()
    first = linear_separability(X, Y, NO_EDGES, num_classes=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert linear_separability(X, Y, NO_EDGES, num_classes=3) == first


def test_linear_separability_of_a_single_row_is_finite():
    # The smallest fit (2 signals, one held out, one node) leaves one row: its spread is 0,
    # which must not turn the standardised features into NaN.
    separation = linear_separability(torch.randn(1, 1, 2), torch.tensor([[1]]), NO_EDGES, num_classes=2)
    assert math.isfinite(separation)
