r"""Diagnosis: our flow (``jko``) under one time budget with different settings.

Each variant is ``NAME:KEY=VALUE,KEY=VALUE`` (settings of
:class:`igraphflow.ConditionalGraphFlow`; ``default`` for none). Every variant trains on the
same split with the same budget and is evaluated like :func:`igraphflow.compare.compare`
(energy, MMD, test and training NLL per dimension, accuracy), and the per-block record (epochs,
whether the time share ended the block, movement, validation NLL) is kept.

Usage (from the repository root)::

    python experiments/jko_settings.py --dataset traffic --max-time 60 \
        --variant default --variant "bs64:batch_size=64" --variant "lr5e-3:lr=5e-3"

Writes ``OUT/<dataset>/<variant>/metrics.json`` and appends one Markdown row per variant to
``OUT/<dataset>/table.md``. Every variant's settings are checked before the first one trains.
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

import torch

from igraphflow.compare import add_budget_argument, check_settings, compare, format_mean
from igraphflow.datasets import load


def parse_variant(text: str) -> tuple[str, dict]:
    r"""``"name:a=1,b=(0,1)"`` -> ``("name", {"a": 1, "b": (0, 1)})``."""
    name, _, body = text.partition(":")
    settings, depth, item = {}, 0, ""
    for char in body + ",":
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            if item.strip():
                key, _, value = item.partition("=")
                try:
                    settings[key.strip()] = ast.literal_eval(value.strip())
                except (ValueError, SyntaxError):
                    settings[key.strip()] = value.strip()
            item = ""
        else:
            item += char
    return name, settings


def row(name: str, result: dict) -> str:
    m = result["methods"]["jko"]
    blocks = m["blocks"]
    by_time = sum(b["stopped_by_time"] for b in blocks)
    epochs = "/".join(str(b["epochs"]) for b in blocks)
    return (f"| {name} | {m['mmd_alpha']['0.1']:.4g} | {format_mean(m, 'mmd')} | {format_mean(m, 'energy')} | {m['nll']:.4g} | "
            f"{m.get('nll_train', float('nan')):.4g} | {m['acc']:.3f} | {m['train_s']:.0f} | {len(blocks)} | "
            f"{epochs} | {by_time} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--variant", action="append", required=True)
    add_budget_argument(parser, 60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exact-max-dim", type=int, default=16)
    parser.add_argument("--draws", type=int, default=5, help="generated sets per variant (default: 5)")
    parser.add_argument("--out", default="experiments/results/jko_settings")
    args = parser.parse_args(argv)
    variants = [parse_variant(text) for text in args.variant]
    try:
        data = load(args.dataset, seed=args.seed)
    except (ValueError, TypeError, FileNotFoundError) as error:
        parser.error(str(error))
    for name, settings in variants:  # a bad key in the last variant must not wait for the others to train
        try:
            check_settings({"jko": settings}, data)
        except ValueError as error:
            parser.error(f"--variant {name}: {error}")
    torch.set_num_threads(1)
    out = Path(args.out) / args.dataset
    out.mkdir(parents=True, exist_ok=True)
    table = out / "table.md"
    if not table.exists():
        table.write_text("| variant | MMD a=0.1 | MMD a=1 | energy | test NLL/dim | train NLL/dim | acc | train s "
                         "| blocks | epochs per block | blocks ended by time |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    for name, settings in variants:
        result = compare(data, ["jko"], max_time=args.max_time, seed=args.seed, out_dir=out / name,
                         settings={"jko": settings}, exact_max_dim=args.exact_max_dim, figures=False,
                         draws=args.draws)
        line = row(name, result)
        with table.open("a") as f:
            f.write(line + "\n")
        print(line, json.dumps(settings), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
