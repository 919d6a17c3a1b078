r"""Diagnosis: how the JKO flow spends a fixed time budget.

``ConditionalGraphFlow.fit(max_time=...)`` trains the blocks one after the other, each up to
``max_epochs`` (40) epochs with early stopping, and drops the blocks not reached when time runs
out. Under a 40 s budget on one CPU thread the first block takes the whole budget, so the flow
that is evaluated has one short block (``h_1 = 0.25``) and cannot carry the data to the latent.
This script trains the same flow with fewer epochs per block (``max_epochs``) so that every
block is trained within the same budget, and with a longer budget.

Usage (from the repository root)::

    python experiments/jko_budget.py --datasets three_moons,three_node --max-time 40 --max-epochs 3
"""

from __future__ import annotations

import argparse

import torch

from igraphflow.compare import compare, format_table
from igraphflow.datasets import load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="three_moons,three_node")
    parser.add_argument("--max-time", type=float, default=40.0)
    parser.add_argument("--max-epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="experiments/results/jko_budget")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.datasets.split(","):
        data = load(name, seed=args.seed)
        result = compare(data, ["jko"], max_time=args.max_time, seed=args.seed,
                         out_dir=f"{args.out}/{name}_e{args.max_epochs}_t{args.max_time:g}",
                         settings={"jko": {"max_epochs": args.max_epochs}}, exact_max_dim=16)
        row = result["methods"]["jko"]
        print(f"\n## {name}: jko, max_epochs={args.max_epochs}, max_time={args.max_time:g}, "
              f"blocks trained={row['num_blocks']}\n")
        print(format_table(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
