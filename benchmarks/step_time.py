r"""Time per JKO training step on the sensor graphs, the velocity field run channels first or last.

On a graph whose L3Net bases hold at least ``DENSE_FRACTION`` of the node pairs (every sensor
graph here), :class:`~igraphflow.nn.GraphVelocityField` runs its layers on ``[C, N, V]``
signals with the time added as a bias (``channels_first``); otherwise layer by layer on
``[N, V, C]`` with the time stored as a channel (each L3Net layer with dense bases moving its
input channels first and back). Both compute the same field (``tests/test_layers.py``). This
times one training step of a default model's first block both ways: the finite-difference
divergence, ``train_steps`` RK4 steps, a batch of the dataset's ``"auto"`` batch size drawn
from its training signals, forward and backward. The two ways alternate over rounds in one
process with one thread, and the medians are reported.

Usage::

    python benchmarks/step_time.py            # 1 min; writes benchmarks/results/step_time.md
    python benchmarks/step_time.py --quick    # 2 rounds of 3 steps, printed only

solar_hope is timed where ``IGRAPHFLOW_DATA`` names the data folder.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from igraphflow import ConditionalGraphFlow
from igraphflow.datasets import load
from igraphflow.divergence import rademacher
from igraphflow.jko import auto_batch_size, jko_objective

RESULTS = Path(__file__).parent / "results" / "step_time.md"
DATASETS = ("three_moons", "three_node", "traffic", "solar_sim", "solar_hope")


def time_steps(name: str, rounds: int, steps_per_round: int) -> dict:
    data = load(name)
    model = ConditionalGraphFlow(data.edge_index, data.num_nodes, data.num_features, data.num_classes, seed=0)
    block, latent, config = model.blocks[0], model.latent, model.config
    # The batch a fit would draw: the auto size of the training part (90 %) of the split.
    batch = auto_batch_size(int(0.9 * len(data.X_train)))
    X = torch.as_tensor(data.X_train[:batch], dtype=torch.float32)
    x, y = (X - X.mean(0)) / X.std(0).clamp_min(1e-6), torch.as_tensor(data.Y_train[:batch])
    generator = torch.Generator().manual_seed(0)

    def step():
        noise = rademacher(x.shape, like=x, generator=generator)
        objective = jko_objective(block, latent, x, y, divergence="finite_difference", noise=noise,
                                  steps=config["train_steps"])[0]
        objective.mean().backward()

    timings = {False: [], True: []}
    for _ in range(rounds):
        for channels_first in (False, True):
            block.field.channels_first = channels_first
            for _ in range(2):  # warm up after the switch
                step()
            started = time.perf_counter()
            for _ in range(steps_per_round):
                step()
            timings[channels_first].append((time.perf_counter() - started) / steps_per_round * 1e3)
    last, first = (statistics.median(timings[key]) for key in (False, True))
    return dict(dataset=name, nodes=data.num_nodes, batch=batch, last=last, first=first)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="alternations of the two ways per dataset")
    parser.add_argument("--steps", type=int, default=15, help="training steps timed per round")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 steps, printed only")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps = 2, 3
    torch.set_num_threads(1)
    names = [name for name in DATASETS if name != "solar_hope" or os.environ.get("IGRAPHFLOW_DATA")]
    rows = [time_steps(name, args.rounds, args.steps) for name in names]
    lines = [
        "# Time per training step: the velocity field channels first or last",
        "",
        (f"`python benchmarks/step_time.py` ({platform.machine()}, {os.cpu_count()} cores, one thread, "
         f"torch {torch.__version__}). Median over {args.rounds} alternating rounds of {args.steps} steps: one "
         "training step of a default model's first block (finite-difference divergence, `train_steps` RK4 steps, "
         "forward and backward) on a batch of the dataset's `\"auto\"` size."),
        "",
        "| dataset | nodes | batch | channels last, ms | channels first, ms | speed-up |",
        "|---|---|---|---|---|---|",
        *(f"| {r['dataset']} | {r['nodes']} | {r['batch']} | {r['last']:.2f} | {r['first']:.2f} | "
          f"{r['last'] / r['first']:.2f}x |" for r in rows),
        "",
    ]
    if not args.quick:
        RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
