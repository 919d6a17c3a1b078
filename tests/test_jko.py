import copy
import math

import pytest
import torch

from igraphflow import ConditionalGraphFlow, GaussianMixtureLatent, jko
from igraphflow._chunks import chunk_size, in_chunks

EDGES = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])


def one_epoch(model, X, Y):
    block, latent = copy.deepcopy(model.blocks[0]), copy.deepcopy(model.latent)
    jko.train_block(0, block, latent, (X, Y), (X[:8], Y[:8]), batch_size=32, max_epochs=1, patience=1,
                    generator=torch.Generator().manual_seed(0))
    return torch.cat([p.detach().flatten() for p in [*block.parameters(), *latent.parameters()]])


def test_a_training_step_in_chunks_is_the_step_on_the_whole_batch(float64, monkeypatch):
    g = torch.Generator().manual_seed(0)
    Y = torch.randint(0, 2, (64, 4), generator=g)
    X = torch.randn(64, 4, 2, generator=g) + Y.unsqueeze(-1)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=1, hidden=8, seed=0)
    whole = one_epoch(model, X, Y)
    monkeypatch.setattr(jko, "TRAIN_SCALARS", 5 * 8)  # chunks of 5 signals: 7 per batch of 32
    chunked = one_epoch(model, X, Y)
    start = torch.cat([p.detach().flatten() for p in [*model.blocks[0].parameters(), *model.latent.parameters()]])
    assert not torch.allclose(whole, start)  # the epoch did train
    torch.testing.assert_close(chunked, whole, rtol=1e-9, atol=1e-11)


def _record_passes(monkeypatch, record):
    r"""Calls ``record(training, x, settings)`` at every pass of ``jko_objective`` (``training``:
    with gradients; ``settings``: its keyword arguments), then makes the pass."""
    objective = jko.jko_objective

    def recorded(block, latent, x, *args, **kwargs):
        record(torch.is_grad_enabled(), x, kwargs)
        return objective(block, latent, x, *args, **kwargs)

    monkeypatch.setattr(jko, "jko_objective", recorded)


@pytest.mark.parametrize("divergence", ["exact", "finite_difference"])
def test_the_exact_trace_trains_and_validates_fewer_signals_per_pass(divergence, monkeypatch):
    # The exact trace sends D copies of every signal through the field, and a training step keeps
    # the graphs of all of them: chunks sized for one copy ran out of memory near D = 100.
    g = torch.Generator().manual_seed(0)
    Y = torch.randint(0, 2, (64, 4), generator=g)
    X = torch.randn(64, 4, 2, generator=g) + Y.unsqueeze(-1)  # D = 8
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=1, hidden=8, seed=0)
    monkeypatch.setattr(jko, "TRAIN_SCALARS", 8 * 8 * 2)
    monkeypatch.setattr(jko, "EVAL_SCALARS", 8 * 8 * 4)
    passes = {True: [], False: []}  # signals per pass, with and without gradients
    _record_passes(monkeypatch, lambda training, x, settings: passes[training].append(len(x)))
    jko.train_block(0, model.blocks[0], model.latent, (X, Y), (X[:32], Y[:32]), divergence=divergence,
                    batch_size=32, max_epochs=1, patience=1, generator=torch.Generator().manual_seed(0))
    exact = divergence == "exact"
    assert set(passes[True]) == ({2} if exact else {16})  # 128 / D^2 or 128 / D signals
    assert set(passes[False]) == ({4} if exact else {32})  # 256 / (min(64, D) D) or 256 / D


def test_in_chunks_concatenates_tuples_and_bounds_the_chunk():
    x = torch.arange(24.0).view(6, 2, 2)
    assert chunk_size(x, scalars=9) == 2 and chunk_size(x, scalars=1) == 1
    calls = []

    def double_and_sum(a):
        calls.append(len(a))
        return 2 * a, a.sum((1, 2))

    doubled, sums = in_chunks(double_and_sum, x, scalars=9)
    assert calls == [2, 2, 2]
    torch.testing.assert_close(doubled, 2 * x)
    torch.testing.assert_close(sums, x.sum((1, 2)))


def test_classification_weight_adds_the_cross_entropy_of_the_bayes_rule(float64):
    g = torch.Generator().manual_seed(1)
    Y = torch.randint(0, 2, (5, 4), generator=g)
    X = torch.randn(5, 4, 2, generator=g)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=1, hidden=8, seed=0)
    block, latent = model.blocks[0], model.latent
    with torch.no_grad():
        latent.means.copy_(torch.tensor([[-1.0, 0.5], [1.0, 0.0]]))
    plain, out, _ = jko.jko_objective(block, latent, X, Y, divergence="exact")
    weighted = jko.jko_objective(block, latent, X, Y, divergence="exact", classification_weight=0.7)[0]
    posterior = latent.posterior(out)  # softmax of the mixture's Bayes rule
    cross_entropy = -posterior.gather(-1, Y.unsqueeze(-1)).log().sum((1, 2))
    torch.testing.assert_close(weighted, plain + 0.7 * cross_entropy / 8)
    # ... and trains the block through its output, not only the means.
    parameters = list(block.parameters())
    assert all(p.grad is None for p in parameters)
    expected = torch.autograd.grad((plain + 0.7 * cross_entropy / 8).sum(), parameters)
    weighted = jko.jko_objective(block, latent, X, Y, divergence="exact", classification_weight=0.7)[0]
    for got, want in zip(torch.autograd.grad(weighted.sum(), parameters), expected):
        torch.testing.assert_close(got, want)


def _block_and_data(seed):
    g = torch.Generator().manual_seed(seed)
    Y = torch.randint(0, 2, (48, 4), generator=g)
    X = torch.randn(48, 4, 2, generator=g) + Y.unsqueeze(-1)
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=1, hidden=8, seed=0)
    return model.blocks[0], model.latent, X, Y


@pytest.mark.parametrize("batch_size", [64, 20])
def test_the_training_loss_is_the_mean_objective_plus_the_barrier_per_dimension(batch_size, float64):
    # lr = 0: the batches of the epoch (one, or two of equal size, whose mean is that of the
    # samples) are scored at the starting state.
    block, latent, X, Y = _block_and_data(2)
    record = jko.train_block(0, block, latent, (X[:40], Y[:40]), (X[40:], Y[40:]), divergence="exact", batch_size=batch_size,
                             lr=0.0, max_epochs=1, barrier_weight=0.3)
    with torch.no_grad():
        objective = jko.jko_objective(block, latent, X[:40], Y[:40], divergence="exact")[0].mean()
        expected = objective + 0.3 * latent.barrier() / 8
    assert record.train_loss[0] == pytest.approx(expected.item(), rel=1e-9)


def test_a_block_trains_on_the_steps_it_is_given(float64):
    # Trained on 2 RK4 steps, a block of the default 8 takes the same path as a 2-step copy of
    # it, and keeps its own 8 steps.
    block, latent, X, Y = _block_and_data(4)
    assert block.steps == 8
    coarse, coarse_latent = copy.deepcopy(block), copy.deepcopy(latent)
    coarse.steps = 2
    settings = dict(batch_size=16, lr=1e-2, max_epochs=2, patience=5)
    record = jko.train_block(0, block, latent, (X[:40], Y[:40]), (X[40:], Y[40:]), steps=2,
                             generator=torch.Generator().manual_seed(0), **settings)
    reference = jko.train_block(0, coarse, coarse_latent, (X[:40], Y[:40]), (X[40:], Y[40:]),
                                generator=torch.Generator().manual_seed(0), **settings)
    assert record.val_loss == reference.val_loss and record.best_epoch >= 0
    for ours, theirs in zip(block.parameters(), coarse.parameters()):
        assert torch.equal(ours, theirs)
    assert block.steps == 8


@pytest.mark.parametrize("divergence", ["hutchinson", "finite_difference"])
def test_the_validation_objective_uses_one_fixed_probe(divergence, float64):
    # The state never changes (lr = 0), so a fixed probe scores every epoch the same and no
    # epoch beats the start; fresh probes would score each one differently.
    block, latent, X, Y = _block_and_data(3)
    record = jko.train_block(0, block, latent, (X[:40], Y[:40]), (X[40:], Y[40:]), divergence=divergence,
                             lr=0.0, max_epochs=3, patience=5, generator=torch.Generator().manual_seed(0))
    assert len(set(record.val_loss)) == 1 and record.best_epoch == -1


def test_jko_objective_of_a_linear_block_is_the_closed_form(float64):
    # dx/dt = A x on [t0, t0 + h] maps x to M x with M = expm(h A) and log|det M| = h tr(A), so
    # the objective is (||M x - x||^2 / (2 h) - log N(M x; mu_y, sigma^2 I) - h tr(A)) / D.
    from scipy.linalg import expm
    from scipy.stats import norm
    from test_ode import LinearField

    from igraphflow import GaussianMixtureLatent, ODEBlock

    g = torch.Generator().manual_seed(0)
    A, h = 0.4 * torch.randn(8, 8, generator=g), 0.3
    block = ODEBlock(LinearField(A), 0.5, 0.5 + h, steps=16)
    latent = GaussianMixtureLatent(num_classes=2, num_features=2, sigma=0.7)
    x, y = torch.randn(5, 4, 2, generator=g), torch.randint(0, 2, (5, 4), generator=g)
    objective, out, logdet = jko.jko_objective(block, latent, x, y, divergence="exact")

    M = torch.from_numpy(expm(h * A.numpy()))
    moved = (x.flatten(1) @ M.T).view_as(x)
    means = latent.means.detach()[y]
    nll = -norm.logpdf(moved.numpy(), loc=means.numpy(), scale=0.7).sum((1, 2))
    expected = ((moved - x).square().sum((1, 2)) / (2 * h) + torch.from_numpy(nll) - h * torch.trace(A)) / 8
    torch.testing.assert_close(out, moved, rtol=0, atol=1e-8)
    torch.testing.assert_close(logdet, (h * torch.trace(A)).expand(5), rtol=0, atol=1e-8)
    torch.testing.assert_close(objective, expected, rtol=0, atol=1e-8)


def _flat_parameters(*modules):
    return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()])


def test_the_automatic_batch_size_is_a_sixteenth_of_the_samples_between_32_and_256():
    sizes = {100: 32, 512: 32, 1600: 100, 4096: 256, 10**6: 256}
    assert {n: jko.auto_batch_size(n) for n in sizes} == sizes


@pytest.mark.parametrize("clip", [1e3, 1e-2])
def test_a_training_step_follows_the_clipped_gradient_of_the_mean_objective_plus_the_barrier(clip, float64, monkeypatch):
    # One batch of exact traces: the gradient Adam steps along is autograd's gradient of the
    # batch's mean objective plus the barrier, rescaled to norm `clip` when it is longer.
    block, latent, X, Y = _block_and_data(4)
    reference = [copy.deepcopy(block), copy.deepcopy(latent)]
    loss = (jko.jko_objective(*reference, X[:40], Y[:40], divergence="exact", classification_weight=0.5)[0].mean()
            + 0.3 * reference[1].barrier() / 8)
    expected = torch.autograd.grad(loss, [p for m in reference for p in m.parameters() if p.requires_grad])
    norm = torch.cat([g.flatten() for g in expected]).norm()
    assert (norm > clip) == (clip < 1)  # the small clip does clip, the large one does not
    expected = [g * min(1.0, clip / (norm.item() + 1e-6)) for g in expected]  # clip_grad_norm_'s rule
    steps = []
    adam_step = torch.optim.Adam.step

    def recording_step(optimizer, *args, **kwargs):
        steps.append([p.grad.clone() for group in optimizer.param_groups for p in group["params"]])
        return adam_step(optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    jko.train_block(0, block, latent, (X[:40], Y[:40]), (X[40:], Y[40:]), divergence="exact", batch_size=64,
                    max_epochs=1, barrier_weight=0.3, classification_weight=0.5, clip=clip)
    (gradients,) = steps
    assert len(gradients) == len(expected)
    for got, want in zip(gradients, expected):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("scores, best_epoch", [([5.0, 6.0, 4.0, 4.5, 4.2, 3.0], 1), ([1.0, 2.0, 3.0, 0.5], -1)])
def test_early_stopping_ends_patience_epochs_after_the_best_and_restores_its_state(scores, best_epoch, float64, monkeypatch):
    # The validation objective is scripted (its first score is the starting state's): with
    # patience 2, training stops two epochs after the best one, and the state kept is the one
    # it had after that epoch (the starting state for best_epoch -1), not the last.
    block, latent, X, Y = _block_and_data(7)
    values, objective = iter(scores), jko.jko_objective

    def scripted_objective(block, latent, x, *args, **kwargs):
        if torch.is_grad_enabled():
            return objective(block, latent, x, *args, **kwargs)
        return torch.full((len(x),), next(values)), x, x.new_zeros(len(x))

    monkeypatch.setattr(jko, "jko_objective", scripted_objective)
    states = [_flat_parameters(block, latent)]  # the starting state, then the state after each epoch
    record = jko.train_block(0, block, latent, (X[:40], Y[:40]), (X[40:], Y[40:]), batch_size=8, lr=1e-2, max_epochs=10,
                             patience=2, on_epoch=lambda r: states.append(_flat_parameters(block, latent)),
                             generator=torch.Generator().manual_seed(0))
    assert record.best_epoch == best_epoch and record.val_loss == scores[1:best_epoch + 4]
    assert not torch.equal(states[-1], states[best_epoch + 1])  # the epochs after the best did move the state
    assert torch.equal(_flat_parameters(block, latent), states[best_epoch + 1])


@pytest.mark.parametrize("divergence", ["hutchinson", "finite_difference"])
def test_the_validation_objective_uses_the_training_estimator(divergence, monkeypatch):
    # Not the exact trace: its passes are sized for the estimator's one copy of each signal.
    block, latent, X, Y = _block_and_data(3)
    passes = []  # (divergence, probe) of each pass without gradients
    _record_passes(monkeypatch, lambda training, x, settings: training or passes.append((settings["divergence"], settings["noise"])))
    jko.train_block(0, block, latent, (X[:40], Y[:40]), (X[40:], Y[40:]), divergence=divergence, max_epochs=2,
                    generator=torch.Generator().manual_seed(0))
    assert len(passes) == 3 and all(d == divergence and torch.equal(noise, passes[0][1]) for d, noise in passes)
    assert passes[0][1].shape == X[40:].shape and set(passes[0][1].unique().tolist()) == {-1.0, 1.0}


def test_training_draws_its_batches_and_probes_from_its_generator_alone(float64):
    # The global random state differs between the runs; the generator is the same.
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        block, latent, X, Y = _block_and_data(6)
        record = jko.train_block(0, block, latent, (X[:40], Y[:40]), (X[40:], Y[40:]), divergence="hutchinson",
                                 batch_size=8, max_epochs=2, generator=torch.Generator().manual_seed(0))
        runs.append((record.val_loss, _flat_parameters(block, latent)))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])


def test_each_epoch_visits_every_training_signal_once_in_a_fresh_random_order(monkeypatch):
    block, latent, X, Y = _block_and_data(5)
    seen = []  # the signals of the training passes, in order
    _record_passes(monkeypatch, lambda training, x, settings: training and seen.append(x))
    jko.train_block(0, block, latent, (X[:40], Y[:40]), (X[40:], Y[40:]), batch_size=8, max_epochs=2, patience=5,
                    generator=torch.Generator().manual_seed(0))
    matches = (torch.cat(seen).flatten(1).unsqueeze(1) == X[:40].flatten(1)).all(-1)
    assert (matches.sum(1) == 1).all()  # every signal of a pass is one training signal
    orders = matches.int().argmax(1).view(2, 40).tolist()
    assert all(sorted(order) == list(range(40)) for order in orders)
    assert orders[0] != list(range(40)) and orders[1] != orders[0]


def test_a_past_deadline_stops_training_after_one_batch(monkeypatch):
    block, latent, X, Y = _block_and_data(5)
    passes = []  # signals per training pass
    _record_passes(monkeypatch, lambda training, x, settings: training and passes.append(len(x)))
    record = jko.train_block(0, block, latent, (X[:40], Y[:40]), (X[40:], Y[40:]), batch_size=8, max_epochs=3,
                             deadline=-math.inf, generator=torch.Generator().manual_seed(0))
    assert passes == [8] and record.stopped_by_time and len(record.train_loss) == len(record.val_loss) == 1


def test_every_step_keeps_the_means_the_separation_apart(float64):
    # Each class's signals lie beyond the other class's mean, so the steps pull the means
    # through each other; with no barrier to hold them apart, the projection after each step does.
    g = torch.Generator().manual_seed(8)
    Y = torch.randint(0, 2, (48, 4), generator=g)
    X = 0.3 * torch.randn(48, 4, 2, generator=g) + torch.stack([1 - 2.0 * Y, 0.0 * Y], -1)
    block = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=1, hidden=8, seed=0).blocks[0]
    latent = GaussianMixtureLatent(num_classes=2, num_features=2, separation=1.0, initial_separation=1.5)  # at least 1.0 apart
    distances = []
    jko.train_block(0, block, latent, (X[:40], Y[:40]), (X[40:], Y[40:]), batch_size=8, lr=0.05, max_epochs=2,
                    barrier_weight=0.0, on_epoch=lambda r: distances.append(latent.pairwise_distances().min().item()),
                    generator=torch.Generator().manual_seed(0))
    assert 1.0 <= min(distances) < 1.1  # the means did come together, up to the separation
