r"""Mean and spread over seeds of comparison runs: one Markdown table per dataset.

A 60 s run of one seed moves by more than the gaps between methods (initialisation, batch
order, the one generated signal per test pattern, the load of a shared machine), so claims
rest on several seeds. Run the comparison once per seed, then summarise::

    for s in 0 1 2; do python experiments/compare_all.py --datasets traffic,solar_hope \
        --max-time 60 --seed $s --out runs/seed$s; done
    python experiments/seed_table.py runs/seed0 runs/seed1 runs/seed2 --datasets traffic,solar_hope

Each cell is ``mean ± standard deviation`` over the runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from igraphflow.compare import METHODS

COLUMNS = (("MMD (a=1)", "mmd", 5), ("MMD a=0.1", "mmd_0.1", 3), ("energy", "energy", 3), ("NLL/dim", "nll", 3),
           ("acc", "acc", 3))


def _value(row: dict, key: str) -> float | None:
    return row["mmd_alpha"].get("0.1") if key == "mmd_0.1" else row.get(key)


def _cell(values: list[float | None], digits: int) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean, spread = np.mean(values), np.std(values, ddof=1) if len(values) > 1 else 0.0
    return f"{mean:.{digits}g} ± {spread:.2g}"


def seed_table(runs: list[Path], dataset: str) -> str:
    r"""The Markdown table of one dataset over the runs ``RUN/<dataset>/metrics.json``."""
    results = []
    for run in runs:
        path = run / dataset / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"no comparison result at {path}")
        try:
            result = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not a comparison result: {error}") from None
        if not isinstance(result, dict) or not isinstance(result.get("methods"), dict):
            raise ValueError(f"{path} is not a comparison result: it has no 'methods'")
        results.append(result)
    methods = [m for m in METHODS if all(m in r["methods"] for r in results)]
    rows = [(m, [r["methods"][m] for r in results]) for m in methods]
    if all("reference" in r for r in results):
        rows.append(("training data (reference)", [r["reference"] for r in results]))
    lines = ["| method | " + " | ".join(name for name, _, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for method, per_run in rows:
        cells = [_cell([_value(row, key) for row in per_run], digits) for _, key, digits in COLUMNS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="output directories of compare_all.py, one per seed")
    parser.add_argument("--datasets", default="traffic,solar_hope")
    args = parser.parse_args(argv)
    for dataset in args.datasets.split(","):
        try:
            table = seed_table(args.runs, dataset)
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
        print(f"\n## {dataset} ({len(args.runs)} runs)\n")
        print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
