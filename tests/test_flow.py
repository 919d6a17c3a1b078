import copy
import inspect
import itertools
import math
import re
import time
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.linear_model import LogisticRegression
from torch import nn

import igraphflow.flow
import igraphflow.head
from igraphflow import ConditionalGraphFlow, GaussianMixtureLatent
from igraphflow._checks import as_signals, finite_result, warn_lost_resolution
from igraphflow.checkpoint import save_atomic
from igraphflow.datasets import load
from igraphflow.flow import CHECKPOINT_KIND, _capped_steps
from igraphflow.head import products_validate
from igraphflow.ode import ODEBlock
from igraphflow.separability import REFERENCE_SEPARATION

EDGES = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
SMALL = dict(num_blocks=2, hidden=8, max_epochs=10, batch_size=64, lr=5e-3, seed=0)


def toy(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    Y = torch.randint(0, 2, (n, 4), generator=g)
    X = torch.randn(n, 4, 2, generator=g) + 2.0 * Y.unsqueeze(-1)
    return X, Y


@pytest.fixture(scope="module")
def fitted():
    X, Y = toy()
    return ConditionalGraphFlow(EDGES, 4, 2, 2, **SMALL).fit(X, Y, progress=False)


def _record_calls(monkeypatch, owner, name):
    r"""Wraps ``owner.name`` so that it keeps the arguments of every call, by parameter name, in the list returned."""
    calls, original = [], getattr(owner, name)
    signature = inspect.signature(original)

    def recording(*args, **kwargs):
        calls.append(signature.bind(*args, **kwargs).arguments)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, recording)
    return calls


class LinearField(nn.Module):
    def __init__(self, A):
        super().__init__()
        self.register_buffer("A", A)

    def forward(self, t, x):
        return (x.flatten(1) @ self.A.T).view_as(x)


class ElementwiseField(nn.Module):
    r"""dx/dt = -tanh(x), coordinate by coordinate: a diagonal Jacobian, curved everywhere."""

    def forward(self, t, x):
        return -torch.tanh(x)


@pytest.mark.parametrize("standardized", [False, True])
def test_log_prob_of_a_linear_flow_is_the_closed_form_gaussian(standardized):
    torch.manual_seed(0)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=1, sigma=0.8, seed=0)
    A = 0.4 * torch.randn(8, 8)
    model.blocks = nn.ModuleList([ODEBlock(LinearField(A), 0.0, 1.0, steps=32)])
    loc, scale = torch.zeros(8), torch.ones(8)
    if standardized:  # the affine first step, as a fit would set it
        loc, scale = torch.randn(8) * 3, torch.rand(8) * 4 + 0.1
        model.standardizer.loc.copy_(loc.view(4, 2))
        model.standardizer.scale.copy_(scale.view(4, 2))
    model.fitted.fill_(True)
    X, Y = toy(6)
    X = X * scale.view(4, 2) + loc.view(4, 2)
    # H = M S^-1 (X - m) with M = expm(A), H | Y ~ N(mu_Y, sigma^2 I)
    #   =>  X | Y ~ N(m + S M^-1 mu_Y, sigma^2 S M^-1 M^-T S).
    SM_inv = torch.diag(scale.double()) @ torch.linalg.inv(torch.linalg.matrix_exp(A.double()))
    expected = [
        multivariate_normal(loc.double() + SM_inv @ model.latent.means[y].detach().double().flatten(),
                            0.64 * SM_inv @ SM_inv.T).logpdf(x.flatten())
        for x, y in zip(X.double(), Y)
    ]
    assert np.allclose(model.log_prob(X, Y).numpy(), expected, atol=1e-3)
    torch.testing.assert_close(model.decode(model.encode(X)), X, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("scale", [1e-8, 1e10])
@pytest.mark.filterwarnings("ignore:the classifier")  # said of the fit without the standardisation
@pytest.mark.filterwarnings("ignore:the trained blocks do not invert")  # likewise: at 1e-8, float32 rounding
def test_the_fit_does_not_depend_on_the_units_of_the_signals(scale):
    # Standardised, the blocks see the same signals whatever their units: densities change by
    # the log-determinant of the scaling alone, samples scale, predictions stay.
    X, Y = toy()
    settings = dict(SMALL, max_epochs=3)
    unit = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X[:200], Y[:200], progress=False)
    scaled = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X[:200] * scale, Y[:200], progress=False)
    torch.testing.assert_close(scaled.log_prob(X[200:] * scale, Y[200:]) + 8 * math.log(scale),
                               unit.log_prob(X[200:], Y[200:]), atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(scaled.sample(Y[200:], seed=1) / scale, unit.sample(Y[200:], seed=1), atol=1e-4, rtol=1e-4)
    assert torch.equal(scaled.predict(X[200:] * scale), unit.predict(X[200:]))
    # Without the standardisation the blocks see signals of scale 1e-8 or 1e10, which they
    # cannot carry to the unit latent (as a head on H alone shows).
    raw = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings, standardize=False, head_input="latent")
    raw.fit(X[:200] * scale, Y[:200], progress=False)
    assert torch.equal(raw.standardizer.scale, torch.ones(4, 2))
    assert (raw.predict(X[200:] * scale) == Y[200:]).float().mean() < (unit.predict(X[200:]) == Y[200:]).float().mean() - 0.2


def test_float64_signals_that_float32_would_round_away_are_warned_about():
    # 1e6 + 0.01 z: float32 keeps about two values per node, and the fit sees a constant.
    X, Y = toy(64)
    offset = 1e6 + 0.01 * X.double()
    with pytest.warns(UserWarning, match=r"fewer than 100 steps per standard deviation of 8 node features .*model.double"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1)).fit(offset, Y, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither in float64, nor for an offset float32 resolves
        ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1)).double().fit(offset, Y, progress=False)
        ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1)).fit(1e3 + X.double(), Y, progress=False)


@pytest.mark.filterwarnings("ignore:max_time")  # a budget of 0 s: no block to wait for, and it says so
def test_the_resolution_warning_points_at_the_line_that_calls_fit():
    # The warning is about the caller's data: it names the caller's file, not one inside igraphflow.
    X, Y = toy(64)
    with pytest.warns(UserWarning, match="fewer than 100 steps") as caught:
        ConditionalGraphFlow(EDGES, 4, 2, 2, **SMALL).fit(1e6 + 0.01 * X.double(), Y, max_time=0, progress=False)
    resolution = [w for w in caught if "fewer than 100 steps" in str(w.message)]
    assert resolution[0].filename == __file__


def test_float32_signals_rounded_before_the_fit_are_warned_about():
    # The warning looked only at the cast: float32 input that had lost its spread passed unsaid.
    X = toy(64)[0].double()
    for model_dtype in (torch.float32, torch.float64):
        with pytest.warns(UserWarning, match=r"X comes in float32, which already holds fewer than 100 steps .*subtract the offset"):
            warn_lost_resolution((1e6 + 0.1 * X).float(), model_dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_lost_resolution((1e3 + X).float(), torch.float32)


def test_integer_signals_that_float32_would_round_away_are_warned_about():
    # Counts near 1e8 spread by 50: float32 spaces them 8 apart. Integers used to pass unchecked.
    counts = (1e8 + 50 * toy(64)[0].double()).round().long()
    with pytest.warns(UserWarning, match=r"X in float32 keeps fewer than 100 steps .*subtract the offset from X"):
        warn_lost_resolution(counts, torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exact in float64; small counts are exact in float32 too
        warn_lost_resolution(counts, torch.float64)
        warn_lost_resolution(counts - 10**8, torch.float32)
        # Near 1e6, spread by 5: float32 holds every integer below 2^24, so nothing is rounded.
        warn_lost_resolution((1e6 + 5 * toy(64)[0].double()).round().long(), torch.float32)
        # Just below 2^24, where float32 spaces its numbers 1 apart: still every integer.
        near_limit = (2**24 - 100 + 5 * toy(64)[0].double()).round().long()
        assert near_limit.max() < 2**24 and torch.equal(near_limit.float().long(), near_limit)
        warn_lost_resolution(near_limit, torch.float32)


def test_a_single_signal_is_not_checked_for_resolution():
    # One row has no spread to lose, and torch warns about the degrees of freedom of its std.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_lost_resolution(1e6 + torch.zeros(1, 4, 2, dtype=torch.float64), torch.float32)


def test_float64_signals_below_float32s_normal_numbers_are_warned_about():
    # float32 spaces its subnormal numbers 1.4e-45 apart: 1e-44 z keeps a few dozen values, 1e-50 z none.
    X = toy(64)[0].double()
    for scale in (1e-44, 1e-50):
        with pytest.warns(UserWarning, match=r"fewer than 100 steps per standard deviation of 8 node features .*rescale X"):
            warn_lost_resolution(X * scale, torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # normal float32 numbers, or float64 throughout
        warn_lost_resolution(X * 1e-30, torch.float32)
        warn_lost_resolution(X * 1e-300, torch.float64)


@pytest.mark.parametrize("classifier", ["graph", "bayes"])
def test_a_classifier_that_learns_nothing_of_x_is_warned_about(classifier):
    X, Y = toy(512)
    settings = dict(SMALL, max_epochs=2, classifier=classifier)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False)
    unrelated = toy(512, seed=1)[1]  # labels drawn apart from X
    with pytest.warns(UserWarning, match=rf"classifier \({classifier}\) predicts the training labels no better than their frequencies"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, unrelated, progress=False)


def test_an_uninformative_classifier_is_warned_about_when_a_label_never_occurs():
    # The frequency 0 of a label absent from Y must not make the entropy of the labels NaN.
    X, _ = toy(256)
    unrelated = toy(256, seed=1)[1]
    model = ConditionalGraphFlow(EDGES, 4, 2, 3, **dict(SMALL, max_epochs=2))
    with pytest.warns(UserWarning, match="predicts the training labels no better than their frequencies"):
        model.fit(X, unrelated, progress=False)


def test_a_model_saved_before_the_standardisation_loads_without_it(tmp_path):
    X, Y = toy(64)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1), standardize=False).fit(X * 3, Y, progress=False)
    model.save(tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=False)
    for key in ("standardizer.loc", "standardizer.scale"):
        del payload["state_dict"][key]
    del payload["config"]["standardize"]
    save_atomic(payload, tmp_path / "old.pt", CHECKPOINT_KIND)
    old = ConditionalGraphFlow.load(tmp_path / "old.pt")
    assert old.config["standardize"] is False
    assert torch.equal(old.log_prob(X * 3, Y), model.log_prob(X * 3, Y))


def test_fit_improves_likelihood_and_keeps_history(fitted):
    X, Y = toy(seed=1)
    untrained = ConditionalGraphFlow(EDGES, 4, 2, 2, **SMALL)
    untrained.fitted.fill_(True)
    assert fitted.log_prob(X, Y).mean() > untrained.log_prob(X, Y).mean() + 1.0
    assert len(fitted.history_) == 2 and all(np.isfinite(r.w2) for r in fitted.history_)


def test_the_recorded_validation_likelihood_is_the_models():
    # Without the noise fit the latent after the last block is the model's, so the validation
    # NLL of the last record (Hutchinson log-determinants, one probe per signal) estimates the
    # exact NLL of the held-out signals. The signals are spread out so that the flow must
    # contract them (log-determinant about -2 per signal), which a wrong sign would show.
    X, Y = toy(400)
    X = 3 * X
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, fit_noise=False, **SMALL).fit(X, Y, progress=False)
    held_out = model._split(X, Y)  # the same seed, the same split
    exact = -model.log_prob(held_out.x_val, held_out.y_val).mean().item() / 8
    assert model.history_[-1].val_nll_per_dim == pytest.approx(exact, abs=0.03)


def test_encode_decode_round_trip(fitted):
    X, _ = toy(32, seed=2)
    assert torch.allclose(fitted.decode(fitted.encode(X)), X, atol=1e-4)


def test_hutchinson_log_prob_is_close_to_exact_on_average(fitted):
    X, Y = toy(512, seed=3)
    exact = fitted.log_prob(X, Y).mean()
    estimate = fitted.log_prob(X, Y, exact=False).mean()
    assert abs(exact - estimate) / 8 < 0.01
    # A seed fixes the probes: the same estimate again, another one for another seed.
    seeded = fitted.log_prob(X[:64], Y[:64], exact=False, seed=1)
    assert torch.equal(seeded, fitted.log_prob(X[:64], Y[:64], exact=False, seed=1))
    assert not torch.equal(seeded, fitted.log_prob(X[:64], Y[:64], exact=False, seed=2))


def test_the_exact_log_prob_of_large_signals_shows_a_progress_bar(fitted, monkeypatch, capsys):
    X, Y = toy(8, seed=4)
    quiet = fitted.log_prob(X, Y)
    assert "log_prob" not in capsys.readouterr().err  # D = 8: seconds at most, no bar by default
    monkeypatch.setattr(igraphflow.flow, "QUIET_EXACT_DIM", 7)  # as if the signals were large
    assert torch.equal(fitted.log_prob(X, Y), quiet)
    shown = capsys.readouterr().err
    assert "log_prob" in shown and "8/8" in shown
    fitted.log_prob(X, Y, exact=False)
    fitted.log_prob(X, Y, progress=False)
    assert "log_prob" not in capsys.readouterr().err  # the estimate is fast; a bar can be declined
    monkeypatch.undo()
    fitted.log_prob(X, Y, progress=True)
    assert "8/8" in capsys.readouterr().err
    with pytest.raises(ValueError, match="progress must be True or False"):
        fitted.log_prob(X, Y, progress="yes")


def test_the_log_prob_estimate_is_exact_for_a_field_with_a_diagonal_jacobian():
    # With Rademacher probes eps^T J eps = sum_i J_ii eps_i^2 = tr J when J is diagonal: Hutchinson's
    # estimate through the vector-Jacobian product is the exact trace whatever the probe. A finite
    # difference is not (its bias, s/2 sum_i eps_i f''(x_i), is about 1e-3 here).
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=2, seed=0).double()
    model.blocks = nn.ModuleList([ODEBlock(ElementwiseField(), 0.0, 0.5, steps=8), ODEBlock(ElementwiseField(), 0.5, 1.0, steps=8)])
    model.fitted.fill_(True)
    X, Y = toy(16)
    torch.testing.assert_close(model.log_prob(X, Y, exact=False, seed=0), model.log_prob(X, Y), atol=1e-9, rtol=0)


def test_predictions_and_samples(fitted):
    X, Y = toy(64, seed=4)
    proba = fitted.predict_proba(X)
    assert proba.shape == (64, 4, 2) and torch.allclose(proba.sum(-1), torch.ones(64, 4))
    assert (fitted.predict(X) == Y).float().mean() > 0.8
    assert torch.equal(fitted.sample(Y, seed=3), fitted.sample(Y, seed=3))
    assert fitted.sample(Y).shape == (64, 4, 2)


def test_sample_draws_the_seeded_latent_noise_scaled_by_the_temperature():
    # With no blocks X = H = mu_Y + temperature * sigma * Z: the draws around the class means
    # have standard deviation temperature * sigma, a seed fixes Z, and other seeds change it.
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=1, sigma=0.6, seed=0)
    model.blocks = nn.ModuleList()
    model.fitted.fill_(True)
    _, Y = toy(2000, seed=6)
    means = model.latent.means.detach()[Y]
    noise = model.sample(Y, seed=1, temperature=1.0) - means
    assert noise.std().item() == pytest.approx(0.6, rel=0.03)  # 16000 draws: standard error 0.6 %
    torch.testing.assert_close(model.sample(Y, seed=1, temperature=0.25) - means, 0.25 * noise)
    assert torch.equal(model.sample(Y, seed=1, temperature=1.0), model.sample(Y, seed=1, temperature=1.0))
    other = model.sample(Y, seed=2, temperature=1.0) - means
    assert abs(torch.corrcoef(torch.stack([noise.flatten(), other.flatten()]))[0, 1].item()) < 0.05


def test_seed_makes_fit_reproducible():
    X, Y = toy(128)
    a = ConditionalGraphFlow(EDGES, 4, 2, 2, **SMALL).fit(X, Y, progress=False)
    b = ConditionalGraphFlow(EDGES, 4, 2, 2, **SMALL).fit(X, Y, progress=False)
    assert torch.equal(a.log_prob(X[:8], Y[:8]), b.log_prob(X[:8], Y[:8]))


def test_a_seeded_fit_takes_no_random_numbers_from_torchs_global_generator(monkeypatch):
    # The noise fit's seed and the temperature search's draws come from the fit's seed: two fits
    # after different global seeds fit the same noise and search the same temperature.
    X, Y = toy(128)
    draws, models = [], []
    noise_fits, search = _record_calls(monkeypatch, GaussianMixtureLatent, "fit_noise_"), igraphflow.flow.energy_temperature

    def recording_search(decoded, reference):
        draws.append(decoded(1.0))
        return search(decoded, reference)

    monkeypatch.setattr(igraphflow.flow, "energy_temperature", recording_search)
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        models.append(ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=2)).fit(X, Y, progress=False))
    assert noise_fits[0]["seed"] == noise_fits[1]["seed"] and torch.equal(draws[0], draws[1])
    assert torch.equal(models[0].sample(Y[:8], seed=1), models[1].sample(Y[:8], seed=1))


def test_max_time_leaves_a_usable_invertible_model():
    X, Y = toy(256)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=5, hidden=8, max_epochs=500, patience=500, seed=0)
    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, Y, max_time=0.5, progress=False)
    assert time.monotonic() - started < 10  # 500 epochs per block would take minutes
    assert 1 <= model.num_blocks <= 5
    # Blocks dropped (where one overran the budget) are said.
    dropped = [str(w.message) for w in caught if "ran out after" in str(w.message)]
    assert len(dropped) == (model.num_blocks < 5)
    assert all(f"ran out after {model.num_blocks} of 5 blocks" in message for message in dropped)
    assert torch.isfinite(model.log_prob(X[:8], Y[:8])).all()
    assert torch.allclose(model.decode(model.encode(X[:8])), X[:8], atol=1e-4)


def test_linear_classifier_head():
    X, Y = toy(256)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **SMALL, classifier="linear").fit(X, Y, progress=False)
    assert (model.predict(X) == Y).float().mean() > 0.8


@pytest.mark.parametrize("classifier", ["graph", "linear"])
def test_heads_fit_signals_far_from_zero(classifier):
    # Their softmax layers were fitted on the raw latent: 300 away from zero, L-BFGS stayed at chance.
    X, Y = toy(200, seed=3)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **{**SMALL, "num_blocks": 1, "max_epochs": 1}, classifier=classifier)
    model.fit(X + 300.0, Y, progress=False)
    reference = ConditionalGraphFlow(EDGES, 4, 2, 2, **{**SMALL, "num_blocks": 1, "max_epochs": 1}, classifier="bayes")
    reference.fit(X + 300.0, Y, progress=False)
    accuracy = (model.predict(X + 300.0) == Y).float().mean()
    assert accuracy > 0.9 and accuracy >= (reference.predict(X + 300.0) == Y).float().mean() - 0.05


def test_the_recorded_movement_is_the_mean_squared_distance_over_the_training_signals():
    # history_[k].w2 feeds the depth rule (w2 / D < w2_tolerance), the CLI summary and compare's
    # records; the depth tests set it by hand, so a mean over coordinates instead passed them all.
    X, Y = toy(128)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=2)).fit(X, Y, progress=False)
    x = model.standardizer(model._split(X, Y).x)  # the training part, as the blocks saw it
    with torch.no_grad():
        for block, record in zip(model.blocks, model.history_, strict=True):
            moved = block(x)
            assert record.w2 == pytest.approx((moved - x).square().sum((1, 2)).mean().item(), rel=1e-5)
            x = moved


@pytest.mark.parametrize("signals_per_chunk", [None, 7])
def test_the_head_is_fitted_on_max_rows_nodes_drawn_at_random(monkeypatch, signals_per_chunk):
    # All N V rows at once took gigabytes on large graphs (2.6 GB at V = 2025, N = 2000); the
    # first whole signals instead could leave out a class that only a few signals hold. The
    # drawn rows' features are computed a chunk of signals at a time: with 7 signals a chunk,
    # most rows come from a chunk that does not start at signal 0.
    monkeypatch.setattr(igraphflow.head, "MAX_ROWS", 100)
    if signals_per_chunk is not None:
        monkeypatch.setattr(igraphflow.head, "chunk_size", lambda x, scalars=None: signals_per_chunk)
    captured = _record_calls(monkeypatch, igraphflow.head, "fit_softmax")
    X, Y = toy(256)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **SMALL).fit(X, Y, progress=False)
    # The last fit is the final one (the comparison with and without the products of the node
    # features fits on the training samples before it).
    features, targets = captured[-1]["features"], captured[-1]["targets"]
    assert len(features) == 100
    # Each row is a node's own features with its own label, from far more than 100 / 4 signals.
    every = model.head[:-1](model._head_signals(model.encode(X), model.standardizer(X))).flatten(0, 1).double()
    distance = torch.cdist(features.double(), every)
    match = distance.argmin(1)
    assert distance.min(1).values.max() < 1e-4 and torch.equal(Y.flatten()[match], targets)
    assert (match // 4).unique().numel() > 50
    assert (model.predict(X) == Y).float().mean() > 0.8


@pytest.mark.parametrize("head_input", ["both", "latent"])
def test_graph_classifier_head_is_logistic_regression_on_neighbourhood_means(tmp_path, head_input):
    # One label per graph, weak per-node evidence: the neighbourhood means carry most of it.
    g = torch.Generator().manual_seed(1)
    Y = torch.randint(0, 3, (300, 1), generator=g).expand(300, 4)
    X = torch.randn(300, 4, 2, generator=g) + torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])[Y]
    kwargs = dict(SMALL, num_blocks=1, max_epochs=2, orders=(0, 1, 2), head_input=head_input)
    graph = ConditionalGraphFlow(EDGES, 4, 2, 3, **kwargs, classifier="graph").fit(X, Y, progress=False)
    # The reference: scikit-learn's multinomial logistic regression with the same L2 penalty
    # (1e-4 |W|^2 on the mean cross-entropy) on the means over the 0-, 1- and 2-hop balls of H
    # (and of the standardised input, with head_input), standardised (the head's penalty weighs
    # every feature alike, whatever its units).
    H = graph.encode(X).double()
    if head_input == "both":
        H = torch.cat([H, graph.standardizer(X).double()], -1)
    ring = torch.eye(4, dtype=torch.float64)
    ring[EDGES[0], EDGES[1]] = 1.0
    balls = [torch.eye(4, dtype=torch.float64), (ring > 0).double(), (ring @ ring > 0).double()]
    features = torch.cat([(ball / ball.sum(1, keepdim=True)) @ H for ball in balls], -1).flatten(0, 1)
    features = (features - features.mean(0)) / features.std(0, correction=0)
    reference = LogisticRegression(C=1.0 / (2e-4 * features.size(0)), tol=1e-10, max_iter=10_000)
    reference.fit(features.numpy(), Y.flatten().numpy())
    expected = torch.from_numpy(reference.predict_proba(features.numpy())).view(300, 4, 3)
    assert torch.allclose(graph.predict_proba(X).double(), expected, atol=2e-3)
    # Pooling the neighbours beats the node-wise head of the same flow.
    linear = ConditionalGraphFlow(EDGES, 4, 2, 3, **kwargs, classifier="linear").fit(X, Y, progress=False)
    assert (graph.predict(X) == Y).float().mean() > (linear.predict(X) == Y).float().mean() + 0.1
    graph.save(tmp_path / "graph.pt")
    assert torch.equal(ConditionalGraphFlow.load(tmp_path / "graph.pt").predict_proba(X), graph.predict_proba(X))


def _ramps(n=600):
    r"""Signals whose node label is 1 where the two features differ by much, either way (a
    ramp): no linear function of the features or their neighbourhood means tells them apart."""
    g = torch.Generator().manual_seed(3)
    X = torch.randn(n, 4, 2, generator=g)
    return X, ((X[..., 0] - X[..., 1]).abs() > 1.2).long()


@pytest.fixture(scope="module")
def ramp_model():
    X, Y = _ramps()
    return ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, num_blocks=1, max_epochs=2)).fit(X, Y, progress=False)


def test_the_graph_head_takes_the_products_of_the_features_where_the_labels_follow_the_spread(ramp_model):
    X, Y = _ramps()
    majority = max((Y == 0).float().mean(), (Y == 1).float().mean())
    assert ramp_model.head_products and ramp_model.head[0].products
    assert (ramp_model.predict(X) == Y).float().mean() > majority + 0.1


def test_the_graph_head_leaves_the_products_out_where_the_means_alone_predict_as_well(fitted):
    # The toy classes differ in mean alone.
    widths = 3 * 2 * int(fitted.head_reads.sum())
    assert not fitted.head_products and not fitted.head[0].products and fitted.head[-1].in_features == widths


def test_one_validation_signal_cannot_show_that_the_products_help():
    X, Y = toy(64)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1)).fit(X, Y, progress=False)
    h = model.encode(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the spread of one difference: torch warns, and it is NaN
        assert not products_validate(model.head, 2, (h[:63], Y[:63]), (h[63:], Y[63:]), torch.Generator().manual_seed(0))


def test_graphs_of_many_features_get_a_head_without_products(monkeypatch):
    monkeypatch.setattr(igraphflow.head, "MAX_PRODUCT_FEATURES", 1)
    X, Y = _ramps()
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, num_blocks=1, max_epochs=1)).fit(X, Y, progress=False)
    assert not model.head_products and model.head[-1].in_features == 3 * 2 * int(model.head_reads.sum())


def test_a_head_with_products_round_trips_and_its_state_loads_into_a_new_model(ramp_model, tmp_path):
    X, _ = _ramps(16)
    ramp_model.save(tmp_path / "model.pt")
    assert torch.equal(ConditionalGraphFlow.load(tmp_path / "model.pt").predict_proba(X), ramp_model.predict_proba(X))
    fresh = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, num_blocks=1, max_epochs=2))
    fresh.load_state_dict(ramp_model.state_dict())
    assert fresh.head_products and torch.equal(fresh.predict_proba(X), ramp_model.predict_proba(X))


def test_a_model_saved_before_the_head_could_take_products_loads(fitted, tmp_path):
    fitted.save(tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=False)
    del payload["kind"], payload["state_dict"]["head_uses_products"]  # as written then
    save_atomic(payload, tmp_path / "old.pt", CHECKPOINT_KIND)
    X, _ = toy(16, seed=5)
    assert torch.equal(ConditionalGraphFlow.load(tmp_path / "old.pt").predict_proba(X), fitted.predict_proba(X))


def test_a_model_saved_before_the_head_read_the_input_loads_with_a_head_on_the_latent(tmp_path):
    X, Y = toy(64)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1), head_input="latent").fit(X, Y, progress=False)
    model.save(tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=False)
    del payload["config"]["head_input"], payload["state_dict"]["head_reads"]  # as written then
    save_atomic(payload, tmp_path / "old.pt", CHECKPOINT_KIND)
    old = ConditionalGraphFlow.load(tmp_path / "old.pt")
    assert old.config["head_input"] == "latent" and old.head[-1].in_features == 3 * 2
    assert torch.equal(old.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("cheaper, reads", [("input", (False, True)), ("both", (True, True))])
# The gain of the head on both is constant over the signals here, so any gain is beyond its spread.
def test_the_head_reads_what_predicts_the_latest_training_signals_better(tmp_path, monkeypatch, cheaper, reads):
    # The first feature of node 0 holds each signal's place in time: the choice must see the
    # signals in the order given.
    X, Y = toy(256)
    X[:, 0, 0] = torch.arange(256.0)
    seen = []

    def latest_losses(head, num_features, h, y, generator):
        seen.append((num_features, h))
        return torch.full((23,), 0.1 if (num_features == 2) == (cheaper == "input") else 0.2, dtype=torch.float64)

    monkeypatch.setattr(igraphflow.flow, "latest_losses", latest_losses)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1)).fit(X, Y, progress=False)
    assert [width for width, _ in seen] == [4, 2]  # both, then the input alone
    time_order = seen[1][1][:, 0, 0]
    assert len(time_order) == 256 - 26 and bool((time_order.diff() > 0).all())  # the training part, in order
    assert tuple(model.head_reads.tolist()) == reads and model.head[-1].in_features == 3 * 2 * sum(reads)
    assert model.head_input_ == cheaper
    expected = torch.log_softmax(model.head(model._head_signals(model.encode(X), model.standardizer(X))).double(), -1)
    torch.testing.assert_close(model.predict_log_proba(X), expected, atol=1e-5, rtol=1e-5)
    if reads == (False, True):  # the flow's blocks do not enter the predictions
        torch.testing.assert_close(expected, torch.log_softmax(model.head(model.standardizer(X)).double(), -1))
    model.save(tmp_path / "model.pt")
    loaded = ConditionalGraphFlow.load(tmp_path / "model.pt")
    assert tuple(loaded.head_reads.tolist()) == reads and torch.equal(loaded.predict_proba(X), model.predict_proba(X))


def test_the_head_on_both_needs_a_gain_beyond_two_standard_errors(monkeypatch):
    gain = torch.tensor([0.3, -0.1, 0.2, -0.2, 0.1], dtype=torch.float64)  # mean 0.06, standard error 0.09
    losses = iter([torch.zeros(5, dtype=torch.float64), gain])
    monkeypatch.setattr(igraphflow.flow, "latest_losses", lambda *args: next(losses))
    X, Y = toy(64)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1)).fit(X, Y, progress=False)
    assert tuple(model.head_reads.tolist()) == (False, True)


def test_a_fit_on_few_signals_keeps_the_head_on_both(monkeypatch):
    called = []
    monkeypatch.setattr(igraphflow.flow, "latest_losses", lambda *args: called.append(1))
    X, Y = toy(21)  # 19 training signals after the validation tenth
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1)).fit(X, Y, progress=False)
    assert not called and tuple(model.head_reads.tolist()) == (True, True)


def test_save_load_round_trip(fitted, tmp_path):
    X, Y = toy(16, seed=5)
    fitted.save(tmp_path / "model.pt")
    loaded = ConditionalGraphFlow.load(tmp_path / "model.pt")
    assert torch.equal(loaded.log_prob(X, Y), fitted.log_prob(X, Y))
    assert torch.equal(loaded.sample(Y, seed=1), fitted.sample(Y, seed=1))
    assert [r.w2 for r in loaded.history_] == [r.w2 for r in fitted.history_]


def test_moved_block_intervals_and_settled_steps_survive_save_and_load(tmp_path):
    # refine and reparameterize move the blocks off the schedule that the settings give, and
    # map_tolerance gives each block its steps: the file keeps both.
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **SMALL)
    model.blocks[0].set_interval(0.0, 0.3)
    model.blocks[1].set_interval(0.3, 1.1)
    model.blocks[1].steps = 32
    model.save(tmp_path / "model.pt")
    loaded = ConditionalGraphFlow.load(tmp_path / "model.pt")
    assert [b.interval.tolist() for b in loaded.blocks] == [b.interval.tolist() for b in model.blocks]
    assert [b.steps for b in loaded.blocks] == [8, 32]


def test_a_model_saved_before_the_blocks_steps_were_saved_loads_with_its_setting(fitted, tmp_path):
    fitted.save(tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=False)
    del payload["kind"]
    for index in range(len(fitted.blocks)):  # as written then
        del payload["state_dict"][f"blocks.{index}.solver_steps"]
    del payload["config"]["map_tolerance"]
    payload["config"]["steps"] = 4
    save_atomic(payload, tmp_path / "old.pt", CHECKPOINT_KIND)
    old = ConditionalGraphFlow.load(tmp_path / "old.pt")
    assert [b.steps for b in old.blocks] == [4] * len(fitted.blocks)
    X, Y = toy(16, seed=5)
    assert torch.isfinite(old.log_prob(X, Y)).all()


def test_calling_the_model_says_which_methods_answer(fitted):
    with pytest.raises(TypeError, match=r"not called: use encode\(X\)"):
        fitted(toy(2)[0])


def test_load_state_dict_refuses_the_weights_of_a_model_on_another_graph(fitted):
    # The layers keep their graph in unsaved buffers: the weights were computed on this one's,
    # while the model claimed the other's edge list, which save then wrote.
    X, Y = toy(8, seed=5)
    same_graph = ConditionalGraphFlow(EDGES.flip(1), 4, 2, 2, **SMALL)  # the edges in another order
    same_graph.load_state_dict(fitted.state_dict())
    assert torch.equal(same_graph.log_prob(X, Y), fitted.log_prob(X, Y))
    assert torch.equal(same_graph.edge_index, EDGES.flip(1))
    other_graph = ConditionalGraphFlow(torch.tensor([[0, 2, 2, 1, 1, 3], [2, 0, 1, 2, 3, 1]]), 4, 2, 2, **SMALL)
    with pytest.raises(ValueError, match="the state_dict is that of a model on another graph"):
        other_graph.load_state_dict(fitted.state_dict())


def test_load_rejects_other_checkpoints(tmp_path):
    save_atomic({"weights": torch.zeros(2)}, tmp_path / "other.pt", kind="some.OtherModel")
    with pytest.raises(ValueError, match="OtherModel"):
        ConditionalGraphFlow.load(tmp_path / "other.pt")
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="unknown kind"):
        ConditionalGraphFlow.load(tmp_path / "plain.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint") as error:
        ConditionalGraphFlow.load(tmp_path / "corrupt.pt")
    assert "\n" not in str(error.value)  # one line, not torch's paragraphs
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "other.pt").read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable checkpoint") as error:
        ConditionalGraphFlow.load(tmp_path / "truncated.pt")
    assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError):
        ConditionalGraphFlow.load(tmp_path / "missing.pt")
    save_atomic({"config": {}}, tmp_path / "partial.pt", kind=CHECKPOINT_KIND)
    with pytest.raises(ValueError, match="lacks"):
        ConditionalGraphFlow.load(tmp_path / "partial.pt")


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda p: p["config"].update(bogus=1), "TypeError: .*unexpected keyword argument 'bogus'"),
        (lambda p: p.update(config=list(p["config"].items())), "its config is a list, not a dict"),
        (lambda p: p["config"].update(hidden="wide"), "hidden must be an integer"),
        (lambda p: p.update(history=[{"nonsense": 1}]), "TypeError: .*BlockRecord.*'nonsense'"),
        (lambda p: p.update(history=5), "TypeError: 'int' object is not iterable"),
        (lambda p: p["state_dict"]["_extra_state"].__setitem__(0, math.nan), r"unreadable calibration state with header \[nan"),
        (lambda p: p["state_dict"].pop("fitted"), r"RuntimeError: .*Missing key\(s\) in state_dict: \"fitted\""),
        (lambda p: p.pop("edge_index"), "it lacks edge_index"),
        (lambda p: p["state_dict"]["latent.means"].fill_(math.nan), r"weights or buffers hold NaN or infinite values \(latent.means\)"),
        # Buffers too: a NaN temperature loaded, then sampling blamed an "H" nobody passed.
        (lambda p: p["state_dict"]["latent.temperature"].fill_(math.nan), r"NaN or infinite values \(latent.temperature\)"),
        (lambda p: p["state_dict"]["latent.log_prior"].fill_(math.inf), r"NaN or infinite values \(latent.log_prior\)"),
        # A sampling temperature no fit writes: draws mirrored through the means.
        (lambda p: p["state_dict"]["latent.temperature"].fill_(-1.0), "the latent noise is inconsistent: temperature -1 is not positive"),
    ],
)
def test_load_names_the_file_of_a_damaged_checkpoint(fitted, tmp_path, damage, reason):
    # Each of these failed with the bare error of the code that read the entry (a TypeError
    # without the file, 'cannot convert float NaN to integer', a dictionary update error).
    fitted.save(tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    damage(payload)
    torch.save(payload, tmp_path / "damaged.pt")
    header = f"{tmp_path / 'damaged.pt'} does not hold a valid {CHECKPOINT_KIND} checkpoint"
    with pytest.raises(ValueError, match=f"(?s)^{re.escape(header)} .*{reason}"):  # (?s): torch's reasons span lines
        ConditionalGraphFlow.load(tmp_path / "damaged.pt")


def test_resume_names_the_file_of_a_damaged_checkpoint(tmp_path):
    X, Y = toy(64)
    settings = {**SMALL, "num_blocks": 1, "max_epochs": 1}
    ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=tmp_path)
    path, damaged = tmp_path / "fit.pt", tmp_path / "damaged" / "fit.pt"
    damaged.parent.mkdir()
    for damage, reason in ((lambda p: p.pop("fingerprint"), "KeyError: 'fingerprint'"),
                           (lambda p: p.update(finished="all"), "finished must be an integer"),
                           (lambda p: p.update(history=[{"nonsense": 1}]), "TypeError: .*'nonsense'")):
        payload = torch.load(path, weights_only=True)
        damage(payload)
        torch.save(payload, damaged)
        with pytest.raises(ValueError, match=f"^{re.escape(str(damaged))} does not hold a valid .*{reason}"):
            ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=damaged.parent)


def test_a_refused_checkpoint_leaves_the_fit_as_it_was(tmp_path):
    X, Y = toy(64)
    settings = {**SMALL, "num_blocks": 1, "max_epochs": 1}
    ConditionalGraphFlow(EDGES, 4, 2, 2, **{**settings, "hidden": 4}).fit(X, Y, progress=False, checkpoint_dir=tmp_path / "other")
    (tmp_path / "a_file").write_text("")
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False).calibrate(X, Y, alpha=0.2)
    log_prob, sets = model.log_prob(X, Y), model.prediction_sets(X)
    with pytest.raises(ValueError, match="other settings"):
        model.fit(X, Y, progress=False, checkpoint_dir=tmp_path / "other")
    with pytest.raises(ValueError, match="checkpoint_dir"):
        model.fit(X, Y, progress=False, checkpoint_dir=tmp_path / "a_file" / "run")
    # A checkpoint that passes the checks but cannot be restored (weights holding NaN).
    ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=tmp_path / "nan")
    payload = torch.load(tmp_path / "nan" / "fit.pt", weights_only=True)
    payload["state_dict"]["latent.means"].fill_(float("nan"))
    torch.save(payload, tmp_path / "nan" / "fit.pt")
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.fit(X, Y, progress=False, checkpoint_dir=tmp_path / "nan")
    assert model.is_calibrated and torch.equal(model.log_prob(X, Y), log_prob) and torch.equal(model.prediction_sets(X), sets)
    # A checkpoint of a larger graph: other settings, not a damaged file.
    ring = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 4, 4, 0], [1, 0, 2, 1, 3, 2, 4, 3, 0, 4]])
    X5, Y5 = torch.randn(16, 5, 2), torch.randint(2, (16, 5))
    ConditionalGraphFlow(ring, 5, 2, 2, **settings).fit(X5, Y5, progress=False, checkpoint_dir=tmp_path / "ring")
    with pytest.raises(ValueError, match=r"other settings \(num_nodes\)"):
        model.fit(X, Y, progress=False, checkpoint_dir=tmp_path / "ring")


@pytest.mark.parametrize("conv", ["cheb", "gcn"])  # l3net: in test_checkpoint_resume_gives_the_same_model
def test_the_same_graph_written_otherwise_resumes(conv, tmp_path):
    X, Y = toy(64)
    settings = {**SMALL, "num_blocks": 1, "max_epochs": 1, "conv": conv}
    reference = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=tmp_path)
    same = torch.cat([EDGES[:, [4, 0, 2]], torch.tensor([[1, 2], [1, 2]])], 1)  # one direction, self-loops
    resumed = ConditionalGraphFlow(same, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=tmp_path)
    assert torch.equal(resumed.log_prob(X[:8], Y[:8]), reference.log_prob(X[:8], Y[:8]))


@pytest.mark.parametrize(
    "X, Y, message",
    [
        (torch.randn(8, 3, 2), torch.zeros(8, 4, dtype=torch.long), "X must have shape"),
        (torch.randn(8, 4, 2), torch.zeros(8, 3, dtype=torch.long), "Y must have shape"),
        (torch.randn(8, 4, 2), torch.zeros(7, 4, dtype=torch.long), "Y must have shape"),
        (torch.randn(8, 4, 2), torch.full((8, 4), 2), r"outside \[0, num_classes=2\)"),
        (torch.randn(8, 4, 2), torch.full((8, 4), -1), "outside"),
        (torch.full((8, 4, 2), float("nan")), torch.zeros(8, 4, dtype=torch.long), "NaN"),
        (torch.randn(8, 4, 2), torch.full((8, 4), 0.5), "integer class labels"),
        (torch.ones(8, 4, 2, dtype=torch.bool), torch.zeros(8, 4, dtype=torch.long), r"real numbers .*torch.bool"),
        (torch.ones(8, 4, 2, dtype=torch.complex64), torch.zeros(8, 4, dtype=torch.long), r"real numbers .*complex64"),
    ],
)
def test_bad_input_raises_clear_errors(X, Y, message):
    with pytest.raises(ValueError, match=message):
        ConditionalGraphFlow(EDGES, 4, 2, 2, **SMALL).fit(X, Y, progress=False)


def test_integer_signals_of_any_width_are_numbers():
    X = torch.arange(8, dtype=torch.uint8).reshape(1, 4, 2)  # uint8 and int16 were refused as "not real numbers"
    for dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
        assert torch.equal(as_signals(X.to(dtype), 4, 2), X.float())


def test_signals_not_finite_are_counted_and_the_first_in_row_order_is_named():
    X = torch.zeros(4, 3, 2)
    X[1, 2, 0] = -math.inf
    X[3, 0, 1] = math.nan
    with pytest.raises(ValueError, match=re.escape("X holds 2 NaN or infinite values (first at index [1, 2, 0])")):
        as_signals(X, 3, 2)
    # An infinity as given is not blamed on the dtype: it is no value too large for float32.
    X[3, 0, 1] = 0.0
    with pytest.raises(ValueError, match=re.escape("X holds 1 NaN or infinite values (first at index [1, 2, 0])")):
        as_signals(X.double(), 3, 2)


def test_step_schedule_is_geometric_up_to_max_step():
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=12, first_step=0.25, step_growth=1.5, max_step=2.0)
    expected = [min(2.0, 0.25 * 1.5**k) for k in range(12)]
    np.testing.assert_allclose([b.step_size for b in model.blocks], expected, rtol=1e-6)
    starts = [b.interval[0].item() for b in model.blocks]
    np.testing.assert_allclose(starts, np.cumsum([0.0, *expected[:-1]]), rtol=1e-6)


def test_every_block_starts_from_its_own_initialisation():
    # The seed of block k is (seed, k): blocks seeded by the model's seed alone would all start as copies.
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, num_blocks=3))
    weights = [torch.cat([p.flatten() for p in block.parameters()]) for block in model.blocks]
    assert not any(torch.equal(a, b) for a, b in itertools.combinations(weights, 2))


def test_bad_construction_raises_clear_errors(fitted):
    with pytest.raises(ValueError, match="outside"):
        ConditionalGraphFlow(torch.tensor([[0, 9], [9, 0]]), 4, 2, 2)
    with pytest.raises(ValueError, match="conv must be one of"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, conv="gat")
    with pytest.raises(ValueError, match="max_step"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, max_step=0.0)
    with pytest.raises(ValueError, match="classification_weight"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, classification_weight=-1.0)
    with pytest.raises(RuntimeError, match="not fitted"):
        ConditionalGraphFlow(EDGES, 4, 2, 2).sample(torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="H must have shape"):
        fitted.decode(torch.randn(2, 5, 2))
    for name, value in (("hidden", 0), ("batch_size", 0), ("batch_size", -8)):
        with pytest.raises(ValueError, match=name):
            ConditionalGraphFlow(EDGES, 4, 2, 2, **{name: value})
    with pytest.raises(ValueError, match="batch_size"):
        fitted.log_prob(*toy(4), batch_size=0)


def test_encode_and_decode_need_a_fitted_model():
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **SMALL)
    X, _ = toy(4)
    for method in (model.encode, model.decode, model.w2_per_block):
        with pytest.raises(RuntimeError, match="not fitted"):
            method(X)


def test_numpy_scalars_and_arrays_are_accepted_as_settings(tmp_path):
    X, Y = toy(32)
    settings = dict(SMALL, num_blocks=np.int64(1), hidden=np.int64(8), batch_size=np.int32(16), seed=np.int64(0))
    model = ConditionalGraphFlow(np.asarray(EDGES), np.int64(4), np.int64(2), np.int64(2), **settings)
    model.fit(X, Y, progress=False)
    assert model.num_blocks == 1
    model.save(tmp_path / "model.pt")
    loaded = ConditionalGraphFlow.load(tmp_path / "model.pt")
    assert torch.equal(loaded.log_prob(X[:4], Y[:4]), model.log_prob(X[:4], Y[:4]))


@pytest.mark.parametrize("edges", [[[], []], np.zeros((2, 0)), torch.empty(2, 0)])
def test_an_empty_edge_list_of_any_dtype_is_a_graph_without_edges(edges):
    model = ConditionalGraphFlow(edges, 1, 2, 2, **SMALL)
    assert model.edge_index.shape == (2, 0) and model.edge_index.dtype == torch.long


def test_empty_batches_give_empty_outputs(fitted):
    X, Y = toy(4)
    X, Y = X[:0], Y[:0]
    assert fitted.encode(X).shape == fitted.decode(X).shape == fitted.sample(Y).shape == (0, 4, 2)
    assert fitted.predict_proba(X).shape == (0, 4, 2)
    assert fitted.predict(X).shape == (0, 4)
    assert fitted.log_prob(X, Y).shape == fitted.log_prob(X, Y, exact=False).shape == (0,)


@pytest.mark.parametrize("n, validation", [(2, 0.9), (4, 0.9), (3, 0.5), (4, 0.1)])
def test_fit_keeps_a_training_and_a_validation_sample(n, validation):
    X, Y = toy(n)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1), validation=validation)
    model.fit(X, Y, progress=False)
    assert len(model.history_[0].train_loss) == 1 and math.isfinite(model.history_[0].val_loss[0])
    assert torch.isfinite(model.log_prob(X, Y)).all()


def test_fit_shares_the_budget_and_fits_the_noise_on_the_training_split(monkeypatch):
    X, Y = toy(256)  # 230 to train, 26 to validate
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, num_blocks=3, max_epochs=1))
    shares = []

    def recording_train_block(*args, deadline, **kwargs):
        shares.append(deadline - time.monotonic())
        return train_block(*args, deadline=deadline, **kwargs)

    train_block = igraphflow.flow.train_block
    monkeypatch.setattr(igraphflow.flow, "train_block", recording_train_block)
    noise_fits = _record_calls(monkeypatch, GaussianMixtureLatent, "fit_noise_")
    model.fit(X, Y, max_time=30.0, progress=False)
    # The first block gets a third of the budget, not all of it.
    assert len(shares) == 3 and 6.0 < shares[0] <= 10.0  # (what the first block's setup took is shared too)
    assert [(len(call["h"]), len(call["h_val"])) for call in noise_fits] == [(230, 26)]


def test_fit_shares_what_is_left_of_the_budget_equally_among_the_blocks_still_to_train(monkeypatch):
    X, Y = toy(128)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, num_blocks=3, max_epochs=1))
    calls = []

    def recording_train_block(*args, deadline, **kwargs):
        calls.append((time.monotonic(), deadline))
        return train_block(*args, deadline=deadline, **kwargs)

    train_block = igraphflow.flow.train_block
    monkeypatch.setattr(igraphflow.flow, "train_block", recording_train_block)
    before = time.monotonic()
    model.fit(X, Y, max_time=30.0, progress=False)
    # The last block gets all that is left: its deadline is the fit's, 30 s after the fit began.
    end = calls[-1][1]
    assert before + 30.0 <= end <= calls[0][0] + 30.0
    # Block k gets 1 / (3 - k) of what is left when it starts.
    for k, (now, deadline) in enumerate(calls):
        assert deadline - now == pytest.approx((end - now) / (3 - k), abs=0.05)


def test_fit_trains_every_block_with_the_settings_it_was_given(monkeypatch):
    X, Y = toy(64)
    settings = dict(divergence="hutchinson", batch_size=16, lr=1e-3, max_epochs=1, patience=2, barrier_weight=0.2,
                    classification_weight=0.3)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **{**SMALL, **settings})
    calls = _record_calls(monkeypatch, igraphflow.flow, "train_block")
    model.fit(X, Y, progress=False)
    assert [{name: call[name] for name in settings} for call in calls] == [settings] * 2


def test_the_automatic_batch_size_is_a_sixteenth_of_the_training_samples(monkeypatch):
    X, Y = toy(600)  # 540 to train: 33 a batch (all 600 would give 37)
    sizes = []

    def first_block(*args, batch_size, **kwargs):
        sizes.append(batch_size)
        raise KeyboardInterrupt  # the batch size is all this test needs

    monkeypatch.setattr(igraphflow.flow, "train_block", first_block)
    with pytest.raises(KeyboardInterrupt):
        ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, batch_size="auto")).fit(X, Y, progress=False)
    assert sizes == [540 // 16]


def test_the_temperature_compares_draws_for_the_labels_of_the_signals_they_are_scored_against(monkeypatch):
    X, Y = toy(256)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1), fit_noise=False)
    draws = _record_calls(monkeypatch, GaussianMixtureLatent, "sample")
    searches = _record_calls(monkeypatch, igraphflow.flow, "energy_temperature")
    model.fit(X, Y, progress=False)
    (search,) = searches
    Z = model.standardizer(X)  # the search sees the signals as the blocks do
    rows = [int((Z == x).flatten(1).all(1).nonzero()) for x in search["X"]]
    assert draws and len(set(rows)) == len(rows) and all(torch.equal(draw["y"], Y[rows]) for draw in draws)


@pytest.mark.parametrize("n, num_features, compared", [(63, 2, 0), (64, 2, 64), (600, 2, 512), (300, 64, 256)])
def test_the_temperature_is_searched_on_64_to_512_of_all_the_signals_fewer_on_larger_graphs(monkeypatch, n, num_features, compared):
    # TEMPERATURE_SIGNALS: below 64 signals the temperature stays 1; else at most 512 of them, and no
    # more than 2**16 / (V C) above 64 (256 at V C = 256), drawn from the training and validation samples.
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(n, 4, num_features, generator=g), torch.randint(0, 2, (n, 4), generator=g)
    model = ConditionalGraphFlow(EDGES, 4, num_features, 2, **SMALL)
    sizes = []

    def recording_search(decoded, reference):
        sizes.append(len(reference))
        return 1.0

    monkeypatch.setattr(igraphflow.flow, "energy_temperature", recording_search)
    assert model._sample_temperature(model._split(X, Y)) == 1.0
    assert sizes == ([compared] if compared else [])


def test_the_temperature_search_decodes_the_latent_draws_through_the_inverse_flow(monkeypatch):
    # Under dx/dt = a x the flow maps Z to H = e^a Z: a draw at temperature 0, the class mean,
    # decodes to e^-a mu_Y (the forward map would give e^a mu_Y).
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=1, seed=0)
    model.blocks = nn.ModuleList([ODEBlock(LinearField(0.5 * torch.eye(8)), 0.0, 1.0, steps=32)])
    X, _ = toy(64)
    Y = torch.zeros(64, 4, dtype=torch.long)
    decoded_means = []

    def recording_search(decoded, reference):
        decoded_means.append(decoded(0.0))
        return 1.0

    monkeypatch.setattr(igraphflow.flow, "energy_temperature", recording_search)
    model._sample_temperature(model._split(X, Y))
    expected = math.exp(-0.5) * model.latent.means.detach()[0]
    torch.testing.assert_close(decoded_means[0], expected.expand(64, 4, 2), atol=1e-5, rtol=1e-5)


def test_fit_again_starts_from_scratch():
    X, Y = toy(64)
    X2, Y2 = toy(64, seed=1)
    settings = dict(SMALL, num_blocks="auto", max_blocks=2, w2_tolerance=0.0, max_epochs=2)
    fresh = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X2, Y2, progress=False)
    again = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, max_time=0.0, progress=False)
    assert again.num_blocks == 0  # no time: every block dropped
    again.fit(X2, Y2, progress=False)
    assert again.num_blocks == fresh.num_blocks == 2
    assert torch.equal(again.log_prob(X2[:8], Y2[:8]), fresh.log_prob(X2[:8], Y2[:8]))
    assert torch.equal(again.predict_proba(X2[:8]), fresh.predict_proba(X2[:8]))


def test_fit_warns_about_labels_that_never_occur_and_so_does_every_answer_for_them(tmp_path):
    X, Y = toy(16)
    model = ConditionalGraphFlow(EDGES, 4, 2, 3, **dict(SMALL, max_epochs=1))
    with pytest.warns(UserWarning, match=r"labels \[2\] never occur"):
        model.fit(X, Y, progress=False)
    model.save(tmp_path / "model.pt")
    unseen = Y.clone()
    unseen[:, 1] = 2
    for answer in (model, ConditionalGraphFlow.load(tmp_path / "model.pt")):
        for call in (lambda: answer.sample(unseen[:2]), lambda: answer.log_prob(X[:2], unseen[:2]),
                     lambda: answer.in_region(X[:2], unseen[:2])):
            with pytest.warns(UserWarning, match=r"Y holds labels \[2\] that never occurred in the training labels") as caught:
                call()
            assert caught[0].filename == __file__  # the caller's line, not torch's no_grad wrapper
        with pytest.warns(UserWarning, match=r"labels holds labels \[2\] that never"):
            answer.region_boundary(0, labels=[0, 2, 1, 0])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the labels it saw: no warning
            answer.sample(Y[:2])
            answer.log_prob(X[:2], Y[:2])
    # A model saved before the classes seen were recorded knows no better: no warning.
    payload = torch.load(tmp_path / "model.pt", weights_only=False)
    del payload["state_dict"]["classes_seen"]
    save_atomic(payload, tmp_path / "old.pt", CHECKPOINT_KIND)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ConditionalGraphFlow.load(tmp_path / "old.pt").sample(unseen[:2])


def test_a_label_held_out_for_validation_alone_counts_as_never_trained_on():
    # It counted as seen, although the blocks, the noise and the head never saw it.
    X, _ = toy(40)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1))
    rows = torch.arange(40.0).view(40, 1, 1).expand(40, 4, 2)
    held_out = model._split(rows, torch.zeros(40, 4, dtype=torch.long)).x_val[:, 0, 0].long()
    Y = torch.zeros(40, 4, dtype=torch.long)
    Y[held_out[0], 0] = 1
    with pytest.warns(UserWarning, match=r"labels \[1\] never occur in Y but among the samples held out for validation \(\[1\]\)"):
        model.fit(X, Y, progress=False)
    assert model.classes_seen.tolist() == [True, False]


def test_training_signals_all_the_same_are_refused():
    # The noise fit shrank to a point: +109 nats at the signal, -1.8e7 at 1e-3 from it.
    _, Y = toy(32)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **SMALL)
    with pytest.raises(ValueError, match="the 32 signals of X are all the same in float32"):
        model.fit(torch.ones(32, 4, 2), Y, progress=False)
    X = torch.ones(32, 4, 2)
    X[:, 0, 0] = torch.arange(32.0)  # one feature that varies is enough
    model.fit(X, Y, progress=False)
    # Varying in float64 but not in the model's float32: the rounding is said first.
    with pytest.warns(UserWarning, match="fewer than 100 steps"), pytest.raises(ValueError, match="all the same in float32"):
        model.fit(1e6 + 1e-3 * torch.randn(32, 4, 2, dtype=torch.float64), Y, progress=False)


def test_a_long_list_of_absent_labels_is_cut_short():
    X, Y = toy(16)
    model = ConditionalGraphFlow(EDGES, 4, 2, 40, **dict(SMALL, max_epochs=1, num_blocks=1))
    with pytest.warns(UserWarning) as caught:
        model.fit(X, Y, progress=False)
    assert any("labels [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ... (38 in all)] never occur in Y" in str(w.message) for w in caught)


@pytest.mark.parametrize("conv", ["cheb", "gcn"])
def test_other_convolutions_fit(conv):
    # Without the noise fit, what is learnt is the blocks' and the means' doing.
    X, Y = toy()
    X_test, Y_test = toy(seed=1)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **SMALL, conv=conv, fit_noise=False)
    untrained = copy.deepcopy(model)
    untrained.fitted.fill_(True)
    model.fit(X, Y, progress=False)
    assert model.log_prob(X_test, Y_test).mean() > untrained.log_prob(X_test, Y_test).mean() + 1.0
    assert (model.predict(X_test) == Y_test).float().mean() > 0.85  # Bayes: Phi(sqrt 2) = 0.92


def test_auto_depth_stops_when_blocks_stop_moving():
    X, Y = toy(256)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **{**SMALL, "num_blocks": "auto"}, max_blocks=6, w2_tolerance=0.05)
    model.fit(X, Y, progress=False)
    movement = model.w2_per_block(X, Y)
    assert model.num_blocks == len(movement) == len(model.history_) <= 6
    if model.num_blocks < 6:
        assert movement[-1] / 8 < 0.05 * 2  # the newest block barely moves (measured on all data)
    assert all(b0.interval[1] == b1.interval[0] for b0, b1 in zip(model.blocks, model.blocks[1:]))
    assert torch.isfinite(model.log_prob(X[:4], Y[:4])).all()
    with pytest.raises(ValueError, match="at least one signal"):  # [nan, nan, ...]
        model.w2_per_block(X[:0])


def test_auto_depth_compares_the_movement_per_dimension(monkeypatch):
    # Every block moves the signals by w2 = D * tolerance / 2 in total, half the tolerance per
    # dimension: the first block already settles the depth.
    X, Y = toy(128)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **{**SMALL, "num_blocks": "auto", "max_epochs": 1}, max_blocks=4,
                                 w2_tolerance=0.01)
    push = ConditionalGraphFlow._push
    monkeypatch.setattr(ConditionalGraphFlow, "_push", lambda self, *args: (*push(self, *args)[:3], 8 * 0.01 / 2))
    model.fit(X, Y, progress=False)
    assert model.num_blocks == 1


def test_auto_depth_stops_at_the_first_block_that_moves_less_than_the_tolerance(monkeypatch):
    # Blocks reported to move by 0.2, 0.1, 0.04, 0.01 per dimension: with tolerance 0.05 the
    # third is the first below it, so the depth is 3, not 1 (the first block) nor 4 (the cap).
    X, Y = toy(128)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **{**SMALL, "num_blocks": "auto", "max_epochs": 1}, max_blocks=4,
                                 w2_tolerance=0.05)
    push = ConditionalGraphFlow._push
    movement = [0.2, 0.1, 0.04, 0.01]
    monkeypatch.setattr(ConditionalGraphFlow, "_push", lambda self, block, index, *args: (
        *push(self, block, index, *args)[:3], 8 * movement[index]))
    model.fit(X, Y, progress=False)
    assert model.num_blocks == len(model.history_) == 3
    assert [r.w2 / 8 for r in model.history_] == movement[:3]
    assert all(b0.interval[1] == b1.interval[0] for b0, b1 in zip(model.blocks, model.blocks[1:]))


def test_auto_depth_model_round_trips(tmp_path):
    X, Y = toy(128)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **{**SMALL, "num_blocks": "auto"}, max_blocks=3).fit(X, Y, progress=False)
    model.save(tmp_path / "auto.pt")
    assert torch.equal(ConditionalGraphFlow.load(tmp_path / "auto.pt").log_prob(X[:4], Y[:4]), model.log_prob(X[:4], Y[:4]))


def test_a_finished_auto_depth_fit_resumes_without_another_block(tmp_path):
    X, Y = toy(128)
    settings = {**SMALL, "num_blocks": "auto", "max_blocks": 4, "w2_tolerance": 1.0, "max_epochs": 2}
    first = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=tmp_path)
    assert first.num_blocks < 4  # the stopping rule fired
    again = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=tmp_path)
    assert again.num_blocks == first.num_blocks
    assert torch.equal(again.log_prob(X[:8], Y[:8]), first.log_prob(X[:8], Y[:8]))


@pytest.mark.parametrize("num_blocks", [4, "auto"])
def test_save_load_keeps_the_requested_depth(num_blocks, tmp_path):
    X, Y = toy(64)
    settings = {**SMALL, "num_blocks": num_blocks, "max_blocks": 4, "max_epochs": 2}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False, max_time=0)
    assert model.num_blocks == 0  # no time: every block dropped, still usable
    # Said for a fixed depth; num_blocks="auto" asks for blocks until time or its rule stops them.
    said = [w for w in caught if "max_time (0 s) ran out after 0 of 4 blocks" in str(w.message)]
    assert len(said) == (num_blocks == 4)
    model.save(tmp_path / "m.pt")
    loaded = ConditionalGraphFlow.load(tmp_path / "m.pt")
    assert loaded.num_blocks == 0 and loaded.config["num_blocks"] == num_blocks
    assert torch.equal(loaded.log_prob(X[:4], Y[:4]), model.log_prob(X[:4], Y[:4]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy divided 0 by 0 along the empty path
        assert copy.deepcopy(model).reparameterize(X, Y, progress=False).num_blocks == 0
    model.fit(X, Y, progress=False)
    loaded.fit(X, Y, progress=False)
    assert loaded.num_blocks == model.num_blocks > 0
    assert torch.equal(loaded.log_prob(X[:4], Y[:4]), model.log_prob(X[:4], Y[:4]))


def test_refine_after_a_noise_fit_that_moved_the_means_together():
    g = torch.Generator().manual_seed(0)
    Y = torch.randint(0, 3, (400, 3), generator=g)
    angle = 2 * math.pi * Y / 3
    X = 0.7 * torch.stack([angle.cos(), angle.sin()], -1) + torch.randn(400, 3, 2, generator=g)
    path = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    model = ConditionalGraphFlow(path, 3, 2, 3, **{**SMALL, "max_epochs": 3}, separation=3.0).fit(X, Y, progress=False)
    assert (model.latent.pairwise_distances() < model.latent.min_distance).any()  # the noise fit moved them
    before = [p.clone() for p in model.blocks.parameters()]
    model.refine(X, Y, factor=1, progress=False)
    assert all(r.best_epoch >= 0 and math.isfinite(r.train_loss[0]) for r in model.history_)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.blocks.parameters()))


def test_fit_warns_when_its_blocks_do_not_invert():
    # One RK4 step across a block of length 1, trained fast, folds the discrete map; four do
    # not, and neither do the steps map_tolerance settles on from one.
    data = load("traffic")
    X, Y = data.X_train[:300], data.Y_train[:300]
    settings = dict(num_blocks=1, max_step=1.0, first_step=1.0, lr=1e-2, hidden=16, max_epochs=20, patience=100, seed=0)

    def relative_round_trip(model):
        return ((model.decode(model.encode(X)) - X).square().mean() / (X - X.mean(0)).square().mean()).sqrt().item()

    with pytest.warns(UserWarning, match=r"the trained blocks do not invert: .* misses them by [0-9.]+ of the signals' "
                                         r"spread .* \(steps=1, train_steps=1\), .* lr \(0.01\)"):
        folded = ConditionalGraphFlow(data.edge_index, data.num_nodes, data.num_features, data.num_classes,
                                      steps=1, train_steps=1, map_tolerance=None, **settings).fit(X, Y, progress=False)
    assert relative_round_trip(folded) > 0.1
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="the trained blocks do not invert")
        smooth = ConditionalGraphFlow(data.edge_index, data.num_nodes, data.num_features, data.num_classes,
                                      steps=4, train_steps=4, map_tolerance=None, **settings).fit(X, Y, progress=False)
        settled = ConditionalGraphFlow(data.edge_index, data.num_nodes, data.num_features, data.num_classes,
                                       steps=1, train_steps=1, **settings).fit(X, Y, progress=False)
    assert relative_round_trip(smooth) < igraphflow.flow.ROUND_TRIP_TOLERANCE
    assert relative_round_trip(settled) < igraphflow.flow.ROUND_TRIP_TOLERANCE
    assert settled.blocks[0].steps > 4 and settled.history_[0].map_steps == settled.blocks[0].steps
    assert smooth.blocks[0].steps == 4 and smooth.history_[0].map_steps == 4


def test_solver_steps_too_long_to_invert_are_refused(tmp_path):
    X, Y = toy(16)
    with pytest.raises(ValueError, match="max_step / steps = 2: RK4 steps longer than 1"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, steps=1)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1), steps=1, max_step=1.0).fit(X, Y, progress=False)
    # A model saved before the rule, with max_step 2: it loads and answers, and does not retrain.
    model.config["max_step"] = 2.0
    model.save(tmp_path / "old.pt")
    old = ConditionalGraphFlow.load(tmp_path / "old.pt")
    assert old.config["max_step"] == 2.0
    assert torch.equal(old.log_prob(X[:4], Y[:4]), model.log_prob(X[:4], Y[:4]))
    for retrain in (old.fit, old.refine, old.reparameterize):
        with pytest.raises(ValueError, match="max_step / steps = 2"):
            retrain(X, Y, progress=False)


def test_blocks_train_on_train_steps_and_map_on_steps(tmp_path):
    X, Y = toy(128)
    settings = dict(SMALL, num_blocks=1, max_epochs=3)
    fine = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings, steps=4, train_steps=2).fit(X, Y, progress=False)
    coarse = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings, steps=2, train_steps=2).fit(X, Y, progress=False)
    # The same training; the map integrates its own steps.
    for ours, theirs in zip(fine.blocks.parameters(), coarse.blocks.parameters()):
        assert torch.equal(ours, theirs)
    assert fine.blocks[0].steps == 4 and coarse.blocks[0].steps == 2
    assert not torch.equal(fine.encode(X[:8]), coarse.encode(X[:8]))
    with pytest.raises(ValueError, match="max_step / train_steps = 2: .* take more train_steps"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, train_steps=1)
    # Saved before training took its own steps: it trained on the map's steps.
    fine.save(tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=False)
    del payload["config"]["train_steps"], payload["kind"]
    save_atomic(payload, tmp_path / "old.pt", CHECKPOINT_KIND)
    assert ConditionalGraphFlow.load(tmp_path / "old.pt").config["train_steps"] == 4


def test_checkpoints_without_a_block_count_load_and_resume(tmp_path):
    X, Y = toy(64)
    settings = {**SMALL, "num_blocks": "auto", "max_blocks": 2, "w2_tolerance": 0.0, "max_epochs": 1}
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=tmp_path)
    for name in ("fit.pt", "model.pt"):  # as written before the count was saved
        if name == "model.pt":
            model.save(tmp_path / name)
        payload = torch.load(tmp_path / name, weights_only=False)
        del payload["blocks"], payload["kind"]
        payload.pop("depth_settled", None)
        save_atomic(payload, tmp_path / name, CHECKPOINT_KIND)
    assert ConditionalGraphFlow.load(tmp_path / "model.pt").num_blocks == 2
    resumed = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=tmp_path)
    assert torch.equal(resumed.log_prob(X[:4], Y[:4]), model.log_prob(X[:4], Y[:4]))
    with pytest.raises(ValueError, match=r"other settings \(num_blocks\)"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, **{**settings, "num_blocks": 3}).fit(X, Y, progress=False, checkpoint_dir=tmp_path)


def test_capped_steps_keep_the_total_and_share_what_the_capped_ones_leave_in_proportion():
    # Two steps above the cap: 7 in all, 4 taken by the capped ones, 3 shared 1:1 by the others.
    np.testing.assert_allclose(_capped_steps(np.array([0.5, 0.5, 3.0, 3.0]), 2.0), [1.5, 1.5, 2.0, 2.0])
    rng = np.random.default_rng(0)
    for _ in range(20):
        steps = rng.exponential(size=6) ** 2
        max_step = rng.uniform(steps.sum() / 6, steps.max())
        capped = _capped_steps(steps, max_step)
        assert capped.sum() == pytest.approx(steps.sum()) and capped.max() <= max_step * (1 + 1e-9)
        free = capped < max_step * (1 - 1e-9)
        np.testing.assert_allclose(capped[free] / steps[free], capped[free][0] / steps[free][0])
        assert (capped[free] > steps[free] - 1e-12).all()


def _install_untrained(model, blocks, *args):
    r"""Stands in for ``ConditionalGraphFlow._retrain``: installs the new blocks as they were made."""
    model.blocks = blocks
    return model


def test_reparameterize_splits_the_path_into_equal_lengths(monkeypatch):
    # Under dx/dt = -x, x(t) = x0 exp(-t): the path length is L(t) = |x0| (1 - exp(-t)), so
    # B equal lengths end at s_k = -log(1 - k (1 - exp(-T)) / B).
    X, Y = toy(64)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=3, seed=0)
    minus_identity = -torch.eye(8)
    steps = [0.5, 0.3, 1.2]  # old blocks end at 0.5, 0.8, 2; the new ones at 0.34, 0.86, 2
    bounds = np.cumsum([0.0, *steps])
    model.blocks = nn.ModuleList(ODEBlock(LinearField(minus_identity), a, b, steps=32) for a, b in itertools.pairwise(bounds))
    for k, block in enumerate(model.blocks):
        block.field.tag = k  # the same field, told apart
    model.fitted.fill_(True)
    monkeypatch.setattr(ConditionalGraphFlow, "_retrain", _install_untrained)
    model.reparameterize(X, Y, progress=False)
    expected = -np.log(1 - np.arange(4) * (1 - np.exp(-bounds[-1])) / 3)
    got = [0.0] + [b.interval[1].item() for b in model.blocks]
    np.testing.assert_allclose(got, expected, atol=2e-3)
    # Each new block starts from the old block that held its interval's midpoint.
    midpoints = (np.array(got[:-1]) + np.array(got[1:])) / 2
    assert [b.field.tag for b in model.blocks] == np.searchsorted(bounds[1:], midpoints).tolist()
    assert len({b.field.tag for b in model.blocks}) > 1
    assert all(a.interval[1] == b.interval[0] for a, b in zip(model.blocks[:-1], model.blocks[1:]))


def test_reparameterize_keeps_every_block_within_max_step(monkeypatch):
    # Where the flow stands nearly still at the end, equal lengths gave the last block 2.94 > 2
    # (RK4 steps beyond MAX_SOLVER_STEP); it now takes max_step, the others the time it leaves.
    X, Y = toy(64)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=3, seed=0, max_step=2.0)
    bounds = np.cumsum([0.0, 1.0, 1.0, 2.0])
    model.blocks = nn.ModuleList(ODEBlock(LinearField(-torch.eye(8)), a, b, steps=32) for a, b in itertools.pairwise(bounds))
    model.fitted.fill_(True)
    monkeypatch.setattr(ConditionalGraphFlow, "_retrain", _install_untrained)
    model.reparameterize(X, Y, progress=False)
    equal = np.diff(-np.log(1 - np.arange(4) * (1 - np.exp(-4.0)) / 3))  # 0.37, 0.69, 2.94
    steps = np.array([b.step_size for b in model.blocks])
    np.testing.assert_allclose(steps, [*(2.0 * equal[:2] / equal[:2].sum()), 2.0], atol=2e-3)
    assert steps.max() <= 2.0 and math.isclose(model.blocks[-1].interval[1].item(), 4.0, rel_tol=1e-6)


def test_reparameterize_measures_the_path_in_the_standardised_coordinates(monkeypatch):
    # Under dx/dt = -D x the standardised coordinates z = x / s follow z(t) = exp(-D t) z0; the
    # RMS path length is L(t) = int_0^t sqrt(E |D z(u)|^2) du. The slow coordinates are given a
    # large scale: measured on the raw signals they would dominate the length.
    rates = torch.tensor([0.3, 3.0] * 4, dtype=torch.float64)
    scale = torch.tensor([20.0, 1.0] * 4, dtype=torch.float64)
    X, Y = toy(64)
    X = X.double() * scale.view(4, 2)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=3, seed=0).double()
    bounds = [0.0, 0.5, 1.0, 2.0]
    model.blocks = nn.ModuleList(
        ODEBlock(LinearField(-torch.diag(rates)), a, b, steps=32) for a, b in itertools.pairwise(bounds)
    )
    model.standardizer.scale.copy_(scale.view(4, 2))
    model.fitted.fill_(True)
    monkeypatch.setattr(ConditionalGraphFlow, "_retrain", _install_untrained)
    model.reparameterize(X, Y, progress=False)
    z0_square = (X.flatten(1) / scale).square().mean(0).numpy()
    t = np.linspace(0.0, 2.0, 200_001)
    speed = np.sqrt((rates.numpy() ** 2 * z0_square * np.exp(-2 * np.outer(t, rates.numpy()))).sum(1))
    length = np.concatenate([[0.0], np.cumsum((speed[1:] + speed[:-1]) / 2 * np.diff(t))])
    expected = np.interp(np.arange(4) * length[-1] / 3, length, t)
    got = [0.0] + [b.interval[1].item() for b in model.blocks]
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_refine_splits_blocks_and_starts_from_the_same_map():
    X, Y = toy(256)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **{**SMALL, "num_blocks": 2}).fit(X, Y, progress=False)
    H = model.encode(X[:16])
    split_only = copy.deepcopy(model).refine(X, Y, factor=3, max_time=0.0, progress=False)  # no time to retrain
    assert split_only.num_blocks == 6
    assert torch.allclose(split_only.encode(X[:16]), H, atol=1e-3)
    # The same map, so the same fitted noise and head: they were refitted on signals pushed
    # through none of the untrained blocks (log-likelihood -2.7 -> -7.0 per signal).
    torch.testing.assert_close(split_only.log_prob(X[:16], Y[:16]), model.log_prob(X[:16], Y[:16]), atol=0.02, rtol=0)
    torch.testing.assert_close(split_only.predict_proba(X[:16]), model.predict_proba(X[:16]), atol=0.01, rtol=0)
    model.refine(X, Y, factor=2, progress=False)
    assert model.num_blocks == 4 and len(model.history_) == 4
    assert model.blocks[0].step_size == pytest.approx(model.blocks[1].step_size)
    assert torch.allclose(model.decode(model.encode(X[:8])), X[:8], atol=1e-4)


@pytest.mark.parametrize("retrain", ["refine", "reparameterize"])
def test_retraining_trains_on_the_standardised_signals_towards_the_isotropic_latent(monkeypatch, retrain):
    X, Y = toy(64)
    X = 5.0 * X + 100.0  # far from the unit scale the blocks are made for
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1)).fit(X, Y, progress=False)
    model.latent.offset, model.latent.scale_tril = torch.zeros(4, 2), 0.5 * torch.eye(8)  # as a noise fit leaves it
    seen = []

    def recording_train_block(index, block, latent, train, val, **kwargs):
        # The model's latent gets its noise back after the blocks: what each block saw is kept now.
        seen.append((train[0], val[0], latent.has_noise_covariance))
        return train_block(index, block, latent, train, val, **kwargs)

    train_block = igraphflow.flow.train_block
    monkeypatch.setattr(igraphflow.flow, "train_block", recording_train_block)
    getattr(model, retrain)(X, Y, progress=False)
    # The first block sees the split's signals standardised as the fit standardised them, and
    # every block trains towards the isotropic latent, as in the fit.
    split = model._split(X, Y)
    torch.testing.assert_close(seen[0][0], model.standardizer(split.x))
    torch.testing.assert_close(seen[0][1], model.standardizer(split.x_val))
    assert not any(noise for _, _, noise in seen)


def _interrupted_fit(monkeypatch, settings, X, Y, checkpoint_dir, at_block):
    import igraphflow.flow as flow_module

    original, calls = flow_module.train_block, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at_block:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(flow_module, "train_block", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=checkpoint_dir)
    monkeypatch.setattr(flow_module, "train_block", original)


def test_a_resumed_fit_without_a_seed_keeps_its_validation_split(tmp_path, monkeypatch):
    # Without a seed the split is drawn; a resumed fit drew another, so its later blocks
    # stopped early on samples the earlier blocks had trained on.
    X, Y = toy(128)
    settings = {**SMALL, "num_blocks": 2, "seed": None}
    torch.manual_seed(0)
    _interrupted_fit(monkeypatch, settings, X, Y, tmp_path, at_block=2)
    saved = torch.load(tmp_path / "fit.pt", weights_only=True)["split_seed"]
    splits = _record_calls(monkeypatch, ConditionalGraphFlow, "_split")
    torch.manual_seed(1)  # another draw of the split, as in a new process
    ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=tmp_path)
    assert [call.get("split_seed") for call in splits] == [None, saved]


def test_the_checkpoint_of_a_fit_in_progress_is_not_loaded_as_a_model(tmp_path, monkeypatch):
    X, Y = toy(64)
    settings = {**SMALL, "num_blocks": 2, "max_epochs": 1}
    _interrupted_fit(monkeypatch, settings, X, Y, tmp_path, at_block=2)
    with pytest.raises(ValueError, match=r"written by fit\(\.\.\., checkpoint_dir=\.\.\.\) \(1 blocks trained\), not by save.*fit again"):
        ConditionalGraphFlow.load(tmp_path / "fit.pt")


def test_fit_refuses_a_checkpoint_path_that_is_a_directory_or_past_its_blocks(tmp_path):
    X, Y = toy(64)
    settings = {**SMALL, "num_blocks": 1, "max_epochs": 1}
    (tmp_path / "dir" / "fit.pt").mkdir(parents=True)
    with pytest.raises(ValueError, match="fit.pt is not a file"):  # before the first block, not after it
        ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=tmp_path / "dir")
    ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=tmp_path)
    payload = torch.load(tmp_path / "fit.pt", weights_only=True)
    payload["finished"] = 99
    torch.save(payload, tmp_path / "fit.pt")
    with pytest.raises(ValueError, match="finished must be an integer <= 1"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=tmp_path)


def test_checkpoint_resume_gives_the_same_model(tmp_path, monkeypatch, capsys):
    X, Y = toy(256)
    settings = {**SMALL, "num_blocks": 3}
    reference = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False)
    _interrupted_fit(monkeypatch, settings, X, Y, tmp_path, at_block=3)
    resumed = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=True, checkpoint_dir=tmp_path)
    assert "JKO blocks (resumed after 2)" in capsys.readouterr().err  # else a resumed fit looks like a new one
    assert torch.equal(resumed.log_prob(X[:8], Y[:8]), reference.log_prob(X[:8], Y[:8]))
    assert [r.val_nll_per_dim for r in resumed.history_] == [r.val_nll_per_dim for r in reference.history_]

    # Same sums, other data: a fingerprint of sums would let each of these resume.
    for other_X, other_Y in ((X, 1 - Y), (X.flip(0), Y.flip(0)), (X.flip(1), Y), (X + 1, Y)):
        with pytest.raises(ValueError, match="other data"):
            ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(other_X, other_Y, progress=False, checkpoint_dir=tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="is a file, not a directory"):  # before the first block, not after it
        ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=blocker)
    with pytest.raises(ValueError, match="is a directory, not a file"):
        reference.save(tmp_path)
    cycle = torch.cat([EDGES, torch.tensor([[0, 3], [3, 0]])], 1)
    with pytest.raises(ValueError, match="another graph"):
        ConditionalGraphFlow(cycle, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=tmp_path)
    # The same graph written otherwise (one direction, reordered, with a self-loop) resumes.
    same = torch.cat([EDGES[:, [4, 0, 2]], torch.tensor([[1], [1]])], 1)
    resumed = ConditionalGraphFlow(same, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=tmp_path)
    assert torch.equal(resumed.log_prob(X[:8], Y[:8]), reference.log_prob(X[:8], Y[:8]))
    with pytest.raises(ValueError, match="other settings"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, **{**settings, "hidden": 4}).fit(X, Y, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"holds a fit in torch.float32, this model computes in torch.float64: resume it "
                                         r"with a model in torch.float32 \(model.to\(torch.float32\); .*--float64"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).double().fit(X, Y, progress=False, checkpoint_dir=tmp_path)


def test_fit_noise_must_be_a_bool():
    with pytest.raises(ValueError, match="fit_noise must be True or False, got 'no'"):  # read as True before
        ConditionalGraphFlow(EDGES, 4, 2, 2, fit_noise="no")
    assert ConditionalGraphFlow(EDGES, 4, 2, 2, fit_noise=np.bool_(False)).config["fit_noise"] is False


def _shared_state(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    # Every node of a signal shares a level of -1.5 or +1.5 that the labels do not explain.
    g = torch.Generator().manual_seed(seed)
    Y = torch.randint(0, 2, (n, 4), generator=g)
    level = 1.5 * (2 * torch.randint(0, 2, (n, 1, 1), generator=g) - 1)
    return 2.0 * Y.unsqueeze(-1) + level + 0.3 * torch.randn(n, 4, 2, generator=g), Y


def test_fit_noise_first_trains_the_blocks_towards_the_noise_fitted_to_the_standardised_signals(monkeypatch):
    X, Y = _shared_state(400)
    events = []
    fit_noise, train_block = GaussianMixtureLatent.fit_noise_, igraphflow.flow.train_block

    def recording_fit_noise(latent, h, *args, **kwargs):
        events.append(("noise", h.clone()))
        return fit_noise(latent, h, *args, **kwargs)

    def recording_train_block(index, block, latent, train, *args, **kwargs):
        events.append(("block", None if latent.scale_tril is None else latent.scale_tril.clone()))
        return train_block(index, block, latent, train, *args, **kwargs)

    monkeypatch.setattr(GaussianMixtureLatent, "fit_noise_", recording_fit_noise)
    monkeypatch.setattr(igraphflow.flow, "train_block", recording_train_block)
    settings = dict(SMALL, max_epochs=2)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, fit_noise_first=True, **settings).fit(X, Y, progress=False)
    assert [kind for kind, _ in events] == ["noise", "block", "block", "noise"]
    first = events[0][1]
    # the training signals as the first block sees them: standardised, through no block yet
    assert first.shape == (360, 4, 2) and torch.isin(first[:, 0, 0], model.standardizer(X)[:, 0, 0]).all()
    # both blocks train towards that fit (its covariance holds the shared level), refitted after them
    assert events[1][1] is not None and torch.equal(events[1][1], events[2][1])
    assert torch.isfinite(model.log_prob(X, Y)).all()
    events.clear()
    ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False)
    assert [kind for kind, _ in events] == ["block", "block", "noise"] and events[0][1] is None


def test_a_fit_with_the_noise_first_resumes_with_the_noise_it_had(tmp_path, monkeypatch):
    X, Y = _shared_state(256)
    settings = {**SMALL, "num_blocks": 3, "fit_noise_first": True}
    reference = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False)
    _interrupted_fit(monkeypatch, settings, X, Y, tmp_path, at_block=3)
    resumed = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False, checkpoint_dir=tmp_path)
    assert torch.equal(resumed.log_prob(X[:8], Y[:8]), reference.log_prob(X[:8], Y[:8]))
    assert [r.val_nll_per_dim for r in resumed.history_] == [r.val_nll_per_dim for r in reference.history_]


def test_fit_noise_first_needs_fit_noise():
    with pytest.raises(ValueError, match="fit_noise_first=True needs fit_noise=True"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, fit_noise=False, fit_noise_first=True)
    with pytest.raises(ValueError, match="fit_noise_first must be True or False"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, fit_noise_first="yes")


def test_fitted_noise_changes_only_the_latent_and_fits_correlated_data(tmp_path):
    g = torch.Generator().manual_seed(6)
    mixing = torch.eye(8) + 0.8 * torch.ones(8, 8) / 8  # one common mode across all nodes
    Y = torch.randint(0, 2, (600, 4), generator=g)
    X = (torch.randn(600, 8, generator=g) * 0.5 @ mixing.T).view(600, 4, 2) * 4 + 2.0 * Y.unsqueeze(-1)
    settings = dict(SMALL, num_blocks=1, max_epochs=2)
    noise = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X[:400], Y[:400], progress=False)
    plain = ConditionalGraphFlow(EDGES, 4, 2, 2, fit_noise=False, **settings).fit(X[:400], Y[:400], progress=False)
    assert noise.latent.has_noise_covariance and not plain.latent.has_noise_covariance
    assert torch.equal(noise.encode(X[400:]), plain.encode(X[400:]))
    assert noise.log_prob(X[400:], Y[400:]).mean() > plain.log_prob(X[400:], Y[400:]).mean() + 1.0
    noise.save(tmp_path / "model.pt")
    loaded = ConditionalGraphFlow.load(tmp_path / "model.pt")
    assert torch.equal(loaded.sample(Y[400:], seed=1), noise.sample(Y[400:], seed=1))


def test_sample_temperature_is_chosen_by_fit_or_given(fitted, tmp_path):
    X, Y = toy()
    chosen = fitted.latent.temperature.item()
    given = ConditionalGraphFlow(EDGES, 4, 2, 2, **SMALL, sample_temperature=0.8).fit(X, Y, progress=False)
    assert given.latent.temperature.item() == pytest.approx(0.8)
    # the same flow otherwise: only the spread of the draws differs
    assert torch.equal(given.encode(X[:8]), fitted.encode(X[:8]))
    assert torch.allclose(given.sample(Y[:8], seed=1), fitted.sample(Y[:8], seed=1, temperature=0.8))
    with pytest.raises(ValueError, match="temperature must be a finite number in"):
        fitted.sample(Y[:2], temperature=-1.0)
    fitted.save(tmp_path / "model.pt")
    assert ConditionalGraphFlow.load(tmp_path / "model.pt").latent.temperature.item() == chosen
    few = ConditionalGraphFlow(EDGES, 4, 2, 2, **SMALL).fit(X[:63], Y[:63], progress=False)
    assert few.latent.temperature.item() == 1.0  # too few signals to measure their spread


def test_a_mixture_noise_is_sampled_at_temperature_one(fitted):
    X, Y = toy()
    model = copy.deepcopy(fitted)
    latent, dims = model.latent, 4 * 2
    if not latent.has_noise_covariance:
        latent.offset, latent.scale_tril = torch.zeros(4, 2), torch.eye(dims)
    latent.mixture_logits = torch.zeros(2)
    latent.mixture_centres = torch.stack([torch.full((dims,), -2.0), torch.full((dims,), 2.0)])
    latent.mixture_scales = torch.full((2, dims), 0.3)
    assert model._sample_temperature(model._split(X, Y)) == 1.0
    # The same flow with a Gaussian noise of half the fitted spread: draws at 1 are too narrow.
    model.latent.mixture_logits = model.latent.mixture_centres = model.latent.mixture_scales = None
    model.latent.scale_tril = 0.5 * model.latent.scale_tril
    assert model._sample_temperature(model._split(X, Y)) > 1.5


def test_non_integral_sizes_raise_instead_of_truncating():
    sizes = dict(num_nodes=4, num_features=2, num_classes=2)
    for name, value in (("num_nodes", 4.5), ("num_features", 2.5), ("num_classes", 1.5), ("hidden", 8.5),
                        ("steps", 2.5), ("max_epochs", 0.5), ("batch_size", 16.5), ("patience", 1.5)):
        with pytest.raises(ValueError, match=f"{name} must be an integer"):
            ConditionalGraphFlow(EDGES, **(sizes | {name: value}))
    model = ConditionalGraphFlow(EDGES, np.int64(4), 2.0, np.int32(2), hidden=np.int64(8))
    assert (model.num_nodes, model.num_features, model.num_classes, model.config["hidden"]) == (4, 2, 2, 8)


def test_counts_reject_booleans_and_fractions():
    # bool is an Integral: num_blocks=True built a one-block flow, seed=True seeded with 1.
    for name in ("num_blocks", "max_blocks", "hidden", "steps", "max_epochs", "patience", "batch_size", "seed"):
        with pytest.raises(ValueError, match=f"{name} must be an integer >= [01], got True"):
            ConditionalGraphFlow(EDGES, 4, 2, 2, **{name: True})
    for orders in ((0, True), (0, 1.5)):
        with pytest.raises(ValueError, match="orders must be an integer >= 0"):
            ConditionalGraphFlow(EDGES, 4, 2, 2, orders=orders)
    for flag in (torch.tensor(True), np.array(True)):  # 0-d boolean tensors and arrays passed as 1
        with pytest.raises(ValueError, match="hidden must be an integer >= 1"):
            ConditionalGraphFlow(EDGES, 4, 2, 2, hidden=flag)
        with pytest.raises(ValueError, match="lr must be a finite number"):
            ConditionalGraphFlow(EDGES, 4, 2, 2, lr=flag)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=np.int64(2), orders=(0, np.int64(1)), seed=np.int64(3))
    assert model.config["num_blocks"] == 2 and model.config["orders"] == (0, 1) and model.config["seed"] == 3
    assert all(type(model.config[k]) is int for k in ("num_blocks", "seed"))
    X, Y = toy(32)
    model.fit(X, Y, progress=False)
    with pytest.raises(ValueError, match="factor must be an integer >= 1, got True"):
        model.refine(X, Y, factor=True, progress=False)
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got True"):
        model.sample(Y, seed=True)


def test_devices_this_machine_lacks_raise_clear_errors(fitted, tmp_path):
    # They used to fail inside torch (an AssertionError on a CPU-only build) at the first tensor.
    from igraphflow.baselines import NSFBaseline

    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU; any CUDA device without one
    with pytest.raises(ValueError, match=f"device '{missing}'"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, device=missing)
    with pytest.raises(ValueError, match=f"device '{missing}'"):
        NSFBaseline(EDGES, 4, 2, 2, device=missing)
    fitted.save(tmp_path / "m.pt")
    with pytest.raises(ValueError, match=f"device '{missing}'"):
        ConditionalGraphFlow.load(tmp_path / "m.pt", device=missing)
    with pytest.raises(ValueError, match="device must name a torch device"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, device="gpu")


def test_meta_tensors_and_the_meta_device_raise_clear_errors(fitted):
    # A meta tensor has a shape but no values: the checks used to fail deep inside torch.
    X, Y = toy(4)
    with pytest.raises(ValueError, match="X is on the meta device"):
        fitted.predict(X.to("meta"))
    with pytest.raises(ValueError, match="Y is on the meta device"):
        fitted.sample(Y.to("meta"))
    with pytest.raises(ValueError, match="edge_index is on the meta device"):
        ConditionalGraphFlow(EDGES.to("meta"), 4, 2, 2)
    with pytest.raises(ValueError, match="device"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, device="meta")
    for edges in (None, "0 1"):
        with pytest.raises(ValueError, match="edge_index must be a tensor or an array"):
            ConditionalGraphFlow(edges, 4, 2, 2)
    with pytest.raises(ValueError, match="edge_index must hold integers"):
        ConditionalGraphFlow(EDGES.to(torch.complex64), 4, 2, 2)


def test_seeds_beyond_what_torch_takes_raise_clear_errors(fitted):
    # torch.manual_seed takes 0..2**64 - 1; a block's seed is derived from the model's, and
    # seeds from 2**63 / 1009 up failed there with "Overflow when unpacking long long".
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=2, seed=2**64 - 1)
    again = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=2, seed=2**64 - 1)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    with pytest.raises(ValueError, match=r"seed must be an integer <= 18446744073709551615, got 18446744073709551616"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, seed=2**64)
    with pytest.raises(ValueError, match="seed must be an integer <="):
        fitted.sample(toy(2)[1], seed=2**64)


@pytest.mark.parametrize(
    "name, value",
    [("lr", 0.0), ("lr", -1e-3), ("lr", math.nan), ("sigma", math.nan), ("sigma", "1"), ("w2_tolerance", -1.0),
     ("w2_tolerance", math.nan), ("separation", math.nan), ("barrier_weight", -1.0), ("barrier_weight", math.nan),
     ("first_step", math.inf), ("step_growth", math.nan), ("validation", "0.1"), ("classification_weight", math.inf),
     ("initial_separation", 0.0), ("initial_separation", math.nan), ("initial_separation", "far"),
     ("sample_temperature", 0.0), ("sample_temperature", math.inf), ("sample_temperature", "hot"),
     ("map_tolerance", 0.0), ("map_tolerance", math.nan), ("map_tolerance", "1e-3")],
)
def test_real_settings_outside_their_range_raise_clear_errors(name, value):
    # NaN and negative rates were kept and trained (or silently stopped) nothing useful.
    with pytest.raises(ValueError, match=f"{name} must be a finite number in"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, **{name: value})


@pytest.mark.parametrize("max_time", [-1.0, math.nan, "5"])
def test_bad_time_budgets_raise_before_the_model_changes(max_time, tmp_path):
    X, Y = toy(16)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1, num_blocks=1)).fit(X, Y, progress=False)
    before = copy.deepcopy(model.state_dict())
    for method in (model.fit, model.refine, model.reparameterize):
        with pytest.raises(ValueError, match="max_time must be"):
            method(X, Y, max_time=max_time, progress=False)
    assert model.state_dict().keys() == before.keys()
    model.fit(X, Y, max_time=math.inf, progress=False)  # no cap, as None


def test_refine_with_bad_data_leaves_the_model_as_it_was(tmp_path):
    # The blocks were split before the data were checked: the saved model did not load.
    X, Y = toy(16)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1, num_blocks=1)).fit(X, Y, progress=False)
    with pytest.raises(ValueError, match="Y must have shape"):
        model.refine(X, Y[:3], progress=False)
    assert model.num_blocks == model.config["num_blocks"] == 1
    model.save(tmp_path / "model.pt")
    assert ConditionalGraphFlow.load(tmp_path / "model.pt").num_blocks == 1


@pytest.mark.parametrize("retrain", ["refine", "reparameterize", "fit"])
def test_an_interrupted_retraining_leaves_the_model_as_it_was(monkeypatch, retrain):
    # The new blocks, the means and the forgotten calibration stayed: a changed model that
    # still called itself fitted. A new fit threw the old one away, leaving an unfitted model.
    X, Y = toy(48)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1)).fit(X, Y, progress=False)
    model.calibrate(X[:24], Y[:24])
    state, history = {k: v.clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}, model.history_
    train_blocks = ConditionalGraphFlow._train_blocks

    def interrupted(self, *args, **kwargs):
        train_blocks(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ConditionalGraphFlow, "_train_blocks", interrupted)
    with pytest.raises(KeyboardInterrupt):
        getattr(model, retrain)(X, Y, max_time=1, progress=False)
    assert model.num_blocks == 2 and model.is_calibrated and model.history_ is history
    after = model.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], v) for k, v in state.items())
    assert torch.isfinite(model.log_prob(X, Y)).all()


def test_settings_and_paths_of_the_wrong_kind_are_named(tmp_path, fitted):
    # An array compared with "auto" had no truth value; a directory read as "no checkpoint at".
    with pytest.raises(ValueError, match="num_blocks must be"):
        ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=np.array([2, 3]))
    with pytest.raises(ValueError, match="is a directory, not a checkpoint file"):
        ConditionalGraphFlow.load(tmp_path)
    with pytest.raises(ValueError, match="must be a str or a path, got NoneType"):
        ConditionalGraphFlow.load(None)
    with pytest.raises(ValueError, match="must be a str or a path, got NoneType"):
        fitted.save(None)


def test_signals_that_carry_gradients_are_fitted_as_data():
    X, Y = toy(32)
    weight = nn.Parameter(torch.ones(()))
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1)).fit(X * weight, Y, progress=False)
    assert torch.isfinite(model.log_prob(X, Y)).all() and weight.grad is None


def test_boolean_labels_are_the_classes_0_and_1(fitted):
    X, Y = toy(8)
    assert torch.equal(fitted.log_prob(X, Y.bool()), fitted.log_prob(X, Y))


@pytest.mark.parametrize("Y, message", [
    (np.full((8, 4), 1e20), r"labels in \[1e\+20, 1e\+20\], outside \[0, num_classes=2\)"),
    (np.full((8, 4), 2**63 + 1, dtype=np.uint64), r"labels in \[9.22337e\+18, 9.22337e\+18\], outside"),
])
def test_labels_beyond_int64_are_reported_as_given(fitted, Y, message):
    # The cast to int64 wrapped them round: "labels in [-9223372036854775808, ...]".
    with pytest.raises(ValueError, match=message):
        fitted.log_prob(toy(8)[0], Y)


def test_sparse_and_masked_inputs(fitted):
    X, Y = toy(8)
    assert torch.equal(fitted.encode(X.to_sparse()), fitted.encode(X))
    assert torch.equal(fitted.log_prob(X, Y.to_sparse()), fitted.log_prob(X, Y))
    masked = np.ma.masked_array(X.numpy(), mask=np.zeros(X.shape, dtype=bool))
    masked.mask[0, 0, 0] = True
    with pytest.raises(ValueError, match="X is a masked array with 1 masked values"):
        fitted.encode(masked)
    assert torch.equal(fitted.encode(np.ma.masked_array(X.numpy())), fitted.encode(X))


@pytest.mark.parametrize("estimate, start", [(100.0, REFERENCE_SEPARATION), (0.3, 2.0), (4.0, 4.0)])
def test_auto_initial_separation_places_the_means_from_the_data(monkeypatch, estimate, start):
    import igraphflow.flow as module

    X, Y = toy(64)
    seen = []

    def separability(X_, Y_, edge_index, num_classes, orders):
        seen.append((X_.shape, num_classes, orders))
        return estimate

    monkeypatch.setattr(module, "linear_separability", separability)
    # A vanishing step and no refitted noise: the means stay where they were placed.
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, num_blocks=1, max_epochs=1, lr=1e-12, fit_noise=False))
    model.fit(X, Y, progress=False)
    # The estimate sees the training part of the split only, clipped to [2, 7.44].
    assert seen == [(torch.Size([58, 4, 2]), 2, (0, 1, 2))]
    assert model.latent.pairwise_distances().item() == pytest.approx(start, abs=1e-6)
    model.config["initial_separation"] = 3.0  # a number skips the estimate
    model.fit(X, Y, progress=False)
    assert len(seen) == 1 and model.latent.pairwise_distances().item() == pytest.approx(3.0, abs=1e-6)


@pytest.mark.parametrize("train_means", [False, True])
def test_the_blocks_train_the_means_only_with_train_means(train_means):
    X, Y = toy(128)
    X = X + 3.0 * Y.unsqueeze(-1)  # classes that pull trained means away from their start
    settings = dict(SMALL, num_blocks=2, max_epochs=3, initial_separation=3.0, fit_noise=False, train_means=train_means)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **settings).fit(X, Y, progress=False)
    assert model.latent.means.requires_grad == train_means
    assert torch.equal(model.latent.means.detach(), GaussianMixtureLatent(2, 2, initial_separation=3.0).means) != train_means
    assert all(r.w2 > 0 for r in model.history_)  # the blocks moved all the same


@pytest.mark.parametrize("estimate, separation", [(4.5, 0.9 * 4.5), (0.5, 0.0), (2.0, 0.0)])
def test_auto_separation_keeps_most_of_where_the_data_start_the_means(monkeypatch, tmp_path, estimate, separation):
    monkeypatch.setattr(igraphflow.flow, "linear_separability", lambda *args: estimate)
    X, Y = toy(64)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, num_blocks=1, max_epochs=1, fit_noise=False))
    model.fit(X, Y, progress=False)
    assert model.separation_ == pytest.approx(separation) and model.latent.min_distance == pytest.approx(separation)
    assert (model.latent.pairwise_distances() > model.latent.min_distance).all()
    model.save(tmp_path / "model.pt")
    assert ConditionalGraphFlow.load(tmp_path / "model.pt").latent.min_distance == pytest.approx(separation)
    model.config["initial_separation"] = 3.0  # a start not taken from the data sets no minimum
    assert model.fit(X, Y, progress=False).separation_ == 0.0


def test_a_model_saved_before_the_means_could_be_held_or_kept_apart_by_the_data_loads_as_it_was(tmp_path):
    X, Y = toy(64)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **dict(SMALL, max_epochs=1), separation=0.5).fit(X, Y, progress=False)
    model.save(tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=False)
    del payload["config"]["train_means"], payload["state_dict"]["means_separation"]  # as written then
    save_atomic(payload, tmp_path / "old.pt", CHECKPOINT_KIND)
    old = ConditionalGraphFlow.load(tmp_path / "old.pt")
    assert old.latent.means.requires_grad and old.separation_ == old.latent.min_distance == 0.5
    assert torch.equal(old.log_prob(X, Y), model.log_prob(X, Y))


@pytest.mark.parametrize("conv", ["l3net", "cheb", "gcn"])
def test_a_double_model_computes_and_saves_in_double(conv, tmp_path):
    X, Y = toy(64)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **{**SMALL, "max_epochs": 2, "conv": conv}).double()
    model.fit(X, Y, progress=False)  # a fit rebuilds the model, in the dtype it was moved to
    assert {p.dtype for p in model.parameters()} == {torch.float64} and model.dtype == torch.float64
    H = model.encode(X)
    assert H.dtype == model.log_prob(X, Y).dtype == model.sample(Y, seed=0).dtype == torch.float64
    # float32 would leave an error of about 1e-6 here.
    assert (model.decode(H) - X.double()).abs().max() < 1e-9
    assert model.region_boundary(0, num_points=5).dtype == torch.float64
    model.save(tmp_path / "model.pt")
    loaded = ConditionalGraphFlow.load(tmp_path / "model.pt")
    assert loaded.dtype == torch.float64 and torch.equal(loaded.log_prob(X, Y), model.log_prob(X, Y))


def test_a_double_model_with_automatic_depth_appends_double_blocks():
    # Blocks added during the fit, after the model was moved to float64, are moved too.
    X, Y = toy(64)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **{**SMALL, "num_blocks": "auto", "max_blocks": 2, "max_epochs": 1}).double()
    model.fit(X, Y, progress=False)
    assert model.num_blocks >= 1 and {p.dtype for p in model.parameters()} == {torch.float64}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_model_moved_to_half_precision_is_refused_by_name(fitted, dtype):
    X, Y = toy(4)
    model = copy.deepcopy(fitted).to(dtype)
    for call in (model.encode, model.predict_proba, lambda x: model.log_prob(x, Y), lambda x: model.sample(Y),
                 lambda x: model.in_region(x, Y), lambda x: model.fit(x, Y, progress=False)):
        with pytest.raises(TypeError, match=f"computes in {str(dtype)[6:]}; .* needs float32 or float64"):
            call(X)
    assert model.float().encode(X).dtype == torch.float32


def test_a_model_moved_to_the_meta_device_is_refused_by_name(fitted):
    X, Y = toy(4)
    model = copy.deepcopy(fitted).to("meta")
    for call in (model.encode, model.predict_proba, lambda x: model.log_prob(x, Y), lambda x: model.sample(Y),
                 lambda x: model.in_region(x, Y), lambda x: model.decode(x), lambda x: model.fit(x, Y, progress=False)):
        # Not advised to_empty(), which leaves the graph's buffers as garbage.
        with pytest.raises(RuntimeError, match=r"this model is on the meta device, which holds no weights: load it again \(ConditionalGraphFlow.load\), or build a new one"):
            call(X)


def test_a_float32_model_keeps_float32_under_a_float64_default(tmp_path):
    X, Y = toy(64)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **{**SMALL, "max_epochs": 2}).fit(X, Y, progress=False)
    model.save(tmp_path / "model.pt")
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        loaded = ConditionalGraphFlow.load(tmp_path / "model.pt")
        assert loaded.dtype == torch.float32 and torch.equal(loaded.log_prob(X, Y), model.log_prob(X, Y))
        built = ConditionalGraphFlow(EDGES, 4, 2, 2, **{**SMALL, "max_epochs": 2}).fit(X, Y, progress=False)
        assert built.dtype == torch.float64 and built.log_prob(X, Y).dtype == torch.float64
    finally:
        torch.set_default_dtype(default)


def test_numpy_views_with_negative_strides_are_read(fitted):
    X, Y = toy(16, seed=4)
    flipped = fitted.log_prob(np.flip(X.numpy(), 0), Y.numpy()[::-1])
    assert torch.equal(flipped, fitted.log_prob(X.flip(0), Y.flip(0)))


def test_a_bad_convolution_is_refused_at_construction_with_automatic_depth():
    # With num_blocks="auto" no block is built before fit, which alone checked the name.
    for conv in ("gat", None, ["cheb"]):
        with pytest.raises(ValueError, match="conv must be one of"):
            ConditionalGraphFlow(EDGES, 4, 2, 2, conv=conv, num_blocks="auto")


def test_a_seeded_model_leaves_the_cuda_generators_alone(monkeypatch):
    # torch.manual_seed also reseeds every CUDA generator, which fork_rng(devices=[]) does not restore.
    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **SMALL)
    model._append_block()
    assert calls == []
    state = torch.random.get_rng_state()
    ConditionalGraphFlow(EDGES, 4, 2, 2, **SMALL)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_a_fit_whose_losses_are_all_nan_is_warned_about():
    # It returned a near-identity "fitted" flow without a word.
    X, Y = toy(64)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **{**SMALL, "num_blocks": 1, "max_epochs": 2, "lr": 100.0})
    with pytest.warns(UserWarning, match="block 0: every epoch's validation objective was NaN or infinite") as caught:
        model.fit(X, Y, progress=False)
    assert [w.filename for w in caught] == [__file__]
    with pytest.warns(UserWarning, match="every epoch's validation objective was NaN") as caught:
        model.refine(X, Y, progress=False)
    assert {w.filename for w in caught} == {__file__}


def test_progress_must_be_a_flag_and_a_refused_one_changes_nothing(tmp_path):
    X, Y = toy(64)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, **{**SMALL, "max_epochs": 1}).fit(X, Y, progress=False)
    state = copy.deepcopy(model.state_dict())
    calls = (
        lambda: model.fit(X, Y, progress="no", checkpoint_dir=tmp_path / "run"),
        lambda: model.refine(X, Y, progress="no"),
        lambda: model.reparameterize(X, Y, progress="no"),
    )
    for call in calls:
        with pytest.raises(ValueError, match="progress must be"):
            call()
        assert model.num_blocks == 2 and bool(model.fitted)
        torch.testing.assert_close(model.state_dict(), state, rtol=0, atol=0, equal_nan=True)
    assert not (tmp_path / "run").exists()


def test_signals_the_flow_overflows_on_are_named_not_answered_with_nan(fitted):
    X, Y = toy(4)
    X[2] = 3e38  # finite, but far beyond anything the fields were trained on
    for answer in (fitted.encode, fitted.predict_proba, lambda x: fitted.log_prob(x, Y),
                   lambda x: fitted.log_prob(x, Y, exact=False), lambda x: fitted.in_region(x, Y)):
        with pytest.raises(ValueError, match=r"overflows on 1 of 4 samples of X \(first: \[2\]; largest \|X\|"):
            answer(X)
    H = fitted.encode(toy(4)[0])
    H[1] = 3e38
    with pytest.raises(ValueError, match=r"overflows on 1 of 4 samples of H \(first: \[1\]"):
        fitted.decode(H)
    # The model's own draws: warned about and returned, so that the finite ones can be used.
    with pytest.warns(UserWarning, match=r"overflows on \d of 4 samples of H .*; returned as computed"):
        drawn = fitted.sample(Y, seed=0, temperature=1e38)
    assert drawn.shape == X.shape and not torch.isfinite(drawn).all()
    # Far, but within float32: a finite latent, and a log-density that may round to -inf.
    assert torch.isfinite(fitted.encode(toy(4)[0] * 1e4)).all()


def test_the_standardisation_is_fitted_on_the_training_part_of_the_split(fitted):
    # fit holds out round(0.1 N) signals of a seeded permutation for validation; the standardiser sees the rest.
    X, _ = toy()
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    train = X[order[round(0.1 * len(X)):]].double()
    torch.testing.assert_close(fitted.standardizer.loc, train.mean(0).float())
    torch.testing.assert_close(fitted.standardizer.scale, train.std(0, correction=0).float())


def test_the_label_prior_is_the_smoothed_frequency_of_the_training_labels(fitted):
    # Only the training part of the split counts, as for the standardisation above (one count added to each label).
    _, Y = toy()
    order = torch.randperm(len(Y), generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(Y[order[round(0.1 * len(Y)):]].flatten(), minlength=2) + 1.0
    torch.testing.assert_close(fitted.latent.log_prior, (counts / counts.sum()).log())


def test_w2_per_block_moves_each_block_from_where_the_blocks_before_left_the_signals(fitted):
    X, _ = toy(64, seed=5)
    x, expected = fitted.standardizer(X), []
    with torch.no_grad():
        for block in fitted.blocks:
            moved = block(x)
            expected.append((moved - x).square().flatten(1).sum(1).mean().item())
            x = moved
    assert fitted.w2_per_block(X) == pytest.approx(expected, rel=1e-5)


def test_a_sample_with_one_value_not_finite_is_named():
    result = torch.tensor([[1.0, 2.0], [3.0, float("nan")], [float("inf"), 4.0]])
    with pytest.raises(ValueError, match=r"overflows on 2 of 3 samples of X \(first: \[1, 2\]"):
        finite_result(result, torch.zeros(3, 2), "X")
    with pytest.warns(UserWarning, match="overflows on 2 of 3 samples of H"):
        assert finite_result(result, torch.zeros(3, 2), "H", warn=True) is result


def test_the_overflow_message_names_the_largest_input_among_the_samples_it_fails_for():
    # Row 0 is finite and holds the largest input overall; of the failing rows 1 and 2, row 2 holds 7.
    result = torch.tensor([[1.0, 2.0], [3.0, float("nan")], [float("inf"), 4.0]])
    inputs = torch.tensor([[1e6, 0.0], [5.0, -2.0], [-7.0, 1.0]])
    with pytest.raises(ValueError, match=re.escape("largest |X| among them: 7)")):
        finite_result(result, inputs, "X")
