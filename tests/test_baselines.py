r"""Tests of the conditional baselines (NSF, cINN, cGAN) and their shared machinery."""

import math
import pickle

import FrEIA.modules as Fm
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import zuko
from torch import nn

from igraphflow.baselines import CGANBaseline, CINNBaseline, IGNNBaseline, NSFBaseline
from igraphflow.baselines._common import batched_edge_index, seeded, train_loop
from igraphflow.baselines.cgan import ChebNet
from igraphflow.baselines.cinn import SubnetMLP, atan_clamp

torch.set_num_threads(1)

ALL = [NSFBaseline, CINNBaseline, CGANBaseline]
DENSITY = [NSFBaseline, CINNBaseline]
SMALL = {
    NSFBaseline: dict(transforms=2, hidden_features=(16, 16)),
    CINNBaseline: dict(blocks=3, hidden=16),
    CGANBaseline: dict(hidden=8),
}

V, C, K = 3, 2, 3
EDGES = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    Y = torch.randint(K, (n, V), generator=g)
    X = torch.randn(n, V, C, generator=g) + Y[..., None].float()
    return X, Y


def _model(cls, **kw):
    return cls(EDGES, V, C, K, **{**SMALL[cls], "seed": 0, **kw})


@pytest.mark.parametrize("cls", ALL)
def test_shapes_and_interface(cls):
    X, Y = _data()
    model = _model(cls)
    assert repr(model).startswith(f"{cls.__name__}(num_nodes=3")
    assert model.fit(X, Y, max_epochs=2, progress=False) is model
    assert model.sample(Y[:7]).shape == (7, V, C)
    assert model.sample(Y[:7].numpy()).dtype == torch.float32
    assert len(model.history_) == 3 and model.history_[0]["epoch"] == 0
    if cls is CGANBaseline:
        assert not hasattr(model, "log_prob")
    else:
        lp = model.log_prob(X[:7].numpy(), Y[:7].numpy())
        assert lp.shape == (7,) and torch.isfinite(lp).all()


@pytest.mark.parametrize("cls", ALL)
def test_determinism(cls):
    X, Y = _data()
    a = _model(cls).fit(X, Y, max_epochs=2, progress=False)
    b = _model(cls).fit(X, Y, max_epochs=2, progress=False)
    c = _model(cls, seed=1).fit(X, Y, max_epochs=2, progress=False)
    for (ka, va), (kb, vb) in zip(a.model_.state_dict().items(), b.model_.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert torch.equal(a.sample(Y), b.sample(Y))
    assert torch.equal(a.sample(Y), a.sample(Y))  # a seeded model samples the same each call
    assert not torch.equal(a.sample(Y), a.sample(Y, seed=5))
    assert not torch.equal(a.sample(Y), c.sample(Y))
    # The global random state is neither used nor changed by a seeded model.
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    _model(cls).fit(X, Y, max_epochs=1, progress=False).sample(Y)
    assert torch.equal(torch.rand(3), before)


@pytest.mark.parametrize("cls", ALL)
def test_without_a_seed_torch_manual_seed_makes_a_fit_reproducible(cls):
    # FrEIA's random permutations came from NumPy's global state, which the seed did not set.
    X, Y = _data()
    fits = []
    for numpy_seed in (1, 2):
        torch.manual_seed(3)
        np.random.seed(numpy_seed)
        fits.append(_model(cls, seed=None).fit(X, Y, max_epochs=1, progress=False))
        assert np.random.rand() == np.random.RandomState(numpy_seed).rand()  # NumPy's state left alone
    for (ka, va), (kb, vb) in zip(*(fit.model_.state_dict().items() for fit in fits)):
        assert ka == kb and torch.equal(va, vb), ka


@pytest.mark.parametrize("cls", ALL)
def test_pickle_round_trip(cls):
    X, Y = _data()
    model = _model(cls).fit(X, Y, max_epochs=1, progress=False)
    copy = pickle.loads(pickle.dumps(model))
    assert torch.equal(copy.sample(Y), model.sample(Y))
    if cls is not CGANBaseline:
        assert torch.equal(copy.log_prob(X, Y), model.log_prob(X, Y))


@pytest.mark.parametrize("cls", [*ALL, IGNNBaseline])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # float64 weights were reloaded rounded
def test_save_load_round_trip(cls, dtype, tmp_path):
    X, Y = _data()
    settings = dict(blocks=2, hidden=8, seed=0) if cls is IGNNBaseline else {**SMALL[cls], "seed": 0}
    model = cls(EDGES, V, C, K, dtype=dtype, **settings)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.save(tmp_path / "model.pt")
    model.fit(X, Y, max_epochs=2, progress=False).save(tmp_path / "model.pt")
    loaded = cls.load(tmp_path / "model.pt")
    assert repr(loaded) == repr(model) and str(loaded.history_) == str(model.history_)  # NaN != NaN
    assert loaded.best_epoch_ == model.best_epoch_
    # The iGNN's spectral norms would move the weights in training mode.
    assert torch.equal(loaded.sample(Y[:8], seed=1), model.sample(Y[:8], seed=1))
    if cls is not CGANBaseline:
        assert torch.equal(loaded.log_prob(X[:8], Y[:8]), model.log_prob(X[:8], Y[:8]))
    other = CGANBaseline if cls is not CGANBaseline else NSFBaseline
    with pytest.raises(ValueError, match=f"holds a checkpoint of 'igraphflow.baselines.{cls.__name__}'"):
        other.load(tmp_path / "model.pt")
    with pytest.raises(ValueError, match="device must name a torch device.*got 'bogus'") as error:  # was blamed on the file
        cls.load(tmp_path / "model.pt", device="bogus")
    assert "checkpoint" not in str(error.value)


def _gauss_1node(n, seed):
    g = torch.Generator().manual_seed(seed)
    Y = torch.randint(2, (n, 1), generator=g)
    means = torch.tensor([[-2.0, 1.0], [2.0, 3.0]])
    X = means[Y[:, 0]][:, None, :] + torch.tensor([0.5, 1.5]) * torch.randn(n, 1, 2, generator=g)
    return X, Y


@pytest.mark.parametrize("cls", DENSITY)
def test_fit_improves_validation_likelihood(cls):
    X, Y = _gauss_1node(1000, seed=0)
    model = cls([[0], [0]], 1, 2, 2, seed=0, batch_size=64, **SMALL[cls]).fit(
        X, Y, max_epochs=30, progress=False
    )
    initial = model.history_[0]["val_loss"]
    best = model.history_[model.best_epoch_]["val_loss"]
    assert best < initial - 0.5
    # Close to the true conditional negative log-likelihood on fresh data.
    Xt, Yt = _gauss_1node(1000, seed=1)
    true_nll = -torch.distributions.Normal(
        torch.tensor([[-2.0, 1.0], [2.0, 3.0]])[Yt[:, 0]], torch.tensor([0.5, 1.5])
    ).log_prob(Xt[:, 0]).sum(1).mean()
    assert -model.log_prob(Xt, Yt).mean() < true_nll + 0.15


@pytest.mark.parametrize("cls", DENSITY)
def test_log_prob_integrates_to_one(cls):
    X, Y = _gauss_1node(400, seed=2)
    model = cls([[0], [0]], 1, 2, 2, seed=0, **SMALL[cls]).fit(X, Y, max_epochs=5, progress=False)
    h = 0.1
    u = torch.arange(-8.0, 12.0, h)
    grid = torch.cartesian_prod(u, u).reshape(-1, 1, 2)
    for label in (0, 1):
        lab = torch.full((len(grid), 1), label)
        mass = model.log_prob(grid, lab).double().exp().sum() * h * h
        assert mass == pytest.approx(1.0, abs=0.02)


def _jacobian_log_density(forward, x):
    r"""log N(f(x); 0, I) + log|det df/dx| with the Jacobian from autograd."""
    z = forward(x)
    J = torch.autograd.functional.jacobian(forward, x)
    return torch.distributions.Normal(0.0, 1.0).log_prob(z).sum() + torch.linalg.slogdet(J)[1]


@pytest.mark.parametrize("cls", DENSITY)
def test_log_prob_against_autograd_jacobian(cls):
    X, Y = _data(64)
    X = X.double()
    model = _model(cls, dtype=torch.float64, standardize=False)
    model.fit(X, Y, max_epochs=3, progress=False)
    for i in range(3):
        x, c = X[i].flatten(), model._onehot(Y[i : i + 1]).flatten(1)
        if cls is NSFBaseline:
            forward = lambda v: model.model_(c).transform(v[None])[0]  # noqa: E731
        else:
            forward = lambda v: model.model_(v[None], c=[c])[0][0]  # noqa: E731
        ref = _jacobian_log_density(forward, x)
        assert model.log_prob(X[i : i + 1], Y[i : i + 1])[0].item() == pytest.approx(
            ref.item(), abs=1e-8
        )
    # Standardisation changes coordinates; log_prob accounts for its Jacobian.
    std = _model(cls, dtype=torch.float64).fit(X, Y, max_epochs=1, progress=False)
    x0 = std._to_std(X[:1]).flatten(1)
    direct = std._log_prob_std(x0, Y[:1]) - std.scale_.log().sum()
    assert std.log_prob(X[:1], Y[:1]).item() == pytest.approx(direct.item(), abs=1e-10)


@pytest.mark.parametrize("cls", DENSITY)
def test_sample_is_the_inverse_map(cls):
    # sample(Y, seed=s) pushes the standard normal draw randn(N, V * C) of a generator seeded
    # with s through the inverse flow: the forward flow must give that draw back.
    X, Y = _data()
    model = _model(cls, dtype=torch.float64).fit(X.double(), Y, max_epochs=2, progress=False)
    S = model.sample(Y, seed=7)
    x, c = model._to_std(S).flatten(1), model._onehot(Y).flatten(1)
    if cls is NSFBaseline:
        z = model.model_(c).transform(x)
    else:
        z = model.model_(x, c=[c])[0]
    g = torch.Generator().manual_seed(7)
    eps = torch.randn(len(Y), V * C, generator=g, dtype=torch.float64)
    assert torch.allclose(z, eps, atol=1e-6)
    assert torch.isfinite(model.log_prob(S, Y)).all()


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize(
    "X, Y, match",
    [
        (torch.zeros(10, V, C + 1), torch.zeros(10, V, dtype=torch.long), r"X must have shape"),
        (torch.zeros(9, V, C), torch.zeros(10, V, dtype=torch.long), r"X must have shape"),
        (torch.zeros(10, V, C), torch.zeros(10, V + 1, dtype=torch.long), r"Y must have shape"),
        (torch.zeros(10, V, C), torch.full((10, V), K), r"labels in \[3, 3\], outside \[0, num_classes=3\)"),
        (torch.zeros(10, V, C), torch.full((10, V), -1), r"labels in \[-1, -1\], outside \[0, num_classes=3\)"),
        (torch.zeros(10, V, C), torch.full((10, V), 0.5), r"integer class labels"),
        (torch.zeros(10, V, C), torch.full((10, V), math.inf), r"integer class labels"),
        (torch.full((10, V, C), math.nan), torch.zeros(10, V, dtype=torch.long), r"X holds 60 NaN or infinite values"),
    ],
)
def test_bad_inputs(cls, X, Y, match):
    with pytest.raises(ValueError, match=match):
        _model(cls).fit(X, Y, max_epochs=1, progress=False)


def test_inputs_keep_the_model_dtype_and_overflow_is_refused():
    X, Y = _data(10)
    assert _model(NSFBaseline, dtype=torch.float64)._check_X(X.numpy()).dtype == torch.float64
    assert _model(NSFBaseline)._check_X(X.double()).dtype == torch.float32
    with pytest.raises(ValueError, match=r"X must have shape \[N=10, num_nodes=3, num_features=2\], got \[9, 3, 2\]"):
        _model(NSFBaseline)._check_XY(X[:9], Y)
    big = X.double()
    big[0, 0, 0] = 1e300  # finite in float64, infinite in float32
    with pytest.raises(ValueError, match=r"X holds 1 values too large for torch.float32 \(first at index \[0, 0, 0\]\)"):
        _model(NSFBaseline)._check_X(big)


@pytest.mark.parametrize("cls", ALL)
def test_bad_settings_and_unfitted(cls):
    with pytest.raises(ValueError, match=r"edge_index holds node indices in \[0, 5\], outside \[0, 3\)"):
        cls([[0, 5], [1, 0]], V, C, K)
    # Both ends of the range: node V is one past the last node, and -1 is no node either.
    with pytest.raises(ValueError, match=r"edge_index holds node indices in \[0, 3\], outside \[0, 3\)"):
        cls([[0, 3], [1, 0]], V, C, K)
    with pytest.raises(ValueError, match=r"edge_index holds node indices in \[-1, 1\], outside \[0, 3\)"):
        cls([[0, -1], [1, 0]], V, C, K)
    with pytest.raises(ValueError, match=r"edge_index must have shape \[2, E\]"):
        cls(torch.zeros(3, 4, dtype=torch.long), V, C, K)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1"):
        cls(EDGES, V, C, 0)
    X, Y = _data(20)
    with pytest.raises(ValueError, match="validation"):
        _model(cls).fit(X, Y, validation=1.0, progress=False)
    with pytest.raises(RuntimeError, match="not fitted"):
        _model(cls).sample(Y)
    model = _model(cls).fit(X, Y, max_epochs=1, progress=False)
    with pytest.raises(ValueError, match="Y holds labels"):
        model.sample(Y + K)
    if cls is not CGANBaseline:
        with pytest.raises(ValueError, match="X must have shape"):
            model.log_prob(X[:, :2], Y)


def test_cinn_needs_two_dimensions():
    with pytest.raises(ValueError, match="at least 2"):
        CINNBaseline([[0], [0]], 1, 1, 2)


@pytest.mark.parametrize("cls", ALL)
def test_max_time(cls):
    X, Y = _data(200)
    model = _model(cls, batch_size=16).fit(X, Y, max_time=0.0, max_epochs=50, progress=False)
    assert len(model.history_) == 2  # the state before training and one (cut) epoch


class _Scalar(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))


def test_train_loop_early_stopping_restores_best():
    module = _Scalar()
    val_losses = iter([5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 9.0])

    def step(idx):
        with torch.no_grad():
            module.w += 1.0
        return 0.0

    history, best_epoch = train_loop(
        step,
        lambda: next(val_losses),
        module,
        num_samples=4,
        batch_size=4,
        max_epochs=100,
        max_time=None,
        patience=3,
        generator=torch.Generator().manual_seed(0),
        progress=False,
        desc="test",
    )
    assert best_epoch == 2 and module.w.item() == 2.0  # the state after epoch 2 is restored
    assert [h["epoch"] for h in history] == [0, 1, 2, 3, 4, 5]  # 3 epochs without improvement
    assert history[0]["val_loss"] == 5.0


def _run_train_loop(val_losses, *, num_samples=4, batch_size=4, max_epochs=100, patience=None, step_loss=None):
    r"""``train_loop`` on a scalar that each batch raises by 1, with the given validation losses
    (None: no validation); ``step_loss`` maps a batch's indices to its training loss."""
    module = _Scalar()
    losses = None if val_losses is None else iter(val_losses)

    def step(idx):
        with torch.no_grad():
            module.w += 1.0
        return 0.0 if step_loss is None else step_loss(idx)

    history, best_epoch = train_loop(
        step,
        None if losses is None else lambda: next(losses),
        module,
        num_samples=num_samples,
        batch_size=batch_size,
        max_epochs=max_epochs,
        max_time=None,
        patience=patience,
        generator=torch.Generator().manual_seed(0),
        progress=False,
        desc="test",
    )
    return history, best_epoch, module.w.item()


def test_train_loop_weights_the_training_loss_by_batch_size():
    # batches of 4 and 1 signals, each reporting its size as its loss
    history, _, _ = _run_train_loop(None, num_samples=5, batch_size=4, max_epochs=1, step_loss=len)
    assert history[1]["train_loss"] == pytest.approx((4 * 4 + 1 * 1) / 5)


def test_train_loop_without_validation_keeps_the_last_state():
    history, best_epoch, w = _run_train_loop(None, max_epochs=3)
    assert best_epoch == 3 and w == 3.0
    assert [h["val_loss"] for h in history] == [None] * 4


def test_train_loop_starts_from_a_non_finite_validation_loss_and_counts_patience_from_each_improvement():
    # Any finite loss improves on a NaN start.
    history, best_epoch, w = _run_train_loop([math.nan, 5.0, 4.0, 6.0, 7.0], patience=2)
    assert best_epoch == 2 and w == 2.0 and len(history) == 5
    # The count of stale epochs starts again at each improvement: 6 is stale, 3 improves,
    # then 7 and 8 are the two stale epochs that stop it.
    history, best_epoch, w = _run_train_loop([5.0, 4.0, 6.0, 3.0, 7.0, 8.0], patience=2)
    assert best_epoch == 3 and w == 3.0 and [h["epoch"] for h in history] == [0, 1, 2, 3, 4, 5]


def test_seeded_seeds_numpy_and_torch_and_restores_both():
    np.random.seed(11)
    torch.manual_seed(11)
    expected_np, expected_torch = np.random.rand(), torch.rand(())
    np.random.seed(11)
    torch.manual_seed(11)
    with seeded(3):
        assert np.random.rand() == np.random.RandomState(3).rand()
        assert torch.equal(torch.rand(()), torch.rand((), generator=torch.Generator().manual_seed(3)))
    assert np.random.rand() == expected_np and torch.equal(torch.rand(()), expected_torch)


def test_train_loop_stops_on_nan():
    module = _Scalar()

    def step(idx):
        with torch.no_grad():
            module.w += 1.0
        return math.nan

    with pytest.warns(RuntimeWarning, match="non-finite"):
        history, best_epoch = train_loop(
            step,
            lambda: 1.0,
            module,
            num_samples=4,
            batch_size=2,
            max_epochs=10,
            max_time=None,
            patience=None,
            generator=torch.Generator().manual_seed(0),
            progress=False,
            desc="test",
        )
    assert len(history) == 2 and best_epoch == 0 and module.w.item() == 0.0


def test_chebnet_batch_equals_one_graph_at_a_time():
    torch.manual_seed(0)
    net = ChebNet(3, 5, layers=2, num_nodes=V).double()
    x = torch.randn(4, V, 3, dtype=torch.float64)
    batched = net(x, EDGES)
    single = torch.stack([net(x[b : b + 1], EDGES)[0] for b in range(4)])
    assert torch.allclose(batched, single, atol=1e-12)
    ei = batched_edge_index(EDGES, V, 2)
    assert ei.tolist() == [[0, 1, 1, 2, 3, 4, 4, 5], [1, 0, 2, 1, 4, 3, 5, 4]]


@pytest.mark.parametrize("cls", [CGANBaseline, IGNNBaseline])
def test_graph_is_taken_as_undirected(cls):
    # The cGAN fed its edge list to ChebConv as given: listing each edge once changed its samples.
    X, Y = _data()
    small = SMALL.get(cls, dict(blocks=1, hidden=4))
    one_way = EDGES[:, EDGES[0] < EDGES[1]]
    repeated = torch.cat([EDGES.flip(1), EDGES], 1)
    samples = [
        cls(edges, V, C, K, seed=0, **small).fit(X, Y, max_epochs=1, progress=False).sample(Y[:8])
        for edges in (EDGES, one_way, repeated)
    ]
    assert torch.equal(samples[0], samples[1]) and torch.equal(samples[0], samples[2])


@pytest.mark.parametrize("cls", ALL + [IGNNBaseline])
def test_integer_settings_are_checked(cls):
    small = SMALL.get(cls, dict(blocks=1, hidden=4))
    X, Y = _data(20)
    for bad in (dict(seed=1.5), dict(seed="a"), dict(patience=1.5)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            cls(EDGES, V, C, K, **(small | bad))
    if "hidden" in small:
        with pytest.raises(ValueError, match="hidden must be an integer >= 1, got 2.5"):
            cls(EDGES, V, C, K, **(small | dict(hidden=2.5)))
    model = cls(EDGES, V, C, K, seed=0, **small)
    for max_epochs in (0, -1, 1.5):  # 0 and -1 returned an untrained model as fitted
        with pytest.raises(ValueError, match="max_epochs"):
            model.fit(X, Y, max_epochs=max_epochs, progress=False)
    model.fit(X, Y, max_epochs=1, progress=False)
    with pytest.raises(ValueError, match="seed"):
        model.sample(Y, seed=0.5)


@pytest.mark.parametrize("cls", ALL + [IGNNBaseline])
def test_sample_of_no_label_patterns_is_empty(cls):
    X, Y = _data(20)
    model = cls(EDGES, V, C, K, seed=0, **SMALL.get(cls, dict(blocks=1, hidden=4))).fit(X, Y, max_epochs=1, progress=False)
    out = model.sample(Y[:0])
    assert out.shape == (0, V, C) and out.dtype == torch.float32


def test_ignn_predict_needs_a_fitted_model():
    X, _ = _data(4)
    model = IGNNBaseline(EDGES, V, C, K, blocks=1, hidden=4)
    for method in (model.predict, model.predict_proba, model.encode):
        with pytest.raises(RuntimeError, match="not fitted"):
            method(X)


@pytest.mark.parametrize("cls", ALL + [IGNNBaseline])
def test_one_class_fits_and_samples(cls):
    # One class is an unconditional model, as for ConditionalGraphFlow; it was refused.
    X, _ = _data(24)
    Y = torch.zeros(24, V, dtype=torch.long)
    model = cls(EDGES, V, C, 1, seed=0, **SMALL.get(cls, dict(blocks=1, hidden=4))).fit(X, Y, max_epochs=1, progress=False)
    samples = model.sample(Y[:5])
    assert samples.shape == (5, V, C) and torch.isfinite(samples).all()
    if cls is not CGANBaseline:
        assert torch.isfinite(model.log_prob(X[:5], Y[:5])).all()
    if cls is IGNNBaseline:
        assert torch.equal(model.predict(X[:5]), Y[:5])


@pytest.mark.parametrize("cls", ALL + [IGNNBaseline])
def test_seeds_beyond_what_torch_takes_raise_clear_errors(cls):
    small = SMALL.get(cls, dict(blocks=1, hidden=4))
    with pytest.raises(ValueError, match="seed must be an integer <= 18446744073709551615"):
        cls(EDGES, V, C, K, seed=2**64, **small)
    X, Y = _data(20)
    model = cls(EDGES, V, C, K, seed=2**64 - 1, **small).fit(X, Y, max_epochs=1, progress=False)
    with pytest.raises(ValueError, match="seed must be an integer <="):
        model.sample(Y, seed=2**64)


@pytest.mark.parametrize("cls", DENSITY + [IGNNBaseline])
def test_log_prob_of_no_signals_is_empty(cls):
    # The NSF failed inside zuko (a reshape of 0 elements), the iGNN with an IndexError.
    X, Y = _data(20)
    model = cls(EDGES, V, C, K, seed=0, **SMALL.get(cls, dict(blocks=1, hidden=4))).fit(X, Y, max_epochs=1, progress=False)
    out = model.log_prob(X[:0], Y[:0])
    assert out.shape == (0,) and out.dtype == torch.float32


@pytest.mark.parametrize(
    "cls, setting, match",
    [
        (IGNNBaseline, dict(gamma=math.nan), "gamma must be a finite number"),  # trained to NaN, quietly
        (IGNNBaseline, dict(barrier_weight=math.nan), "barrier_weight must be a finite number"),
        (IGNNBaseline, dict(sigma=math.nan), "sigma must be a finite number"),  # NaN samples
        (IGNNBaseline, dict(lipschitz="0.5"), "lipschitz must be a finite number in \\(0, 1\\)"),  # a TypeError
        (IGNNBaseline, dict(conv="bogus"), "conv must be one of"),  # refused only in fit
        (IGNNBaseline, dict(orders=()), "orders must be a non-empty sequence"),
        (IGNNBaseline, dict(separation=-1.0), "separation must be a finite number"),
        (CINNBaseline, dict(clamp=-1.0), "clamp must be a finite number"),
        (CINNBaseline, dict(clamp="nan"), "clamp must be a finite number"),
        (NSFBaseline, dict(standardize="no"), "standardize must be True or False"),  # was truthy
        (NSFBaseline, dict(randperm="yes"), "randperm must be True or False"),
        (NSFBaseline, dict(randperm=np.array([True])), "randperm must be True or False"),  # only 0-d arrays
        (NSFBaseline, dict(dtype=torch.int64), "dtype must be a floating-point type, got torch.int64"),
        (CINNBaseline, dict(layers=-1), "layers must be an integer >= 0"),
    ],
)
def test_settings_are_refused_at_construction(cls, setting, match):
    with pytest.raises(ValueError, match=match):
        cls(EDGES, V, C, K, **setting)


@pytest.mark.parametrize("cls", ALL + [IGNNBaseline])
def test_real_settings_and_meta_tensors_raise_clear_errors(cls):
    small = SMALL.get(cls, dict(blocks=1, hidden=4))
    for lr in (math.nan, 0.0, -1.0, "1e-3"):  # NaN trained to NaN weights; -1 failed inside Adam
        with pytest.raises(ValueError, match="lr must be a finite number in"):
            cls(EDGES, V, C, K, lr=lr, **small)
    with pytest.raises(ValueError, match="edge_index is on the meta device"):
        cls(EDGES.to("meta"), V, C, K, **small)
    X, Y = _data(20)
    model = cls(EDGES, V, C, K, seed=0, **small)
    for bad, match in ((dict(validation="0.1"), "validation must be"), (dict(max_time=math.nan), "max_time must be"),
                       (dict(max_time=-1.0), "max_time must be"), (dict(max_time="5"), "max_time must be")):
        with pytest.raises(ValueError, match=match):  # a NaN budget was no budget
            model.fit(X, Y, max_epochs=1, progress=False, **bad)
    with pytest.raises(ValueError, match="X is on the meta device"):
        model.fit(X.to("meta"), Y, max_epochs=1, progress=False)
    with pytest.raises(ValueError, match="Y is on the meta device"):
        model.fit(X, Y.to("meta"), max_epochs=1, progress=False)


@pytest.mark.parametrize("cls", DENSITY)
def test_recorded_validation_loss_is_the_nll_of_the_held_out_rows(cls):
    X, Y = _data()
    model = _model(cls).fit(X, Y, max_epochs=3, progress=False)
    # fit's split: the first draw of a generator seeded with the model's seed; the scaling comes from its training rows
    train, val = model._split(len(X), 0.1, torch.Generator().manual_seed(0))
    assert len(val) == 10 and torch.allclose(model.loc_, X[train].mean(0)) and torch.allclose(model.scale_, X[train].std(0))
    # The recorded loss is in standardised units: log_prob adds the scaling's log-Jacobian -sum(log scale).
    nll = -(model.log_prob(X, Y) + model.scale_.log().sum())
    recorded = model.history_[model.best_epoch_]["val_loss"]  # the best state is the one kept
    assert recorded == pytest.approx(nll[val].mean().item(), rel=1e-5, abs=1e-5)
    assert abs(nll[train].mean() - nll[val].mean()) > 1e-2  # the training rows would give another number


@pytest.mark.parametrize("cls", ALL)
def test_a_tiny_fit_keeps_one_validation_sample(cls):
    # round(0.1 * 5) = 0, but a positive fraction holds out at least one sample.
    X, Y = _data(5)
    model = _model(cls).fit(X, Y, max_epochs=1, validation=0.1, progress=False)
    assert all(h["val_loss"] is not None and math.isfinite(h["val_loss"]) for h in model.history_)


def test_cgan_generator_loss_is_the_non_saturating_loss(monkeypatch):
    # One batch, one epoch: the recorded generator loss is mean softplus(-D(G(z))) with the discriminator
    # just updated (the one kept, as the generator's update follows).
    calls = []
    build = CGANBaseline._build

    def hooked(self):
        net = build(self)
        net["generator"].register_forward_hook(lambda module, args, out: calls.append((args, out.detach())))
        return net

    monkeypatch.setattr(CGANBaseline, "_build", hooked)
    X, Y = _data()
    model = _model(CGANBaseline, batch_size=len(X)).fit(X, Y, max_epochs=1, progress=False)
    (_, onehot, ei), fake = calls[0]
    with torch.no_grad():
        logit = model.model_["discriminator"](fake, onehot, ei)
    assert model.history_[1]["train_loss"] == pytest.approx(F.softplus(-logit).mean().item(), rel=1e-5)
    assert abs(F.softplus(logit).mean() - F.softplus(-logit).mean()) > 1e-3  # the sign matters here


def test_cgan_samples_are_in_the_units_of_the_data():
    # N(100, 10^2) data: even a barely trained generator's standardised output comes back near 100.
    g = torch.Generator().manual_seed(0)
    X, Y = 100.0 + 10.0 * torch.randn(64, V, C, generator=g), torch.randint(K, (64, V), generator=g)
    model = _model(CGANBaseline).fit(X, Y, max_epochs=2, progress=False)
    mean = model.sample(Y).mean().item()
    assert abs(mean - 100.0) < 20.0


def test_cgan_samples_depend_on_the_labels():
    X, Y = _data()
    model = _model(CGANBaseline).fit(X, Y, max_epochs=1, progress=False)
    zeros, twos = torch.zeros(4, V, dtype=torch.long), torch.full((4, V), 2)
    assert not torch.allclose(model.sample(zeros, seed=1), model.sample(twos, seed=1), atol=1e-4)


def _standard_normal_nll(x):
    r"""Mean over the rows of ``x [N, D]`` of ``-log N(x; 0, I)``."""
    return -torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(1).mean().item()


@pytest.mark.parametrize("cls", ALL)
def test_validation_fractions_that_leave_no_training_sample_are_refused(cls):
    X, Y = _data(20)
    # One sample with a positive fraction: the one held out leaves nothing to train on.
    with pytest.raises(ValueError, match=r"too few samples \(1\) for a validation fraction of 0.1"):
        _model(cls).fit(X[:1], Y[:1], validation=0.1, progress=False)
    with pytest.raises(ValueError, match=r"too few samples \(20\) for a validation fraction of 0.99"):
        _model(cls).fit(X, Y, validation=0.99, progress=False)  # round(19.8) = 20 held out
    with pytest.raises(ValueError, match=r"validation must be a finite number in \[0, 1\), got 1.0"):
        _model(cls).fit(X, Y, validation=1.0, progress=False)


@pytest.mark.parametrize("cls", ALL)
def test_a_constant_node_feature_keeps_the_fit_finite(cls):
    # Its standard deviation is 0: dividing by it would turn every standardised signal into NaN.
    X, Y = _data(40)
    X[:, 1, 0] = 3.0
    model = _model(cls).fit(X, Y, max_epochs=1, progress=False)
    assert torch.isfinite(model.scale_).all() and model.scale_[1, 0] > 0
    assert torch.isfinite(model.sample(Y[:5])).all()
    if cls is not CGANBaseline:
        assert torch.isfinite(model.log_prob(X[:5], Y[:5])).all()


@pytest.mark.parametrize("cls", ALL)
def test_a_single_training_sample_is_centred_and_left_unscaled(cls):
    # One row has no standard deviation (torch gives NaN): the scale is 1 and the mean the row itself.
    X, Y = _data(1)
    model = _model(cls).fit(X, Y, max_epochs=1, validation=0.0, progress=False)
    assert torch.equal(model.loc_, X[0]) and torch.equal(model.scale_, torch.ones(V, C))


def test_an_untrained_cinn_is_the_identity_and_its_losses_are_per_sample_nlls():
    # The couplings' last layers start at zero, so before the first step the flow maps the
    # standardised signal to itself: the losses are the standard normal NLL of those signals.
    X, Y = _data()
    model = _model(CINNBaseline, batch_size=len(X)).fit(X, Y, max_epochs=1, progress=False)
    train, val = model._split(len(X), 0.1, torch.Generator().manual_seed(0))
    x = ((X - X[train].mean(0)) / X[train].std(0)).flatten(1)
    assert model.history_[0]["val_loss"] == pytest.approx(_standard_normal_nll(x[val]), rel=1e-5)
    # One batch per epoch: its loss is taken before the step, on the untrained flow.
    assert model.history_[1]["train_loss"] == pytest.approx(_standard_normal_nll(x[train]), rel=1e-5)


@pytest.mark.parametrize("cls", ALL)
def test_one_adam_step_moves_each_parameter_by_at_most_the_learning_rate(cls):
    # Adam's first step is lr * g / (|g| + eps) per parameter; the cGAN's default rate is 2e-4.
    # In float64, so that rounding the weights does not blur steps this small.
    X, Y = _data()
    lr = 2e-4 if cls is CGANBaseline else 1e-6
    settings = dict(batch_size=len(X), dtype=torch.float64) | ({} if cls is CGANBaseline else dict(lr=lr))
    model = _model(cls, **settings)
    assert model.lr == lr
    with seeded(0):
        initial = model._build().double().state_dict()
    model.fit(X.double(), Y, max_epochs=1, validation=0.0, progress=False)
    moves = [(model.model_.state_dict()[k] - v).abs().max().item() for k, v in initial.items() if v.is_floating_point()]
    assert 0 < max(moves) <= lr * (1 + 1e-6)


@pytest.mark.parametrize("cls", DENSITY)
def test_training_stops_patience_epochs_after_the_best_validation_loss(cls):
    X, Y = _data()
    model = _model(cls, patience=2, lr=0.05).fit(X, Y, max_epochs=20, progress=False)
    losses = [h["val_loss"] for h in model.history_]
    last = len(losses) - 1
    assert last < 20 and last == model.best_epoch_ + 2
    assert min(losses) == losses[model.best_epoch_]


def test_atan_clamp_is_freias_default_soft_clamp():
    block = Fm.GLOWCouplingBlock([(4,)], subnet_constructor=SubnetMLP)  # clamp_activation="ATAN"
    u = torch.linspace(-20.0, 20.0, 101)
    assert torch.allclose(atan_clamp(u), block.f_clamp(u), rtol=0, atol=0)


def test_cinn_builds_the_couplings_it_was_given():
    X, Y = _data()
    model = _model(CINNBaseline, blocks=4, hidden=5, layers=0, clamp=1.5).fit(X, Y, max_epochs=1, progress=False)
    couplings = [m for m in model.model_.modules() if isinstance(m, Fm.GLOWCouplingBlock)]
    assert len(couplings) == 4 and all(c.clamp == 1.5 for c in couplings)
    # layers=0: each subnetwork is one linear map from half the signal and the labels.
    linears = [m for m in couplings[0].subnet1.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(V * C // 2 + V * K, 2 * (V * C - V * C // 2))]
    deep = SubnetMLP(3, 4, hidden=5, layers=2)
    assert [(m.in_features, m.out_features) for m in deep if isinstance(m, nn.Linear)] == [(3, 5), (5, 5), (5, 4)]


def test_nsf_builds_the_spline_flow_it_was_given():
    X, Y = _data()
    settings = dict(transforms=2, hidden_features=(7,), bins=5, randperm=True)
    model = _model(NSFBaseline, **settings).fit(X, Y, max_epochs=1, progress=False)
    reference = zuko.flows.NSF(features=V * C, context=V * K, **settings)
    shapes = {k: v.shape for k, v in model.model_.state_dict().items()}
    assert shapes == {k: v.shape for k, v in reference.state_dict().items()}
    # Random orders, rather than the identity and its reverse taken in turn.
    orders = [t.order for t in model.model_.transform.transforms]
    assert any(not torch.equal(o, torch.arange(V * C)) and not torch.equal(o, torch.arange(V * C).flip(0)) for o in orders)


def test_cgan_recorded_validation_loss_is_the_discriminator_loss_on_the_held_out_rows(monkeypatch):
    # The discriminator's last two calls of the epoch score the held-out rows, then fakes for them:
    # the recorded loss is mean softplus(-D(real)) + mean softplus(D(fake)), real in training units.
    calls = []
    build = CGANBaseline._build

    def hooked(self):
        net = build(self)
        net["discriminator"].register_forward_hook(lambda module, args, out: calls.append((args[0], out.detach())))
        return net

    monkeypatch.setattr(CGANBaseline, "_build", hooked)
    X, Y = _data()
    model = _model(CGANBaseline, batch_size=len(X)).fit(X, Y, max_epochs=1, validation=0.25, progress=False)
    train, val = model._split(len(X), 0.25, torch.Generator().manual_seed(0))
    (real, real_logit), (_, fake_logit) = calls[-2:]
    assert torch.allclose(real, (X[val] - X[train].mean(0)) / X[train].std(0), atol=1e-5)
    expected = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
    assert model.history_[1]["val_loss"] == pytest.approx(expected.item(), rel=1e-5)
    swapped = F.softplus(real_logit).mean() + F.softplus(-fake_logit).mean()
    assert abs(expected - swapped) > 1e-3  # the labels matter here


class _RecordingAdam(torch.optim.Adam):
    r"""Adam that keeps every instance made, to read the settings it was given."""

    made: list[torch.optim.Adam] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.made.append(self)


def test_cgan_trains_both_networks_with_adams_betas_0_5_and_0_999(monkeypatch):
    monkeypatch.setattr(_RecordingAdam, "made", [])
    monkeypatch.setattr(torch.optim, "Adam", _RecordingAdam)
    X, Y = _data()
    _model(CGANBaseline).fit(X, Y, max_epochs=1, progress=False)
    assert [(opt.defaults["lr"], opt.defaults["betas"]) for opt in _RecordingAdam.made] == [(2e-4, (0.5, 0.999))] * 2


def test_chebnet_layers_reach_exactly_two_hops():
    # Chebyshev order K = 3 is a polynomial of degree 2 in the Laplacian: one layer mixes nodes up
    # to two edges apart. On the path 0-1-2-3, a change at node 0 moves node 2 but not node 3.
    torch.manual_seed(0)
    path = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    net = ChebNet(1, 3, layers=1, num_nodes=4).double()
    x = torch.randn(1, 4, 1, dtype=torch.float64)
    moved = x.clone()
    moved[0, 0, 0] += 1.0
    change = (net(moved, path) - net(x, path)).abs().amax(-1)[0]
    assert change[2] > 1e-6 and change[3] == 0
