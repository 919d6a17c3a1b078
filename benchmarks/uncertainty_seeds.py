r"""Set size at equal coverage over several seeds: the flow's conformal sets vs a ChebNet classifier's.

``uncertainty.py`` compares one flow and one ChebNet (seed 0). This repeats that comparison
with other seeds for both models, on the same split and with the same conformal procedure, so
that a gap between them can be told apart from the spread of one fit. The flow is trained
with the default settings and with the classification loss (``classification_weight``).

Usage::

    python benchmarks/uncertainty_seeds.py                                   # about 25 minutes on one core
    python benchmarks/uncertainty_seeds.py --datasets solar_hope --seeds 0,1 --weights 0

Writes ``benchmarks/results/uncertainty_seeds.md``. ``solar_hope`` is read from the directory
named by ``$IGRAPHFLOW_DATA``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import igraphflow.datasets as D
from igraphflow import ConditionalGraphFlow
from igraphflow.compare import add_option_argument, method_settings
from uncertainty import ALPHA_GRID, ALPHAS, conformal_report, fit_calibration_split, fit_cheb, size_at_coverage

ROOT = Path(__file__).resolve().parent


def run_seed(data, seed: int, weights: list[float], *, max_time: float, cheb_time: float, settings: dict) -> dict:
    r"""One ChebNet and one flow per weight, all with ``seed``: the ChebNet's coverage and size and
    each flow's size at that coverage, per alpha. ``settings``: more arguments of the flows."""
    X, Y = data.X_train, data.Y_train
    X_fit, Y_fit, X_cal, Y_cal = fit_calibration_split(X, Y)
    alphas = ALPHA_GRID + ALPHAS
    cheb = fit_cheb(data, X_fit, Y_fit, max_time=cheb_time, seed=seed)
    cheb_report = conformal_report(cheb.log_proba(X_cal), Y_cal, cheb.log_proba(data.X_test), data.Y_test, alphas)
    row = {"cheb": {a: cheb_report[a] for a in ALPHAS}, "flow": {}}
    for weight in weights:
        flow = ConditionalGraphFlow(data.edge_index, data.num_nodes, data.num_features, data.num_classes,
                                    classification_weight=weight, seed=seed, device="cpu", **settings)
        flow.fit(X_fit, Y_fit, max_time=max_time, progress=False)
        report = conformal_report(flow.predict_log_proba(X_cal), Y_cal, flow.predict_log_proba(data.X_test),
                                  data.Y_test, alphas)
        row["flow"][weight] = {a: size_at_coverage(report, cheb_report[a]["coverage"]) for a in ALPHAS}
        print(f"{data.name} seed {seed} weight {weight:g}: "
              + ", ".join(f"alpha {a}: {row['flow'][weight][a]:.3f} vs {cheb_report[a]['size']:.3f}" for a in ALPHAS),
              flush=True)
    return row


def table(name: str, rows: dict[int, dict], weights: list[float]) -> list[str]:
    header = " | ".join(f"flow, weight {w:g}" for w in weights)
    lines = [f"### {name}", "", f"| seed | alpha | ChebNet coverage | ChebNet size | {header} |",
             "|---" * (4 + len(weights)) + "|"]
    for seed, row in rows.items():
        for a in ALPHAS:
            sizes = " | ".join(f"{row['flow'][w][a]:.3f}" for w in weights)
            lines.append(f"| {seed} | {a} | {row['cheb'][a]['coverage']:.3f} | {row['cheb'][a]['size']:.3f} | {sizes} |")
    for a in ALPHAS:
        cheb = np.array([row["cheb"][a]["size"] for row in rows.values()])
        flows = [np.array([row["flow"][w][a] for row in rows.values()]) for w in weights]
        sizes = " | ".join(f"{f.mean():.3f} ± {f.std():.3f}" for f in flows)
        lines.append(f"| mean ± sd | {a} | - | {cheb.mean():.3f} ± {cheb.std():.3f} | {sizes} |")
    return lines + [""]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="solar_hope,traffic")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--weights", default="0,20", help="classification weights of the flows")
    parser.add_argument("--max-time", type=float, default=120.0, help="seconds per flow fit")
    parser.add_argument("--cheb-time", type=float, default=30.0, help="seconds per ChebNet fit")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "uncertainty_seeds.md")
    add_option_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    weights = [float(w) for w in args.weights.split(",")]
    settings = method_settings(args.option).get("jko", {})
    start = time.perf_counter()
    lines = []
    for name in args.datasets.split(","):
        data = D.load(name)
        rows = {seed: run_seed(data, seed, weights, max_time=args.max_time, cheb_time=args.cheb_time, settings=settings) for seed in seeds}
        lines += table(name, rows, weights)
    command = (f"python benchmarks/uncertainty_seeds.py --datasets {args.datasets} --seeds {args.seeds} "
               f"--weights {args.weights} --max-time {args.max_time:g}"
               + "".join(f" --option {key}={value}" for key, value in settings.items()))
    header = [
        "# Conformal set size at equal coverage, over seeds",
        "",
        f"Produced by `{command}` ({(time.perf_counter() - start) / 60:.1f} min, 1 thread, CPU).",
        "",
        "Split and conformal procedure as in `uncertainty.md` (first 80 % of the training split fits,",
        "last 20 % calibrates, pooled LAC scores); the flow's size is read at the ChebNet's test",
        "coverage of the same seed, along the flow's own (coverage, size) curve over alpha.",
        "Weight 0 is the default flow; a positive weight adds the classification loss.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
