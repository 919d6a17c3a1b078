r"""The comparison table of the papers: every method on every dataset, one time budget.

Usage (from the repository root)::

    python experiments/compare_all.py --max-time 40 --out experiments/results
    python experiments/compare_all.py --datasets three_node,traffic --max-time 40
    python experiments/compare_all.py --datasets traffic --methods jko --option hidden=64 --out /tmp/h64

``solar_hope`` is read from the directory named by ``$IGRAPHFLOW_DATA`` (its files stay there).
Writes ``OUT/<dataset>/metrics.json`` and the figures of :func:`igraphflow.compare.compare`,
and prints one Markdown table per dataset. NSF is skipped on ``chordal`` (1006 dimensions: its
autoregressive inverse needs 1006 sequential passes per sample, far beyond the budget).
"""

from __future__ import annotations

import argparse
import time

import torch

from igraphflow.compare import METHODS, add_option_argument, compare, format_table, method_settings
from igraphflow.datasets import load

DATASETS = ("three_moons", "three_node", "chordal", "solar_sim", "solar_hope", "traffic")
SKIP = {"chordal": ("nsf",)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--max-time", type=float, default=40.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=5, help="generated sets per method; statistics are their means")
    parser.add_argument("--out", default="experiments/results")
    parser.add_argument("--exact-max-dim", type=int, default=16,
                        help="exact test likelihood up to this D = V * C, Hutchinson above")
    add_option_argument(parser)
    args = parser.parse_args(argv)
    settings = method_settings(args.option)
    torch.set_num_threads(1)
    for name in args.datasets.split(","):
        start = time.perf_counter()
        data = load(name, seed=args.seed)
        methods = [m for m in args.methods.split(",") if m not in SKIP.get(name, ())]
        result = compare(data, methods, max_time=args.max_time, seed=args.seed, out_dir=f"{args.out}/{name}",
                         exact_max_dim=args.exact_max_dim, settings=settings, draws=args.draws)
        protocol = next(iter(result["methods"].values()))["protocol"]
        print(f"\n## {name} (V={data.num_nodes}, C={data.num_features}, protocol={protocol}, "
              f"{time.perf_counter() - start:.0f} s)\n")
        print(format_table(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
