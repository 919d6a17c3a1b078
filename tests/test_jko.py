import copy

import pytest
import torch

from igraphflow import ConditionalGraphFlow, jko
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


@pytest.mark.parametrize("divergence", ["exact", "finite_difference"])
def test_the_exact_trace_trains_and_validates_fewer_signals_per_pass(divergence, monkeypatch):
    # The exact trace sends D copies of every signal through the field, and a training step keeps
    # the graphs of all of them: chunks sized for one copy ran out of memory near D = 100.
    g = torch.Generator().manual_seed(0)
    Y = torch.randint(0, 2, (64, 4), generator=g)
    X = torch.randn(64, 4, 2, generator=g) + Y.unsqueeze(-1)  # D = 8
    model = ConditionalGraphFlow(EDGES, 4, 2, 2, num_blocks=1, hidden=8, seed=0)
    monkeypatch.setattr(jko, "TRAIN_SCALARS", 8 * 8)
    monkeypatch.setattr(jko, "EVAL_SCALARS", 8 * 8 * 4)
    passes = {True: [], False: []}  # signals per pass, with and without gradients
    objective = jko.jko_objective
    monkeypatch.setattr(jko, "jko_objective", lambda block, latent, x, *args, **kwargs: (
        passes[torch.is_grad_enabled()].append(len(x)), objective(block, latent, x, *args, **kwargs))[1])
    jko.train_block(0, model.blocks[0], model.latent, (X, Y), (X[:32], Y[:32]), divergence=divergence,
                    batch_size=32, max_epochs=1, patience=1, generator=torch.Generator().manual_seed(0))
    exact = divergence == "exact"
    assert set(passes[True]) == ({1} if exact else {8})  # 64 / D^2 or 64 / D signals
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


def test_the_training_loss_is_the_mean_objective_plus_the_barrier_per_dimension(float64):
    # lr = 0: the one batch of the epoch is scored at the starting state.
    block, latent, X, Y = _block_and_data(2)
    record = jko.train_block(0, block, latent, (X[:40], Y[:40]), (X[40:], Y[40:]), divergence="exact", batch_size=64,
                             lr=0.0, max_epochs=1, barrier_weight=0.3)
    with torch.no_grad():
        objective = jko.jko_objective(block, latent, X[:40], Y[:40], divergence="exact")[0].mean()
        expected = objective + 0.3 * latent.barrier() / 8
    assert record.train_loss[0] == pytest.approx(expected.item(), rel=1e-9)


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
