r"""Quality, training time and peak memory against the peers, on simulated graphs with known density.

Every method (igraphflow's ``jko``, zuko's conditional NSF, FrEIA's conditional INN, the
discrete iGNN) trains with its defaults on the same training split, under the same time cap,
in a fresh subprocess so that its peak resident memory is its own. Quality is the gap of the
test NLL per dimension to the truth (the datasets' ``true_log_prob``); exact likelihoods
throughout (D <= 64).

Usage::

    python benchmarks/peers.py                      # writes benchmarks/results/peers.md
    python benchmarks/peers.py --quick              # small smoke run, printed only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from _memory import peak_rss_mb, run_child

RESULTS = Path(__file__).parent / "results" / "peers.md"
DATASETS = ("linear_gaussian", "graph_moons", "three_node")
METHODS = ("jko", "nsf", "cinn", "ignn")


def child(dataset: str, method: str, max_time: float, seed: int, quick: bool) -> dict:
    from igraphflow.compare import fit_method, make_model, method_log_prob
    from igraphflow.datasets import load

    data = load(dataset, seed=seed, **(dict(num_train=400, num_test=200) if quick else {}))
    dims = data.num_nodes * data.num_features
    true_nll = -data.true_log_prob(data.X_test, data.Y_test).mean().item() / dims
    model = make_model(method, data, seed)
    train_s = fit_method(model, method, data, max_time)
    nll = -method_log_prob(model, method, data.X_test, data.Y_test, exact=True).mean().item() / dims
    return dict(dataset=dataset, method=method, dims=dims, true_nll=true_nll, nll=nll, gap=nll - true_nll,
                train_s=train_s, peak_mb=peak_rss_mb())


def table(rows: list[dict]) -> str:
    lines = ["| dataset | D | method | test NLL/dim | true NLL/dim | gap | train s | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['dims']} | {r['method']} | {r['nll']:.4f} | {r['true_nll']:.4f} | "
                     f"**{r['gap']:.4f}** | {r['train_s']:.0f} | {r['peak_mb']:.0f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-time", type=float, default=None, help="training cap of every method, seconds "
                                                                        "(default 300, 5 with --quick)")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.child:
        dataset, method, max_time, seed, quick = args.child
        print(json.dumps(child(dataset, method, float(max_time), int(seed), quick == "1")))
        return
    max_time = args.max_time if args.max_time is not None else 5.0 if args.quick else 300.0
    started = time.monotonic()
    rows = []
    for dataset in args.datasets.split(","):
        for method in args.methods.split(","):
            rows.append(run_child(__file__, dataset, method, str(max_time), str(args.seed), "1" if args.quick else "0"))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    command = " ".join(["python benchmarks/peers.py", *sys.argv[1:]])
    text = (f"`{command}` ({max_time:g} s per fit, CPU, 1 thread, one subprocess per row, "
            f"{(time.monotonic() - started) / 60:.0f} min). Gap = test NLL - true NLL, nats per dimension, "
            "exact likelihoods.\n\n" + table(rows) + "\n")
    print(text)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text("# Quality against the peers on simulated graphs with known density\n\n" + text)


if __name__ == "__main__":
    main()
