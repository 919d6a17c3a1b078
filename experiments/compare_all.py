r"""The comparison table of the papers: every method on every dataset, one time budget.

Usage (from the repository root)::

    python experiments/compare_all.py --max-time 40 --out experiments/results
    python experiments/compare_all.py --datasets three_node,traffic --max-time 40
    python experiments/compare_all.py --datasets traffic --methods jko --option hidden=64 --out /tmp/h64

``solar_hope`` is read from the directory given by ``--data``, else ``$IGRAPHFLOW_DATA`` (its
files stay there). Needs the ``baselines`` extra (``pip install -e ".[baselines]"``). The
datasets, methods, settings and packages are all checked before the first training.
Writes ``OUT/<dataset>/metrics.json`` and the figures of :func:`igraphflow.compare.compare`,
and prints one Markdown table per dataset. NSF is skipped on signals of more than
:data:`igraphflow.compare.NSF_MAX_DIM` dimensions (``chordal``: its autoregressive inverse
needs 1006 sequential passes per sample, far beyond the budget).
"""

from __future__ import annotations

import argparse
import time

import torch

from igraphflow.compare import (
    ARGUMENT_ERRORS, EXACT_MAX_DIM, METHODS, add_budget_argument, add_option_argument, check_requirements, check_settings, compare,
    default_methods, format_table, method_settings, parse_methods,
)
from igraphflow.datasets import load

DATASETS = ("three_moons", "three_node", "chordal", "solar_sim", "solar_hope", "traffic")
#: The datasets read from files, given by ``--data`` (else ``$IGRAPHFLOW_DATA``).
READ_FROM_DATA = ("solar_hope",)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--methods", default=",".join(METHODS))
    add_budget_argument(parser, 40.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=5, help="generated sets per method; statistics are their means")
    parser.add_argument("--out", default="experiments/results")
    parser.add_argument("--data", default=None,
                        help="data directory of solar_hope, used for no other dataset (default: $IGRAPHFLOW_DATA)")
    parser.add_argument("--exact-max-dim", type=int, default=EXACT_MAX_DIM,
                        help=f"exact test likelihood up to this D = V * C, estimated above (default: {EXACT_MAX_DIM}, "
                             "as igraphflow compare; earlier runs used 16)")
    add_option_argument(parser)
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.datasets.split(",") if name.strip()]
    if not names:
        parser.error("--datasets names no dataset")
    # A bad name, option or missing file must fail now, not hours into the run.
    try:
        methods = parse_methods(args.methods)
        settings = method_settings(args.option)
        check_requirements(methods, figures=True)
        datasets = {}
        for name in names:
            options = {"path": args.data} if args.data and name in READ_FROM_DATA else {}
            datasets[name] = load(name, seed=args.seed, **options)
            check_settings(settings, datasets[name], methods)
    except ARGUMENT_ERRORS as error:
        parser.error(str(error))
    plan = {name: [m for m in methods if m in default_methods(data.num_nodes * data.num_features)]
            for name, data in datasets.items()}
    for name, chosen in plan.items():
        if not chosen:
            parser.error(f"no chosen method runs on {name} (it skips nsf: too many dimensions)")
    torch.set_num_threads(1)
    for name, data in datasets.items():
        start = time.perf_counter()
        chosen = {method: values for method, values in settings.items() if method in plan[name]}
        result = compare(data, plan[name], max_time=args.max_time, seed=args.seed, out_dir=f"{args.out}/{name}",
                         exact_max_dim=args.exact_max_dim, settings=chosen, draws=args.draws)
        protocol = next(iter(result["methods"].values()))["protocol"]
        print(f"\n## {name} (V={data.num_nodes}, C={data.num_features}, protocol={protocol}, "
              f"{time.perf_counter() - start:.0f} s)\n")
        print(format_table(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
