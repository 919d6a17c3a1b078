r"""Tests of igraphflow.metrics against direct formulas written out here."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from torch import Tensor
from torch.utils._pytree import tree_leaves

from igraphflow.metrics import (
    accuracy,
    classifier_two_sample_test,
    conditional_metric,
    energy_distance,
    mmd,
    mmd_median,
    mmd_terms,
    nll_per_dim,
)

torch.set_num_threads(1)


class OnAnotherDevice(Tensor):
    r"""A CPU tensor that acts as one on a GPU, to check device handling on machines without one:
    converting it to NumPy fails, and so does a torch function that mixes it with CPU tensors
    (0-d ones and CPU indices into it aside, as on a GPU); ``.cpu()`` and ``.to("cpu")`` give
    it back as a plain tensor."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is Tensor.cpu or (func is Tensor.to and "cpu" in map(str, [*args[1:], *kwargs.values()])):
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs).as_subclass(Tensor)
        if func in (Tensor.numpy, Tensor.__array__):
            raise TypeError("can't convert a tensor on another device to numpy: use Tensor.cpu() first")
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, Tensor)]
        on_cpu = [t for t in tensors if not isinstance(t, cls) and t.dim() > 0]
        indexed_here = func is Tensor.__getitem__ and isinstance(args[0], cls)
        if on_cpu and not indexed_here and any(isinstance(t, cls) for t in tensors):
            raise RuntimeError(f"{func.__name__}: expected all tensors to be on the same device")
        return super().__torch_function__(func, types, args, kwargs)


def _elsewhere(tensor):
    return tensor.as_subclass(OnAnotherDevice)


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


def _sq(a, b):
    return sum((ai - bi) ** 2 for ai, bi in zip(a, b))


def _mmd_terms_loops(X, Y, alpha, biased):
    k = lambda a, b: math.exp(-alpha * _sq(a, b))  # noqa: E731
    n, m = len(X), len(Y)
    if biased:
        kxx = sum(k(X[i], X[j]) for i in range(n) for j in range(n)) / n**2
        kyy = sum(k(Y[i], Y[j]) for i in range(m) for j in range(m)) / m**2
    else:
        kxx = sum(k(X[i], X[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        kyy = sum(k(Y[i], Y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(X[i], Y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx, kyy, kxy


def _mmd_loops(X, Y, alpha, paired):
    # The unbiased statistic; with paired, the cross term over the pairs i != j only.
    kxx, kyy, _ = _mmd_terms_loops(X, Y, alpha, biased=False)
    pairs = [(i, j) for i in range(len(X)) for j in range(len(Y)) if not (paired and i == j)]
    kxy = sum(math.exp(-alpha * _sq(X[i], Y[j])) for i, j in pairs) / len(pairs)
    return kxx + kyy - 2 * kxy


def _energy_loops(X, Y, biased, paired=False):
    d = lambda a, b: math.sqrt(_sq(a, b))  # noqa: E731
    n, m = len(X), len(Y)
    pairs = [(i, j) for i in range(n) for j in range(m) if not (paired and i == j)]
    exy = sum(d(X[i], Y[j]) for i, j in pairs) / len(pairs)
    exx = sum(d(X[i], X[j]) for i in range(n) for j in range(n))
    eyy = sum(d(Y[i], Y[j]) for i in range(m) for j in range(m))
    exx /= n * n if biased else n * (n - 1)
    eyy /= m * m if biased else m * (m - 1)
    return 2 * exy - exx - eyy


@pytest.mark.parametrize("biased", [False, True])
def test_mmd_matches_double_loop(biased):
    X, Y = _rand(6, 3, seed=1), _rand(5, 3, seed=2) + 0.3
    alphas = (0.1, 1.0, 5.0, 10.0)
    got, terms = mmd(X, Y, alphas, biased=biased), mmd_terms(X, Y, alphas, biased=biased)
    assert list(got) == list(terms) == list(alphas)
    for a in alphas:
        kxx, kyy, kxy = _mmd_terms_loops(X, Y, a, biased)
        assert got[a] == pytest.approx(kxx + kyy - 2 * kxy, abs=1e-12)
        assert terms[a] == pytest.approx((kxx, kyy, kxy), abs=1e-12)


def test_mmd_flattens_graph_signals_and_accepts_tensors():
    X, Y = _rand(6, 2, 3, seed=3), _rand(7, 2, 3, seed=4)
    flat = mmd(X.reshape(6, 6), Y.reshape(7, 6), 1.0)
    assert mmd(torch.tensor(X), torch.tensor(Y).float(), 1.0)[1.0] == pytest.approx(
        flat[1.0], abs=1e-6
    )


def test_mmd_chunking(monkeypatch):
    import igraphflow.metrics as metrics

    X, Y = _rand(50, 4, seed=5), _rand(40, 4, seed=6)
    whole, whole_energy = mmd(X, Y), energy_distance(X, Y)
    monkeypatch.setattr(metrics, "_CHUNK", 7)
    monkeypatch.setattr(metrics, "_TILE", 5)
    chunked = mmd(X, Y)
    for a in whole:
        assert chunked[a] == pytest.approx(whole[a], abs=1e-12)
    # Distances come from an expansion whose rounding (about 1e-8 once square-rooted, on the
    # zero distances of a sample to itself) depends on the tiles.
    assert energy_distance(X, Y) == pytest.approx(whole_energy, abs=1e-9)


def test_mmd_identical_vs_shifted():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(400, 4, generator=g)
    X2 = torch.randn(400, 4, generator=g)
    for a, v in mmd(X, X, biased=True).items():
        assert abs(v) < 1e-12
    same = mmd(X, X2)
    shifted = mmd(X, X2 + 1.0)
    for a in same:
        assert abs(same[a]) < 0.01
        assert shifted[a] > 5 * abs(same[a])
    assert shifted[0.1] > 0.02 and shifted[1.0] > 0.02


def test_mmd_median_matches_double_loop():
    X, Y = _rand(5, 2, seed=7), _rand(6, 2, seed=8) + 1.0
    Z = np.concatenate([X, Y])
    dists = [math.sqrt(_sq(Z[i], Z[j])) for i in range(len(Z)) for j in range(i + 1, len(Z))]
    h = float(np.median(dists))
    kxx, kyy, kxy = _mmd_terms_loops(X, Y, 1 / (2 * h * h), False)
    assert mmd_median(X, Y) == pytest.approx(kxx + kyy - 2 * kxy, abs=1e-12)
    kxx, kyy, kxy = _mmd_terms_loops(X, Y, 1 / (2 * h * h), True)
    assert mmd_median(X, Y, biased=True) == pytest.approx(kxx + kyy - 2 * kxy, abs=1e-12)
    g = torch.Generator().manual_seed(1)
    A, B = torch.randn(2, 300, 3, generator=g)
    assert abs(mmd_median(A, B)) < 0.01 < mmd_median(A, B + 1.5)


def test_mmd_median_averages_the_two_middle_distances():
    # 4 points, 6 distances: the median is the mean of the 3rd and 4th (np.median), not the 3rd.
    X, Y = np.array([[0.0], [1.0]]), np.array([[3.0], [7.0]])
    Z = np.concatenate([X, Y])
    h = float(np.median([abs(Z[i, 0] - Z[j, 0]) for i in range(4) for j in range(i + 1, 4)]))
    kxx, kyy, kxy = _mmd_terms_loops(X, Y, 1 / (2 * h * h), False)
    assert mmd_median(X, Y) == pytest.approx(kxx + kyy - 2 * kxy, abs=1e-12)


@pytest.mark.parametrize("scale", [1e3, 1e-3])
def test_mmd_median_with_mostly_repeated_points_is_scale_invariant(scale):
    # Most pairwise distances are 0 (zero-inflated counts), so the median distance is 0.
    X = np.array([[0.0]] * 8 + [[1.0], [2.0]])
    Y = np.array([[0.0]] * 8 + [[3.0], [4.0]])
    assert mmd_median(scale * X, scale * Y) == pytest.approx(mmd_median(X, Y), rel=1e-9)
    # ... and the bandwidth is the median of the non-zero distances, by a direct loop.
    Z = np.concatenate([X, Y])
    nonzero = [d for i in range(20) for j in range(i + 1, 20) if (d := abs(Z[i, 0] - Z[j, 0])) > 0]
    h = float(np.median(nonzero))
    kxx, kyy, kxy = _mmd_terms_loops(X, Y, 1 / (2 * h * h), False)
    assert mmd_median(X, Y) == pytest.approx(kxx + kyy - 2 * kxy, abs=1e-12)


@pytest.mark.parametrize("biased", [False, True])
def test_mmd_median_of_samples_of_one_repeated_point_is_zero(biased):
    # Every distance is 0, so the median heuristic gives no bandwidth; every kernel is 1 whatever it is.
    X, Y = np.full((4, 3), 2.5), np.full((5, 3), 2.5)
    assert mmd_median(X, Y, biased=biased) == pytest.approx(0.0, abs=1e-12)


def test_mmd_median_takes_the_bandwidth_from_1000_evenly_spaced_points():
    X, Y = _rand(700, 2, seed=13), _rand(500, 2, seed=14) + 0.5
    Z = np.concatenate([X, Y])
    keep = Z[np.linspace(0, len(Z) - 1, 1000).astype(int)]  # the first and the last point among them
    h = float(np.median(pdist(keep)))
    expected = mmd(X, Y, alphas=1 / (2 * h * h))[1 / (2 * h * h)]
    assert mmd_median(X, Y) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("biased", [False, True])
def test_energy_matches_double_loop(biased):
    X, Y = _rand(6, 3, seed=9), _rand(4, 3, seed=10) - 0.5
    assert energy_distance(X, Y, biased=biased) == pytest.approx(
        _energy_loops(X, Y, biased), abs=1e-12
    )


@pytest.mark.parametrize("biased", [False, True])
def test_paired_energy_matches_double_loop_without_the_matched_pairs(biased):
    X, Y = _rand(6, 3, seed=11), _rand(6, 3, seed=12) + 0.2
    assert energy_distance(X, Y, biased=biased, paired=True) == pytest.approx(
        _energy_loops(X, Y, biased, paired=True), abs=1e-12
    )
    with pytest.raises(ValueError, match="paired samples need as many rows"):
        energy_distance(X, Y[:5], paired=True)


def test_paired_mmd_matches_double_loop_without_the_matched_pairs():
    X, Y = _rand(6, 3, seed=1), _rand(6, 3, seed=2) + 0.3
    for a in (0.1, 1.0):
        assert mmd(X, Y, a, paired=True)[a] == pytest.approx(_mmd_loops(X, Y, a, paired=True), abs=1e-12)
        assert mmd(X, Y, a)[a] == pytest.approx(_mmd_loops(X, Y, a, paired=False), abs=1e-12)
    assert mmd_terms(X, Y, 1.0, paired=True)[1.0][:2] == mmd_terms(X, Y, 1.0)[1.0][:2]
    with pytest.raises(ValueError, match="paired samples need as many rows"):
        mmd(X, Y[:5], paired=True)


def test_energy_identical_vs_shifted():
    g = torch.Generator().manual_seed(2)
    X, X2 = torch.randn(2, 300, 3, generator=g)
    assert abs(energy_distance(X, X2)) < 0.05
    assert energy_distance(X, X2 + 1.0) > 0.5


def test_bad_inputs():
    with pytest.raises(ValueError, match="same dimension"):
        mmd(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        energy_distance(np.full((3, 2), np.nan), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        mmd(np.zeros((1, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="alphas"):
        mmd(np.zeros((3, 2)), np.zeros((3, 2)), alphas=(-1.0,))
    with pytest.raises(ValueError, match="alphas must be a positive finite number or a non-empty 1-D sequence of them, got None"):  # a TypeError from float()
        mmd(np.zeros((3, 2)), np.zeros((3, 2)), alphas=None)


def test_conditional_metric_weighting():
    # Patterns: A = [0, 1] x 4, B = [1, 0] x 2, C = [1, 1] x 1 (too rare), D = [0, 0] x 3.
    Y = torch.tensor([[0, 1]] * 4 + [[1, 0]] * 2 + [[1, 1]] + [[0, 0]] * 3)
    X_real = torch.zeros(10, 1)
    shift = torch.tensor([1.0] * 4 + [2.0] * 2 + [100.0] + [3.0] * 3)[:, None]
    X_gen = X_real + shift

    def mean_gap(a, b):  # a toy metric with a known value per pattern
        return (a.mean() - b.mean()).item()

    value, details = conditional_metric(mean_gap, X_gen, X_real, Y, top_k=3, return_details=True)
    assert [(d["pattern"], d["count"]) for d in details] == [
        ([0, 1], 4),
        ([0, 0], 3),
        ([1, 0], 2),
    ]
    assert [d["value"] for d in details] == [1.0, 3.0, 2.0]
    assert value == pytest.approx((4 * 1.0 + 3 * 3.0 + 2 * 2.0) / 9)
    assert conditional_metric(mean_gap, X_gen, X_real, Y, top_k=1) == pytest.approx(1.0)
    # A pattern seen once is skipped even if it would be among the top k.
    assert conditional_metric(mean_gap, X_gen, X_real, Y, top_k=10) == pytest.approx(17 / 9)

    # Dictionary-valued metrics are averaged key by key.
    both = conditional_metric(lambda a, b: {"gap": mean_gap(a, b)}, X_gen, X_real, Y, top_k=2)
    assert both == {"gap": pytest.approx((4 * 1.0 + 3 * 3.0) / 7)}


def test_conditional_metric_breaks_ties_in_favour_of_the_smaller_pattern():
    patterns = [[1, 1], [0, 1], [1, 0], [0, 0]]
    Y = torch.tensor([p for p in patterns for _ in range(2)] + [[1, 1]])  # [1, 1] three times, the others twice
    X = torch.arange(9.0)[:, None]
    _, details = conditional_metric(lambda a, b: 0.0, X, X, Y, top_k=3, return_details=True)
    tied = sorted(patterns[1:])  # Python's lexicographic order
    assert [d["pattern"] for d in details] == [[1, 1], *tied[:2]]


def test_conditional_metric_with_mmd_and_bad_inputs():
    g = torch.Generator().manual_seed(3)
    Y = torch.randint(2, (200, 2), generator=g)
    X = torch.randn(200, 2, 2, generator=g)
    value = conditional_metric(mmd, X, torch.randn(200, 2, 2, generator=g), Y)
    assert set(value) == {0.1, 1.0, 5.0, 10.0}
    with pytest.raises(ValueError, match="X_real"):
        conditional_metric(mmd, X, X[:10], Y)
    with pytest.raises(ValueError, match="min_count"):
        conditional_metric(mmd, X[:3], X[:3], torch.arange(6).reshape(3, 2))


def test_nll_per_dim_and_accuracy():
    lp = torch.tensor([-1.0, -2.0, -6.0])
    assert nll_per_dim(lp, 3) == pytest.approx(sum([1.0, 2.0, 6.0]) / 3 / 3)
    pred = torch.tensor([[0, 1, 2], [2, 2, 2]])
    Y = torch.tensor([[0, 1, 1], [2, 0, 2]])
    assert accuracy(pred, Y) == pytest.approx(4 / 6)
    scores = torch.nn.functional.one_hot(pred, 3).float()
    assert accuracy(scores, Y) == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="pred must have shape"):
        accuracy(pred[:1], Y)


def _signals_and_labels(seed=6):
    g = torch.Generator().manual_seed(seed)
    Y = torch.randint(2, (60, 3), generator=g)
    X_gen, X_real = torch.randn(2, 60, 3, 2, generator=g)
    return X_gen, X_real, Y


def test_accuracy_takes_labels_on_another_device():
    # pred == Y met a GPU tensor and a CPU one.
    _, _, Y = _signals_and_labels()
    pred = Y.flip(0)
    assert accuracy(_elsewhere(pred), Y) == accuracy(pred, _elsewhere(Y)) == accuracy(pred, Y)


def test_conditional_metric_takes_labels_on_another_device():
    # The rows of a pattern, found on the labels' GPU, indexed signals on the CPU.
    X_gen, X_real, Y = _signals_and_labels()
    expected = conditional_metric(energy_distance, X_gen, X_real, Y)
    assert conditional_metric(energy_distance, X_gen, X_real, _elsewhere(Y)) == expected
    assert conditional_metric(energy_distance, _elsewhere(X_gen), X_real, _elsewhere(Y)) == expected


def test_c2st_takes_labels_on_another_device():
    # The one-hot labels stayed on their GPU, where torch.cat met the signals on the CPU.
    X_a, X_b, Y = _signals_and_labels()
    expected = classifier_two_sample_test(X_a, Y, X_b, Y)
    assert classifier_two_sample_test(_elsewhere(X_a), _elsewhere(Y), X_b, _elsewhere(Y)) == expected


def test_accuracy_refuses_boolean_scores():
    # Sets of labels [N, V, K] used to fail inside torch's argmax.
    sets = torch.tensor([[[True, False], [True, True]]])
    with pytest.raises(ValueError, match="pred scores must be numbers, got booleans"):
        accuracy(sets, torch.tensor([[0, 1]]))
    assert accuracy(torch.tensor([[True, False]]), torch.tensor([[1, 1]])) == 0.5  # labels of two classes


def test_c2st_same_and_different():
    g = torch.Generator().manual_seed(4)
    n, V, C = 300, 3, 2
    Y_a = torch.randint(2, (n, V), generator=g)
    Y_b = torch.randint(2, (n, V), generator=g)
    X_a = torch.randn(n, V, C, generator=g) + Y_a[..., None]
    X_b = torch.randn(n, V, C, generator=g) + Y_b[..., None]
    same = classifier_two_sample_test(X_a, Y_a, X_b, Y_b, seed=0)
    assert abs(same - 0.5) < 0.1
    # Same marginal of X, but the dependence on Y is reversed: only (X, Y) pairs tell them apart.
    X_c = torch.randn(n, V, C, generator=g) + 4.0 * (1 - Y_b[..., None])
    X_a4 = torch.randn(n, V, C, generator=g) + 4.0 * Y_a[..., None]
    different = classifier_two_sample_test(X_a4, Y_a, X_c, Y_b, seed=0)
    assert different > 0.95
    assert classifier_two_sample_test(X_a, Y_a, X_b, Y_b, seed=0) == same  # deterministic


@pytest.mark.parametrize("seed", range(5))
def test_c2st_of_indistinguishable_sets_is_the_larger_sets_share_of_a_stratified_half(seed):
    # All pairs equal: the classifier predicts the larger set everywhere, and a stratified half of
    # 14 + 6 pairs holds 7 + 3 of them, whatever the seed (a random half may hold 6 + 4 or 8 + 2).
    X, Y = torch.zeros(20, 2, 1), torch.zeros(20, 2, dtype=torch.long)
    assert classifier_two_sample_test(X[:14], Y[:14], X[14:], Y[14:], seed=seed) == 14 / 20


def test_c2st_reads_the_number_of_classes_off_both_sets():
    X_a, X_b, Y = _signals_and_labels()
    Y_b = Y.clone()
    Y_b[0, 0] = 2  # a class seen in set b only
    assert classifier_two_sample_test(X_a, Y, X_b, Y_b) == classifier_two_sample_test(X_a, Y, X_b, Y_b, num_classes=3)


def test_empty_and_non_numeric_samples_raise_value_errors():
    Y = np.zeros((3, 4))
    for bad in (np.zeros((0, 4)), np.zeros((0, 2, 2))):
        for metric in (mmd, energy_distance, mmd_median):
            with pytest.raises(ValueError, match="X is empty"):
                metric(bad, Y)
    with pytest.raises(ValueError, match="X must be a tensor or an array"):
        mmd("abc", Y)
    with pytest.raises(ValueError, match="real numbers"):  # the imaginary part was dropped
        energy_distance(np.ones((3, 4)) + 1j, Y)
    with pytest.raises(ValueError, match="X is on the meta device"):
        mmd(torch.zeros(3, 4, device="meta"), Y)


def test_mmd_alphas_as_one_numpy_or_tensor_number():
    X, Y = _rand(5, 2, seed=5), _rand(4, 2, seed=6)
    kxx, kyy, kxy = _mmd_terms_loops(X, Y, 0.5, biased=False)
    for alpha in (np.float32(0.5), torch.tensor(0.5)):
        assert mmd(X, Y, alpha) == {0.5: pytest.approx(kxx + kyy - 2 * kxy)}
    for alpha in ("12", float("inf")):  # "12" read as the alphas 1 and 2
        with pytest.raises(ValueError, match="alphas"):
            mmd(X, Y, alpha)


def test_conditional_metric_needs_integer_counts():
    Y = torch.tensor([[0]] * 4 + [[1]] * 3)
    X = torch.arange(7.0)[:, None]

    def mean_gap(a, b):
        return (a.mean() - b.mean()).item()

    # top_k=1.5 never equals a count of patterns, so every pattern was used.
    for top_k, min_count in ((1.5, 2), ("1", 2), (1, 0), (1, 2.5)):
        with pytest.raises(ValueError, match="top_k|min_count"):
            conditional_metric(mean_gap, X + 1.0, X, Y, top_k=top_k, min_count=min_count)
    with pytest.raises(ValueError, match="num_dims"):
        nll_per_dim(torch.tensor([-1.0]), 1.5)


def test_nll_per_dim_rejects_complex_and_misshapen_log_probs():
    # [N, V] log-densities were averaged as if [N]; complex ones lost their imaginary part.
    for log_prob, match in ((torch.zeros(4, 3), r"shape \[N\], one log-density per sample, got \[4, 3\]"),
                            (torch.zeros(4, dtype=torch.complex64), "real numbers"),
                            (torch.tensor([0.0, math.nan]), "1 NaN values")):
        with pytest.raises(ValueError, match=match):
            nll_per_dim(log_prob, 6)
    assert nll_per_dim(torch.tensor([-math.inf, 0.0]), 2) == math.inf  # a zero density is an infinite NLL


def test_accuracy_rejects_nan_and_empty_scores():
    Y = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="NaN"):  # argmax of NaN scores is 0: a perfect score
        accuracy(torch.full((2, 3, 2), float("nan")), Y)
    with pytest.raises(ValueError, match="K >= 1"):
        accuracy(torch.zeros(2, 3, 0), Y)
    with pytest.raises(ValueError, match="pred labels must be whole numbers"):  # counted as all wrong
        accuracy(torch.full((2, 3), 0.3), Y)
    with pytest.raises(ValueError, match="Y labels must be whole numbers"):
        accuracy(Y, Y + 0.5)
    assert accuracy(torch.ones(2, 3), Y.double()) == 0.0  # whole-numbered floats are labels


def test_c2st_bad_labels_raise_value_errors():
    g = torch.Generator().manual_seed(5)
    X = torch.randn(20, 2, 1, generator=g)
    Y = torch.randint(2, (20, 2), generator=g)
    cases = [
        (dict(Y_a=Y - 1), "Y_a holds negative labels"),
        (dict(Y_b=Y + 1, num_classes=2), r"Y_b holds labels in \[1, 2\]"),
        (dict(Y_a=Y[:5]), r"Y_a must have shape \[N=20"),
        (dict(Y_a=Y + 0.5), "Y_a must hold integer class labels"),  # was truncated to Y
        (dict(num_classes=1.5), "num_classes"),
        (dict(seed=-1), "seed must be an integer >= 0"),  # sklearn named its random_state
        (dict(seed=2**32), "seed must be an integer <= 4294967295"),
        (dict(X_a=X[:0], Y_a=Y[:0]), "X_a is empty"),
    ]
    for changes, match in cases:
        args = dict(X_a=X, Y_a=Y, X_b=X, Y_b=Y) | changes
        with pytest.raises(ValueError, match=match):
            classifier_two_sample_test(**args)


@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_huge_and_tiny_samples_give_the_rescaled_statistics(scale):
    # Squared coordinates near 1e400 overflowed to inf, and inf - inf made every statistic nan;
    # near 1e-400 they underflowed to 0.
    X, Y = _rand(6, 3, seed=11), _rand(5, 3, seed=12) + 0.5
    assert energy_distance(scale * X, scale * Y) == pytest.approx(scale * energy_distance(X, Y), rel=1e-12)
    assert mmd_median(scale * X, scale * Y) == pytest.approx(mmd_median(X, Y), rel=1e-12)
    # A fixed alpha is infinitely narrow at 1e200 (only the diagonal terms of the biased
    # estimate count) and infinitely wide at 1e-200 (every kernel is 1).
    unbiased, biased = (mmd(scale * X, scale * Y, alphas=1.0, biased=b)[1.0] for b in (False, True))
    if scale > 1:
        assert (unbiased, biased) == (0.0, pytest.approx(1 / 6 + 1 / 5))
    else:
        assert unbiased == pytest.approx(0.0, abs=1e-12) and biased == pytest.approx(0.0, abs=1e-12)


def test_samples_far_from_the_origin_keep_their_distances():
    # |a|^2 + |b|^2 - 2 a.b lost every digit of a unit distance at 1e8 from the origin.
    X, Y = _rand(6, 3, seed=13), _rand(5, 3, seed=14) + 0.5
    far = 1e8
    assert energy_distance(X + far, Y + far) == pytest.approx(energy_distance(X, Y), rel=1e-6)
    assert mmd(X + far, Y + far, alphas=1.0)[1.0] == pytest.approx(mmd(X, Y, alphas=1.0)[1.0], rel=1e-6)


@pytest.mark.parametrize("outlier", [1e9, 1e10])
def test_an_outlier_far_away_leaves_the_other_distances_exact(outlier):
    # Centred on the sample's mean (outlier / 50 away), the expansion lost the unit distances
    # between the other points: the MMD was 4x too large at 1e9, 400x at 1e10.
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(50, 6)), rng.normal(size=(50, 6))
    X[0] = outlier
    k = lambda A, B: np.exp(-cdist(A, B, "sqeuclidean"))  # noqa: E731
    direct = (k(X, X).sum() - 50) / (50 * 49) + (k(Y, Y).sum() - 50) / (50 * 49) - 2 * k(X, Y).mean()
    assert mmd(X, Y, alphas=1.0)[1.0] == pytest.approx(direct, rel=1e-6)


def test_tight_clusters_far_apart_keep_their_distances():
    from scipy.spatial.distance import cdist, pdist

    rng = np.random.default_rng(2)
    modes = np.repeat([[1e4] * 3, [-1e4] * 3], 20, axis=0)
    X, Y = modes + 1e-3 * rng.normal(size=(40, 3)), modes + 1e-3 * rng.normal(size=(40, 3))
    n = len(X)
    for alpha in (1e5, 1e6):
        k = lambda A, B: np.exp(-alpha * cdist(A, B, "sqeuclidean"))  # noqa: E731
        direct = (k(X, X).sum() - n) / (n * (n - 1)) + (k(Y, Y).sum() - n) / (n * (n - 1)) - 2 * k(X, Y).mean()
        assert mmd(X, Y, alphas=alpha)[alpha] == pytest.approx(direct, rel=1e-6, abs=1e-12)
    direct = 2 * cdist(X, Y).mean() - 2 * pdist(X).sum() / n**2 - 2 * pdist(Y).sum() / n**2
    assert energy_distance(X, Y, biased=True) == pytest.approx(direct, rel=1e-5)  # was 1.6 % off


def test_distances_beyond_float64_raise_instead_of_returning_nan():
    X, Y = np.array([[1.5e308], [-1.5e308]]), np.array([[0.0], [1.0]])
    with pytest.raises(ValueError, match="distances .* too large for float64"):
        energy_distance(X, Y)
    # Kernels of such distances are 0, so the MMD is still finite: E k(y, y') = exp(-1), the rest 0.
    assert mmd(X, Y, alphas=1.0)[1.0] == pytest.approx(math.exp(-1))


@pytest.mark.parametrize("statistic", [mmd, mmd_terms, mmd_median, energy_distance])
def test_biased_must_be_a_bool(statistic):
    X, Y = torch.as_tensor(_rand(20, 3)), torch.as_tensor(_rand(20, 3, seed=1))
    with pytest.raises(ValueError, match="biased must be True or False, got 'no'"):  # read as True before
        statistic(X, Y, biased="no")
    assert statistic(X, Y, biased=np.bool_(True)) == statistic(X, Y, biased=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mmd_median_takes_rounding_between_repeated_vectors_for_zero(dtype):
    g = torch.Generator().manual_seed(0)
    point = torch.randn(1, 20, generator=g, dtype=dtype) * 3 + 5
    X = torch.cat([point.repeat(20, 1), torch.randn(2, 20, generator=g, dtype=dtype)])
    Y = torch.cat([point.repeat(20, 1), torch.randn(2, 20, generator=g, dtype=dtype) + 1])
    values = [mmd_median(scale * X, scale * Y) for scale in (1e-3, 1.0, 1e3)]
    assert values == pytest.approx([values[1]] * 3, rel=1e-3)
    assert abs(values[1]) > 1e-3  # a bandwidth of rounding noise would make every kernel 0


def test_median_distance_keeps_small_distances_that_are_exact():
    from igraphflow.metrics import _median_distance

    g = torch.Generator().manual_seed(0)
    far = torch.zeros(20, 3, dtype=torch.float64)
    far[:10, 0], far[10:, 0] = 1.0, -1.0
    Z = torch.cat([torch.randn(80, 3, generator=g, dtype=torch.float64) * 1e-8, far])
    assert _median_distance(Z) == pytest.approx(np.median(torch.pdist(Z).numpy()), rel=1e-9)


def test_energy_distance_is_exact_against_scipy_distances():
    # The diagonal of ||x||^2 + ||x'||^2 - 2 x.x' is ~1e-16, not 0, and its square root ~1e-8
    # per sample: the statistic was off by ~1e-9 relative. 4500 rows span row chunks (1024) and
    # column tiles (4096), so the diagonal also crosses tiles at a column offset.
    from scipy.spatial.distance import cdist, pdist

    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(4500, 3)), rng.normal(size=(300, 3)) + 0.2
    n, m = len(X), len(Y)
    sxx, syy, sxy = 2 * pdist(X).sum(), 2 * pdist(Y).sum(), cdist(X, Y).sum()
    direct = 2 * sxy / (n * m) - sxx / (n * (n - 1)) - syy / (m * (m - 1))
    assert energy_distance(X, Y) == pytest.approx(direct, rel=1e-12)
    direct_biased = 2 * sxy / (n * m) - sxx / n**2 - syy / m**2
    assert energy_distance(X, Y, biased=True) == pytest.approx(direct_biased, rel=1e-12)


def test_samples_without_dimensions_are_refused():
    for shape in ((5, 0), (5, 0, 2)):
        with pytest.raises(ValueError, match="X has no dimensions"):
            mmd(np.zeros(shape), np.zeros(shape))
        with pytest.raises(ValueError, match="X has no dimensions"):
            energy_distance(np.zeros(shape), np.zeros(shape))


def test_conditional_metric_names_its_own_arguments():
    # The inner metric spoke of "X" and "Y"; NaN labels read as "no pattern occurs twice".
    X_gen, X_real, Y = _signals_and_labels()
    cases = [
        (dict(X_real=X_real[:, :2]), r"X_gen and X_real must have the same shape per sample .* \[3, 2\] and \[2, 2\]"),
        (dict(X_gen=X_gen * math.nan), "X_gen holds NaN or infinite values"),
        (dict(Y=Y[:, :2]), r"Y must have shape \[N, V=3\] like X_gen \[N, V, C\], got \[60, 2\]"),
        (dict(Y=Y * math.nan), "Y holds 180 NaN or infinite labels"),
        (dict(Y=Y + 0.5), "Y must hold integer labels"),
        (dict(return_details="yes"), "return_details must be True or False, got 'yes'"),
    ]
    for changes, match in cases:
        args = dict(metric=energy_distance, X_gen=X_gen, X_real=X_real, Y=Y) | changes
        with pytest.raises(ValueError, match=match):
            conditional_metric(**args)
    with pytest.raises(TypeError, match="metric returned None, a NoneType"):
        conditional_metric(lambda a, b: None, X_gen, X_real, Y)
    with pytest.raises(TypeError, match="metric returned 'x' under the key 'gap'"):
        conditional_metric(lambda a, b: {"gap": "x"}, X_gen, X_real, Y)
    with pytest.raises(TypeError, match="metric must be a function of two samples, got str"):
        conditional_metric("mmd", X_gen, X_real, Y)


def test_nll_per_dim_refuses_infinite_densities_and_booleans():
    # [inf, -inf] gave NaN, [inf, -1] gave -inf, booleans were read as log-densities.
    for log_prob in ([math.inf, -math.inf], [math.inf, -1.0]):
        with pytest.raises(ValueError, match=r"1 \+inf values: a density cannot be infinite"):
            nll_per_dim(torch.tensor(log_prob), 2)
    with pytest.raises(TypeError, match="log_prob must hold real numbers, got booleans"):
        nll_per_dim(torch.tensor([True, False]), 2)


@pytest.mark.parametrize("alphas", [True, ["a"], np.array([[1.0, 2.0]]), {1.0: 2}, [], [1.0, np.bool_(True)]])
def test_mmd_alphas_must_be_positive_numbers_in_one_dimension(alphas):
    # True was taken as 1.0; the others failed inside float() or NumPy without naming alphas.
    with pytest.raises(ValueError, match="alphas must be a positive finite number or a non-empty 1-D sequence of them"):
        mmd(np.zeros((3, 2)), np.ones((3, 2)), alphas=alphas)


def test_accuracy_refuses_negative_labels_scalars_and_infinite_scores():
    _, _, Y = _signals_and_labels()
    with pytest.raises(ValueError, match=r"pred holds negative labels \(the smallest is -1\)"):
        accuracy(Y - 1, Y)
    with pytest.raises(ValueError, match=r"Y must have shape \[N, V\] \(labels\), got \[\]"):
        accuracy(1, 1)
    with pytest.raises(ValueError, match="pred scores must be finite"):  # all arg-maxed to label 0
        accuracy(torch.full((60, 3, 2), math.inf), Y)
    with pytest.raises(ValueError, match="pred scores must be finite"):
        accuracy(torch.full((60, 3, 2), -math.inf), Y)
    with pytest.raises(ValueError, match="Y holds infinite labels"):
        accuracy(Y, Y + math.inf)
    scores = torch.tensor([[[0.0, -math.inf], [-math.inf, -1.0]]])  # log-probabilities of 0 beside finite ones
    assert accuracy(scores, torch.tensor([[0, 1]])) == 1.0


def test_c2st_reads_V_from_the_signals_and_refuses_implausible_labels():
    X_a, X_b, Y = _signals_and_labels()
    with pytest.raises(ValueError, match=r"Y_a must have shape \[N=60, num_nodes=3\], got \[60, 3, 1\]"):
        classifier_two_sample_test(X_a, Y[..., None], X_b, Y[..., None])
    # Without num_classes, a label of 10**7 made a one-hot of 10**7 classes, and torch's allocator failed.
    with pytest.raises(ValueError, match=r"the largest label, 10000000, makes K = 10000001 classes, more than the 360"):
        classifier_two_sample_test(X_a, Y * 10**7, X_b, Y)
    with pytest.raises(ValueError, match=r"X_a and X_b must have the same shape per sample .* \[3, 2\] and \[2, 2\]"):
        classifier_two_sample_test(X_a, Y, X_b[:, :2], Y[:, :2])
    with pytest.raises(ValueError, match="Y_a and Y_b must label the same number of nodes V, got 3 and 2"):
        classifier_two_sample_test(X_a.flatten(1), Y, X_b.flatten(1), Y[:, :2])
