r"""Coverage and size of node-label prediction sets, and uncertainty regions on three moons.

For each dataset the training split is cut in two: the first 80 % (chronologically, for the
real series) fits the models, the last 20 % calibrates them; coverage and set size are
measured on the test split. Two classifiers get the same split-conformal procedure
(LAC scores pooled over nodes, :mod:`igraphflow.uncertainty`):

* the flow, :class:`igraphflow.ConditionalGraphFlow` with default settings (fit capped in time);
* a plain node classifier: two ChebNet layers (``torch_geometric.nn.ChebConv``) trained with
  cross-entropy on the same fitting split.

The same ChebNet trained on the flow's latent ``H = F(X)`` separates what the latent
representation costs or buys from what the head does. The flow's uncalibrated Gaussian
confidence-region sets and per-node calibration are reported beside them, and the three-moons
figure shows the X-space uncertainty regions.

Usage::

    python benchmarks/uncertainty.py            # full run, about 15 minutes on one core
    python benchmarks/uncertainty.py --quick    # smoke run on small subsets, outputs in a temp dir

``solar_hope`` is read from the directory named by ``$IGRAPHFLOW_DATA``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch_geometric.nn import ChebConv  # noqa: E402

import igraphflow.datasets as D  # noqa: E402
from igraphflow import ConditionalGraphFlow  # noqa: E402
from igraphflow.baselines._common import batched_edge_index, train_loop  # noqa: E402
from igraphflow.head import graph_head  # noqa: E402
from igraphflow.separability import fit_softmax  # noqa: E402
from igraphflow.uncertainty import (  # noqa: E402
    conformal_quantile,
    conformal_scores,
    conformal_sets,
    precise_log_softmax,
    set_coverage,
)

ROOT = Path(__file__).resolve().parent
ALPHAS = (0.05, 0.1, 0.2)
SIMULATED = ("linear_gaussian", "graph_moons")
NOTES = """
Notes. The fits are capped in wall-clock time, so on a loaded machine the flow trains fewer
blocks (the block counts above) and its numbers move from run to run; the ChebNet classifier is
cheap and converges within its cap. On the simulated graphs the calibration and test graphs are
exchangeable and coverage lands on target. The real series are split chronologically (test
after train), so calibration and test nodes are not exchangeable and the conformal guarantee
does not formally apply: deviations from 1 - alpha there measure the drift between periods,
and they are shared by both classifiers.
"""
ALPHA_GRID = tuple(np.round(np.linspace(0.02, 0.3, 15), 3))
CLASSIFICATION_WEIGHTS = (5.0, 20.0)
DATASETS = {
    "linear_gaussian": {},
    "graph_moons": {},
    "solar_hope": {},  # read from $IGRAPHFLOW_DATA
    "traffic": {},
}


class ChebClassifier(nn.Module):
    r"""Two ChebNet layers on one static graph, ``[B, V, C] -> [B, V, K]`` logits."""

    def __init__(self, edge_index: Tensor, num_nodes: int, num_features: int, num_classes: int, hidden: int = 32, order: int = 3):
        super().__init__()
        self.register_buffer("edge_index", edge_index)
        self.num_nodes = num_nodes
        self.conv1 = ChebConv(num_features, hidden, K=order)
        self.conv2 = ChebConv(hidden, num_classes, K=order)

    def forward(self, x: Tensor) -> Tensor:
        B, V, C = x.shape
        edges = batched_edge_index(self.edge_index, V, B)
        h = F.silu(self.conv1(x.reshape(B * V, C), edges))
        return self.conv2(h, edges).reshape(B, V, -1)

    @torch.no_grad()
    def log_proba(self, X: Tensor) -> Tensor:
        self.eval()
        with torch.no_grad():
            return torch.cat([precise_log_softmax(self(x)) for x in X.split(1024)])


def fit_cheb(data, X, Y, *, max_time: float, seed: int = 0) -> ChebClassifier:
    torch.manual_seed(seed)
    V, C = X.shape[1:]
    model = ChebClassifier(data.edge_index, V, C, data.num_classes)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(X), generator=g)
    num_val = max(1, len(X) // 10)
    val, train = order[:num_val], order[num_val:]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def step(idx):
        idx = train[idx]
        loss = F.cross_entropy(model(X[idx]).flatten(0, 1), Y[idx].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    def evaluate():
        with torch.no_grad():
            return F.cross_entropy(model(X[val]).flatten(0, 1), Y[val].flatten()).item()

    train_loop(step, evaluate, model, num_samples=len(train), batch_size=128, max_epochs=300, max_time=max_time,
               patience=15, generator=g, progress=False, desc="ChebNet")
    return model


def fit_calibration_split(X: Tensor, Y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""``(X_fit, Y_fit, X_cal, Y_cal)``: the first 80 % of the signals fit, the last 20 % calibrate."""
    cut = int(round(0.8 * len(X)))
    return X[:cut], Y[:cut], X[cut:], Y[cut:]


def conformal_report(log_cal: Tensor, Y_cal: Tensor, log_test: Tensor, Y_test: Tensor, alphas) -> dict:
    r"""Pooled split-conformal sets for every alpha (ranked graph by graph, as
    :meth:`~igraphflow.ConditionalGraphFlow.calibrate` does): coverage, mean size, empty fraction."""
    scores = conformal_scores(log_cal.double(), Y_cal).flatten().sort().values
    out = {}
    for alpha in alphas:
        sets = conformal_sets(log_test.double(), conformal_quantile(scores, alpha, group_size=log_cal.size(1)))
        out[float(alpha)] = summarize(sets, Y_test)
    return out


def size_at_coverage(report: dict, coverage: float) -> float:
    r"""The mean set size at ``coverage``, interpolated along a report's (coverage, size) curve over alpha."""
    points = sorted((r["coverage"], r["size"]) for r in report.values())
    return float(np.interp(coverage, [c for c, _ in points], [s for _, s in points]))


def equal_coverage_cells(report: dict, cheb: dict) -> str:
    r"""Table cells: the ChebNet's coverage and size, the flow's size at that coverage, whether it is no larger."""
    size = size_at_coverage(report, cheb["coverage"])
    return f"{cheb['coverage']:.3f} | {cheb['size']:.3f} | {size:.3f} | {'yes' if size <= cheb['size'] + 1e-9 else 'no'}"


def summarize(sets: Tensor, Y: Tensor) -> dict:
    covered = set_coverage(sets, Y).float()
    size = sets.sum(-1).float()
    return dict(
        coverage=covered.mean().item(),
        node_min=covered.mean(0).min().item(),
        node_max=covered.mean(0).max().item(),
        size=size.mean().item(),
        empty=(size == 0).float().mean().item(),
    )


def run_dataset(name: str, options: dict, *, quick: bool, max_time: float, cheb_time: float) -> dict:
    data = D.load(name, **options)
    X, Y, X_test, Y_test = data.X_train, data.Y_train, data.X_test, data.Y_test
    if quick:
        X, Y, X_test, Y_test = X[:300], Y[:300], X_test[:200], Y_test[:200]
    X_fit, Y_fit, X_cal, Y_cal = fit_calibration_split(X, Y)
    V, C = X.shape[1:]
    result = dict(name=name, V=V, C=C, K=data.num_classes, n_fit=len(X_fit), n_cal=len(X_cal), n_test=len(X_test))

    start = time.perf_counter()
    # On the CPU, as the header says, beside the ChebNet's CPU tensors.
    kwargs = dict(max_epochs=2, num_blocks=2, device="cpu") if quick else dict(device="cpu")
    flow = ConditionalGraphFlow(data.edge_index, V, C, data.num_classes, seed=0, **kwargs)
    flow.fit(X_fit, Y_fit, max_time=max_time, progress=False)
    result["flow_time"], result["flow_blocks"] = time.perf_counter() - start, flow.num_blocks
    log_cal, log_test = flow.predict_log_proba(X_cal), flow.predict_log_proba(X_test)
    result["flow_acc"] = (log_test.argmax(-1) == Y_test).float().mean().item()
    result["flow"] = conformal_report(log_cal, Y_cal, log_test, Y_test, ALPHA_GRID + ALPHAS)
    # The same flow's mixture Bayes rule (classifier="bayes"), to show what the graph head adds.
    bayes_cal, bayes_test = (precise_log_softmax(flow.latent.posterior_logits(flow.encode(x))) for x in (X_cal, X_test))
    result["bayes"] = conformal_report(bayes_cal, Y_cal, bayes_test, Y_test, ALPHA_GRID + ALPHAS)
    result["gauss"] = {a: summarize(flow.gaussian_sets(X_test, a), Y_test) for a in ALPHAS}
    # The model's own calibrate / prediction_sets (pooled, then per node) agree with the above.
    flow.calibrate(X_cal, Y_cal, alpha=0.1)
    result["flow_api"] = {a: summarize(flow.prediction_sets(X_test, a), Y_test) for a in ALPHAS}
    flow.calibrate(X_cal, Y_cal, alpha=0.1, per_node=True)
    result["flow_per_node"] = {a: summarize(flow.prediction_sets(X_test, a), Y_test) for a in ALPHAS}
    # Draws of the model's density (temperature 1) lie in its own joint region with frequency 1 - alpha.
    Xs = flow.sample(Y_test, seed=0, temperature=1.0)
    result["in_region"] = {a: flow.in_region(Xs, Y_test, a).float().mean().item() for a in ALPHAS}
    result["in_region_data"] = {a: flow.in_region(X_test, Y_test, a, joint=False).float().mean().item() for a in ALPHAS}

    # The flow trained with the classification loss of the iGNN objective (real series only).
    result["weighted"] = {}
    for weight in () if name in SIMULATED else CLASSIFICATION_WEIGHTS:
        weighted = ConditionalGraphFlow(data.edge_index, V, C, data.num_classes, seed=0, classification_weight=weight, **kwargs)
        weighted.fit(X_fit, Y_fit, max_time=max_time, progress=False)
        log_cal, log_test = weighted.predict_log_proba(X_cal), weighted.predict_log_proba(X_test)
        result["weighted"][weight] = dict(acc=(log_test.argmax(-1) == Y_test).float().mean().item(),
                                          report=conformal_report(log_cal, Y_cal, log_test, Y_test, ALPHA_GRID + ALPHAS))

    start = time.perf_counter()
    cheb = fit_cheb(data, X_fit, Y_fit, max_time=cheb_time)
    result["cheb_time"] = time.perf_counter() - start
    log_cal, log_test = cheb.log_proba(X_cal), cheb.log_proba(X_test)
    result["cheb_acc"] = (log_test.argmax(-1) == Y_test).float().mean().item()
    result["cheb"] = conformal_report(log_cal, Y_cal, log_test, Y_test, ALPHA_GRID + ALPHAS)
    # The same classifier on the flow's latent H = F(X): what the representation itself costs or buys.
    H_fit, H_cal, H_test = (flow.encode(x) for x in (X_fit, X_cal, X_test))
    cheb_latent = fit_cheb(data, H_fit, Y_fit, max_time=cheb_time)
    result["cheb_latent"] = conformal_report(cheb_latent.log_proba(H_cal), Y_cal, cheb_latent.log_proba(H_test), Y_test,
                                             ALPHA_GRID + ALPHAS)
    # And a graph head like the flow's on the standardised input alone: the head against the representation.
    means, layer = graph_head(data.edge_index, V, C, data.num_classes, flow.config["orders"]).to(flow.dtype)
    S_fit, S_cal, S_test = (means(flow.standardizer(x.to(flow.dtype))) for x in (X_fit, X_cal, X_test))
    fit_softmax(layer, S_fit.flatten(0, 1), Y_fit.flatten())
    result["head_input"] = conformal_report(precise_log_softmax(layer(S_cal)), Y_cal, precise_log_softmax(layer(S_test)), Y_test,
                                            ALPHA_GRID + ALPHAS)
    print(f"{name}: flow {result['flow_blocks']} blocks {result['flow_time']:.0f}s acc {result['flow_acc']:.3f}; "
          f"cheb acc {result['cheb_acc']:.3f} ({result['cheb_time']:.0f}s)", flush=True)
    for a in ALPHAS:
        f, c = result["flow"][a], result["cheb"][a]
        print(f"  alpha {a}: flow cov {f['coverage']:.3f} size {f['size']:.3f} | cheb cov {c['coverage']:.3f} size {c['size']:.3f}", flush=True)
    return result


def three_moons_figure(path: Path, *, quick: bool, max_time: float) -> dict:
    data = D.load("three_moons")
    X, Y = data.X_train, data.Y_train
    if quick:
        X, Y = X[:400], Y[:400]
    X_fit, Y_fit, X_cal, Y_cal = fit_calibration_split(X, Y)
    kwargs = dict(max_epochs=2, num_blocks=2, device="cpu") if quick else dict(device="cpu")
    flow = ConditionalGraphFlow(data.edge_index, 1, 2, 3, seed=0, **kwargs)
    start = time.perf_counter()
    flow.fit(X_fit, Y_fit, max_time=max_time, progress=False)
    elapsed = time.perf_counter() - start
    flow.calibrate(X_cal, Y_cal, alpha=0.1)
    X_test, Y_test = data.X_test[:1000], data.Y_test[:1000]
    colors = ["tab:blue", "tab:orange", "tab:green"]

    fig, axes = plt.subplots(1, 2, figsize=(11, 5), constrained_layout=True)
    x, y = X_test[:, 0, 0], X_test[:, 0, 1]
    lo, hi = X_test[:, 0].min(0).values - 0.5, X_test[:, 0].max(0).values + 0.5
    ax = axes[0]
    for k in range(3):
        keep = Y_test[:, 0] == k
        ax.scatter(x[keep], y[keep], s=4, alpha=0.4, color=colors[k], label=f"class {k}")
        for alpha, style in ((0.1, "-"), (0.01, "--")):
            curve = flow.region_boundary(k, alpha=alpha, num_points=300)
            ax.plot(curve[:, 0], curve[:, 1], style, color=colors[k], lw=1.6)
    ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]))
    ax.set_title("X | Y regions: $F^{-1}$ of the 90% (solid) and 99% (dashed) balls of H | Y", fontsize=10)
    ax.legend(loc="upper right", markerscale=3)

    # Calibrated 90 % sets on a grid: colour of the single label, grey for two or more, white for none.
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 160), torch.linspace(lo[1], hi[1], 160), indexing="xy")
    grid = torch.stack([gx, gy], -1).reshape(-1, 1, 2)
    sets = flow.prediction_sets(grid, 0.1)[:, 0]
    size = sets.sum(-1)
    rgb = np.ones((grid.size(0), 3))
    for k in range(3):
        rgb[(size == 1) & sets[:, k]] = matplotlib.colors.to_rgb(colors[k])
    rgb[size >= 2] = 0.6
    rgb = 0.35 * rgb + 0.65  # pale, so that the data stay visible
    ax = axes[1]
    ax.imshow(rgb.reshape(160, 160, 3), origin="lower", extent=(lo[0], hi[0], lo[1], hi[1]), aspect="auto")
    for k in range(3):
        keep = Y_test[:, 0] == k
        ax.scatter(x[keep], y[keep], s=4, alpha=0.5, color=colors[k])
    cov = set_coverage(flow.prediction_sets(X_test, 0.1), Y_test).float().mean().item()
    ax.set_title(f"Conformal 90% sets (grey: 2+ labels, white: none), test coverage {cov:.3f}", fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return dict(time=elapsed, blocks=flow.num_blocks, coverage=cov, size=flow.prediction_sets(X_test, 0.1).sum(-1).float().mean().item())


def coverage_figure(results: list[dict], path: Path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    for i, r in enumerate(results):
        color = f"C{i}"
        alphas = list(ALPHA_GRID)
        for key, style in (("flow", "-"), ("cheb", ":")):
            cov = [r[key][a]["coverage"] for a in alphas]
            size = [r[key][a]["size"] for a in alphas]
            label = f"{r['name']} ({'flow' if key == 'flow' else 'ChebNet'})"
            axes[0].plot([1 - a for a in alphas], cov, style, color=color, marker="o", ms=3, label=label)
            axes[1].plot([1 - a for a in alphas], size, style, color=color, marker="o", ms=3, label=label)
    axes[0].plot([0.7, 0.98], [0.7, 0.98], "k--", lw=1, label="target")
    axes[0].set(xlabel="1 - alpha", ylabel="test coverage (nodes)", title="Coverage of conformal sets")
    axes[1].set(xlabel="1 - alpha", ylabel="mean set size", title="Mean set size (K = 2)")
    axes[0].legend(fontsize=7)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_markdown(results: list[dict], moons: dict, path: Path, command: str, elapsed: float):
    lines = [
        "# Uncertainty: conformal node-label sets and X-space regions",
        "",
        f"Produced by `{command}` ({elapsed / 60:.1f} min, 1 thread, CPU).",
        "",
        "Protocol: the training split is cut chronologically into 80 % for fitting and 20 % for",
        "calibration; the test split is used only for the numbers below. Both classifiers get the same",
        "split-conformal procedure: LAC scores `-log P(Y_v = y | X)` (equivalent to `1 - P`) of all",
        "nodes of the n calibration graphs pooled, threshold the ceil((n+1) V (1-alpha))-th smallest",
        "of the n V scores, so the guarantee is marginal over nodes whatever the dependence between",
        "the nodes of a graph. Coverage = fraction of test nodes whose set holds",
        "the true label (an empty set is a miss); size = mean number of labels per set.",
        "Flow: `ConditionalGraphFlow` with default settings (the graph head: a softmax layer on the",
        "means of H and of the standardised X, or of X alone, over the 0-, 1- and 2-hop neighbourhoods, `head_input=\"auto\"`),",
        "`fit(max_time=...)`; ChebNet: two",
        "`ChebConv` layers (order 3, 32 hidden, SiLU), cross-entropy, Adam, early stopping.",
        "",
        "## Data and fits",
        "",
        "| dataset | V | C | K | fit / cal / test graphs | flow blocks, time | flow acc | ChebNet acc, time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['name']} | {r['V']} | {r['C']} | {r['K']} | {r['n_fit']} / {r['n_cal']} / {r['n_test']} | "
            f"{r['flow_blocks']}, {r['flow_time']:.0f} s | {r['flow_acc']:.3f} | {r['cheb_acc']:.3f}, {r['cheb_time']:.0f} s |"
        )
    lines += [
        "",
        "## Coverage and set size on the test split",
        "",
        "Target band for the simulated graphs: [1 - alpha - 0.02, 1 - alpha + 0.04].",
        "",
        "| dataset | alpha | flow coverage | flow size | flow empty | ChebNet coverage | ChebNet size | ChebNet empty | in band (flow) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for a in ALPHAS:
            f, c = r["flow"][a], r["cheb"][a]
            ok = 1 - a - 0.02 <= f["coverage"] <= 1 - a + 0.04
            band = ("yes" if ok else "no") if r["name"] in SIMULATED else "n/a (real)"
            lines.append(
                f"| {r['name']} | {a} | {f['coverage']:.3f} | {f['size']:.3f} | {f['empty']:.3f} | "
                f"{c['coverage']:.3f} | {c['size']:.3f} | {c['empty']:.3f} | {band} |"
            )
    lines += NOTES.splitlines()
    lines += [
        "",
        "## Set size at equal coverage",
        "",
        "The two classifiers reach slightly different coverages at the same alpha, so sizes are compared",
        "at the ChebNet's test coverage: the flow's size there is interpolated along its own",
        f"(coverage, size) curve over {len(ALPHA_GRID) + len(ALPHAS)} values of alpha in [0.02, 0.3].",
        "",
        "Last three columns, at the same coverage: the same flow's mixture Bayes rule",
        "(`classifier=\"bayes\"`) instead of the default graph head; the ChebNet classifier",
        "trained on the flow's latent `H = F(X)` instead of on `X` (same recipe); and a graph head like",
        "the flow's (hop means and a softmax layer, fitted the same way) on the standardised input `X`",
        "alone. Where the two heads on `H` are larger than their counterparts on `X`, the latent itself",
        "is the weaker representation for the test period, whatever head is put on it.",
        "",
        "| dataset | alpha | ChebNet coverage | ChebNet size | flow size at that coverage | flow no larger | Bayes rule size | ChebNet on H size | graph head on X size |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for a in ALPHAS:
            coverage = r["cheb"][a]["coverage"]
            others = (size_at_coverage(r[key], coverage) for key in ("bayes", "cheb_latent", "head_input"))
            lines.append(f"| {r['name']} | {a} | {equal_coverage_cells(r['flow'], r['cheb'][a])} | " + " | ".join(f"{s:.3f}" for s in others) + " |")
    lines += [
        "",
        "Flows trained with the classification loss (`classification_weight`, the cross-entropy of the",
        "mixture's Bayes rule added to every block's JKO objective; predictions from the default graph",
        "head), real series, same protocol:",
        "",
        "| dataset | classification_weight | flow acc | alpha | ChebNet coverage | ChebNet size | flow size at that coverage | flow no larger |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for weight, w in r["weighted"].items():
            for a in ALPHAS:
                lines.append(f"| {r['name']} | {weight:g} | {w['acc']:.3f} | {a} | {equal_coverage_cells(w['report'], r['cheb'][a])} |")
    lines += [
        "",
        "## Per-node coverage: pooled vs per-node calibration (flow)",
        "",
        "Range over nodes of the per-node test coverage. Pooled calibration guarantees coverage only",
        "marginally over nodes; per-node calibration (`calibrate(..., per_node=True)`) gives every",
        "node its own quantile from its own calibration scores.",
        "",
        "| dataset | alpha | pooled: coverage, [min, max] over nodes, size | per node: coverage, [min, max], size |",
        "|---|---|---|---|",
    ]
    for r in results:
        for a in ALPHAS:
            p, q = r["flow_api"][a], r["flow_per_node"][a]
            lines.append(
                f"| {r['name']} | {a} | {p['coverage']:.3f}, [{p['node_min']:.3f}, {p['node_max']:.3f}], {p['size']:.3f} | "
                f"{q['coverage']:.3f}, [{q['node_min']:.3f}, {q['node_max']:.3f}], {q['size']:.3f} |"
            )
    lines += [
        "",
        "## Uncalibrated Gaussian confidence-region sets and X-space regions (flow)",
        "",
        "Gaussian sets: `{k : d_vk^2 <= q_v}` without calibration (`d_vk` the distance of H_v to class k under",
        "the node's fitted covariance, `q_v` the chi2_C(1 - alpha) quantile, or its quantile over draws of a mixture noise);",
        "their coverage is nominal only as far as the fitted flow maps X | Y onto the Gaussian latent.",
        "In-region: fraction of the model's own samples `sample(Y_test)` inside the joint",
        "(1 - alpha) region `in_region(X, Y, alpha)` (should be 1 - alpha up to ODE inversion error),",
        "and fraction of the test nodes inside their node-wise region (`joint=False`).",
        "",
        "| dataset | alpha | Gaussian-set coverage | Gaussian-set size | model samples in joint region | test nodes in node region |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for a in ALPHAS:
            g = r["gauss"][a]
            lines.append(
                f"| {r['name']} | {a} | {g['coverage']:.3f} | {g['size']:.3f} | {r['in_region'][a]:.3f} | {r['in_region_data'][a]:.3f} |"
            )
    lines += [
        "",
        "## Three moons",
        "",
        f"Flow fit: {moons['blocks']} blocks in {moons['time']:.0f} s; conformal 90 % sets on 1000 test points:",
        f"coverage {moons['coverage']:.3f}, mean size {moons['size']:.3f}.",
        "",
        "![three moons](../figures/uncertainty_three_moons.png)",
        "",
        "![coverage vs alpha](../figures/uncertainty_coverage.png)",
        "",
    ]
    path.write_text("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run on small subsets")
    parser.add_argument("--max-time", type=float, default=120.0, help="seconds per flow fit")
    parser.add_argument("--cheb-time", type=float, default=30.0, help="seconds per ChebNet fit")
    parser.add_argument("--out", type=Path, default=None, help="output root (default: benchmarks/, a temp dir with --quick)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = args.out or (Path(tempfile.mkdtemp()) if args.quick else ROOT)
    (root / "results").mkdir(parents=True, exist_ok=True)
    (root / "figures").mkdir(parents=True, exist_ok=True)
    max_time = 10.0 if args.quick else args.max_time
    cheb_time = 5.0 if args.quick else args.cheb_time
    start = time.perf_counter()
    results = [run_dataset(n, o, quick=args.quick, max_time=max_time, cheb_time=cheb_time) for n, o in DATASETS.items()]
    moons = three_moons_figure(root / "figures" / "uncertainty_three_moons.png", quick=args.quick, max_time=max_time)
    coverage_figure(results, root / "figures" / "uncertainty_coverage.png")
    command = "python benchmarks/uncertainty.py" + (" --quick" if args.quick else "")
    write_markdown(results, moons, root / "results" / "uncertainty.md", command, time.perf_counter() - start)
    print(f"wrote {root / 'results' / 'uncertainty.md'} in {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
