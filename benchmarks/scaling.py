r"""Time and memory per training iteration against graph size, and a 10,000-node training run.

Every operation is sparse in the graph, so time and memory per iteration should grow linearly
with the number of edges. Each measurement runs in a fresh subprocess, so that its peak
resident memory (VmHWM) is its own.

* ``sweep``: one JKO training step (default velocity field, batch of 2 graph signals with 2
  features) on grid graphs and networkx chordal-cycle graphs with about 100, 1k, 10k and 100k
  nodes; median time over 3 steps after a warm-up, peak RSS; log-log slope of time against
  the number of edges from 1k to 100k nodes.
* ``grid10k``: a 10,000-node grid (about 20k edges), 2 features, 128 training graphs: fit
  (default settings, a time cap) and ``log_prob(exact=False)``; peak RSS.

Usage::

    python benchmarks/scaling.py                 # writes benchmarks/results/scaling.md
    python benchmarks/scaling.py --quick         # about 100, 1k and 3k nodes, no 10k run, printed only
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from _memory import peak_rss_mb, run_child
from torch_geometric.utils import from_networkx

RESULTS = Path(__file__).parent / "results" / "scaling.md"
PRIMES = {100: 101, 1000: 1009, 3000: 3001, 10000: 10007, 100000: 100003}


def make_graph(kind: str, size: int) -> tuple[torch.Tensor, int]:
    if kind == "grid":
        side = int(round(math.sqrt(size)))
        g = nx.grid_2d_graph(side, side)
    else:
        g = nx.Graph(nx.chordal_cycle_graph(PRIMES[size]))
        g.remove_edges_from(nx.selfloop_edges(g))
    g = nx.convert_node_labels_to_integers(g)
    return from_networkx(g).edge_index, g.number_of_nodes()


def child_step(kind: str, size: int) -> dict:
    from igraphflow import ConditionalGraphFlow
    from igraphflow.jko import jko_objective

    edge_index, n = make_graph(kind, size)
    model = ConditionalGraphFlow(edge_index, n, 2, 2, num_blocks=1, seed=0, device="cpu")
    block, latent = model.blocks[0], model.latent
    optimizer = torch.optim.Adam(list(block.parameters()) + list(latent.parameters()), lr=1e-3)
    x, y = torch.randn(2, n, 2), torch.randint(0, 2, (2, n))
    times = []
    for _ in range(4):
        started = time.perf_counter()
        loss = jko_objective(block, latent, x, y, divergence="hutchinson")[0].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return dict(kind=kind, nodes=n, edges=edge_index.size(1) // 2, seconds=float(np.median(times[1:])), peak_mb=peak_rss_mb())


def child_grid10k(max_time: float) -> dict:
    from igraphflow import ConditionalGraphFlow

    edge_index, n = make_graph("grid", 10000)
    g = torch.Generator().manual_seed(0)
    Y = torch.randint(0, 2, (160, n), generator=g)
    X = torch.randn(160, n, 2, generator=g) + Y.unsqueeze(-1)
    model = ConditionalGraphFlow(edge_index, n, 2, 2, seed=0, device="cpu")
    started = time.monotonic()
    model.fit(X[:128], Y[:128], max_time=max_time, progress=False)
    fit_s = time.monotonic() - started
    log_prob = model.log_prob(X[128:], Y[128:], exact=False)
    return dict(nodes=n, edges=edge_index.size(1) // 2, blocks=model.num_blocks, fit_s=fit_s,
                finite=bool(torch.isfinite(log_prob).all()), nll_per_dim=-log_prob.mean().item() / (2 * n),
                peak_mb=peak_rss_mb())


def slope(rows: list[dict]) -> float:
    big = [r for r in rows if r["nodes"] >= 900]
    return float(np.polyfit(np.log([r["edges"] for r in big]), np.log([r["seconds"] for r in big]), 1)[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="sweep about 100, 1k and 3k nodes only (up to 3025 grid, 3001 chordal nodes), "
                             "skip the 10k-node run, print without writing")
    parser.add_argument("--max-time", type=float, default=300.0, help="fit cap of the 10k-node run")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.child:
        result = child_grid10k(float(args.child[1])) if args.child[0] == "grid10k" else child_step(args.child[0], int(args.child[1]))
        print(json.dumps(result))
        return
    # The slope needs two sizes of at least 1k nodes.
    sizes = [100, 1000, 3000] if args.quick else [100, 1000, 10000, 100000]
    lines = ["| graph | nodes | edges | s / iteration | peak RSS MB |", "|---|---|---|---|---|"]
    slopes = {}
    for kind in ("grid", "chordal"):
        rows = [run_child(__file__, kind, str(size)) for size in sizes]
        lines += [f"| {r['kind']} | {r['nodes']} | {r['edges']} | {r['seconds']:.4f} | {r['peak_mb']:.0f} |" for r in rows]
        slopes[kind] = slope(rows)
    lines.append("")
    lines += [f"- log-log slope of time per iteration against edges, {kind}, 1k to {sizes[-1]} nodes: **{s:.2f}**" for kind, s in slopes.items()]
    if not args.quick:
        r = run_child(__file__, "grid10k", str(args.max_time))
        lines += ["", "10,000-node grid, 2 features, 128 training graphs, default settings, "
                  f"`fit(max_time={args.max_time:g})`: {r['blocks']} blocks trained in {r['fit_s']:.0f} s, "
                  f"peak RSS **{r['peak_mb'] / 1024:.2f} GB**, `log_prob(exact=False)` finite: **{r['finite']}** "
                  f"(test NLL {r['nll_per_dim']:.3f} nats/dim)."]
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text("# Scaling with graph size\n\n`python benchmarks/scaling.py` (CPU, 1 thread, one subprocess per row).\n"
                           "One iteration = one JKO training step on a batch of 2 signals, 2 features, Hutchinson divergence.\n\n" + text + "\n")


if __name__ == "__main__":
    main()
