import numpy as np
import pytest
import torch

from igraphflow.metrics import energy_distance
from igraphflow.temperature import TEMPERATURE_BOUNDS, energy_temperature


def _normal(n, seed, *shape):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("scale", [0.7, 1.0, 1.4])
def test_recovers_the_scale_of_gaussian_signals(scale):
    noise, X = _normal(2000, 0, 3, 2), scale * _normal(2000, 1, 3, 2)
    assert abs(energy_temperature(lambda t: t * noise, X) - scale) < 0.05


def test_is_the_minimum_of_the_energy_distance_on_a_fine_grid():
    # A nonlinear decoder, and signals that are not of its family: the answer is the grid's argmin.
    noise = _normal(400, 2, 2, 2)
    decode = lambda t: torch.sinh(t * noise) + 0.3 * (t * noise).square()  # noqa: E731
    X = torch.distributions.StudentT(4.0).sample((400, 2, 2)) + 0.2
    grid = np.arange(TEMPERATURE_BOUNDS[0], TEMPERATURE_BOUNDS[1] + 1e-9, 0.005)
    energies = [energy_distance(decode(t), X) for t in grid]
    chosen = energy_temperature(decode, X)
    assert abs(chosen - grid[int(np.argmin(energies))]) < 0.03
    assert energy_distance(decode(chosen), X) <= min(energies) + 1e-3


def test_draws_that_are_not_finite_are_never_chosen():
    noise, X = _normal(500, 3, 1, 2), 1.6 * _normal(500, 4, 1, 2)
    # Beyond t = 1.2 the decoder overflows; the closest finite draws are at the edge.
    chosen = energy_temperature(lambda t: t * noise if t <= 1.2 else torch.full_like(noise, float("inf")), X)
    assert 1.1 < chosen <= 1.2


def test_draws_that_do_not_depend_on_the_temperature_keep_temperature_one():
    noise, X = _normal(200, 5, 2, 2), _normal(200, 6, 2, 2)
    assert energy_temperature(lambda t: noise, X) == 1.0
