r"""Runs the quality and scaling benchmarks and writes ``benchmarks/BENCHMARKS.md``.

* quality against the peers (``peers.py``): NLL gap to the truth, training time and peak
  memory of igraphflow, zuko's NSF, FrEIA's cINN and the discrete iGNN on simulated graphs
  with known density;
* scaling (``scaling.py``): time and peak memory per training iteration on grid and
  chordal-cycle graphs of 100 to 100k nodes with the log-log slope against the edges, and a
  10,000-node training run.

Usage::

    python benchmarks/run_all.py                 # about an hour on 2 CPU cores
    python benchmarks/run_all.py --max-time 120  # a shorter training cap per method

The other benchmarks (``core.py``, ``jko_tools.py``, ``uncertainty.py``, ``uncertainty_seeds.py``,
``large_steps.py``, ``step_time.py``) write their own results under ``benchmarks/results/``;
BENCHMARKS.md links them.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "BENCHMARKS.md"


def run(script: str, *args: str) -> None:
    subprocess.run([sys.executable, str(HERE / script), *args], check=True)


def body(name: str) -> str:
    r"""A results file without its title line."""
    return (HERE / "results" / name).read_text().split("\n", 1)[1].strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-time", type=float, default=300.0, help="training cap per method and of the 10k-node run")
    args = parser.parse_args()
    started = time.monotonic()
    run("peers.py", "--max-time", str(args.max_time))
    run("scaling.py", "--max-time", str(args.max_time))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    text = "\n".join([
        "# Benchmarks",
        "",
        (f"`python benchmarks/run_all.py --max-time {args.max_time:g}`, {(time.monotonic() - started) / 60:.0f} min; "
         f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {device}, torch {torch.__version__}. "
         "Every measurement runs on the CPU with one thread, in its own subprocess."),
        "",
        "## Quality against the peers",
        "",
        body("peers.md"),
        "",
        "## Scaling with graph size",
        "",
        body("scaling.md"),
        "",
        "## Elsewhere",
        "",
        "- `results/core.md` (`core.py`): the core engine's likelihood, round trip, Hutchinson error and C2ST.",
        ("- `results/jko_tools.md` (`jko_tools.py`): W2 per block, reparameterization, refinement, memory in depth, "
         "iterations to a target NLL."),
        "- `results/uncertainty.md` (`uncertainty.py`): conformal coverage and set sizes.",
        ("- `results/uncertainty_seeds.md` (`uncertainty_seeds.py`): the flow's and a ChebNet classifier's conformal "
         "set sizes at equal coverage, over three seeds each."),
        ("- `results/large_steps.md` (`large_steps.py`): time and peak memory of the steps around training on large "
         "graphs (exact-trace training, the head fit, region sizes under a mixture or pattern noise)."),
        ("- `results/step_time.md` (`step_time.py`): time per training step on the sensor graphs, the velocity "
         "field run channels first or last."),
        "",
    ])
    OUTPUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
