r"""A state that every node shares and the labels do not explain: how often each model samples it.

Signals on a 4-node path, ``X_v = 2 Y_v + 1.5 s + 0.3 z_v`` (two features per node), with one
level ``s = -1`` or ``+1`` per signal, independent of the labels: every label pattern comes
in both states about equally often. A flow towards a factorized latent must fold the two
states of each pattern into one Gaussian. For each model this prints, per label pattern, the
share of generated signals in the upper state (their mean above that of the pattern's labels,
``2 mean(Y)``) against the share in the data, and the test NLL per dimension (the true
density's is printed too).

Usage::

    python experiments/shared_state.py --max-time 60 --seeds 0,1
    python experiments/shared_state.py --max-time 60 --seeds 0 --methods nsf

Models: ``default`` (``ConditionalGraphFlow`` as it comes), ``noise_first``
(``fit_noise_first=True``), ``isotropic`` (``fit_noise=False``), ``nsf`` (zuko's conditional
spline flow, :class:`~igraphflow.baselines.NSFBaseline`).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from igraphflow import ConditionalGraphFlow
from igraphflow.baselines import NSFBaseline

PATH = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
V, C, K = 4, 2, 2
LEVEL, NOISE = 1.5, 0.3
PATTERNS = ((0, 0, 0, 0), (1, 1, 1, 1), (0, 1, 0, 1), (1, 0, 0, 0))
SETTINGS = {"default": {}, "noise_first": {"fit_noise_first": True}, "isotropic": {"fit_noise": False}}


def shared_state(n: int, seed: int = 21) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``n`` signals ``[n, V, C]`` and their labels ``[n, V]``."""
    rng = np.random.default_rng(seed)
    Y = rng.integers(0, K, (n, V))
    level = LEVEL * rng.choice([-1.0, 1.0], (n, 1, 1))
    X = 2.0 * Y[..., None] + level + NOISE * rng.standard_normal((n, V, C))
    return torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(Y)


def true_nll_per_dim(X: torch.Tensor, Y: torch.Tensor) -> float:
    r"""The exact test NLL per dimension: an even mixture of the two levels."""
    centre = 2.0 * Y.unsqueeze(-1).double()
    log_densities = torch.stack([
        torch.distributions.Normal(centre + s * LEVEL, NOISE).log_prob(X.double()).sum((1, 2)) for s in (-1.0, 1.0)
    ])
    return -(torch.logsumexp(log_densities, 0) - math.log(2)).mean().item() / (V * C)


def upper_share(X: torch.Tensor, pattern: tuple[int, ...]) -> float:
    return (X.mean((1, 2)) > 2.0 * sum(pattern) / V).float().mean().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-time", type=float, default=60.0)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--methods", default="default,noise_first,isotropic,nsf")
    args = parser.parse_args()
    torch.set_num_threads(1)
    X, Y = shared_state(1600)
    train, test = (X[:960], Y[:960]), (X[1000:], Y[1000:])
    patterns = [(Y == torch.tensor(p)).all(1) for p in PATTERNS]
    print("| model | seed | " + " | ".join("".join(map(str, p)) for p in PATTERNS) + " | test NLL/dim |")
    print("|---" * (3 + len(PATTERNS)) + "|")
    print("| data | - | " + " | ".join(f"{upper_share(X[m], p):.2f}" for p, m in zip(PATTERNS, patterns))
          + f" | {true_nll_per_dim(*test):.3f} (true) |")
    for method in args.methods.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            if method == "nsf":
                model = NSFBaseline(PATH, V, C, K, seed=seed).fit(*train, max_time=args.max_time, progress=False)
            else:
                model = ConditionalGraphFlow(PATH, V, C, K, seed=seed, **SETTINGS[method])
                model.fit(*train, max_time=args.max_time, progress=False)
            shares = [upper_share(model.sample(torch.tensor([p]).repeat(2000, 1), seed=0), p) for p in PATTERNS]
            nll = -model.log_prob(*test).mean().item() / (V * C)
            print(f"| {method} | {seed} | " + " | ".join(f"{s:.2f}" for s in shares) + f" | {nll:.3f} |", flush=True)


if __name__ == "__main__":
    main()
