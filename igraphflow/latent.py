r"""The factorized Gaussian-mixture latent :math:`p(H | Y) = \prod_v \mathcal{N}(H_v; \mu_{Y_v}, \sigma^2 I)`."""

from __future__ import annotations

__all__ = ["GaussianMixtureLatent"]

import math

import torch
from torch import Tensor, nn


class GaussianMixtureLatent(nn.Module):
    r"""Per-node Gaussian latent with one learnable mean per class and a log-barrier between means.

    The ``K`` means live in :math:`\mathbb{R}^C`; a label pattern ``Y`` picks the mean of each
    node. The barrier :math:`-\sum_{i<j} \log(\|\mu_i - \mu_j\| - c)` keeps the means at least
    ``c = separation * sigma`` apart; the means start feasible, and a step that would cross the
    barrier is projected back.

    Arguments:
        num_classes: The number of labels ``K``.
        num_features: Features per node ``C``.
        sigma: The standard deviation of every component.
        separation: The minimum distance between means, in units of ``sigma``. With ``0`` the
            barrier only keeps the means distinct. Large values (the iGNN reference used
            :math:`2\Phi^{-1}(0.9999) \approx 7.4`) widen classification margins, but force
            class-conditionals apart even where the data overlap, which costs likelihood.

    Shapes:
        ``h [N, V, C]``, ``y [N, V]``; :meth:`log_prob` gives ``[N]``.

    Example:
        >>> latent = GaussianMixtureLatent(num_classes=2, num_features=2)
        >>> y = torch.tensor([[0, 1, 1]])
        >>> h = latent.sample(y)
        >>> h.shape, latent.log_prob(h, y).shape
        (torch.Size([1, 3, 2]), torch.Size([1]))
    """

    def __init__(self, num_classes: int, num_features: int, sigma: float = 1.0, separation: float = 0.0):
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        if separation < 0:
            raise ValueError(f"separation must be non-negative, got {separation}")
        self.num_classes, self.num_features = num_classes, num_features
        self.sigma, self.min_distance = float(sigma), float(separation) * float(sigma)
        self.means = nn.Parameter(self._feasible_means())
        self.register_buffer("log_prior", torch.full((num_classes,), -math.log(num_classes)))

    def _feasible_means(self) -> Tensor:
        # Evenly spaced on a circle (a line for C = 1), 2 sigma or 1.5 c apart, whichever is larger.
        spacing = max(2.0 * self.sigma, 1.5 * self.min_distance)
        means = torch.zeros(self.num_classes, self.num_features)
        k = torch.arange(self.num_classes, dtype=torch.float32)
        if self.num_features == 1 or self.num_classes <= 2:
            means[:, 0] = spacing * (k - (self.num_classes - 1) / 2)
        else:
            radius = spacing / (2 * math.sin(math.pi / self.num_classes))
            angle = 2 * math.pi * k / self.num_classes
            means[:, 0], means[:, 1] = radius * torch.cos(angle), radius * torch.sin(angle)
        return means

    def set_prior(self, y: Tensor):
        r"""Sets the class prior :math:`\pi_k` to the label frequencies in ``y`` (smoothed by one count)."""
        counts = torch.bincount(y.flatten(), minlength=self.num_classes).to(self.log_prior) + 1
        self.log_prior.copy_((counts / counts.sum()).log())

    def class_log_likelihood(self, h: Tensor) -> Tensor:
        r""":math:`\log \mathcal{N}(h_v; \mu_k, \sigma^2 I)` for every node and class, ``[N, V, K]``."""
        sq = (h.unsqueeze(-2) - self.means).square().sum(-1)
        return -sq / (2 * self.sigma**2) - self.num_features * (math.log(self.sigma) + 0.5 * math.log(2 * math.pi))

    def log_prob(self, h: Tensor, y: Tensor) -> Tensor:
        r""":math:`\log p(h | y)`, summed over nodes and features, ``[N]``."""
        sq = (h - self.means[y]).square().flatten(1).sum(1)
        dims = h[0].numel()
        return -sq / (2 * self.sigma**2) - dims * (math.log(self.sigma) + 0.5 * math.log(2 * math.pi))

    def posterior(self, h: Tensor) -> Tensor:
        r"""The Bayes rule of the mixture, :math:`P(Y_v = k | h_v)`, ``[N, V, K]``."""
        return self.log_posterior(h).exp()

    def log_posterior(self, h: Tensor) -> Tensor:
        r""":math:`\log P(Y_v = k | h_v)`, ``[N, V, K]``, computed without passing through
        probabilities (which saturate at 1 in float32)."""
        return torch.log_softmax(self.log_prior + self.class_log_likelihood(h), dim=-1)

    def sample(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        r"""Draws :math:`h \sim p(h | y)`, ``[N, V, C]``."""
        mean = self.means[y]
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + self.sigma * noise

    def pairwise_distances(self) -> Tensor:
        r"""The distances :math:`\|\mu_i - \mu_j\|` for :math:`i < j`."""
        i, j = torch.triu_indices(self.num_classes, self.num_classes, offset=1)
        return (self.means[i] - self.means[j]).norm(dim=-1)

    def barrier(self) -> Tensor:
        r"""The log-barrier :math:`-\sum_{i<j} \log(\|\mu_i - \mu_j\| - c)`, in units of ``sigma``."""
        return -torch.log((self.pairwise_distances() - self.min_distance) / self.sigma).sum()

    @torch.no_grad()
    def project_(self, margin: float = 1e-3, max_sweeps: int = 100):
        r"""Pushes apart, symmetrically, any pair of means closer than ``c`` (plus a margin).

        Moving one pair may bring another closer, so the sweeps repeat until every pair is
        feasible.
        """
        target = self.min_distance + margin * self.sigma
        for _ in range(max_sweeps):
            feasible = True
            for i in range(self.num_classes):
                for j in range(i + 1, self.num_classes):
                    diff = self.means[i] - self.means[j]
                    distance = diff.norm()
                    if distance < target:
                        feasible = False
                        direction = diff / distance if distance > 0 else torch.eye(self.num_features)[0].to(diff)
                        shift = (0.5 * (target - distance) + 1e-6 * self.sigma) * direction
                        self.means[i] += shift
                        self.means[j] -= shift
            if feasible:
                return
