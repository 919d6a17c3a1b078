r"""Time and peak memory of the steps around training on large graphs.

Each row runs in a fresh subprocess, so that its peak resident memory (VmHWM) is its own:

* ``exact``: one epoch of one batch of 64 signals of a path graph, ``divergence="exact"``
  (the training step keeps the graphs of ``D`` copies of every signal);
* ``head``: ``fit(max_time=0)`` on a 2025-node grid, 8 features, 2000 signals: no block is
  trained, so the fit is the head on the standardised signals (and the temperature);
* ``mixture_sets``: uncalibrated ``prediction_sets`` of one signal under a mixture noise of
  ``M`` components on a 484-node grid (``D`` = 968), the state ``fit_noise_`` writes when a
  mixture validates, set by hand;
* ``pattern_sets``: the same under Gaussian noise whose mean moves with the label frequencies,
  on a 4096-node grid.

Usage::

    python benchmarks/large_steps.py            # writes benchmarks/results/large_steps.md
    python benchmarks/large_steps.py --quick    # smaller sizes, printed only
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path

import torch
from _memory import peak_rss_mb, run_child

RESULTS = Path(__file__).parent / "results" / "large_steps.md"


def grid(side: int) -> torch.Tensor:
    index = torch.arange(side * side).view(side, side)
    edges = torch.cat([torch.stack([index[:, :-1].flatten(), index[:, 1:].flatten()]),
                       torch.stack([index[:-1].flatten(), index[1:].flatten()])], 1)
    return torch.cat([edges, edges.flip(0)], 1)


def signals(num: int, nodes: int, features: int, classes: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    Y = torch.randint(0, classes, (num, nodes), generator=g)
    return Y.unsqueeze(-1).float() + torch.randn(num, nodes, features, generator=g), Y


def child_exact(nodes: int) -> dict:
    from igraphflow import ConditionalGraphFlow, jko

    path = torch.stack([torch.arange(nodes - 1), torch.arange(1, nodes)])
    X, Y = signals(64, nodes, 2)
    model = ConditionalGraphFlow(torch.cat([path, path.flip(0)], 1), nodes, 2, 2, num_blocks=1, seed=0)
    started = time.perf_counter()
    jko.train_block(0, model.blocks[0], model.latent, (X, Y), (X[:4], Y[:4]), divergence="exact", batch_size=64,
                    max_epochs=1, patience=1, generator=torch.Generator().manual_seed(0))
    return dict(step="exact", size=f"D = {2 * nodes}, batch 64", seconds=time.perf_counter() - started, peak_mb=peak_rss_mb())


def child_head(side: int, num: int) -> dict:
    from igraphflow import ConditionalGraphFlow

    X, Y = signals(num, side * side, 8)
    model = ConditionalGraphFlow(grid(side), side * side, 8, 2, num_blocks=1, seed=0)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no block trained, as asked
        model.fit(X, Y, max_time=0, progress=False)
    return dict(step="head", size=f"V = {side * side}, C = 8, N = {num}", seconds=time.perf_counter() - started,
                peak_mb=peak_rss_mb())


def fitted_without_blocks(side: int, features: int) -> tuple:
    from igraphflow import ConditionalGraphFlow

    X, Y = signals(64, side * side, features)
    model = ConditionalGraphFlow(grid(side), side * side, features, 2, num_blocks=1, seed=0, fit_noise=False,
                                 sample_temperature=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, Y, max_time=0, progress=False)
    return model, X


def child_mixture_sets(side: int, components: int) -> dict:
    model, X = fitted_without_blocks(side, 2)
    latent, dims = model.latent, model.num_nodes * 2
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        latent.offset, latent.scale_tril = torch.zeros(model.num_nodes, 2), torch.eye(dims)
        latent.mixture_logits = torch.full((components,), -math.log(components))
        latent.mixture_centres = torch.randn(components, dims, generator=g)
        latent.mixture_scales = 0.5 + torch.rand(components, dims, generator=g)
    started = time.perf_counter()
    model.prediction_sets(X[:1])
    return dict(step="mixture_sets", size=f"D = {dims}, M = {components}", seconds=time.perf_counter() - started,
                peak_mb=peak_rss_mb())


def child_pattern_sets(side: int) -> dict:
    model, X = fitted_without_blocks(side, 1)
    latent, nodes = model.latent, model.num_nodes
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        latent.offset, latent.scale_tril = torch.zeros(nodes, 1), torch.eye(nodes)
        latent.pattern_centre = torch.full((2,), 0.5)
        latent.pattern_weights = 0.5 * torch.randn(2, nodes, 1, generator=g)
    started = time.perf_counter()
    model.prediction_sets(X[:1])
    return dict(step="pattern_sets", size=f"V = {nodes}, C = 1", seconds=time.perf_counter() - started, peak_mb=peak_rss_mb())


CHILDREN = {"exact": child_exact, "head": child_head, "mixture_sets": child_mixture_sets, "pattern_sets": child_pattern_sets}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, print without writing")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](*map(int, args.child[1:]))))
        return
    runs = ([("exact", "25"), ("head", "20", "200"), ("mixture_sets", "10", "8"), ("pattern_sets", "16")] if args.quick else
            [("exact", "50"), ("exact", "100"), ("head", "45", "2000"), ("mixture_sets", "22", "8"),
             ("mixture_sets", "22", "32"), ("pattern_sets", "64")])
    lines = ["| step | size | s | peak RSS MB |", "|---|---|---|---|"]
    for run in runs:
        r = run_child(__file__, *run)
        lines.append(f"| {r['step']} | {r['size']} | {r['seconds']:.1f} | {r['peak_mb']:.0f} |")
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text("# Steps around training on large graphs\n\n`python benchmarks/large_steps.py` (CPU, 1 thread, "
                           "one subprocess per row; what each row runs is in the script's docstring).\n\n" + text + "\n")


if __name__ == "__main__":
    main()
