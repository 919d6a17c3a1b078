r"""Where the samples sit: per-label node means of generated, training and test signals.

On a chronological split the test period may drift away from the training period. This
script separates location from shape: for every method it reports the mean feature of the
nodes with label ``k`` in its samples (one per test label pattern), next to the same mean in
the training and test splits, and the energy statistic against the test split before and
after centring both sets (the centred energy ignores a common shift of all features), and how
far the mean of the samples has moved from the training mean towards the test mean (0: the
training mean, 1: the test mean, measured along the line between them).

It also takes the squared MMD (a = 1) against the whole test split apart,
``E k(g, g') + E k(t, t') - 2 E k(g, t)``: with this narrow kernel in many dimensions the
terms count near-duplicates among the samples and near-matches of a sample to a test signal.
Then the median squared distance from a sample to its nearest training signal (for the test
split: how far the real test signals lie from the training period), and the share of sample
values below the smallest training value of their coordinate, with their mean depth below it:
where many training values sit exactly at that floor (zero counts on traffic), a sampler that
cannot place mass on one value spills past it.

Usage (from the repository root)::

    python experiments/conditional_means.py --dataset traffic --methods jko,cinn,nsf --max-time 90
    python experiments/conditional_means.py --dataset traffic --methods jko --max-time 240 --option num_blocks=12
    python experiments/conditional_means.py --dataset solar_hope --methods jko,ignn,cinn,nsf,cgan --max-time 60
    python experiments/conditional_means.py --dataset traffic --methods jko,cinn,nsf --max-time 60 --draws 5
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor

from igraphflow.compare import add_budget_argument, add_option_argument, fit_method, make_model, method_settings, reference_signals
from igraphflow.datasets import load
from igraphflow.metrics import energy_distance, mmd_terms


def label_means(X: Tensor, Y: Tensor, num_classes: int) -> list[list[float]]:
    r"""The mean feature vector of the nodes with label ``k``, for every ``k`` (``[K][C]``)."""
    return [X[Y == k].mean(0).tolist() for k in range(num_classes)]


def along_drift(X: Tensor, data) -> float:
    r"""Where the mean of ``X`` lies on the line from the training mean (0) to the test mean (1)."""
    train = data.X_train.flatten(1).double().mean(0)
    drift = data.X_test.flatten(1).double().mean(0) - train
    return ((X.flatten(1).double().mean(0) - train) @ drift / (drift @ drift)).item()


def below_floor(X: Tensor, data) -> str:
    r"""The share of the values of ``X`` below the smallest training value of their coordinate,
    and their mean depth below it."""
    depth = (data.X_train.flatten(1).double().min(0).values - X.flatten(1).double()).clamp_min(0.0)
    below = depth > 0
    return f"{below.double().mean():.3f}, {depth[below].mean() if below.any() else 0.0:.3f}"


def row(name: str, X: Tensor, Y: Tensor, data, scored: bool = True) -> str:
    r"""A table row: the label means of ``X`` (nodes grouped by ``Y``), where its mean lies along the
    drift, its energies and MMD terms against the test split, its median squared distance to
    the nearest training signal, and its values below the training floor (:func:`below_floor`)."""
    means = " | ".join(", ".join(f"{m:+.3f}" for m in k) for k in label_means(X, Y, data.num_classes))
    flat, test = X.flatten(1).double(), data.X_test.flatten(1).double()
    nearest = torch.cdist(flat, data.X_train.flatten(1).double()).min(1).values.square().median()
    if not scored:
        return f"| {name} | {means} | {along_drift(X, data):.2f} | - | - | - | - | - | {nearest:.2f} | {below_floor(X, data)} |"
    centred = energy_distance(flat - flat.mean(0), test - test.mean(0))
    kgg, ktt, kgt = mmd_terms(flat, test, alphas=1.0)[1.0]
    return (f"| {name} | {means} | {along_drift(X, data):.2f} | {energy_distance(flat, test):.4f} | {centred:.4f} | "
            f"{kgg + ktt - 2 * kgt:.4g} | {kgg:.4g} | {kgt:.4g} | {nearest:.2f} | {below_floor(X, data)} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="traffic")
    parser.add_argument("--methods", default="jko,cinn,nsf")
    add_budget_argument(parser, 90.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=1, help="generated sets per method, one row each")
    add_option_argument(parser)
    args = parser.parse_args(argv)
    settings = method_settings(args.option)
    torch.set_num_threads(1)
    data = load(args.dataset, seed=args.seed)
    labels = " | ".join(f"mean of label-{k} nodes" for k in range(data.num_classes))
    test = data.X_test.flatten(1).double()
    train = data.X_train.flatten(1)
    at_floor = (train == train.min(0).values).double().mean(0)
    print(f"E k(t, t') of the test split (a = 1): {mmd_terms(test, test, alphas=1.0)[1.0][0]:.4g}")
    print(f"training values at the floor of their coordinate: {at_floor.mean():.3f} (at most {at_floor.max():.2f} "
          f"in one coordinate)\n")
    print(f"| samples | {labels} | along the drift | energy | centred energy | MMD (a=1) | E k(g, g') | E k(g, t) "
          "| nearest training signal | below the training floor: share, depth |")
    print("|---" * (data.num_classes + 9) + "|")
    print(row("training split (its own labels)", data.X_train, data.Y_train, data, scored=False))
    print(row("test split", data.X_test, data.Y_test, data, scored=False))
    print(row("training data (reference)", reference_signals(data, args.seed), data.Y_test, data))
    for method in args.methods.split(","):
        model = make_model(method, data, args.seed, **settings.get(method, {}))
        fit_method(model, method, data, args.max_time)
        for i in range(args.draws):
            samples = model.sample(data.Y_test, seed=args.seed * args.draws + i).detach().float()
            print(row(method if args.draws == 1 else f"{method}, draw {i}", samples, data.Y_test, data), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
