r"""The igraphflow command: train, sample, evaluate and compare on files or named datasets.

Examples (shell)::

    igraphflow train --dataset solar_sim --out runs/solar_sim
    igraphflow evaluate --model runs/solar_sim/model.pt --dataset solar_sim
    igraphflow sample --model runs/solar_sim/model.pt --labels labels.npy --out samples.npz
    igraphflow train --input mydata.npz --out runs/mine     # arrays X, Y, edge_index
    igraphflow train --dataset nsrdb --data-option "paths=['site1.csv','site2.csv']" --out runs/nsrdb
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import inspect
import json
import math
import sys
import time
import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ._checks import as_count, as_labels, check_input_file, as_output_dir, as_output_file, as_signals
from .checkpoint import atomic_file
from .compare import (
    add_data_argument, add_data_option_argument, budget_seconds, key_value, load_data_arguments, non_negative_int, positive_int,
)
from .datasets import available
from .flow import ConditionalGraphFlow
from .graph import undirected_edges

#: The fewest graph signals an ``--input`` file may hold: 80 % train, at least one to test.
MIN_INPUT_SAMPLES = 5


def _read_arrays(path: str, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    file = Path(path)
    check_input_file(file, missing=f"no file at {file}", kind="a .npy/.npz file")
    try:
        with open(file, "rb") as handle:
            magic = handle.read(6)
        # By content, not by name; np.load takes anything else for a pickle (a text file "held Python objects").
        if magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # an archive of arrays (.npz)
            with np.load(file) as archive:
                found = {k: archive[k] for k in archive.files}
        elif magic == b"\x93NUMPY":  # one array (.npy)
            found = {names[0]: np.load(file)}
        else:
            found = None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, tokenize.TokenError) as error:
        # numpy's advice to allow pickles is not one to follow for a file of unknown origin.
        reason = "it holds Python objects, not arrays" if "allow_pickle" in str(error) else error
        raise ValueError(f"{file} is not a readable .npy/.npz file: {reason}") from None
    if found is None:
        raise ValueError(f"{file} is not a readable .npy/.npz file: it starts with neither the .npy header nor the .npz (zip) one")
    missing = [k for k in names if k not in found]
    if missing:
        raise ValueError(f"{file} lacks the arrays {missing} (it has {sorted(found)})")
    return found


def _dataset_splits(args) -> tuple[dict, dict, dict]:
    r"""Returns (graph, train, test) from ``--dataset`` or ``--input``."""
    if args.input and args.data_option:
        raise ValueError("--data-option sets options of a --dataset, not of an --input file")
    if args.input and args.data is not None:
        raise ValueError("--data gives the files of a --dataset, not of an --input file")
    if args.input:
        arrays = _read_arrays(args.input, ("X", "Y", "edge_index"))
        X, Y = arrays["X"], arrays["Y"]
        # Checked whole, before the 80 / 20 split: a mismatch must not train on a truncated copy.
        if X.ndim != 3 or len(X) < MIN_INPUT_SAMPLES:
            raise ValueError(f"{args.input}: X must have shape [N >= {MIN_INPUT_SAMPLES}, num_nodes, num_features] "
                             f"(80 % to train, 20 % to test), got {list(X.shape)}")
        # In the file's own dtype: the fit casts it, and says so where the cast rounds X away.
        X = as_signals(X, X.shape[1], X.shape[2], dtype=None, name=f"{args.input}: X")
        # [()]: a 0-d array as a NumPy scalar, so that a float 3.0 passes as 3 does (np.savez(num_classes=3.0)).
        num_classes = as_count(arrays["num_classes"][()], f"{args.input}: num_classes") if "num_classes" in arrays else None
        Y = as_labels(Y, X.size(1), num_classes, num_samples=len(X), name=f"{args.input}: Y")
        if num_classes is None:
            num_classes, used = int(Y.max()) + 1, Y.unique().numel()
            if num_classes > 2 * used:  # {0, 10**6} would build a model of a million classes
                raise ValueError(f"{args.input}: Y holds {used} distinct labels up to {num_classes - 1}: number "
                                 "them 0, 1, ..., K - 1, or give the array num_classes")
        edge_index = arrays["edge_index"]
        if edge_index.dtype.kind not in "biufc":  # strings, dates or records: torch converts none of them
            raise ValueError(f"{args.input}: edge_index must hold node indices, got dtype {edge_index.dtype}")
        cut = int(round(0.8 * len(X)))
        graph = dict(edge_index=torch.as_tensor(edge_index), num_nodes=X.size(1),
                     num_features=X.size(2), num_classes=num_classes)
        return graph, dict(X=X[:cut], Y=Y[:cut]), dict(X=X[cut:], Y=Y[cut:])
    data = load_data_arguments(args)
    graph = dict(edge_index=data.edge_index, num_nodes=data.num_nodes, num_features=data.num_features,
                 num_classes=data.num_classes)
    return graph, dict(X=data.X_train, Y=data.Y_train), dict(X=data.X_test, Y=data.Y_test)


def _number(value: float) -> float | None:
    r"""``value``, or None (JSON's null) where it is not finite: JSON has no NaN or infinity."""
    return value if math.isfinite(value) else None


def _evaluate(model: ConditionalGraphFlow, test: dict, exact: bool, seed: int) -> dict:
    dims = model.num_nodes * model.num_features
    # Seeded, so that evaluate gives the estimate that train printed.
    log_prob = model.log_prob(test["X"], test["Y"], exact=exact, seed=seed)
    Y = torch.as_tensor(test["Y"])
    accuracy = (model.predict(test["X"]).cpu() == Y).float().mean()
    # What predicting the most frequent training label everywhere scores: the accuracy's floor.
    majority = (Y == int(model.latent.log_prior.argmax())).float().mean()
    latent = model.encode(test["X"])
    X = torch.as_tensor(test["X"], device=model.device).double()  # norms of large signals overflow float32
    round_trip = (model.decode(latent).double() - X).norm() / X.norm()
    return {
        "test_nll_per_dim": _number(-log_prob.double().mean().item() / dims),
        "nll_estimator": "exact" if exact else "hutchinson",
        "test_accuracy": accuracy.item(),
        "majority_label_accuracy": majority.item(),
        "round_trip_relative_error": _number(round_trip.item()),
        "num_test": len(test["X"]),
    }


def _train(args) -> int:
    graph, train, test = _dataset_splits(args)
    settings = dict(conv=args.conv, num_blocks=args.num_blocks, hidden=args.hidden, device=args.device, seed=args.seed)
    options = dict(args.option)
    if flagged := sorted(options.keys() & settings.keys()):
        raise ValueError(f"--option {', '.join(flagged)}: give it by its own flag "
                         f"({', '.join('--' + key.replace('_', '-') for key in flagged)})")
    if unknown := sorted(options.keys() - (set(inspect.signature(ConditionalGraphFlow).parameters) - graph.keys())):
        raise ValueError(f"--option {', '.join(unknown)}: not a setting of ConditionalGraphFlow")
    model = ConditionalGraphFlow(**graph, **settings, **options)
    if args.float64:
        model.double()
    # After the input and settings are checked (no empty folder for a typo), before training.
    made = not Path(args.out).exists()
    out = as_output_dir(args.out, "--out")
    started = time.monotonic()
    try:
        if args.checkpoint_dir is not None:  # checked here, so that the message names the flag, not fit's argument
            as_output_dir(args.checkpoint_dir, "--checkpoint-dir")
        model.fit(train["X"], train["Y"], max_time=args.max_time, progress=not args.quiet, checkpoint_dir=args.checkpoint_dir)
    except BaseException:  # an error or an interruption: no empty folder left behind either
        if made and not any(out.iterdir()):
            out.rmdir()
        raise
    seconds = time.monotonic() - started
    # A summary of an earlier run must not outlive its model should this one stop in between.
    (out / "summary.json").unlink(missing_ok=True)
    model.save(out / "model.pt")
    exact = graph["num_nodes"] * graph["num_features"] <= args.exact_max_dim
    summary = {"train_seconds": seconds, "num_train": len(train["X"]), "num_blocks": model.num_blocks,
               "w2_per_block": [r.w2 for r in model.history_],
               "sample_temperature": float(model.latent.temperature),
               "noise_components": model.latent.noise_components, "noise_label_weights": model.latent.noise_label_weights,
               "pattern_mean": model.latent.pattern_mean,
               "head_products": model.head_products, "head_input": model.head_input_, "data": _data_record(args),
               **_evaluate(model, test, exact, args.seed)}
    with atomic_file(out / "summary.json", "summary path") as file:
        file.write(json.dumps(summary, indent=2, allow_nan=False).encode())
    print(json.dumps(summary, indent=2, allow_nan=False))
    print(f"model written to {out / 'model.pt'}", file=sys.stderr)  # stdout: the JSON alone
    return 0


def _edges(edge_index, num_nodes: int) -> set[tuple[int, int]]:
    # Each undirected edge once, so that the count of those not in both is of edges.
    return {(i, j) for i, j in undirected_edges(edge_index, num_nodes).cpu().T.tolist() if i < j}


def _data_record(args) -> dict:
    r"""What ``--dataset``/``--input``, ``--data-option`` and ``--seed`` name, as summary.json keeps it."""
    # Through JSON, so that a record read back compares equal (tuples come back as lists).
    return json.loads(json.dumps({"dataset": args.dataset, "input": args.input, "seed": args.seed,
                                  "data_options": dict(args.data_option)}, default=str))


def _warn_other_data(args):
    r"""Warns when a ``--dataset`` is evaluated with other options than its model was trained with,
    as the summary.json beside the model records them: on the same graph the test split of other
    options (e.g. ``num_days`` of solar_sim) can hold signals the model was trained on."""
    if args.dataset is None:  # an --input file may well be other data on purpose
        return
    try:
        trained = json.loads(Path(args.model).with_name("summary.json").read_text())["data"]
    except (OSError, ValueError, KeyError, TypeError):  # no summary, or one written before it recorded the data
        return
    given = _data_record(args)
    if not isinstance(trained, dict) or trained.get("dataset") != given["dataset"]:
        return  # another dataset on the same graph and features: on purpose
    # The options only: another seed draws new signals of a simulation, and does not move a real series.
    if trained.get("data_options") != given["data_options"]:
        warnings.warn(f"{args.model} was trained on dataset {args.dataset!r} with the options "
                      f"{trained.get('data_options')} (its summary.json), not {given['data_options']}: the test split "
                      "of other options can hold signals the model was trained on", stacklevel=2)


def _load_model(args) -> ConditionalGraphFlow:
    model = ConditionalGraphFlow.load(args.model, device=args.device)
    if not model.fitted:  # else every command fails in the model, with a traceback
        raise ValueError(f"{args.model} holds a model that was never fitted")
    return model


def _evaluate_command(args) -> int:
    model = _load_model(args)
    graph, _, test = _dataset_splits(args)
    # Test signals of another graph would be scored on the model's graph without a word.
    theirs, ours = _edges(graph["edge_index"], graph["num_nodes"]), _edges(model.edge_index, model.num_nodes)
    if graph["num_nodes"] != model.num_nodes or theirs != ours:
        if args.input:
            source, hint = args.input, ""
        else:  # a simulated dataset draws its graph from the seed and its options
            source = f"dataset {args.dataset!r} (seed {args.seed})"
            hint = "; evaluate with the --seed and --data-option the model was trained with"
        nodes = "" if graph["num_nodes"] == model.num_nodes else f"{graph['num_nodes']} nodes, the model {model.num_nodes}; "
        raise ValueError(f"{source} has another graph than the model: {nodes}{len(theirs ^ ours)} edges in one "
                         f"and not the other{hint}")
    # On the same graph, other features (e.g. --data-option lags=3) or more classes failed inside the
    # model's input checks, with a message that named neither the model nor the data.
    source = args.input or f"dataset {args.dataset!r}"
    if graph["num_features"] != model.num_features:
        raise ValueError(f"{source} has {graph['num_features']} features per node, the model {args.model} "
                         f"{model.num_features}: evaluate on data like those it was trained on (the same --data-option)")
    if graph["num_classes"] > model.num_classes:
        raise ValueError(f"{source} has labels of {graph['num_classes']} classes, the model {args.model} knows "
                         f"{model.num_classes}: evaluate on data like those it was trained on (the same --data-option)")
    _warn_other_data(args)
    exact = model.num_nodes * model.num_features <= args.exact_max_dim
    print(json.dumps(_evaluate(model, test, exact, args.seed), indent=2, allow_nan=False))
    return 0


def _sample(args) -> int:
    model = _load_model(args)
    labels = _read_arrays(args.labels, ("Y",))["Y"]
    # Drawn first: a bad label file, seed or temperature leaves no empty folder behind.
    X = model.sample(labels, seed=args.seed, temperature=args.temperature).cpu().numpy()
    out = as_output_file(args.out, "--out")
    with atomic_file(out, "--out") as file:  # np.savez would add ".npz" to a name without it
        # The labels as the classes drawn for (int64), whatever the file held them as (bool, float).
        np.savez(file, X=X, Y=as_labels(labels, model.num_nodes, model.num_classes).cpu().numpy())
    print(f"{len(X)} samples written to {out}")
    return 0


def _device(text: str) -> str:
    r"""An argparse type: a device name that torch understands (the device need not exist)."""
    try:
        torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a device name: {text!r} (e.g. cpu, cuda, cuda:1)") from None
    return text


def _blocks(text: str) -> int | str:
    r"""An argparse type: a number of blocks ``>= 1``, or ``auto``."""
    return text if text == "auto" else positive_int(text)


def _compare(argv: list[str]) -> int:
    from .compare import main as compare_main

    return compare_main(argv)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="igraphflow", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def source(p: argparse.ArgumentParser):
        group = p.add_mutually_exclusive_group(required=True)
        group.add_argument("--dataset", help=f"a dataset name: {', '.join(available())}")
        group.add_argument("--input", help=".npz file with arrays X [N,V,C], Y [N,V], edge_index [2,E] (and "
                                           "num_classes, optional): train fits the first 80 %% of the signals, "
                                           "evaluate scores the last 20 %%, the test part of the same split")
        add_data_argument(p)
        add_data_option_argument(p)  # e.g. the files of nsrdb: --data-option "paths=['a.csv','b.csv']"

    def common(p: argparse.ArgumentParser, seeds: str):
        p.add_argument("--device", type=_device, default=None, help="cpu, cuda, ... (default: the GPU if there is one)")
        p.add_argument("--seed", type=int, default=0, help=f"seeds {seeds} (default: 0)")

    def likelihood(p: argparse.ArgumentParser):
        p.add_argument("--exact-max-dim", type=non_negative_int, default=32,
                       help="use the exact log-likelihood when V*C is at most this, else Hutchinson's estimate "
                            "(default: 32)")

    train = commands.add_parser("train", help="fit a model and write model.pt and summary.json")
    source(train)
    common(train, "the model's initialisation and training, the likelihood estimate and a simulated dataset")
    likelihood(train)
    train.add_argument("--out", default="runs/latest", help="output directory (default: runs/latest)")
    train.add_argument("--conv", default="l3net", choices=["l3net", "cheb", "gcn"],
                       help="the graph convolution of the velocity fields (default: l3net)")
    train.add_argument("--num-blocks", type=_blocks, default=6,
                       help="ODE blocks of the flow, or auto: add blocks until one moves the signals too little "
                            "(default: 6)")
    train.add_argument("--hidden", type=positive_int, default=32, help="hidden channels of the velocity fields (default: 32)")
    train.add_argument("--max-time", type=budget_seconds, default=None,
                       help="cap on the seconds spent training the blocks; the noise, temperature and head fits "
                            "come after (default: no cap)")
    train.add_argument("--checkpoint-dir", default=None,
                       help="write a checkpoint there after every block; the same command run again resumes after "
                            "the last block written")
    train.add_argument("--float64", action="store_true",
                       help="compute in float64 (signals with a large offset and a small spread, which float32 rounds away)")
    train.add_argument("--option", action="append", type=key_value, default=[],
                       help="a setting KEY=VALUE of ConditionalGraphFlow without a flag of its own (e.g. "
                            "fit_noise_first=True, lr=0.005, orders=(0,1,2,3)); repeatable")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="test NLL, accuracy and round trip of a saved model")
    evaluate.add_argument("--model", required=True, help="model.pt written by train")
    source(evaluate)
    common(evaluate, "the likelihood estimate and a simulated dataset: the seed the model was trained with")
    likelihood(evaluate)
    evaluate.set_defaults(run=_evaluate_command)

    sample = commands.add_parser("sample", help="draw X | Y for label patterns in a .npy/.npz file (array Y)")
    sample.add_argument("--model", required=True, help="model.pt written by train")
    sample.add_argument("--labels", required=True,
                        help=".npy file of labels [N, V], or .npz file with them as array Y: one draw per row")
    sample.add_argument("--out", required=True, help=".npz file to write (arrays X, Y)")
    sample.add_argument("--temperature", type=float, default=None,
                        help="factor on the latent noise (default: the one chosen when the model was fitted)")
    common(sample, "the draws")
    sample.set_defaults(run=_sample)

    commands.add_parser("compare", help="train igraphflow and the baselines, write metrics.json (see compare --help)",
                        add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    r"""Runs the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv else ""
    # A warning as one line that names the command, as the errors are: Python's own format adds the
    # library's file, line and source text (``model.fit(train["X"], ...)``), which tell a user nothing.
    formatwarning = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *_: f"igraphflow {command}: warning: {message}\n"
    try:
        if command == "compare":
            return _compare(argv[1:])
        args = _parser().parse_args(argv)
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError) as error:  # TypeError: an unknown dataset option
        print(f"igraphflow {command}: error: {error}", file=sys.stderr)
        return 2
    except MemoryError as error:  # e.g. a dataset option asking for more signals than memory holds
        print(f"igraphflow {command}: error: out of memory: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        resumes = "; run the same command again to reuse the methods it finished" if command == "compare" else ""
        print(f"igraphflow {command}: interrupted{resumes}", file=sys.stderr)
        return 130  # the shell's status for a process ended by SIGINT
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":
    sys.exit(main())
