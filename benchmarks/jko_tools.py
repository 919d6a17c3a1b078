r"""The JKO trajectory tools, measured: W2 per block, reparameterization, refinement, memory, speed.

Three measurements, all on the CPU with one thread per process:

1. **Trajectory** (``linear_gaussian`` and ``solar_sim``): a default ``ConditionalGraphFlow``
   (time-capped), its W2 movement per block ``E||T_k(x) - x||^2`` on the training data, the
   same after each round of ``reparameterize`` (up to three, until the max/min ratio is at
   most 2), and after ``refine(factor=2)``; the test NLL per dimension (exact trace
   on a fixed test subset) before and after. Figure ``figures/jko_w2.png``.
2. **Memory in depth**: peak RSS of block-wise JKO training with 2, 8 and 16 blocks, each in a
   fresh subprocess, against end-to-end training of the same chain of blocks (every block's
   autograd graph held at once). Figure ``figures/jko_memory.png``.
3. **Speed** (``solar_sim`` and ``traffic``): block-wise JKO (default ``ConditionalGraphFlow``)
   vs the end-to-end discrete iGNN (``IGNNBaseline``) vs an end-to-end CNF of the same ODE
   blocks (Adam on the exact-likelihood objective with a Hutchinson trace), each under the same
   time cap; snapshots of the parameters are taken every few seconds of training and scored
   afterwards on a fixed test subset, so that scoring costs no training time. Reports optimizer
   steps and wall time until the test NLL first reaches a common target (the worst of the three
   final NLLs). Figure ``figures/jko_speed.png``.

Usage::

    python benchmarks/jko_tools.py            # about 20 minutes; writes results/jko_tools.md and figures/jko_*.png
    python benchmarks/jko_tools.py --quick    # smoke run (under 2 minutes), written under /tmp/jko_tools_quick
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _memory import peak_rss_mb

HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def make_flow(data, **overrides):
    from igraphflow import ConditionalGraphFlow

    settings = dict(seed=0, device="cpu")
    settings.update(overrides)
    return ConditionalGraphFlow(data.edge_index, data.num_nodes, data.num_features, data.num_classes, **settings)


def end_to_end_loss(blocks, latent, x, y, generator=None, barrier_weight: float = 0.0):
    r"""``-(log p(F(x) | y) + sum_k logdet_k) / D`` with every block's graph kept (one Hutchinson probe per block)."""
    h, logdet = x, x.new_zeros(x.size(0))
    for block in blocks:
        noise = None
        if generator is not None:
            noise = (2 * torch.randint(0, 2, h.shape, generator=generator) - 1).to(h)
        h, step = block.transform(h, divergence="hutchinson", noise=noise)
        logdet = logdet + step
    dims = x[0].numel()
    loss = -(latent.log_prob(h, y) + logdet).mean() / dims
    if barrier_weight:
        loss = loss + barrier_weight * latent.barrier() / dims
    return loss


@torch.no_grad()
def flow_nll(blocks, latent, X, Y, *, probes: int = 2, seed: int = 0, batch_size: int = 512) -> float:
    r"""Test NLL per dimension of a chain of ODE blocks, Hutchinson trace averaged over ``probes`` fixed probes."""
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for x0, y in zip(X.split(batch_size), Y.split(batch_size)):
        logdet = torch.zeros(x0.size(0))
        for p in range(probes):
            x = x0
            for block in blocks:
                noise = (2 * torch.randint(0, 2, x.shape, generator=generator) - 1).to(x)
                x, step = block.transform(x, divergence="hutchinson", noise=noise)
                logdet += step / probes
        total += -(latent.log_prob(x, y) + logdet).sum().item()
    return total / (X.size(0) * X[0].numel())


def exact_or_hutchinson_nll(model, X, Y) -> tuple[float, str]:
    r"""Test NLL per dimension by ``model.log_prob``: exact when ``V * C <= 64``, else Hutchinson."""
    dims = X[0].numel()
    exact = dims <= 64
    return -model.log_prob(X, Y, exact=exact).mean().item() / dims, "exact" if exact else "hutchinson"


# ----------------------------------------------------------------------------------------------
# 2. Memory: one child process per (method, depth)
# ----------------------------------------------------------------------------------------------


def memory_child(method: str, blocks: int, data_path: str, batch_size: int, iterations: int) -> None:
    torch.set_num_threads(1)
    payload = torch.load(data_path)
    from types import SimpleNamespace

    data = SimpleNamespace(**payload)
    model = make_flow(data, num_blocks=blocks, batch_size=batch_size, max_epochs=1)
    base = peak_rss_mb()
    started = time.monotonic()
    if method == "jko":
        model.fit(data.X, data.Y, max_time=600, progress=False)
        trained = len(model.history_)
        steps = sum(len(r.train_loss) for r in model.history_)
    else:
        optimizer = torch.optim.Adam(list(model.blocks.parameters()) + list(model.latent.parameters()), lr=2e-3)
        generator = torch.Generator().manual_seed(0)
        x, y = data.X[:batch_size], data.Y[:batch_size]
        for _ in range(iterations):
            loss = end_to_end_loss(model.blocks, model.latent, x, y, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        trained, steps = len(model.blocks), iterations
    print(json.dumps(dict(
        method=method, blocks=blocks, trained=trained, steps=steps, base_mib=base,
        peak_mib=peak_rss_mb(), seconds=time.monotonic() - started,
    )), flush=True)


def run_memory(cfg: dict) -> list[dict]:
    from igraphflow.datasets import load

    data = load(cfg["memory_dataset"])
    batch = cfg["memory_batch"]
    # So that the training split holds exactly one batch (validation takes 10%).
    n = int(math.ceil(batch / 0.9)) + 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.pt")
        torch.save(dict(X=data.X_train[:n].clone(), Y=data.Y_train[:n].clone(), edge_index=data.edge_index,
                        num_nodes=data.num_nodes, num_features=data.num_features, num_classes=data.num_classes), path)
        for method in ("jko", "e2e"):
            for depth in cfg["memory_depths"]:
                command = [sys.executable, __file__, "--memory-child", method, str(depth), path, str(batch), str(cfg["memory_iterations"])]
                out = subprocess.run(command, capture_output=True, text=True, timeout=cfg["memory_timeout"])
                if out.returncode != 0:
                    log(f"memory child {method} {depth} failed: {out.stderr[-2000:]}")
                    rows.append(dict(method=method, blocks=depth, failed=out.returncode))
                    continue
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                log(f"memory {method:3s} blocks={depth:2d}: peak {row['peak_mib']:.0f} MiB (base {row['base_mib']:.0f}), {row['seconds']:.1f} s")
    return rows


# ----------------------------------------------------------------------------------------------
# 3. Speed: JKO vs iGNN vs end-to-end CNF, snapshots every few seconds of training
# ----------------------------------------------------------------------------------------------


class Snapshots:
    r"""Parameter snapshots, taken at most every ``every`` seconds, with the step count and the time."""

    def __init__(self, every: float):
        self.every, self.items, self.steps, self.start, self.last = every, [], 0, time.perf_counter(), -math.inf

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def maybe(self, state_fn, force: bool = False):
        now = self.elapsed()
        if force or now - self.last >= self.every:
            self.items.append(dict(seconds=now, steps=self.steps, state=state_fn()))
            self.last = now


def speed_jko(data, split, X_eval, Y_eval, budget: float, every: float, probes: int) -> dict:
    r"""Default ``ConditionalGraphFlow``; snapshots of (block index, block state, latent state) during training."""
    import igraphflow.jko as jko

    model = make_flow(data)
    snaps = Snapshots(every)
    original = jko.jko_objective

    def counted(block, latent, x, y, **kwargs):
        if torch.is_grad_enabled():  # a training step (validation runs without gradients)
            index = next(i for i, b in enumerate(model.blocks) if b is block)
            snaps.maybe(lambda: (index, copy.deepcopy(block.state_dict()), copy.deepcopy(latent.state_dict())))
            snaps.steps += 1
        return original(block, latent, x, y, **kwargs)

    jko.jko_objective = counted
    try:
        snaps.start = time.perf_counter()
        model.fit(data.X_train, data.Y_train, max_time=budget, progress=False)
        seconds = snaps.elapsed()
    finally:
        jko.jko_objective = original
    curve = []
    scratch = copy.deepcopy(model)
    for item in snaps.items:
        index, block_state, latent_state = item["state"]
        scratch.blocks[index].load_state_dict(block_state)
        scratch.latent.load_state_dict(latent_state)
        nll = flow_nll(scratch.blocks[: index + 1], scratch.latent, X_eval, Y_eval, probes=probes)
        scratch.blocks[index].load_state_dict(model.blocks[index].state_dict())
        curve.append(dict(seconds=item["seconds"], steps=item["steps"], nll=nll, blocks=index + 1))
    final = flow_nll(model.blocks, model.latent, X_eval, Y_eval, probes=probes)
    curve.append(dict(seconds=seconds, steps=snaps.steps, nll=final, blocks=model.num_blocks))
    epochs = [len(r.train_loss) for r in model.history_]
    return dict(method="JKO (block-wise)", curve=curve, final=final, seconds=seconds, steps=snaps.steps,
                detail=f"{model.num_blocks} blocks, epochs per block {epochs}")


def speed_cnf(data, split, X_eval, Y_eval, budget: float, every: float, probes: int) -> dict:
    r"""The same chain of ODE blocks trained end to end with Adam on the likelihood, to the time cap."""
    from igraphflow.jko import auto_batch_size

    model = make_flow(data)
    model.latent.set_prior(split.y)
    c = model.config
    parameters = list(model.blocks.parameters()) + list(model.latent.parameters())
    optimizer = torch.optim.Adam(parameters, lr=c["lr"])
    generator = torch.Generator().manual_seed(0)
    x_train, y_train = split.x, split.y
    snaps = Snapshots(every)
    epochs = 0
    done = False
    batch_size = auto_batch_size(x_train.size(0)) if c["batch_size"] == "auto" else c["batch_size"]
    while not done:
        order = torch.randperm(x_train.size(0), generator=generator)
        for batch in order.split(batch_size):
            snaps.maybe(lambda: copy.deepcopy(model.state_dict()))
            loss = end_to_end_loss(model.blocks, model.latent, x_train[batch], y_train[batch], generator,
                                   barrier_weight=c["barrier_weight"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 10.0)
            optimizer.step()
            model.latent.project_()
            snaps.steps += 1
            if snaps.elapsed() >= budget:
                done = True
                break
        epochs += 1
    seconds = snaps.elapsed()
    final_state = copy.deepcopy(model.state_dict())
    curve = []
    for item in snaps.items:
        model.load_state_dict(item["state"])
        curve.append(dict(seconds=item["seconds"], steps=item["steps"], nll=flow_nll(model.blocks, model.latent, X_eval, Y_eval, probes=probes)))
    model.load_state_dict(final_state)
    final = flow_nll(model.blocks, model.latent, X_eval, Y_eval, probes=probes)
    curve.append(dict(seconds=seconds, steps=snaps.steps, nll=final))
    return dict(method="CNF (end-to-end)", curve=curve, final=final, seconds=seconds, steps=snaps.steps,
                detail=f"{model.num_blocks} blocks, {epochs} epochs (last partial), last state kept")


def speed_ignn(data, split, X_eval, Y_eval, budget: float, every: float, probes: int) -> dict:
    r"""``IGNNBaseline`` with default settings; its training steps are counted and its parameters snapshot."""
    import igraphflow.baselines._common as common
    from igraphflow.baselines import IGNNBaseline

    # Default settings except the validation passes of early stopping, which use the training
    # log-det estimator (power series) instead of the exact one: the exact log-det of a validation
    # batch of 1024 samples holds 1024 * D copies at once (about 14 GB on solar_sim).
    model = IGNNBaseline(data.edge_index, data.num_nodes, data.num_features, data.num_classes, seed=0,
                         eval_exact_max_dim=16)
    snaps = Snapshots(every)
    validation = [0.0]
    original = common.train_loop

    def instrumented(step, evaluate, module, **kwargs):
        def counted_step(idx):
            snaps.maybe(lambda: copy.deepcopy(module.state_dict()))
            out = step(idx)
            snaps.steps += 1
            return out

        def timed_evaluate():
            started = time.perf_counter()
            try:
                return evaluate()
            finally:
                validation[0] += time.perf_counter() - started

        return original(counted_step, timed_evaluate if evaluate is not None else None, module, **kwargs)

    common.train_loop = instrumented
    try:
        snaps.start = time.perf_counter()
        model.fit(data.X_train, data.Y_train, max_time=budget, progress=False)
        seconds = snaps.elapsed()
    finally:
        common.train_loop = original
    final_state = copy.deepcopy(model.model_.state_dict())
    dims = data.num_nodes * data.num_features

    def nll() -> float:
        # The exact log-determinant, a few samples at a time (each is expanded into D copies).
        return -torch.cat([model.log_prob(x, y, exact=True) for x, y in zip(X_eval.split(32), Y_eval.split(32))]).mean().item() / dims

    curve = []
    for item in snaps.items:
        model.model_.load_state_dict(item["state"])
        curve.append(dict(seconds=item["seconds"], steps=item["steps"], nll=nll()))
    model.model_.load_state_dict(final_state)
    final = nll()
    curve.append(dict(seconds=seconds, steps=snaps.steps, nll=final))
    epochs = len(model.history_) - 1
    return dict(method="iGNN (end-to-end, discrete)", curve=curve, final=final, seconds=seconds, steps=snaps.steps,
                detail=f"{model.blocks} blocks, {epochs} epochs, best epoch {model.best_epoch_} restored; "
                       f"{validation[0]:.0f} s of the time in its validation passes")


def first_below(curve: list[dict], target: float):
    for point in curve:
        if point["nll"] <= target + 1e-9:
            return point
    return None


def run_speed(cfg: dict) -> dict:
    from igraphflow.datasets import load

    out = {}
    for name in cfg["speed_datasets"]:
        data = load(name)
        n_eval = min(cfg["speed_eval"], data.X_test.size(0))
        generator = torch.Generator().manual_seed(1)
        rows = torch.randperm(data.X_test.size(0), generator=generator)[:n_eval]
        X_eval, Y_eval = data.X_test[rows], data.Y_test[rows]
        split = make_flow(data)._split(data.X_train, data.Y_train)
        budget = cfg["speed_budget"][name]
        results = []
        for runner in (speed_jko, speed_ignn, speed_cnf):
            started = time.monotonic()
            result = runner(data, split, X_eval, Y_eval, budget, cfg["snapshot_every"][name], cfg["probes"])
            log(f"speed {name} {result['method']}: final NLL/dim {result['final']:.4f}, {result['steps']} steps, "
                f"{result['seconds']:.0f} s training ({time.monotonic() - started:.0f} s with scoring)")
            results.append(result)
        target = max(r["final"] for r in results)
        for r in results:
            hit = first_below(r["curve"], target)
            r["best"] = min(p["nll"] for p in r["curve"])
            r["to_target"] = None if hit is None else (hit["steps"], hit["seconds"])
        out[name] = dict(results=results, target=target, budget=budget, n_eval=n_eval,
                         dims=data.num_nodes * data.num_features, n_train=split.x.size(0))
    return out


# ----------------------------------------------------------------------------------------------
# 1. Trajectory tools: W2 per block, reparameterize, refine
# ----------------------------------------------------------------------------------------------


def ratio(w2: list[float]) -> float:
    return max(w2) / max(min(w2), 1e-12)


def run_trajectory(cfg: dict) -> dict:
    from igraphflow.datasets import load

    out = {}
    for name, options in cfg["trajectory_datasets"].items():
        data = load(name, **options)
        dims = data.num_nodes * data.num_features
        # A fixed random test subset (the test sets of the time series are in time order).
        rows = torch.randperm(data.X_test.size(0), generator=torch.Generator().manual_seed(2))[: cfg["trajectory_eval"][name]]
        X_eval, Y_eval = data.X_test[rows], data.Y_test[rows]
        caps = cfg["trajectory_caps"][name]
        stages = []

        def record(label: str, model, seconds: float, evaluate: bool = True):
            started = time.monotonic()
            w2 = model.w2_per_block(data.X_train, data.Y_train)
            row = dict(stage=label, blocks=model.num_blocks, steps=[b.step_size for b in model.blocks],
                       w2=[w / dims for w in w2], ratio=ratio(w2), seconds=seconds, nll=None)
            if evaluate:
                row["nll"], row["estimator"] = exact_or_hutchinson_nll(model, X_eval, Y_eval)
            stages.append(row)
            nll = "-" if row["nll"] is None else f"{row['nll']:.4f}"
            log(f"trajectory {name} {label}: blocks={row['blocks']} W2 max/min={row['ratio']:.2f} NLL/dim={nll} "
                f"(train {seconds:.0f} s, scoring {time.monotonic() - started:.0f} s)")

        model = make_flow(data)
        started = time.monotonic()
        model.fit(data.X_train, data.Y_train, max_time=caps["fit"], progress=False)
        seconds = time.monotonic() - started
        record("default fit", model, seconds)
        for round_ in range(1, cfg["max_rounds"] + 1):
            started = time.monotonic()
            model.reparameterize(data.X_train, data.Y_train, max_time=caps["reparameterize"], progress=False)
            record(f"reparameterize x{round_}", model, time.monotonic() - started, evaluate=False)
            if stages[-1]["ratio"] <= 2.0:
                break
        # Score the model that goes into the refinement.
        stages[-1]["nll"], stages[-1]["estimator"] = exact_or_hutchinson_nll(model, X_eval, Y_eval)
        before_refine = stages[-1]["nll"]
        started = time.monotonic()
        model.refine(data.X_train, data.Y_train, factor=2, max_time=caps["refine"], progress=False)
        record("refine(factor=2)", model, time.monotonic() - started)
        true = None
        if data.true_log_prob is not None:
            true = -data.true_log_prob(X_eval, Y_eval).mean().item() / dims
        out[name] = dict(stages=stages, dims=dims, n_eval=X_eval.size(0), true_nll=true, caps=caps,
                         refine_ok=stages[-1]["nll"] <= before_refine)
    return out


# ----------------------------------------------------------------------------------------------
# Figures and report
# ----------------------------------------------------------------------------------------------


def figures(trajectory: dict, memory: list[dict], speed: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(trajectory), figsize=(5.5 * len(trajectory), 4), squeeze=False)
    for ax, (name, result) in zip(axes[0], trajectory.items()):
        for row, marker in zip(result["stages"], "osd^v"):
            ends = torch.tensor(row["steps"]).cumsum(0).tolist()
            ax.plot(ends, row["w2"], marker=marker, label=f"{row['stage']} ({row['blocks']} blocks, max/min {row['ratio']:.1f})")
        ax.set_yscale("log")
        ax.set_xlabel("block end time $t_k$")
        ax.set_ylabel("W2 movement per dimension, $E\\|T_k(x)-x\\|^2 / D$")
        ax.set_title(name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "jko_w2.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for method, label in (("jko", "block-wise JKO"), ("e2e", "end-to-end (same blocks)")):
        rows = [r for r in memory if r["method"] == method and "peak_mib" in r]
        ax.plot([r["blocks"] for r in rows], [r["peak_mib"] for r in rows], marker="o", label=label)
    ax.set_xlabel("number of ODE blocks")
    ax.set_ylabel("peak RSS (MiB)")
    ax.legend()
    ax.set_title("Training memory vs depth (CPU)")
    fig.tight_layout()
    fig.savefig(folder / "jko_memory.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(speed), figsize=(5.5 * len(speed), 4), squeeze=False)
    for ax, (name, result) in zip(axes[0], speed.items()):
        for r in result["results"]:
            ax.plot([p["seconds"] for p in r["curve"]], [p["nll"] for p in r["curve"]], marker=".", label=r["method"])
        ax.axhline(result["target"], color="grey", ls="--", lw=1, label="target")
        ax.set_xlabel("training wall time (s)")
        ax.set_ylabel("test NLL per dimension")
        ax.set_title(name)
        values = [p["nll"] for r in result["results"] for p in r["curve"]]
        low = min(values)
        ax.set_ylim(low - 0.05, min(max(values), low + 3.0))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "jko_speed.png", dpi=120)
    plt.close(fig)


def fmt_list(values, digits=3) -> str:
    return ", ".join(f"{v:.{digits}g}" for v in values)


def report(cfg, trajectory, memory, speed, seconds, load_avg, command) -> str:
    lines = [
        "# JKO trajectory tools: W2 per block, reparameterization, refinement, memory, speed",
        "",
        f"Command: `{command}` (total {seconds / 60:.1f} min).",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores visible, "
        f"`torch.set_num_threads(1)` in every process, torch {torch.__version__}, CPU only. "
        f"Load average (1 min) {load_avg[0]:.1f} at the start and {load_avg[1]:.1f} at the end: "
        "other jobs shared the CPU, so wall times are inflated and noisy (every method ran under the "
        "same conditions, one after another).",
        "",
    ]

    # 1. Trajectory
    lines += ["## 1. W2 per block, reparameterization and refinement", ""]
    lines += [
        "Default `ConditionalGraphFlow` (6 blocks, geometric steps h_k = 0.25 * 1.5^k, L3Net, "
        "40 epochs/patience 5 per block) under a time cap, then `reparameterize` (repeated, up to 3 "
        "rounds, while the max/min W2 ratio is above 2), then `refine(factor=2)`. W2 = `w2_per_block` on "
        "the training data, divided by D = V*C. Test NLL per dimension by `log_prob` (exact trace, "
        "D <= 64) on a fixed random subset of the test samples, the same at every stage.",
        "",
    ]
    for name, result in trajectory.items():
        caps = result["caps"]
        lines += [
            f"### {name} (D = {result['dims']}, {result['n_eval']} test samples scored; caps: fit {caps['fit']} s, "
            f"reparameterize {caps['reparameterize']} s per round, refine {caps['refine']} s)",
            "",
            "| stage | blocks | step sizes h_k | W2/D per block | max/min | test NLL/dim | train s |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in result["stages"]:
            nll = "-" if row["nll"] is None else f"{row['nll']:.4f}"
            lines.append(f"| {row['stage']} | {row['blocks']} | {fmt_list(row['steps'], 2)} | {fmt_list(row['w2'], 2)} | "
                         f"{row['ratio']:.2f} | {nll} | {row['seconds']:.0f} |")
        if result["true_nll"] is not None:
            lines.append(f"\nTrue NLL/dim of these test samples (known density): {result['true_nll']:.4f}.")
        reps = [r for r in result["stages"] if r["stage"].startswith("reparameterize")]
        passed = reps[-1]["ratio"] <= 2.0
        lines += [
            "",
            f"- max/min W2 after reparameterization <= 2: **{'pass' if passed else 'fail'}** "
            f"({' -> '.join(f'{r:.2f}' for r in [result['stages'][0]['ratio']] + [r['ratio'] for r in reps])}, "
            f"{len(reps)} round{'s' if len(reps) > 1 else ''}).",
            f"- refine(2) doubles the blocks ({reps[-1]['blocks']} -> {result['stages'][-1]['blocks']}) and the test NLL "
            f"does not get worse: **{'pass' if result['refine_ok'] else 'fail'}** "
            f"({reps[-1]['nll']:.4f} -> {result['stages'][-1]['nll']:.4f}).",
            "",
        ]
    lines += ["![jko_w2](../figures/jko_w2.png)", ""]  # the figures beside these results

    # 2. Memory
    mem = cfg["memory_dataset"]
    lines += [
        "## 2. Peak memory vs depth",
        "",
        f"Graph of `{mem}`; one batch of {cfg['memory_batch']} samples (the JKO fit gets exactly one "
        f"training batch per block and one epoch; end-to-end: {cfg['memory_iterations']} Adam steps on "
        "`-(log p(h|y) + sum_k logdet_k)` with every `block.transform(x, divergence=\"hutchinson\")` in "
        "sequence). Each run in a fresh subprocess; peak = `ru_maxrss` of the child at the end; base = "
        "`ru_maxrss` after imports, data and model construction.",
        "",
        f"| method | blocks | base MiB | peak MiB | peak - base MiB | peak / peak({min(cfg['memory_depths'])} blocks) | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in ("jko", "e2e"):
        rows = [r for r in memory if r["method"] == method and "peak_mib" in r]
        if not rows:
            continue
        ref = rows[0]["peak_mib"]
        for r in rows:
            lines.append(f"| {'block-wise JKO' if method == 'jko' else 'end-to-end'} | {r['blocks']} | {r['base_mib']:.0f} | "
                         f"{r['peak_mib']:.0f} | {r['peak_mib'] - r['base_mib']:.0f} | {r['peak_mib'] / ref:.2f} | {r['seconds']:.1f} |")
    jko_rows = [r for r in memory if r["method"] == "jko" and "peak_mib" in r]
    if jko_rows:
        worst = max(r["peak_mib"] for r in jko_rows) / jko_rows[0]["peak_mib"]
        lines += ["", f"- block-wise JKO peak within 1.2x of {jko_rows[0]['blocks']} blocks: "
                      f"**{'pass' if worst <= 1.2 else 'fail'}** (largest ratio {worst:.2f}).", ""]
    failed = [r for r in memory if "failed" in r]
    if failed:
        lines += [f"- failed runs: {failed}", ""]
    lines += ["![jko_memory](../figures/jko_memory.png)", ""]  # the figures beside these results

    # 3. Speed
    lines += [
        "## 3. Steps and wall time to a target test NLL",
        "",
        "Each method trains on the same data under the same time cap. JKO: default "
        "`ConditionalGraphFlow.fit(max_time=cap)` (the cap is shared among the blocks; after block k "
        "the first k blocks are a complete flow, so a snapshot during block k is scored with blocks 1..k). "
        "iGNN: default `IGNNBaseline.fit(max_time=cap)` (6 contractive residual L3Net blocks, series "
        "log-det in training and, here, in its validation passes too (`eval_exact_max_dim=16`: the default exact "
        "validation log-det holds 1024 * D copies of the inputs at once, ~14 GB on `solar_sim`, and was killed "
        "by the OOM killer on this shared machine), best validation epoch restored). CNF: the 6 blocks of a default "
        "`ConditionalGraphFlow` (same initialisation as the JKO run) trained jointly with Adam "
        "(lr 2e-3, the same automatic batch size as the JKO run, gradient clip 10, same barrier on the means) on "
        "`-(log p(F(x)|y) + sum_k logdet_k)/D`, no early stopping, the last state kept. Steps = optimizer "
        "steps (counted by wrapping the training step). Wall time = time since the start of `fit` "
        "(includes each method's own validation passes; parameter snapshots cost milliseconds; scoring of "
        "the snapshots is done afterwards). Test NLL per dimension on a fixed random test subset: "
        f"ODE flows by the Hutchinson trace averaged over {cfg['probes']} fixed Rademacher probes "
        "(unbiased), iGNN by its exact log-determinant. **Target rule: the worst of the three final "
        "test NLLs**; a method reaches it at its first snapshot at or below it (resolution = the "
        "snapshot interval).",
        "",
    ]
    for name, result in speed.items():
        lines += [
            f"### {name} (D = {result['dims']}, {result['n_train']} training samples, cap {result['budget']} s, "
            f"snapshots every {cfg['snapshot_every'][name]} s, {result['n_eval']} test samples; target {result['target']:.4f})",
            "",
            "| method | final NLL/dim | best NLL/dim on the curve | steps in cap | wall s | steps to target | wall s to target | notes |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in result["results"]:
            hit = r["to_target"]
            steps, secs = ("not reached", "-") if hit is None else (str(hit[0]), f"{hit[1]:.0f}")
            lines.append(f"| {r['method']} | {r['final']:.4f} | {r['best']:.4f} | {r['steps']} | {r['seconds']:.0f} | "
                         f"{steps} | {secs} | {r['detail']} |")
        lines.append("")
    lines += ["![jko_speed](../figures/jko_speed.png)", ""]  # the figures beside these results
    lines += ["## Caveats", ""] + [f"- {c}" for c in cfg["caveats"]] + [""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------


def config(quick: bool) -> dict:
    caveats = [
        "Every fit is time-capped, so the models are far from converged on `solar_sim` "
        "(a few epochs per block or per model); the comparisons are at equal, "
        "short budgets, not at convergence.",
        "The CPU was shared with other jobs; wall times vary by tens of percent between runs.",
        "Snapshot-based curves have the resolution of the snapshot interval; steps/time to target "
        "are upper bounds within one interval.",
    ]
    if quick:
        return dict(
            memory_dataset="traffic", memory_batch=32, memory_depths=[1, 2], memory_iterations=1, memory_timeout=120,
            speed_datasets=["traffic"], speed_budget={"traffic": 6}, snapshot_every={"traffic": 2.0}, speed_eval=64,
            probes=1, trajectory_datasets={"linear_gaussian": dict(num_train=400, num_test=64)},
            trajectory_caps={"linear_gaussian": dict(fit=6, reparameterize=4, refine=6)},
            trajectory_eval={"linear_gaussian": 32}, max_rounds=2, caveats=["Smoke run (--quick): numbers are meaningless."],
        )
    return dict(
        memory_dataset="solar_sim", memory_batch=256, memory_depths=[2, 8, 16], memory_iterations=2, memory_timeout=900,
        speed_datasets=["solar_sim", "traffic"], speed_budget={"solar_sim": 100, "traffic": 60},
        snapshot_every={"solar_sim": 10.0, "traffic": 5.0}, speed_eval=300, probes=2,
        trajectory_datasets={"linear_gaussian": {}, "solar_sim": {}},
        trajectory_caps={"linear_gaussian": dict(fit=60, reparameterize=45, refine=90),
                         "solar_sim": dict(fit=240, reparameterize=120, refine=180)},
        trajectory_eval={"linear_gaussian": 500, "solar_sim": 128}, max_rounds=3, caveats=caveats,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (< 2 min), written under /tmp/jko_tools_quick")
    parser.add_argument("--only", action="append", choices=("memory", "speed", "trajectory"),
                        help="rerun this part only (repeatable); the others are read from results/jko_tools.json")
    parser.add_argument("--memory-child", nargs=5, metavar=("METHOD", "BLOCKS", "DATA", "BATCH", "ITERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.memory_child:
        method, blocks, path, batch, iters = args.memory_child
        memory_child(method, int(blocks), path, int(batch), int(iters))
        return
    cfg = config(args.quick)
    out = Path("/tmp/jko_tools_quick") if args.quick else HERE
    saved = out / "results" / "jko_tools.json"
    parts = json.loads(saved.read_text()) if args.only else {}
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    runners = {"memory": run_memory, "speed": run_speed, "trajectory": run_trajectory}
    for part, runner in runners.items():
        if not args.only or part in args.only:
            parts[part] = runner(cfg)
            log(f"{part}: {json.dumps(parts[part])}")
    (out / "results").mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(parts))
    memory, speed, trajectory = parts["memory"], parts["speed"], parts["trajectory"]
    seconds = time.monotonic() - started
    command = "python benchmarks/jko_tools.py" + (" --quick" if args.quick else "") + "".join(f" --only {p}" for p in args.only or [])
    figures(trajectory, memory, speed, out / "figures")
    text = report(cfg, trajectory, memory, speed, seconds, (load_start, os.getloadavg()[0]), command)
    (out / "results" / "jko_tools.md").write_text(text)
    print(text)
    log(f"done in {seconds / 60:.1f} min; written under {out}")


if __name__ == "__main__":
    main()
