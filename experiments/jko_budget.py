r"""Diagnosis: how the JKO flow spends a fixed time budget.

Earlier, ``ConditionalGraphFlow.fit(max_time=...)`` trained the blocks one after the other,
each up to ``max_epochs`` (40) epochs with early stopping, and dropped the blocks not reached
when time ran out, so under a 40 s budget the first block took the whole budget. ``fit`` now
shares the budget equally among the blocks. This script runs only the capped flow, not the
default: on each dataset, ``jko`` with at most ``--max-epochs`` epochs per block under
``--max-time``, evaluated by :func:`igraphflow.compare.compare` (exact likelihood up to
``D = 16``). It prints the number of blocks trained and the table (the ``jko`` row and the
reference row) per dataset, and writes ``OUT/<dataset>_e<max_epochs>_t<max_time>/``.
The datasets and the settings are checked before the first training.

Usage (from the repository root)::

    python experiments/jko_budget.py --datasets three_moons,three_node --max-time 40 --max-epochs 3
"""

from __future__ import annotations

import argparse

import torch

from igraphflow.compare import ARGUMENT_ERRORS, add_budget_argument, check_requirements, check_settings, compare, format_table
from igraphflow.datasets import load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="three_moons,three_node")
    add_budget_argument(parser, 40.0)
    parser.add_argument("--max-epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="experiments/results/jko_budget")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.datasets.split(",") if name.strip()]
    if not names:
        parser.error("--datasets names no dataset")
    settings = {"jko": {"max_epochs": args.max_epochs}}
    # A bad name or setting must fail now, not after the datasets before it have trained.
    try:
        check_requirements(["jko"], figures=True)
        datasets = {}
        for name in names:
            datasets[name] = load(name, seed=args.seed)
            check_settings(settings, datasets[name])
    except ARGUMENT_ERRORS as error:
        parser.error(str(error))
    torch.set_num_threads(1)
    for name, data in datasets.items():
        result = compare(data, ["jko"], max_time=args.max_time, seed=args.seed,
                         out_dir=f"{args.out}/{name}_e{args.max_epochs}_t{args.max_time:g}",
                         settings=settings, exact_max_dim=16)
        row = result["methods"]["jko"]
        print(f"\n## {name}: jko, max_epochs={args.max_epochs}, max_time={args.max_time:g}, "
              f"blocks trained={row['num_blocks']}\n")
        print(format_table(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
