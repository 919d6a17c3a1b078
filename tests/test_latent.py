import math

import pytest
import torch
from scipy.stats import multivariate_normal

from igraphflow.latent import GaussianMixtureLatent

pytestmark = pytest.mark.usefixtures("float64")


def test_log_prob_matches_scipy():
    latent = GaussianMixtureLatent(3, 2, sigma=0.7)
    y = torch.tensor([[0, 2, 1], [1, 1, 0]])
    h = torch.randn(2, 3, 2)
    expected = [
        sum(multivariate_normal(latent.means[k].detach(), 0.49 * torch.eye(2)).logpdf(h[n, v]) for v, k in enumerate(y[n]))
        for n in range(2)
    ]
    assert torch.allclose(latent.log_prob(h, y), torch.tensor(expected))


def test_posterior_is_the_bayes_rule():
    latent = GaussianMixtureLatent(2, 1)
    latent.set_prior(torch.tensor([[0, 0, 0, 1]]))  # counts + 1: prior (4/6, 2/6)
    h = torch.tensor([[[0.3]]])
    like = [math.exp(-((0.3 - m) ** 2) / 2) for m in latent.means[:, 0].tolist()]
    post = torch.tensor([4 / 6 * like[0], 2 / 6 * like[1]])
    assert torch.allclose(latent.posterior(h)[0, 0], post / post.sum())


@pytest.mark.parametrize("num_classes,num_features", [(2, 1), (3, 2), (5, 3)])
def test_means_start_feasible(num_classes, num_features):
    latent = GaussianMixtureLatent(num_classes, num_features, sigma=0.5, separation=7.4)
    assert (latent.pairwise_distances() > latent.min_distance).all()
    assert torch.isfinite(latent.barrier())


def test_barrier_keeps_means_apart_under_attraction():
    latent = GaussianMixtureLatent(3, 2, separation=3.0)
    optimizer = torch.optim.SGD(latent.parameters(), lr=0.02)
    for _ in range(500):  # a loss pulling all means to the origin
        loss = latent.means.square().sum() + 0.1 * latent.barrier()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        latent.project_()
        assert (latent.pairwise_distances() >= latent.min_distance).all()
    assert latent.pairwise_distances().min() < latent.min_distance + 1.0  # it was pulled close


def test_sample_has_the_right_moments():
    latent = GaussianMixtureLatent(2, 2, sigma=0.5)
    y = torch.ones(20000, 1, dtype=torch.long)
    h = latent.sample(y, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(h.mean((0, 1)), latent.means[1].detach(), atol=0.02)
    assert torch.allclose(h.std((0, 1)), torch.full((2,), 0.5), atol=0.02)


def test_bad_settings():
    with pytest.raises(ValueError, match="sigma"):
        GaussianMixtureLatent(2, 2, sigma=0.0)
    with pytest.raises(ValueError, match="separation"):
        GaussianMixtureLatent(2, 2, separation=-1.0)
