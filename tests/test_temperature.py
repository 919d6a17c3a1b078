import math

import numpy as np
import pytest
import torch

from igraphflow.metrics import energy_distance
from igraphflow.temperature import TEMPERATURE_BOUNDS, _energy_influence, _standard_error, energy_temperature


def _normal(n, seed, *shape):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("scale", [0.7, 1.0, 1.4])
def test_recovers_the_scale_of_gaussian_signals(scale):
    noise, X = _normal(2000, 0, 3, 2), scale * _normal(2000, 1, 3, 2)
    assert abs(energy_temperature(lambda t: t * noise, X) - scale) < 0.05


def _decoder_and_signals():
    # A nonlinear decoder, and signals that are not of its family.
    noise = _normal(400, 2, 2, 2)
    decode = lambda t: torch.sinh(t * noise) + 0.3 * (t * noise).square()  # noqa: E731
    torch.manual_seed(0)
    X = 2.0 * torch.distributions.StudentT(4.0).sample((400, 2, 2)) + 0.2
    return decode, X, np.arange(TEMPERATURE_BOUNDS[0], TEMPERATURE_BOUNDS[1] + 1e-9, 0.005)


def _influence(G, X):
    # psi_i from whole distance matrices: the kernel of the pairs i != j, symmetrised.
    G, X = G.flatten(1).double(), X.flatten(1).double()
    n = len(X)
    kernel = 2 * torch.cdist(G, X) - torch.cdist(G, G)
    symmetric = (kernel + kernel.T) / 2
    return (symmetric.sum(1) - symmetric.diagonal()) / (n - 1)


def test_is_the_minimum_of_the_paired_energy_distance_on_a_fine_grid():
    decode, X, grid = _decoder_and_signals()
    energies = [energy_distance(decode(t), X, paired=True) for t in grid]
    chosen = energy_temperature(decode, X)
    assert abs(chosen - grid[int(np.argmin(energies))]) < 0.03
    assert energy_distance(decode(chosen), X, paired=True) <= min(energies) + 1e-3
    # Kept because its gain over 1 clears two standard errors.
    gain = _influence(decode(chosen), X) - _influence(decode(1.0), X)
    assert gain.mean() + 2 * _standard_error(gain) < 0


@pytest.mark.parametrize("seed", range(5))
def test_draws_as_spread_as_the_data_keep_temperature_one(seed):
    # Draw i is made for the labels of signal i, of classes far apart. Counting the pairs i = i
    # in the energy chose 0.75-0.88 here; the search alone, without the standard error, 0.88-1.03.
    labels = torch.randint(0, 3, (512, 4, 1), generator=torch.Generator().manual_seed(seed))
    noise, X = _normal(512, 10 + seed, 4, 1), 6.0 * labels + _normal(512, 20 + seed, 4, 1)
    assert energy_temperature(lambda t: 6.0 * labels + t * noise, X) == 1.0
    assert energy_temperature(lambda t: 6.0 * labels + t * noise, X, standard_errors=0.0) != 1.0


@pytest.mark.parametrize("offset", [0.0, 1e8])
def test_the_standard_error_terms_match_whole_distance_matrices(offset):
    # Far from the origin the distances lost their digits (an error of 1 in psi at 1e8).
    G, X = 1.3 * _normal(60, 7, 3).double(), _normal(60, 8, 3).double()
    psi = _energy_influence(G + offset, X + offset)
    assert torch.allclose(psi, _influence(G, X), atol=1e-9)
    within_X = torch.cdist(X, X).sum() / (60 * 59)
    assert psi.mean() - within_X == pytest.approx(energy_distance(G, X, paired=True), abs=1e-9)


def test_the_standard_error_is_the_spread_of_the_gain_over_repeated_samples():
    # The gain of temperature 1.3 over 1 on fresh signals and draws, 400 times: its standard
    # deviation must be what one sample's influence terms predict.
    gains, predicted = [], []
    for seed in range(400):
        X, noise = _normal(100, 2 * seed, 2).double(), _normal(100, 2 * seed + 1, 2).double()
        gains.append(energy_distance(1.3 * noise, X, paired=True) - energy_distance(noise, X, paired=True))
        predicted.append(_standard_error(_energy_influence(1.3 * noise, X) - _energy_influence(noise, X)).item())
    # The standard deviation of 400 values is off by about 3.5 % (one error): 12 % is over three.
    assert np.std(gains, ddof=1) == pytest.approx(np.sqrt(np.mean(np.square(predicted))), rel=0.12)


def test_bad_signals_and_draws_are_refused():
    noise = _normal(50, 9, 2, 2)
    with pytest.raises(ValueError, match="at least 3 signals, got 2"):
        energy_temperature(lambda t: t * noise[:2], noise[:2])
    with pytest.raises(ValueError, match="X contains NaN"):
        energy_temperature(lambda t: t * noise, torch.full_like(noise, math.nan))
    with pytest.raises(ValueError, match=r"draw\(t\) must give one signal per row of X, \(50, 4\) flattened, got \(49, 4\)"):
        energy_temperature(lambda t: t * noise[:49], noise)
    with pytest.raises(ValueError, match=r"draw\(t\) must give one signal per row of X, \(50, 4\) flattened, got \(50, 2\)"):
        energy_temperature(lambda t: t * noise[:, :1], noise)  # as many rows, but narrower
    with pytest.raises(ValueError, match="draw\\(t\\) must give one signal per row"):  # not finite, and of another shape
        energy_temperature(lambda t: torch.full((5, 1), math.nan), noise)
    with pytest.raises(ValueError, match="standard_errors must be"):
        energy_temperature(lambda t: t * noise, noise, standard_errors=-1.0)
    assert energy_temperature(lambda t: t * noise, noise.numpy()) == 1.0  # numpy signals are read


def _overflowing(noise, limit, every_entry):
    r"""A decoder scaling ``noise`` by ``t`` that overflows beyond ``limit``: in every entry, or in one only."""

    def decode(t):
        sample = t * noise
        if t > limit:
            if every_entry:
                return torch.full_like(noise, math.inf)
            sample[0, 0, 0] = math.inf
        return sample

    return decode


@pytest.mark.parametrize("every_entry", [True, False])
def test_draws_that_are_not_finite_are_never_chosen(every_entry):
    noise, X = _normal(500, 3, 1, 2), 1.6 * _normal(500, 4, 1, 2)
    # Beyond t = 1.2 the decoder overflows; the closest finite draws are at the edge. A single
    # infinite entry makes the draws as unusable as all of them.
    chosen = energy_temperature(_overflowing(noise, 1.2, every_entry), X)
    assert 1.1 < chosen <= 1.2


def test_draws_not_finite_at_one_keep_the_minimum():
    # Nothing to weigh the minimum against: it is kept, never the temperature whose draws overflow.
    noise, X = _normal(500, 0, 3, 2), 0.7 * _normal(500, 1, 3, 2)
    chosen = energy_temperature(_overflowing(noise, 0.95, every_entry=True), X, bounds=(0.5, 1.0))
    assert abs(chosen - 0.7) < 0.05


@pytest.mark.parametrize("scale, bounds", [(3.0, (2.5, 4.0)), (0.3, (0.2, 0.45))])
def test_a_search_interval_without_one_keeps_its_minimum(scale, bounds):
    # No t = 1 to weigh it against: the minimum is returned, at t = scale for Gaussian signals of that scale.
    noise, X = _normal(500, 0, 3, 2), scale * _normal(500, 1, 3, 2)
    assert abs(energy_temperature(lambda t: t * noise, X, bounds=bounds) - scale) < 0.1 * scale


def test_each_temperature_is_decoded_once():
    # A draw decodes through the whole flow: the chosen temperature, met in the search, is not decoded again.
    noise, X = _normal(200, 0, 3, 2), 1.4 * _normal(200, 1, 3, 2)
    temperatures = []

    def decode(t):
        temperatures.append(t)
        return t * noise

    energy_temperature(decode, X)
    assert len(temperatures) == len(set(temperatures))


def test_draws_that_are_never_finite_keep_temperature_one():
    assert energy_temperature(lambda t: torch.full((50, 1, 2), float("nan")), _normal(50, 4, 1, 2)) == 1.0


def test_draws_that_do_not_depend_on_the_temperature_keep_temperature_one():
    noise, X = _normal(200, 5, 2, 2), _normal(200, 6, 2, 2)
    assert energy_temperature(lambda t: noise, X) == 1.0
