import math
import re
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import chi2
from torch import nn

from igraphflow import ConditionalGraphFlow
from igraphflow.uncertainty import (
    REGION_DRAWS,
    chi2_quantile,
    conformal_quantile,
    conformal_scores,
    conformal_sets,
    precise_log_softmax,
    set_coverage,
)

torch.set_num_threads(1)

PATH3 = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
NO_EDGES = torch.empty(2, 0, dtype=torch.long)


def _blobs(num_samples: int, num_nodes: int, seed: int, shift: float = 2.0):
    r"""Two overlapping Gaussian classes per node (accuracy about 90 %, so sets are non-trivial)."""
    g = torch.Generator().manual_seed(seed)
    Y = torch.randint(0, 2, (num_samples, num_nodes), generator=g)
    X = torch.randn(num_samples, num_nodes, 2, generator=g) + shift * Y.unsqueeze(-1)
    return X, Y


def _tiny(edge_index, num_nodes, X, Y, num_classes=2):
    model = ConditionalGraphFlow(edge_index, num_nodes, 2, num_classes, num_blocks=2, max_epochs=3, hidden=16, seed=0)
    return model.fit(X, Y, progress=False)


@pytest.fixture(scope="module")
def one_node():
    X, Y = _blobs(1500, 1, seed=1)
    return _tiny(NO_EDGES, 1, X, Y)


@pytest.fixture(scope="module")
def three_nodes():
    X, Y = _blobs(600, 3, seed=2)
    return _tiny(PATH3, 3, X, Y)


def _identity_flow(means=None, sigma=1.0, classifier="graph", edge_index=NO_EDGES, num_nodes=1):
    r"""A model whose flow is the identity (no blocks), so ``H = X`` and the latent is hand-made:
    ``means`` ``[K, C]``, or the starting means of 2 classes of 2 features."""
    num_classes, num_features = (2, 2) if means is None else means.shape
    model = ConditionalGraphFlow(edge_index, num_nodes, num_features, num_classes, num_blocks=1, sigma=sigma,
                                 classifier=classifier, seed=0)
    model.blocks = nn.ModuleList()
    if means is not None:
        with torch.no_grad():
            model.latent.means.copy_(means)
    model.fitted.fill_(True)
    return model


# Conformal machinery on hand-made numbers --------------------------------------------------


def test_conformal_quantile_matches_direct_order_statistic():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(19, generator=g, dtype=torch.float64)
    ordered = scores.sort().values
    n = scores.numel()
    for alpha in (0.05, 0.1, 0.2, 0.5, 0.9):
        k = math.ceil((n + 1) * (1 - alpha))  # 1-based rank
        assert conformal_quantile(ordered, alpha).item() == ordered[k - 1].item()
    # alpha = 0.05 with 19 scores: rank 19, the largest; below 1 / (n + 1): +inf (all labels).
    assert conformal_quantile(ordered, 0.05).item() == ordered[-1].item()
    assert math.isinf(conformal_quantile(ordered, 0.04).item())
    # Exact integer ranks are not rounded up: n = 9, alpha = 0.2 gives rank 8; n = 19, alpha = 0.1 rank 18.
    nine = torch.arange(1.0, 10.0)
    assert conformal_quantile(nine, 0.2).item() == 8.0
    assert conformal_quantile(torch.arange(1.0, 20.0), 0.1).item() == 18.0
    # Row-wise (per node) thresholds.
    rows = torch.stack([nine, 10 * nine])
    assert conformal_quantile(rows, 0.2).tolist() == [8.0, 80.0]
    # On the scores' device, the infinite threshold too (meta stands in for a GPU).
    assert {conformal_quantile(torch.zeros(2, 9, device="meta"), a).device.type for a in (0.2, 0.05)} == {"meta"}


def test_grouped_quantile_keeps_coverage_when_the_nodes_of_a_graph_agree():
    # The worst dependence: all V nodes of a graph share one score. The coverage of a node of a
    # random test graph is then m / (n + 1), m the graph whose score the threshold is.
    g = torch.Generator().manual_seed(0)
    num_nodes, alpha, repeats = 5, 0.2, 20000

    def coverage(num_graphs: int, group_size: int) -> float:
        calibration = torch.rand(repeats, num_graphs, generator=g, dtype=torch.float64)
        pooled = calibration.repeat_interleave(num_nodes, dim=1).sort(dim=-1).values
        test = torch.rand(repeats, generator=g, dtype=torch.float64)
        return (test <= conformal_quantile(pooled, alpha, group_size=group_size)).double().mean().item()

    # 9 graphs: rank ceil(10 * 5 * 0.8) = 40, the 8th graph's score, coverage 8 / 10 exactly.
    assert abs(coverage(9, num_nodes) - 0.8) < 0.01
    # 3 graphs: rank ceil(4 * 5 * 0.8) = 16 > 15 scores: every label. The rank of single scores,
    # ceil(16 * 0.8) = 13, is the 3rd graph's score: coverage 3 / 4, short of 0.8.
    assert coverage(3, num_nodes) == 1.0
    assert abs(coverage(3, 1) - 0.75) < 0.01
    # Rank by hand: ceil((n / g + 1) g (1 - alpha)).
    scores = torch.arange(1.0, 13.0)
    assert conformal_quantile(scores, 0.3, group_size=3).item() == math.ceil(15 * 0.7 - 1e-9)
    with pytest.raises(ValueError, match="group_size 5 does not divide the 12"):
        conformal_quantile(scores, 0.3, group_size=5)


def test_precise_log_softmax_matches_a_direct_sum_in_the_tails():
    logits = torch.tensor([[0.0, -3.0, -40.0], [5.0, 5.0, -700.0], [0.0, -20.0, -25.0]])
    for row, values in zip(precise_log_softmax(logits), logits.tolist()):
        for k, value in enumerate(row.tolist()):
            # log P_k = -log(1 + sum_{j != k} exp(l_j - l_k)), summed in Python floats.
            rest = sum(math.exp(other - values[k]) for j, other in enumerate(values) if j != k)
            assert value == pytest.approx(-math.log1p(rest), rel=1e-12, abs=1e-300)
    assert precise_log_softmax(logits).dtype == torch.float64
    torch.testing.assert_close(precise_log_softmax(logits[:, :1]), torch.zeros(3, 1, dtype=torch.float64))
    assert precise_log_softmax(torch.tensor([0.0, -math.inf, -math.inf])).tolist() == [0.0, -math.inf, -math.inf]
    assert precise_log_softmax(torch.tensor([math.inf, 0.0])).tolist() == [0.0, -math.inf]
    assert precise_log_softmax(torch.empty(3, 0)).shape == (3, 0)
    tied = precise_log_softmax(torch.tensor([1.0, 1.0, -3.0]))
    assert tied[0] == tied[1]  # equal logits, equal scores: no set holds one without the other


def test_confident_nodes_keep_distinct_scores():
    # Means 30 apart with sigma 1: near the first mean the Bayes rule is certain up to about
    # exp(-400); float32 log-probabilities round every one of these scores to 0.
    model = _identity_flow(torch.tensor([[0.0, 0.0], [30.0, 0.0]]), sigma=1.0, classifier="bayes")
    X = torch.tensor([[[1.0, 0.0]], [[2.0, 0.0]], [[3.0, 0.0]]])
    scores = conformal_scores(model.predict_log_proba(X), torch.zeros(3, 1, dtype=torch.long)).flatten()
    assert (scores > 0).all() and scores[0] < scores[1] < scores[2]


def test_scores_sets_and_coverage_by_hand():
    proba = torch.tensor([[[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]]])
    Y = torch.tensor([[1, 2]])
    scores = conformal_scores(proba.log(), Y)
    torch.testing.assert_close(scores, -torch.tensor([[0.2, 0.25]]).log())
    sets = conformal_sets(proba.log(), -math.log(0.22))  # keep labels with P >= 0.22
    assert sets.tolist() == [[[True, False, False], [True, True, True]]]
    assert set_coverage(sets, Y).tolist() == [[False, True]]
    per_node = conformal_sets(proba.log(), torch.tensor([-math.log(0.5), -math.log(0.3)]))
    assert per_node.tolist() == [[[True, False, False], [True, True, False]]]
    # A score equal to the threshold is in the set: the guarantee counts the quantile itself.
    log_proba = proba.log()
    assert conformal_sets(log_proba, -log_proba[0, 0, 1])[0, 0].tolist() == [True, True, False]


# Calibrated sets ---------------------------------------------------------------------------


def test_calibrated_coverage_on_simulated_nodes(one_node):
    X_cal, Y_cal = _blobs(2000, 1, seed=10)
    X_test, Y_test = _blobs(4000, 1, seed=11)
    model = one_node.calibrate(X_cal, Y_cal, alpha=0.1)
    assert model.is_calibrated and model.calibration_scores_.shape == (2000,)
    for alpha in (0.05, 0.1, 0.2):
        sets = model.prediction_sets(X_test, alpha)
        coverage = set_coverage(sets, Y_test).float().mean().item()
        # Standard deviation of the coverage is about 0.008 here: 0.03 is a safe slack.
        assert 1 - alpha - 0.03 <= coverage <= 1 - alpha + 0.04, (alpha, coverage)
        assert sets.sum(-1).float().mean() < 2
    # The default alpha is the calibration level.
    assert torch.equal(model.prediction_sets(X_test[:50]), model.prediction_sets(X_test[:50], 0.1))


def test_calibrated_sets_are_the_one_minus_probability_sets(three_nodes):
    X_cal, Y_cal = _blobs(200, 3, seed=20)
    X, _ = _blobs(100, 3, seed=21)
    model = three_nodes.calibrate(X_cal, Y_cal, alpha=0.2)
    proba = model.predict_proba(X)
    torch.testing.assert_close(model.predict_log_proba(X).exp().float(), proba, atol=1e-5, rtol=1e-4)
    # Direct computation with the score 1 - P: the same order statistic of the pooled scores,
    # ranked graph by graph: the ceil((n + 1) V (1 - alpha))-th of the n V scores.
    scores = 1 - model.predict_proba(X_cal).gather(-1, Y_cal.unsqueeze(-1)).flatten().double()
    q = scores.sort().values[math.ceil((200 + 1) * 3 * 0.8) - 1]
    direct = (1 - proba.double()) <= q
    sets = model.prediction_sets(X)
    clear = ((1 - proba.double()) - q).abs() > 1e-5  # away from float round-off at the threshold
    assert torch.equal(sets[clear], direct[clear])


def test_per_node_calibration(three_nodes):
    X_cal, Y_cal = _blobs(200, 3, seed=30)
    model = three_nodes.calibrate(X_cal, Y_cal, alpha=0.1, per_node=True)
    assert model.calibration_scores_.shape == (3, 200)
    assert model.conformal_threshold().shape == (3,)
    X, _ = _blobs(100, 3, seed=31)
    # Direct computation: node v's threshold is the ceil((n + 1)(1 - alpha))-th of its own n scores.
    scores = conformal_scores(model.predict_log_proba(X_cal), Y_cal).double()  # [n, V]
    for alpha in (0.1, 0.3):
        thresholds = scores.sort(dim=0).values[math.ceil(201 * (1 - alpha)) - 1]  # [V]
        assert not torch.equal(thresholds, thresholds[:1].expand(3))  # the nodes differ
        torch.testing.assert_close(model.conformal_threshold(alpha), thresholds)
        assert torch.equal(model.prediction_sets(X, alpha), conformal_sets(model.predict_log_proba(X), thresholds))


# Gaussian regions --------------------------------------------------------------------------


def test_gaussian_sets_match_direct_chi_square():
    means = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    model = _identity_flow(means, sigma=0.8)
    assert not model.is_calibrated
    g = torch.Generator().manual_seed(3)
    X = 4 * torch.rand(500, 1, 2, generator=g) - 1
    for alpha in (0.05, 0.1, 0.5):
        distance = ((X[:, :, None, :] - means) ** 2).sum(-1) / 0.8**2
        direct = distance <= chi2.ppf(1 - alpha, df=2)
        assert torch.equal(model.prediction_sets(X, alpha), direct)
    # The boundary of the region is the circle of radius sigma * sqrt(chi2) around the mean.
    curve = model.region_boundary(2, alpha=0.1, num_points=50)
    radius = (curve - means[2]).norm(dim=-1)
    torch.testing.assert_close(radius, torch.full((50,), 0.8 * math.sqrt(chi2.ppf(0.9, 2))))
    assert chi2_quantile(0.1, 2) == pytest.approx(chi2.ppf(0.9, 2))


def test_region_boundary_of_a_graph_node_is_centred_on_its_own_label():
    # An identity flow on 3 nodes: the curve is the circle itself, around the mean of `label`
    # at `node`, whatever `labels` says there.
    means = torch.tensor([[0.0, 0.0], [3.0, 1.0]])
    model = _identity_flow(means, 0.5, edge_index=PATH3, num_nodes=3)
    curve = model.region_boundary(0, alpha=0.1, num_points=25, node=2, labels=[1, 1, 1])
    radius = (curve - means[0]).norm(dim=-1)
    torch.testing.assert_close(radius, torch.full((25,), 0.5 * math.sqrt(chi2.ppf(0.9, 2))))


def test_in_region_holds_one_minus_alpha_of_model_samples(three_nodes):
    g = torch.Generator().manual_seed(4)
    Y = torch.randint(0, 2, (3000, 3), generator=g)
    X = three_nodes.sample(Y, seed=5, temperature=1.0)  # draws of the density the regions are of
    for alpha in (0.1, 0.3):
        joint = three_nodes.in_region(X, Y, alpha)
        nodes = three_nodes.in_region(X, Y, alpha, joint=False)
        assert joint.shape == (3000,) and nodes.shape == (3000, 3)
        # Standard deviations about 0.006 and 0.004.
        assert joint.float().mean().item() == pytest.approx(1 - alpha, abs=0.03)
        assert nodes.float().mean().item() == pytest.approx(1 - alpha, abs=0.03)


def _node_mahalanobis(model, h, node, label):
    r"""The distance of ``h [N, C]`` to class ``label`` under node ``node``'s latent marginal, from the covariance."""
    latent, C = model.latent, model.num_features
    if not latent.has_noise_covariance:
        return (h - latent.means[label]).norm(dim=-1) / latent.sigma
    covariance = latent.scale_tril @ latent.scale_tril.T
    block = covariance[node * C : (node + 1) * C, node * C : (node + 1) * C]
    r = h - latent.means[label] - latent.offset[node]
    return (r * torch.linalg.solve(block, r.T).T).sum(-1).sqrt()


def test_region_boundary_is_the_preimage_of_the_circle(one_node):
    curve = one_node.region_boundary(1, alpha=0.2, num_points=40)
    assert curve.shape == (40, 2)
    h = one_node.encode(curve.unsqueeze(1))[:, 0]
    radius = _node_mahalanobis(one_node, h, 0, 1)
    torch.testing.assert_close(radius, torch.full((40,), math.sqrt(chi2.ppf(0.8, 2))), atol=1e-2, rtol=1e-2)


def test_gaussian_sets_and_boundary_with_fitted_noise():
    means = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    model = _identity_flow(means, sigma=1.0)
    g = torch.Generator().manual_seed(8)
    Y = torch.randint(0, 2, (3000, 1), generator=g)
    H = means[Y] + torch.randn(3000, 1, 2, generator=g) @ torch.tensor([[0.6, 0.0], [0.5, 0.3]]).T
    assert model.latent.fit_noise_(H[:2000], Y[:2000], H[2000:], Y[2000:]) is not None
    X = 4 * torch.rand(500, 1, 2, generator=g) - 1
    direct = torch.stack([_node_mahalanobis(model, X[:, 0], 0, k) for k in range(2)], -1).square()
    assert torch.equal(model.prediction_sets(X, 0.1)[:, 0], direct <= chi2.ppf(0.9, df=2))
    curve = model.region_boundary(1, alpha=0.1, num_points=30)
    radius = _node_mahalanobis(model, curve, 0, 1)
    torch.testing.assert_close(radius, torch.full((30,), math.sqrt(chi2.ppf(0.9, 2))))


def test_regions_under_a_mixture_noise_hold_their_share_of_its_draws():
    # An identity flow on 3 nodes whose latent noise has two modes (all nodes up or down):
    # the ellipsoids of the Gaussian fit, sized by draws of the mixture, not by chi-square.
    path = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    model = _identity_flow(edge_index=path, num_nodes=3)
    g = torch.Generator().manual_seed(15)
    Y = torch.randint(0, 2, (6000, 3), generator=g)
    regime = 2.0 * torch.randint(0, 2, (6000, 1, 1), generator=g) - 1.0
    H = model.latent.means.detach()[Y] + 1.5 * regime + 0.4 * torch.randn(6000, 3, 2, generator=g)
    model.latent.fit_noise_(H[:5000], Y[:5000], H[5000:], Y[5000:], seed=0)
    assert model.latent.noise_components > 1
    X = model.sample(Y[:4000], seed=16, temperature=1.0)
    for alpha in (0.1, 0.3):
        joint = model.in_region(X, Y[:4000], alpha)
        nodes = model.in_region(X, Y[:4000], alpha, joint=False)
        assert joint.float().mean().item() == pytest.approx(1 - alpha, abs=0.02)
        assert nodes.float().mean().item() == pytest.approx(1 - alpha, abs=0.02)
        # Chi-square sizes would be wrong here: the draws are not Gaussian.
        chi_square = model.latent.joint_squared_distance(model.encode(X), Y[:4000]) <= chi2.ppf(1 - alpha, 6)
        assert abs(chi_square.float().mean().item() - (1 - alpha)) > 0.03
        # The sets of labels use the same node-wise sizes.
        sets = model.gaussian_sets(X, alpha)
        inside = sets.gather(-1, Y[:4000].unsqueeze(-1)).squeeze(-1)
        assert torch.equal(inside, nodes)
    # The regions hold the fitted density, not the tempered draws of sample().
    inside = model.in_region(X, Y[:4000], 0.1), model.in_region(X, Y[:4000], 0.1, joint=False)
    model.latent.temperature.fill_(2.0)
    assert torch.equal(model.in_region(X, Y[:4000], 0.1), inside[0])
    assert torch.equal(model.in_region(X, Y[:4000], 0.1, joint=False), inside[1])
    model.latent.temperature.fill_(1.0)
    # Rarer than one in the draws: the largest draw would have sized the region.
    for alpha in (1e-6, 0.75 / REGION_DRAWS):
        with pytest.raises(ValueError, match="alpha must be at least 1/16384 here"):
            model.in_region(X[:5], Y[:5], alpha=alpha)


def test_gaussian_sets_hold_their_share_where_the_mean_moves_with_the_label_pattern():
    # An identity flow on 5 nodes whose level rises with the share of label 1 in the pattern.
    # The sets measured every node from mu_k + b_v alone: 0.62 of the nodes in their 0.9 sets.
    path = torch.tensor([[0, 1, 2, 3, 1, 2, 3, 4], [1, 2, 3, 4, 0, 1, 2, 3]])
    model = _identity_flow(edge_index=path, num_nodes=5)
    g = torch.Generator().manual_seed(17)
    Y = torch.randint(0, 2, (12000, 5), generator=g)
    means = model.latent.means.detach()
    H = means[Y] + 3.0 * (Y.float().mean(1) - 0.5).view(-1, 1, 1) + 0.5 * torch.randn(12000, 5, 2, generator=g)
    model.latent.set_prior(Y[:4000])
    model.latent.fit_noise_(H[:3000], Y[:3000], H[3000:4000], Y[3000:4000], seed=0)
    assert model.latent.pattern_mean and model.latent.noise_components == 1
    X, Y = H[4000:], Y[4000:]
    for alpha in (0.1, 0.3):
        sets = model.gaussian_sets(X, alpha)
        assert set_coverage(sets, Y).double().mean().item() == pytest.approx(1 - alpha, abs=0.02)
        # Given the labels, the regions measure from the pattern's own mean, by chi-square.
        nodes = model.in_region(X, Y, alpha, joint=False)
        assert nodes.double().mean().item() == pytest.approx(1 - alpha, abs=0.02)
    # The Bayes rule weighs the same node-wise laws: better than the one that ignores the pattern.
    bayes = precise_log_softmax(model.latent.posterior_logits(X)).argmax(-1)
    centred = (X.unsqueeze(-2) - means - model.latent.offset.unsqueeze(1)).square().sum(-1).argmin(-1)
    assert (bayes == Y).double().mean() > (centred == Y).double().mean()


def test_gaussian_sets_hold_their_share_of_the_models_draws_where_a_neighbours_label_moves_a_node():
    # Node v moves by +-2 with the label of the next node: given its own label alone, its law has
    # two modes, which no chi-square quantile of its moment-matched ellipse holds (0.94 / 0.74 /
    # 0.41 for 0.9 / 0.7 / 0.5); the sizes drawn from the labels' prior hold the model's own draws.
    path = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    model = _identity_flow(edge_index=path, num_nodes=3)
    g = torch.Generator().manual_seed(21)
    Y = torch.randint(0, 2, (8000, 3), generator=g)
    H = model.latent.means.detach()[Y] + 0.5 * torch.randn(8000, 3, 2, generator=g)
    H[..., 0] += 2.0 * (2 * Y.roll(-1, 1) - 1)
    model.latent.set_prior(Y[:6000])
    model.latent.fit_noise_(H[:5000], Y[:5000], H[5000:6000], Y[5000:6000], seed=0)
    assert model.latent.pattern_mean
    Y = torch.randint(0, 2, (20000, 3), generator=g)
    X = model.latent.sample(Y, generator=g, temperature=1.0)  # the identity flow: X = H
    for alpha in (0.1, 0.3, 0.5):
        sets = model.gaussian_sets(X, alpha)
        assert set_coverage(sets, Y).double().mean().item() == pytest.approx(1 - alpha, abs=0.01)


def test_gaussian_sets_leave_out_labels_never_trained_on():
    X, Y = _blobs(400, 3, seed=18)
    with pytest.warns(UserWarning, match=r"labels \[2\] never occur in Y"):
        model = _tiny(torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), 3, X, Y, num_classes=3)
    assert not model.gaussian_sets(X, 0.1)[..., 2].any()
    assert model.gaussian_sets(X, 0.1)[..., :2].any()


@pytest.mark.parametrize("classifier", ["bayes", "linear", "graph"])
def test_labels_never_trained_on_get_probability_zero_from_every_head(classifier):
    # The Bayes rule gave an unseen label (its mean placed, never fitted) the inputs that landed
    # near that mean, with probabilities up to 1.
    g = torch.Generator().manual_seed(0)
    Y = torch.randint(0, 3, (300, 3), generator=g)
    Y[Y == 2] = 1
    X = torch.randn(300, 3, 2, generator=g) + 2.0 * Y.unsqueeze(-1)
    model = ConditionalGraphFlow(PATH3, 3, 2, 3, classifier=classifier, num_blocks=1, max_epochs=2, hidden=8, seed=0)
    with pytest.warns(UserWarning, match=r"labels \[2\] never occur in Y"):
        model.fit(X, Y, progress=False)
    far = torch.randn(500, 3, 2, generator=g) * 3 + 4
    log_proba = model.predict_log_proba(far)
    assert (log_proba[..., 2] == -math.inf).all() and torch.isfinite(log_proba[..., :2]).all()
    torch.testing.assert_close(log_proba.exp().sum(-1), torch.ones(500, 3, dtype=torch.float64))
    assert (model.predict(far) != 2).all()
    model.calibrate(X[:50], Y[:50])
    assert not model.prediction_sets(far)[..., 2].any()
    # Calibrated on an unseen label, only sets holding every label cover it: said, and done.
    unseen = Y[:50].clone()
    unseen[:, 0] = 2
    with pytest.warns(UserWarning, match=r"Y_cal holds labels \[2\] that never occurred"):
        model.calibrate(X[:50], unseen)
    assert model.prediction_sets(far).all()


def test_region_boundary_is_bounded_for_the_smallest_alpha(three_nodes):
    # Sized by chi2.isf: ppf(1 - alpha) made the region infinite below alpha ~ 1e-16.
    sizes = [three_nodes.region_boundary(0, alpha=a, num_points=10).abs().max() for a in (1e-6, 1e-17, 5e-324)]
    assert all(torch.isfinite(s) for s in sizes) and sizes[0] < sizes[1] < sizes[2]


def test_region_boundary_on_a_graph_node(three_nodes, monkeypatch):
    # Encoded back, every decoded signal has node 2 on the boundary of its label's region and
    # the other nodes at the centres of theirs; the other nodes' labels move the curve in X.
    decoded = []
    decode = three_nodes.decode
    monkeypatch.setattr(three_nodes, "decode", lambda h: decoded.append(decode(h)) or decoded[-1])
    curves = {}
    for labels in ([0, 0, 1], [1, 1, 1]):
        curves[tuple(labels)] = three_nodes.region_boundary(1, alpha=0.1, num_points=30, node=2, labels=labels)
        assert curves[tuple(labels)].shape == (30, 2)
        y = torch.tensor(labels).expand(30, 3)
        H = three_nodes.encode(decoded[-1])
        torch.testing.assert_close(decoded[-1][:, 2], curves[tuple(labels)])
        distance = three_nodes.latent.node_squared_distance(H, y)
        assert three_nodes.latent.noise_components == 1  # a Gaussian noise: the radius is chi2's
        torch.testing.assert_close(distance[:, 2], torch.full((30,), chi2.ppf(0.9, 2)), atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(distance[:, :2], torch.zeros(30, 2), atol=1e-6, rtol=0)
    assert (curves[(0, 0, 1)] - curves[(1, 1, 1)]).abs().max() > 1e-2


def test_region_boundary_needs_integer_label_node_and_points(three_nodes):
    expected = three_nodes.region_boundary(1, num_points=30, node=2)
    # NumPy integers and integral floats are the same label; 1.5 was rounded down to 1.
    torch.testing.assert_close(three_nodes.region_boundary(np.int64(1), num_points=np.int64(30), node=np.int32(2)), expected)
    torch.testing.assert_close(three_nodes.region_boundary(1.0, num_points=30, node=2.0), expected)
    for kwargs, name in ((dict(label=1.5), "label"), (dict(label=0, node=1.5), "node"),
                         (dict(label=0, num_points=2.5), "num_points"), (dict(label=-1), "label")):
        with pytest.raises(ValueError, match=f"{name} must be an integer"):
            three_nodes.region_boundary(**kwargs)


# Saving ------------------------------------------------------------------------------------


def test_save_load_keeps_calibration(three_nodes, tmp_path):
    X_cal, Y_cal = _blobs(100, 3, seed=40)
    X, _ = _blobs(50, 3, seed=41)
    for per_node in (False, True):
        three_nodes.calibrate(X_cal, Y_cal, alpha=0.15, per_node=per_node)
        path = tmp_path / f"model_{per_node}.pt"
        three_nodes.save(path)
        loaded = ConditionalGraphFlow.load(path)
        assert loaded.is_calibrated and loaded.calibration_alpha_ == pytest.approx(0.15)
        assert torch.equal(loaded.calibration_scores_, three_nodes.calibration_scores_)
        for alpha in (None, 0.05, 0.3):
            assert torch.equal(loaded.prediction_sets(X, alpha), three_nodes.prediction_sets(X, alpha))


def test_a_loaded_calibration_owns_its_scores(three_nodes):
    X_cal, Y_cal = _blobs(20, 3, seed=42)
    for per_node in (False, True):
        state = three_nodes.calibrate(X_cal, Y_cal, alpha=0.2, per_node=per_node).state_dict()
        thresholds = three_nodes.conformal_threshold()
        three_nodes.load_state_dict(state)
        state["_extra_state"][5:] = 0  # a change to the state dict after loading
        assert torch.equal(three_nodes.conformal_threshold(), thresholds)


def test_too_few_calibration_graphs_are_warned_about(three_nodes):
    X, Y = _blobs(5, 3, seed=44)
    with pytest.warns(UserWarning, match="5 calibration graphs are too few for alpha=0.1"):
        three_nodes.calibrate(X, Y, alpha=0.1)  # rank ceil(6 * 3 * 0.9) = 17 > 15 scores
    with pytest.warns(UserWarning, match="too few"):  # and again for every use of that level
        assert three_nodes.prediction_sets(X).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        three_nodes.calibrate(X, Y, alpha=0.2)  # rank ceil(6 * 3 * 0.8) = 15: no warning


def test_sets_at_an_uncalibrated_alpha_warn_when_there_are_too_few_graphs(three_nodes):
    # Calibrated at 0.2 (enough graphs), then asked for 0.1: all labels, silently, before.
    X, Y = _blobs(5, 3, seed=44)
    three_nodes.calibrate(X, Y, alpha=0.2)
    for call in (lambda: three_nodes.prediction_sets(X, 0.1), lambda: three_nodes.conformal_threshold(0.1)):
        with pytest.warns(UserWarning, match="5 calibration graphs are too few for alpha=0.1") as caught:
            call()
        assert [w.filename for w in caught] == [__file__]  # the caller's line, not torch's wrapper
    with pytest.warns(UserWarning) as caught:
        three_nodes.calibrate(X, Y, alpha=0.1)
    assert [w.filename for w in caught] == [__file__]


def test_calibrations_of_earlier_versions_load_unless_their_scores_were_rounded(three_nodes):
    X_cal, Y_cal = _blobs(20, 3, seed=43)
    state = three_nodes.calibrate(X_cal, Y_cal, alpha=0.2).state_dict()
    scores = three_nodes.calibration_scores_.clone()
    state["_extra_state"][0] = 1  # version 1: the same layout
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        three_nodes.load_state_dict(state)
        assert three_nodes.is_calibrated and torch.equal(three_nodes.calibration_scores_, scores)
        three_nodes.load_state_dict(three_nodes.state_dict() | {"_extra_state": torch.tensor([1.0, 0.0, math.nan, 0.0, 0.0], dtype=torch.float64)})
        assert not three_nodes.is_calibrated
    # Scores of a float32 log_softmax: confident nodes at exactly 0, below every score of
    # today's, so that the threshold would leave sets empty.
    state["_extra_state"][5:10] = 0
    with pytest.warns(UserWarning, match="rounded to 0"):
        three_nodes.load_state_dict(state)
    assert not three_nodes.is_calibrated


def test_a_new_fit_forgets_the_calibration():
    X, Y = _blobs(60, 3, seed=50)
    model = ConditionalGraphFlow(PATH3, 3, 2, 2, num_blocks=1, max_epochs=1, hidden=8, seed=0).fit(X, Y, progress=False)
    uncalibrated = model.prediction_sets(X, 0.1)
    model.calibrate(X, Y, alpha=0.1)
    assert model.is_calibrated
    model.fit(X, Y, progress=False)  # the same seed: the same model as before calibrating
    assert not model.is_calibrated and model.calibration_alpha_ is None
    assert torch.equal(model.prediction_sets(X, 0.1), uncalibrated)


@pytest.mark.parametrize("retrain", ["refine", "reparameterize"])
def test_retraining_forgets_the_calibration(retrain):
    X, Y = _blobs(60, 3, seed=50)
    model = ConditionalGraphFlow(PATH3, 3, 2, 2, num_blocks=1, max_epochs=1, hidden=8, seed=0).fit(X, Y, progress=False)
    model.calibrate(X, Y, alpha=0.1)
    getattr(model, retrain)(X, Y, progress=False)  # a changed map and head: the old scores no longer apply
    assert not model.is_calibrated
    with pytest.raises(RuntimeError, match="calibrat"):
        model.conformal_threshold()


def test_save_load_uncalibrated(tmp_path):
    X, Y = _blobs(60, 3, seed=50)
    model = ConditionalGraphFlow(PATH3, 3, 2, 2, num_blocks=1, max_epochs=1, hidden=8, seed=0).fit(X, Y, progress=False)
    model.save(tmp_path / "model.pt")
    loaded = ConditionalGraphFlow.load(tmp_path / "model.pt")
    assert not loaded.is_calibrated
    assert torch.equal(loaded.prediction_sets(X, 0.1), model.prediction_sets(X, 0.1))
    # A state dict without the calibration entry (older checkpoints) loads as uncalibrated.
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("_extra_state")}
    loaded.calibrate(X, Y).load_state_dict(state)
    assert not loaded.is_calibrated
    # A calibrated state overrides an uncalibrated one and the reverse.
    model.calibrate(X, Y, alpha=0.2)
    loaded.load_state_dict(model.state_dict())
    assert loaded.is_calibrated and torch.equal(loaded.calibration_scores_, model.calibration_scores_)


# Errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, float("nan"), "a", "0.1", True])
def test_bad_alpha_raises(three_nodes, alpha):
    # The string "0.1" was read as 0.1, and True was reported as 'got 1.0'.
    X, Y = _blobs(10, 3, seed=60)
    match = rf"alpha must be a finite number in \(0, 1\), got {re.escape(repr(alpha))}$"
    with pytest.raises(ValueError, match=match):
        three_nodes.calibrate(X, Y, alpha=alpha)
    with pytest.raises(ValueError, match=match):
        three_nodes.prediction_sets(X, alpha)
    with pytest.raises(ValueError, match=match):
        three_nodes.in_region(X, Y, alpha)
    with pytest.raises(ValueError, match=match):
        three_nodes.region_boundary(0, alpha)
    with pytest.raises(ValueError, match=match):
        conformal_quantile(torch.arange(5.0), alpha)
    with pytest.raises(ValueError, match=match):
        chi2_quantile(alpha, 2)


def test_helpers_refuse_bad_thresholds_degrees_and_array_alphas():
    log_proba = torch.zeros(2, 3, 2)
    with pytest.raises(ValueError, match=r"one per node \[3\], got shape \[4\]"):
        conformal_sets(log_proba, torch.ones(4))
    with pytest.raises(ValueError, match="threshold is NaN"):  # every set would be empty
        conformal_sets(log_proba, math.nan)
    assert conformal_sets(log_proba, torch.ones(3)).all()
    for df in (0, 2.5):
        with pytest.raises(ValueError, match="df must be an integer"):
            chi2_quantile(0.1, df)
    for alpha in (np.array([0.1]), torch.tensor([0.1])):  # only 0-d arrays are numbers
        with pytest.raises(ValueError, match="alpha must be a finite number"):
            chi2_quantile(alpha, 2)
    assert chi2_quantile(np.array(0.1), 2) == chi2_quantile(torch.tensor(0.1, dtype=torch.float64), 2)
    assert conformal_quantile(np.arange(9.0), 0.2) == 7.0  # a NumPy array of scores


def test_flags_must_be_bools(three_nodes):
    # Each flag was read by its truth value: "no" meant True.
    X, Y = _blobs(10, 3, seed=61)
    with pytest.raises(ValueError, match="per_node must be True or False, got 'yes'"):
        three_nodes.calibrate(X, Y, per_node="yes")
    with pytest.raises(ValueError, match="exact must be True or False, got 'no'"):
        three_nodes.log_prob(X, Y, exact="no")
    for joint in ("no", 0, 1, None, torch.tensor([True]), np.array([False])):
        with pytest.raises(ValueError, match="joint must be True or False"):
            three_nodes.in_region(X, Y, joint=joint)
    # NumPy booleans and 0-d boolean arrays and tensors are flags.
    for joint in (True, False):
        expected = three_nodes.in_region(X, Y, joint=joint)
        for same in (np.bool_(joint), np.asarray(joint), torch.tensor(joint)):
            assert torch.equal(three_nodes.in_region(X, Y, joint=same), expected)


def test_bad_shapes_raise(three_nodes):
    X, Y = _blobs(10, 3, seed=70)
    with pytest.raises(ValueError, match="X_cal"):
        three_nodes.calibrate(X[:, :2], Y)
    with pytest.raises(ValueError, match="Y_cal"):
        three_nodes.calibrate(X, Y[:5])
    with pytest.raises(ValueError, match="Y_cal"):
        three_nodes.calibrate(X, Y + 2)
    with pytest.raises(ValueError, match="X"):
        three_nodes.prediction_sets(X[..., 0])
    with pytest.raises(ValueError, match="Y"):
        three_nodes.in_region(X, Y[:, :2])
    with pytest.raises(ValueError, match="label"):
        three_nodes.region_boundary(5)
    with pytest.raises(ValueError, match="node"):
        three_nodes.region_boundary(0, node=3)
    sets, log_proba = torch.ones(2, 3, 2, dtype=torch.bool), torch.full((2, 3, 2), -math.log(2))
    with pytest.raises(ValueError, match=r"Y must have shape \[N=2, num_nodes=3\]"):
        set_coverage(sets, torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="sets must have shape"):
        set_coverage(sets[0], torch.zeros(2, 3, dtype=torch.long))
    for helper, values in ((set_coverage, sets), (conformal_scores, log_proba)):
        with pytest.raises(ValueError, match=r"outside \[0, num_classes=2\)"):
            helper(values, torch.full((2, 3), 2))
        with pytest.raises(ValueError, match="non-integer"):
            helper(values, torch.full((2, 3), 0.5))


def test_empty_batches_give_empty_sets_and_regions(three_nodes):
    X, Y = _blobs(10, 3, seed=90)
    three_nodes.calibrate(X, Y, alpha=0.2)
    assert three_nodes.prediction_sets(X[:0]).shape == three_nodes.gaussian_sets(X[:0]).shape == (0, 3, 2)
    assert three_nodes.in_region(X[:0], Y[:0]).shape == (0,)
    assert three_nodes.in_region(X[:0], Y[:0], joint=False).shape == (0, 3)


def test_unfitted_and_uncalibrated_errors():
    model = ConditionalGraphFlow(PATH3, 3, 2, 2, num_blocks=1, seed=0)
    X, Y = _blobs(10, 3, seed=80)
    with pytest.raises(RuntimeError, match="fit"):
        model.calibrate(X, Y)
    with pytest.raises(RuntimeError, match="calibrate"):
        model.conformal_threshold(0.1)
    with pytest.raises(ValueError, match="2 features"):
        ConditionalGraphFlow(PATH3, 3, 1, 2, num_blocks=1, seed=0).region_boundary(0)


def test_chi2_quantile_stays_finite_for_tiny_alpha():
    from scipy.stats import chi2

    assert chi2_quantile(1e-17, 2) == pytest.approx(chi2.isf(1e-17, 2))  # 1 - 1e-17 rounds to 1
    assert chi2_quantile(1e-16, 2) == pytest.approx(73.68, abs=0.01)


def test_conformal_rank_of_alphas_a_hair_off_their_decimals():
    scores = torch.arange(1, 10, dtype=torch.float64) / 10  # n = 9
    assert conformal_quantile(scores, 1 - 0.9) == scores[8]  # 10 * 0.9 = 9, not 9.0000000000000002
    assert conformal_quantile(scores, 0.3) == scores[6]  # 7, though the binary 0.3 is below 0.3
    assert conformal_quantile(scores, 0.05) == math.inf  # 9.5: too few scores


def test_regions_of_a_class_with_mixture_weights_of_its_own_hold_its_draws():
    # One node: class 0 Gaussian, class 1 with two modes. Each class's region is sized by draws
    # of its own mixture; sized by the weights shared by both, class 0's would hold too much.
    model = _identity_flow(torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), sigma=1.0)
    g = torch.Generator().manual_seed(17)
    Y = torch.randint(0, 2, (6000, 1), generator=g)
    mode = 2.0 * torch.randint(0, 2, (6000, 1), generator=g) - 1.0
    H = model.latent.means.detach()[Y] + 0.5 * torch.randn(6000, 1, 2, generator=g)
    H[..., 1] += 1.5 * mode * Y
    model.latent.fit_noise_(H[:5000], Y[:5000], H[5000:], Y[5000:], seed=0)
    assert model.latent.noise_label_weights
    for label in (0, 1):
        labels = torch.full((4000, 1), label)
        X = model.sample(labels, seed=18 + label, temperature=1.0)
        for joint in (True, False):
            inside = model.in_region(X, labels, 0.1, joint=joint).float().mean().item()
            assert inside == pytest.approx(0.9, abs=0.02)
            assert model.in_region(X[:0], labels[:0], 0.1, joint=joint).shape == ((0,) if joint else (0, 1))
    # The boundary of class 0's region lies on the ellipse that holds 90 % of its draws.
    curve = model.region_boundary(0, alpha=0.1, num_points=30).unsqueeze(1)
    radius = model.latent.node_squared_distance(curve, torch.zeros(30, 1, dtype=torch.long))
    threshold = model._region_thresholds(0.1, torch.zeros(1, 1, dtype=torch.long))
    torch.testing.assert_close(radius, threshold.expand(30, 1).to(radius))
    shared = model._region_thresholds(0.1)
    assert shared.item() > 1.5 * threshold.item()


def test_mixture_region_sizes_match_each_patterns_own_draws():
    # The sizes are computed once per component and per block of nodes (32 nodes here, for 32
    # components), then gathered pattern by pattern: the joint ones the same as drawing each
    # pattern's mixture; the node-wise ones from each node's own law, so they hold 1 - alpha of
    # the pattern's draws up to the Monte Carlo error of two sets of 2^14 draws (sd 0.0033).
    V, M = 40, 32
    path = torch.stack([torch.arange(V - 1), torch.arange(1, V)])
    model = _identity_flow(edge_index=torch.cat([path, path.flip(0)], 1), num_nodes=V)
    g = torch.Generator().manual_seed(19)
    latent, D = model.latent, 2 * V
    A = torch.randn(D, D, generator=g) / D**0.5
    latent.offset, latent.scale_tril = torch.zeros(V, 2), torch.linalg.cholesky(A @ A.T + torch.eye(D))
    latent.mixture_logits = torch.zeros(M)
    latent.mixture_centres, latent.mixture_scales = torch.randn(M, D, generator=g), 0.5 + torch.rand(M, D, generator=g)
    Y = torch.randint(0, 2, (4, V), generator=g)
    latent.mixture_label_logits = torch.randn(V, 2, M, generator=g)
    rank = math.ceil(REGION_DRAWS * 0.9)
    for n in range(4):  # four patterns, four sets of weights
        u = latent.draw_noise(latent.mixture_log_weights(Y[n].expand(REGION_DRAWS, V)), torch.Generator().manual_seed(0))
        h = latent.means.detach()[Y[n]] + latent.offset + (u @ latent.scale_tril.T).view(REGION_DRAWS, V, 2)
        y = Y[n].expand(REGION_DRAWS, V)
        joint = latent.joint_squared_distance(h, y).double().kthvalue(rank).values
        torch.testing.assert_close(model._region_thresholds(0.1, Y[n : n + 1], joint=True)[0], joint, rtol=1e-5, atol=0)
        held = (latent.node_squared_distance(h, y).double() <= model._region_thresholds(0.1, Y[n : n + 1])).double().mean(0)
        assert (held - 0.9).abs().max() < 0.015
    # The boundary of a node's region lies at that node's own size, not node 0's.
    thresholds = model._region_thresholds(0.1, Y[:1])[0]
    assert (thresholds[7] - thresholds[0]).abs() > 0.05 * thresholds[0]
    curve = model.region_boundary(int(Y[0, 7]), alpha=0.1, num_points=12, node=7, labels=Y[0])
    h = latent._conditional_mean(Y[:1]).detach().expand(12, -1, -1).clone()
    h[:, 7] = curve
    radius = latent.node_squared_distance(h, Y[:1].expand(12, -1))[:, 7]
    torch.testing.assert_close(radius.double(), thresholds[7].expand(12), rtol=1e-4, atol=0)


def test_the_conformal_helpers_take_arrays_and_refuse_what_they_cannot_score():
    log_proba = np.log([[[0.9, 0.1], [0.3, 0.7]]])
    assert torch.allclose(conformal_scores(log_proba, [[0, 0]]), -torch.tensor(log_proba)[..., 0])
    assert conformal_sets(log_proba, 0.5).tolist() == [[[True, False], [False, True]]]
    assert set_coverage(np.array([[[True, False], [True, True]]]), [[1, 1]]).tolist() == [[False, True]]
    assert precise_log_softmax([0.0, -30.0])[1].item() == pytest.approx(-30.0)
    nan = torch.full((1, 2, 2), math.nan)
    for call, message in [
        (lambda: conformal_scores(nan, [[0, 0]]), "log_proba holds NaN"),  # a NaN score was kept
        (lambda: conformal_quantile(torch.tensor([0.3, 0.1]), 0.5), "sorted ascending"),  # a wrong threshold
        (lambda: conformal_quantile(torch.tensor(0.5), 0.5), "sorted_scores must have at least one axis"),
        (lambda: precise_log_softmax(torch.tensor(1.0)), "logits must have at least one axis"),
        (lambda: set_coverage(torch.ones(1, 2, 2), [[0, 0]]), "sets must be a bool tensor"),
        (lambda: conformal_sets(torch.tensor(log_proba), None), "threshold must be a number"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()

