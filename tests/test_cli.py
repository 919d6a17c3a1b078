import inspect
import io
import json
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import igraphflow
from igraphflow import ConditionalGraphFlow
from igraphflow.cli import main
from igraphflow.datasets import load


@pytest.fixture
def data_file(tmp_path):
    g = torch.Generator().manual_seed(0)
    Y = torch.randint(0, 2, (120, 3), generator=g)
    X = torch.randn(120, 3, 2, generator=g) + 2.0 * Y.unsqueeze(-1)
    path = tmp_path / "data.npz"
    np.savez(path, X=X.numpy(), Y=Y.numpy(), edge_index=np.array([[0, 1, 1, 2], [1, 0, 2, 1]]))
    return path


def test_train_hands_fit_the_files_dtype_and_computes_in_float64_on_request(data_file, tmp_path, capsys):
    # float64 signals near 1e8: the warning used to blame the file ("comes in float32"), which the
    # command line had cast itself, and to advise model.double(), which it could not call.
    with np.load(data_file) as arrays:
        np.savez(tmp_path / "offset.npz", **{**arrays, "X": 1e8 + 50 * arrays["X"].astype(np.float64)})
    args = ["train", "--input", str(tmp_path / "offset.npz"), "--num-blocks", "1", "--hidden", "8", "--max-time", "2", "--quiet"]
    with pytest.warns(UserWarning, match=r"X in float32 keeps fewer than 100 steps .*train --float64"):
        assert main([*args, "--out", str(tmp_path / "single")]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert main([*args, "--float64", "--out", str(tmp_path / "double")]) == 0
    model = ConditionalGraphFlow.load(tmp_path / "double" / "model.pt")
    assert model.dtype == torch.float64
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "double" / "model.pt"), "--input", str(tmp_path / "offset.npz")]) == 0
    assert json.loads(capsys.readouterr().out)["round_trip_relative_error"] < 1e-6


def test_train_evaluate_sample(data_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--input", str(data_file), "--out", str(out), "--num-blocks", "2", "--hidden", "8",
                 "--max-time", "5", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert json.loads(capsys.readouterr().out) == summary  # stdout is the JSON alone
    assert summary["num_blocks"] >= 1 and summary["round_trip_relative_error"] < 1e-4
    model = ConditionalGraphFlow.load(out / "model.pt")
    assert model.num_nodes == 3
    assert summary["sample_temperature"] == pytest.approx(model.latent.temperature.item())
    assert summary["noise_components"] == model.latent.noise_components
    assert summary["noise_label_weights"] == model.latent.noise_label_weights
    assert summary["pattern_mean"] == model.latent.pattern_mean

    capsys.readouterr()
    assert main(["evaluate", "--model", str(out / "model.pt"), "--input", str(data_file)]) == 0
    assert json.loads(capsys.readouterr().out)["test_nll_per_dim"] == pytest.approx(summary["test_nll_per_dim"])
    # Signals far out score a density of 0: null, not JSON's missing Infinity (nor NaN).
    with np.load(data_file) as arrays:
        np.savez(tmp_path / "far.npz", **{**arrays, "X": arrays["X"] * 1e25})
    assert main(["evaluate", "--model", str(out / "model.pt"), "--input", str(tmp_path / "far.npz")]) == 0
    far = json.loads(capsys.readouterr().out, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert far["test_nll_per_dim"] is None and far["round_trip_relative_error"] >= 0

    labels = tmp_path / "labels.npy"
    np.save(labels, np.zeros((5, 3), dtype=np.int64))
    assert main(["sample", "--model", str(out / "model.pt"), "--labels", str(labels), "--out", str(tmp_path / "s.npz")]) == 0
    with np.load(tmp_path / "s.npz") as samples:
        assert samples["X"].shape == (5, 3, 2)
    assert main(["sample", "--model", str(out / "model.pt"), "--labels", str(labels), "--out", str(tmp_path / "t.npz"),
                 "--temperature", "0.5"]) == 0
    with np.load(tmp_path / "s.npz") as default, np.load(tmp_path / "t.npz") as cooler:
        expected = model.sample(torch.from_numpy(default["Y"]), seed=0, temperature=0.5).numpy()
        assert np.allclose(cooler["X"], expected) and not np.allclose(cooler["X"], default["X"])
    # The file named, not one with ".npz" added to it; a folder is refused.
    assert main(["sample", "--model", str(out / "model.pt"), "--labels", str(labels), "--out", str(tmp_path / "plain")]) == 0
    assert (tmp_path / "plain").is_file() and not (tmp_path / "plain.npz").exists()
    assert capsys.readouterr().out.splitlines()[-1] == f"5 samples written to {tmp_path / 'plain'}"  # one per label pattern
    assert main(["sample", "--model", str(out / "model.pt"), "--labels", str(labels), "--out", str(out)]) == 2
    assert "is a directory, not a file" in capsys.readouterr().err
    # Sampling computes no likelihood, so it takes no likelihood option.
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "--model", str(out / "model.pt"), "--labels", str(labels), "--out", str(tmp_path / "u.npz"),
              "--exact-max-dim", "1"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --exact-max-dim" in capsys.readouterr().err


def test_output_paths_are_checked_before_training(data_file, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setattr(ConditionalGraphFlow, "fit", lambda *args, **kwargs: pytest.fail("trained before checking --out"))
    for out in (blocker, blocker / "run"):
        assert main(["train", "--input", str(data_file), "--out", str(out), "--quiet"]) == 2
        assert f"{blocker} is a file, not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--dataset", "three_node", "--methods", "jko", "--out", str(blocker)])
    assert exit_info.value.code == 2 and "is a file, not a directory" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_output_folders_that_cannot_be_made_or_are_empty_fail_before_training(data_file, capsys, monkeypatch):
    # A folder under /proc failed after the first method had trained; "" wrote into the working directory.
    monkeypatch.setattr(ConditionalGraphFlow, "fit", lambda *args, **kwargs: pytest.fail("trained before checking --out"))
    assert main(["train", "--input", str(data_file), "--out", "/proc/igraphflow-run", "--quiet"]) == 2
    assert "--out /proc/igraphflow-run cannot be written" in capsys.readouterr().err
    for out in ("/proc/igraphflow-run", ""):
        with pytest.raises(SystemExit) as exit_info:
            main(["compare", "--dataset", "three_node", "--methods", "jko", "--out", out])
        assert exit_info.value.code == 2
    assert "out_dir is empty" in capsys.readouterr().err


def test_python_m_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "igraphflow", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "usage: igraphflow" in done.stdout


def test_errors_are_reported_not_raised(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, X=np.zeros((4, 3, 2)))
    assert main(["train", "--input", str(bad), "--out", str(tmp_path / "run")]) == 2
    assert "lacks the arrays ['Y', 'edge_index']" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "missing.pt"), "--input", str(bad)]) == 2


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(X=np.zeros((10, 3)), Y=np.zeros((10, 3), dtype=np.int64)), r"X must have shape \[N >= 5, num_nodes, num_features\]"),
        (dict(X=np.zeros((3, 3, 2)), Y=np.zeros((3, 3), dtype=np.int64)), r"got \[3, 3, 2\]"),
        (dict(X=np.zeros((10, 3, 2)), Y=np.zeros((9, 3), dtype=np.int64)), r"Y must have shape \[N=10, num_nodes=3\]"),
        (dict(X=np.zeros((10, 3, 2)), Y=-np.ones((10, 3), dtype=np.int64)), "negative labels"),
        # Inferred as a model of a million classes, which took minutes to build.
        (dict(X=np.zeros((10, 3, 2)), Y=np.arange(30).reshape(10, 3) % 2 * 10**6),
         r"Y holds 2 distinct labels up to 1000000: number them 0, 1, ..., K - 1, or give the array num_classes"),
        # More than twice as many classes as labels used: 0 and 4 leave three classes never seen.
        (dict(X=np.zeros((10, 3, 2)), Y=np.arange(30).reshape(10, 3) % 2 * 4), r"Y holds 2 distinct labels up to 4: number them"),
    ],
)
def test_bad_input_files_fail_before_training(tmp_path, capsys, arrays, message):
    path, out = tmp_path / "bad.npz", tmp_path / "run"
    np.savez(path, edge_index=np.array([[0, 1], [1, 2]]), **arrays)
    assert main(["train", "--input", str(path), "--out", str(out), "--quiet"]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()  # not even an empty run folder


def test_running_out_of_memory_is_one_line(tmp_path, capsys, monkeypatch):
    # numpy's allocation error (--data-option num_train=100000000000) came out as a traceback.
    def too_large(args):
        raise MemoryError("Unable to allocate 745. GiB for an array with shape (100000000000, 3, 2)")

    monkeypatch.setattr("igraphflow.cli._dataset_splits", too_large)
    assert main(["train", "--dataset", "three_node", "--out", str(tmp_path / "run")]) == 1
    assert capsys.readouterr().err.startswith("igraphflow train: error: out of memory: Unable to allocate")


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert all(command in text for command in ("train", "evaluate", "sample", "compare"))


@pytest.mark.parametrize("command, seeds", [("train", "initialisation"), ("evaluate", "the seed the model was trained with"),
                                             ("sample", "seeds the draws")])
def test_each_command_says_what_its_seed_seeds(capsys, command, seeds):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert seeds in " ".join(capsys.readouterr().out.split())


def test_train_takes_an_automatic_depth_and_refuses_no_blocks(data_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--input", str(data_file), "--out", str(out), "--num-blocks", "auto", "--hidden", "4",
                 "--max-time", "2", "--quiet"]) == 0
    assert ConditionalGraphFlow.load(out / "model.pt").config["num_blocks"] == "auto"
    for blocks in ("0", "many"):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--input", str(data_file), "--out", str(out), "--num-blocks", blocks])
        assert exit_info.value.code == 2 and "--num-blocks" in capsys.readouterr().err


def test_more_bad_arguments_exit_with_one_line(data_file, tmp_path, capsys):
    g = torch.Generator().manual_seed(1)
    arrays = dict(X=torch.randn(10, 3, 2, generator=g).numpy(), Y=np.zeros((10, 3), dtype=np.int64),
                  edge_index=np.array([[0, 1, 1, 2], [1, 0, 2, 1]]))
    path = tmp_path / "classes.npz"
    np.savez(path, num_classes=np.array([2, 3]), **arrays)
    assert main(["train", "--input", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "num_classes must be an integer" in capsys.readouterr().err
    # --data on a dataset without files (said was "unknown option 'path'"); a seed or the files given twice.
    assert main(["train", "--dataset", "three_node", "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert "--data: the dataset 'three_node' takes no path (its options: asymmetry," in capsys.readouterr().err
    assert main(["train", "--dataset", "three_node", "--data-option", "seed=3", "--out", str(tmp_path / "run")]) == 2
    assert "the dataset's seed is --seed" in capsys.readouterr().err  # was "multiple values for keyword argument"
    assert main(["train", "--dataset", "traffic", "--data", "a.csv", "--data-option", "path=b.csv",
                 "--out", str(tmp_path / "run")]) == 2
    assert "given twice: as --data and as --data-option path=..." in capsys.readouterr().err
    # The number of classes bounds the labels before any folder is made.
    np.savez(path, num_classes=np.array(1), **arrays | dict(Y=np.ones((10, 3), dtype=np.int64)))
    assert main(["train", "--input", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "outside [0, num_classes=1)" in capsys.readouterr().err
    for budget in ("-1", "nan", "0"):  # 0 would train no block at all
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--input", str(data_file), "--out", str(tmp_path / "run"), "--max-time", budget])
        assert exit_info.value.code == 2 and "must be a positive number of seconds" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--input", str(data_file), "--device", "nodevice"])
    assert exit_info.value.code == 2 and "not a device name" in capsys.readouterr().err


def test_evaluate_on_a_simulated_graph_of_another_seed_says_which_seed_to_give(tmp_path, capsys):
    # A simulated dataset draws its graph from --seed: evaluating without the training seed fails.
    small = ["--dataset", "linear_gaussian", "--data-option", "num_train=40", "--data-option", "num_test=10"]
    out = tmp_path / "run"
    assert main(["train", *small, "--seed", "1", "--out", str(out), "--num-blocks", "1", "--hidden", "4",
                 "--max-time", "1", "--exact-max-dim", "0", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out / "model.pt"), *small]) == 2
    assert "evaluate with the --seed and --data-option the model was trained with" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(out / "model.pt"), *small, "--seed", "1", "--exact-max-dim", "0"]) == 0


def test_evaluate_refuses_signals_of_another_graph(data_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--input", str(data_file), "--out", str(out), "--num-blocks", "1", "--hidden", "4",
                 "--max-time", "2", "--quiet"]) == 0
    with np.load(data_file) as arrays:
        other = dict(arrays) | dict(edge_index=np.array([[0, 2], [2, 0]]))
    np.savez(tmp_path / "other.npz", **other)
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out / "model.pt"), "--input", str(tmp_path / "other.npz")]) == 2
    # 0-1 and 1-2 against 0-2: three undirected edges (each direction was counted).
    assert "another graph than the model: 3 edges in one and not the other" in capsys.readouterr().err
    # The model's graph written otherwise: one direction of each edge, reversed, and a self-loop.
    with np.load(data_file) as arrays:
        edges = arrays["edge_index"]
        same = dict(arrays) | dict(edge_index=np.concatenate([edges[:, edges[0] < edges[1]][::-1], [[0], [0]]], axis=1))
    np.savez(tmp_path / "same.npz", **same)
    assert main(["evaluate", "--model", str(out / "model.pt"), "--input", str(tmp_path / "same.npz")]) == 0


def test_evaluate_gives_the_estimated_likelihood_that_train_printed(data_file, tmp_path, capsys):
    # Hutchinson's probes were drawn unseeded, so each evaluation gave another estimate.
    out, estimated = tmp_path / "run", ["--exact-max-dim", "0"]
    assert main(["train", "--input", str(data_file), "--out", str(out), "--num-blocks", "1", "--hidden", "4",
                 "--max-time", "2", "--quiet"] + estimated) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nll_estimator"] == "hutchinson"
    capsys.readouterr()
    for _ in range(2):
        assert main(["evaluate", "--model", str(out / "model.pt"), "--input", str(data_file)] + estimated) == 0
        assert json.loads(capsys.readouterr().out)["test_nll_per_dim"] == summary["test_nll_per_dim"]


def test_train_holds_out_the_last_fifth_rounded_and_is_exact_up_to_exact_max_dim(data_file, tmp_path, capsys):
    # 7 signals: round(5.6) = 6 train, 1 tests; V * C = 6 = --exact-max-dim, so the likelihood is exact.
    with np.load(data_file) as arrays:
        np.savez(tmp_path / "seven.npz", **{**arrays, "X": arrays["X"][:7], "Y": arrays["Y"][:7]})
    out = tmp_path / "run"
    assert main(["train", "--input", str(tmp_path / "seven.npz"), "--out", str(out), "--num-blocks", "1", "--hidden", "4",
                 "--max-time", "2", "--quiet", "--exact-max-dim", "6"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_train"] == 6 and summary["num_test"] == 1 and summary["nll_estimator"] == "exact"


def test_an_archive_of_arrays_is_read_whatever_its_name(data_file, tmp_path, capsys):
    # Read as one array, it "lacked the arrays ['Y', 'edge_index']".
    unnamed = tmp_path / "data"
    unnamed.write_bytes(data_file.read_bytes())
    assert main(["train", "--input", str(unnamed), "--out", str(tmp_path / "run"), "--num-blocks", "1",
                 "--hidden", "4", "--max-time", "1", "--quiet"]) == 0
    labels = tmp_path / "labels.npy"
    np.save(labels, np.zeros((2, 3), dtype=np.int64))
    assert main(["sample", "--model", str(tmp_path / "run" / "model.pt"), "--labels", str(labels),
                 "--out", str(tmp_path / "s.npz")]) == 0


def test_a_file_of_python_objects_is_refused_without_numpys_advice(tmp_path, capsys):
    path = tmp_path / "objects.npz"
    np.savez(path, X=np.array([{"not": "signals"}], dtype=object), Y=np.zeros(1), edge_index=np.zeros((2, 0)))
    assert main(["train", "--input", str(path), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "objects.npz is not a readable .npy/.npz file: it holds Python objects, not arrays" in error
    assert "allow_pickle" not in error


def test_an_interrupted_train_says_so_in_one_line_and_leaves_no_empty_folder(data_file, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ConditionalGraphFlow, "fit", interrupted)
    assert main(["train", "--input", str(data_file), "--out", str(tmp_path / "run"), "--quiet"]) == 130
    assert capsys.readouterr().err == "igraphflow train: interrupted\n"
    assert not (tmp_path / "run").exists()
    (tmp_path / "kept").mkdir()  # a folder that was there before is the user's
    assert main(["train", "--input", str(data_file), "--out", str(tmp_path / "kept"), "--quiet"]) == 130
    assert (tmp_path / "kept").is_dir() and capsys.readouterr().err == "igraphflow train: interrupted\n"
    monkeypatch.setattr("igraphflow.compare.compare", interrupted)
    assert main(["compare", "--dataset", "three_node", "--methods", "jko", "--out", str(tmp_path / "c")]) == 130
    assert capsys.readouterr().err.splitlines() == ["igraphflow compare: interrupted; run the same command again to reuse the methods it finished"]


def test_an_interrupted_train_resumes_from_its_checkpoint_folder(data_file, tmp_path, capsys, monkeypatch):
    import igraphflow.flow as flow_module

    arguments = ["train", "--input", str(data_file), "--num-blocks", "3", "--hidden", "4", "--quiet",
                 "--out", str(tmp_path / "run")]
    assert main(arguments) == 0
    whole = json.loads((tmp_path / "run" / "summary.json").read_text())
    original, calls = flow_module.train_block, []

    def interrupted_at_the_second_block(*args, **kwargs):
        calls.append(args[0])
        if calls == [0, 1]:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(flow_module, "train_block", interrupted_at_the_second_block)
    checkpoint = ["--checkpoint-dir", str(tmp_path / "checkpoints")]
    assert main(arguments + checkpoint) == 130
    assert main(arguments + checkpoint) == 0
    assert calls == [0, 1, 1, 2]  # the first block was not trained again
    resumed = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert resumed["test_nll_per_dim"] == whole["test_nll_per_dim"] and resumed["num_blocks"] == 3


@pytest.mark.parametrize("content", [b"PK\x03\x04 not a zip archive", b""])
def test_a_corrupt_npz_file_is_reported_not_raised(tmp_path, capsys, content):
    # zipfile.BadZipFile escaped as a traceback.
    path = tmp_path / "broken.npz"
    path.write_bytes(content)
    assert main(["train", "--input", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "broken.npz is not a readable .npy/.npz file" in capsys.readouterr().err


def test_dataset_options_reach_the_loader(data_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "three_node", "--data-option", "num_train=40", "--data-option", "num_test=20",
                 "--out", str(out), "--num-blocks", "1", "--hidden", "4", "--max-time", "1", "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["num_train"] == 40
    capsys.readouterr()
    assert main(["train", "--dataset", "nsrdb", "--out", str(out)]) == 2  # its files are an option
    assert "--data-option \"paths=['site1.csv','site2.csv']\"" in capsys.readouterr().err
    assert main(["train", "--input", str(data_file), "--data-option", "num_train=40", "--out", str(out)]) == 2
    assert "not of an --input file" in capsys.readouterr().err


def test_summary_and_samples_hold_what_the_saved_model_computes(data_file, tmp_path, capsys):
    # The summary's numbers, recomputed here from the saved model and the 80 / 20 split of the file.
    out = tmp_path / "run"
    assert main(["train", "--input", str(data_file), "--out", str(out), "--num-blocks", "1", "--hidden", "4",
                 "--max-time", "2", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    model = ConditionalGraphFlow.load(out / "model.pt")
    with np.load(data_file) as arrays:
        X, Y = torch.from_numpy(arrays["X"]), torch.from_numpy(arrays["Y"])
    X_test, Y_test = X[96:], Y[96:]  # round(0.8 * 120) = 96 to train
    assert summary["num_train"] == 96 and summary["num_test"] == 24
    dims = 3 * 2
    assert summary["test_nll_per_dim"] == pytest.approx(-model.log_prob(X_test, Y_test).mean().item() / dims, rel=1e-5)
    assert summary["nll_estimator"] == "exact"  # V C = 6 <= 32
    assert summary["test_accuracy"] == pytest.approx((model.predict(X_test) == Y_test).double().mean().item())
    # The floor to read it against: the most frequent of the labels fitted on, predicted everywhere.
    majority = torch.bincount(Y[:96].flatten()).argmax()
    assert summary["majority_label_accuracy"] == pytest.approx((Y_test == majority).double().mean().item())
    error = (model.decode(model.encode(X_test)) - X_test).norm() / X_test.norm()
    assert summary["round_trip_relative_error"] == pytest.approx(error.item(), abs=1e-7)

    # samples.npz keeps the labels it was drawn for, and --seed seeds the draws.
    labels = tmp_path / "labels.npy"
    pattern = np.array([[0, 1, 1], [1, 0, 0], [1, 1, 1], [0, 0, 1]], dtype=np.int64)
    np.save(labels, pattern)
    assert main(["sample", "--model", str(out / "model.pt"), "--labels", str(labels), "--out", str(tmp_path / "s.npz"),
                 "--seed", "7"]) == 0
    with np.load(tmp_path / "s.npz") as samples:
        assert np.array_equal(samples["Y"], pattern)
        assert np.allclose(samples["X"], model.sample(torch.from_numpy(pattern), seed=7).numpy())
    np.save(labels, pattern.astype(np.float64))  # labels written as floats come back as the classes
    assert main(["sample", "--model", str(out / "model.pt"), "--labels", str(labels), "--out", str(tmp_path / "f.npz")]) == 0
    with np.load(tmp_path / "f.npz") as samples:
        assert samples["Y"].dtype == np.int64 and np.array_equal(samples["Y"], pattern)


def test_a_rerun_stopped_before_its_summary_leaves_no_summary_of_the_run_before(data_file, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train = ["train", "--input", str(data_file), "--out", str(out), "--num-blocks", "1", "--hidden", "4",
             "--max-time", "2", "--quiet"]
    assert main(train) == 0 and (out / "summary.json").exists()

    def interrupted(self, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(ConditionalGraphFlow, "save", interrupted)
    assert main(train) == 130
    # The old model is still there, its summary gone rather than describing a model it does not match.
    assert (out / "model.pt").exists() and not (out / "summary.json").exists()


def test_a_gzip_file_damaged_inside_is_reported_in_one_line(tmp_path, capsys):
    # zlib.error escaped as a traceback.
    from igraphflow.datasets.traffic import default_traffic_path

    raw = bytearray(default_traffic_path().read_bytes())
    raw[2000:2064] = bytes(b ^ 0xFF for b in raw[2000:2064])
    path = tmp_path / "damaged.csv.gz"
    path.write_bytes(bytes(raw))
    assert main(["train", "--dataset", "traffic", "--data", str(path), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "damaged.csv.gz: cannot be read as CSV (" in error and len(error.splitlines()) == 1


def test_damaged_or_foreign_array_files_are_reported_for_what_they_are(tmp_path, capsys):
    buffer = io.BytesIO()
    np.savez_compressed(buffer, X=np.arange(3000.0).reshape(100, 15, 2))
    raw = bytearray(buffer.getvalue())
    raw[100:116] = bytes(b ^ 0xFF for b in raw[100:116])  # inside the compressed data: a zlib.error
    (tmp_path / "damaged.npz").write_bytes(bytes(raw))
    assert main(["train", "--input", str(tmp_path / "damaged.npz"), "--out", str(tmp_path / "run")]) == 2
    assert "damaged.npz is not a readable .npy/.npz file: Error -3 while decompressing" in capsys.readouterr().err
    (tmp_path / "x.npy").write_text("a text file")  # was said to hold Python objects
    assert main(["train", "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "run")]) == 2
    assert "x.npy is not a readable .npy/.npz file: it starts with neither the .npy header" in capsys.readouterr().err


def test_a_model_never_fitted_is_refused_and_sample_leaves_no_folder_for_bad_arguments(data_file, tmp_path, capsys):
    edges = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    ConditionalGraphFlow(edges, 3, 2, 2, num_blocks=1).save(tmp_path / "unfitted.pt")
    labels = tmp_path / "labels.npy"
    np.save(labels, np.zeros((2, 3), dtype=np.int64))
    out = tmp_path / "typo_dir" / "sub" / "x.npz"
    assert main(["evaluate", "--model", str(tmp_path / "unfitted.pt"), "--input", str(data_file)]) == 2
    assert capsys.readouterr().err == f"igraphflow evaluate: error: {tmp_path / 'unfitted.pt'} holds a model that was never fitted\n"
    assert main(["sample", "--model", str(tmp_path / "unfitted.pt"), "--labels", str(labels), "--out", str(out)]) == 2
    assert "unfitted.pt holds a model that was never fitted" in capsys.readouterr().err
    # Weights as initialised, taken as fitted: enough to check the labels against.
    model = ConditionalGraphFlow(edges, 3, 2, 2, num_blocks=1)
    model.fitted.fill_(True)
    model.save(tmp_path / "model.pt")
    np.save(labels, np.zeros((2, 4), dtype=np.int64))
    assert main(["sample", "--model", str(tmp_path / "model.pt"), "--labels", str(labels), "--out", str(out)]) == 2
    assert "Y must have shape" in capsys.readouterr().err
    assert not (tmp_path / "typo_dir").exists()


def test_an_input_file_takes_no_data_and_needs_edges_of_node_indices(data_file, tmp_path, capsys):
    # --data was ignored; edge_index of strings failed in torch without naming it.
    assert main(["train", "--input", str(data_file), "--data", "x.csv", "--out", str(tmp_path / "run")]) == 2
    assert "--data gives the files of a --dataset, not of an --input file" in capsys.readouterr().err
    with np.load(data_file) as arrays:
        np.savez(tmp_path / "names.npz", **dict(arrays) | dict(edge_index=np.array([["a", "b"], ["b", "a"]])))
    assert main(["train", "--input", str(tmp_path / "names.npz"), "--out", str(tmp_path / "run")]) == 2
    assert "names.npz: edge_index must hold node indices, got dtype <U1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_errors_name_the_flags_and_directories(data_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ConditionalGraphFlow, "fit", lambda *args, **kwargs: pytest.fail("trained despite a bad argument"))
    out = tmp_path / "run"
    # A directory was "no file at ...".
    assert main(["train", "--input", str(tmp_path), "--out", str(out), "--quiet"]) == 2
    assert f"{tmp_path} is a directory, not a .npy/.npz file" in capsys.readouterr().err
    # fit's argument name checkpoint_dir stood for the flag.
    assert main(["train", "--input", str(data_file), "--out", str(out), "--checkpoint-dir", str(data_file), "--quiet"]) == 2
    assert f"--checkpoint-dir {data_file} cannot be written: {data_file} is a file" in capsys.readouterr().err
    assert not out.exists()  # no empty run folder left behind
    # Negative values were accepted here, and refused by compare.
    for command in (["train", "--out", str(out)], ["evaluate", "--model", str(tmp_path / "model.pt")]):
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--input", str(data_file), "--exact-max-dim", "-5"])
        assert exit_info.value.code == 2
        assert "argument --exact-max-dim: must be an integer >= 0, got -5" in capsys.readouterr().err


def _path_graph_file(path, num_nodes, num_features, num_signals=10):
    r"""Writes an --input file of signals on the path 0 - 1 - ... - (num_nodes - 1); returns the edges."""
    g = torch.Generator().manual_seed(0)
    Y = torch.randint(0, 2, (num_signals, num_nodes), generator=g)
    X = torch.randn(num_signals, num_nodes, num_features, generator=g) + 2.0 * Y.unsqueeze(-1)
    forward = torch.stack([torch.arange(num_nodes - 1), torch.arange(1, num_nodes)])
    edges = torch.cat([forward, forward.flip(0)], dim=1)
    np.savez(path, X=X.numpy(), Y=Y.numpy(), edge_index=edges.numpy())
    return edges


def _save_taken_as_fitted(path, edge_index, num_nodes, num_features):
    r"""Saves a model with its weights as initialised, taken as fitted: enough to evaluate and sample
    with, without a fit to wait for."""
    model = ConditionalGraphFlow(edge_index, num_nodes, num_features, 2, num_blocks=1, hidden=4)
    model.fitted.fill_(True)
    model.save(path)
    return model


def _write_one_array(file):
    np.save(file, np.zeros((10, 3, 2)))


def _write_an_empty_archive(file):
    np.savez(file)


@pytest.mark.parametrize(
    "write, lacking",
    [
        (_write_one_array, "lacks the arrays ['Y', 'edge_index'] (it has ['X'])"),  # a .npy array is X
        (_write_an_empty_archive, "lacks the arrays ['X', 'Y', 'edge_index'] (it has [])"),
    ],
)
def test_a_file_of_one_array_or_of_none_names_the_arrays_it_lacks(tmp_path, capsys, write, lacking):
    path = tmp_path / "arrays"
    with open(path, "wb") as file:
        write(file)
    assert main(["train", "--input", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert lacking in capsys.readouterr().err


def test_five_signals_are_enough_for_an_input_file(data_file, tmp_path, capsys):
    # The least the help allows (N >= 5): round(0.8 * 5) = 4 train and one tests.
    with np.load(data_file) as arrays:
        np.savez(tmp_path / "five.npz", **{**arrays, "X": arrays["X"][:5], "Y": arrays["Y"][:5]})
    assert main(["train", "--input", str(tmp_path / "five.npz"), "--out", str(tmp_path / "run"), "--num-blocks", "1",
                 "--hidden", "4", "--max-time", "1", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_train"] == 4 and summary["num_test"] == 1


def test_labels_may_number_up_to_twice_as_many_classes_as_they_use(data_file, tmp_path):
    # Labels 0 and 3: K = 4 is twice the two labels used, which is not more than twice.
    with np.load(data_file) as arrays:
        np.savez(tmp_path / "sparse.npz", **{**arrays, "Y": 3 * arrays["Y"]})
    with pytest.warns(UserWarning, match=r"labels \[1, 2\] never occur in Y"):
        assert main(["train", "--input", str(tmp_path / "sparse.npz"), "--out", str(tmp_path / "run"), "--num-blocks", "1",
                     "--hidden", "4", "--max-time", "1", "--quiet"]) == 0
    assert ConditionalGraphFlow.load(tmp_path / "run" / "model.pt").num_classes == 4


def _interrupted_after_a_checkpoint(self, X, Y, *, checkpoint_dir, **kwargs):
    (Path(checkpoint_dir) / "fit.pt").write_bytes(b"")
    raise KeyboardInterrupt


def test_an_interrupted_train_keeps_the_checkpoints_inside_an_output_folder_it_made(data_file, tmp_path, capsys, monkeypatch):
    # Only an empty folder is removed: the checkpoints are what the rerun resumes from.
    monkeypatch.setattr(ConditionalGraphFlow, "fit", _interrupted_after_a_checkpoint)
    out = tmp_path / "run"
    assert main(["train", "--input", str(data_file), "--out", str(out), "--checkpoint-dir", str(out / "checkpoints"),
                 "--quiet"]) == 130
    assert (out / "checkpoints" / "fit.pt").is_file()
    assert capsys.readouterr().err == "igraphflow train: interrupted\n"


@pytest.mark.filterwarnings("ignore:max_time")  # a budget of 1e-9 s runs out before the first block, and says so
@pytest.mark.parametrize("max_time, blocks", [("1e-9", 0), ("1", 1)])
def test_the_summary_describes_the_saved_model_and_the_time_it_took(data_file, tmp_path, max_time, blocks):
    out = tmp_path / "run"
    started = time.monotonic()
    assert main(["train", "--input", str(data_file), "--out", str(out), "--num-blocks", "1", "--hidden", "4",
                 "--max-time", max_time, "--quiet"]) == 0
    elapsed = time.monotonic() - started
    summary = json.loads((out / "summary.json").read_text())
    model = ConditionalGraphFlow.load(out / "model.pt")
    assert summary["num_blocks"] == model.num_blocks == blocks
    assert summary["w2_per_block"] == pytest.approx([record.w2 for record in model.history_])
    assert len(summary["w2_per_block"]) == blocks
    assert 0 <= summary["train_seconds"] <= elapsed


def _library_default(setting):
    return inspect.signature(ConditionalGraphFlow).parameters[setting].default


@pytest.mark.filterwarnings("ignore:max_time")  # no block is trained: only the settings are looked at
@pytest.mark.parametrize(
    "options, expected",
    [
        # Without options, the library's defaults, and seed 0 as --help says.
        ([], dict(conv=_library_default("conv"), hidden=_library_default("hidden"),
                  num_blocks=_library_default("num_blocks"), seed=0)),
        (["--conv", "cheb", "--hidden", "4", "--num-blocks", "2", "--seed", "3"], dict(conv="cheb", hidden=4, num_blocks=2, seed=3)),
    ],
)
def test_the_model_settings_given_reach_the_saved_model(data_file, tmp_path, options, expected):
    out = tmp_path / "run"
    assert main(["train", "--input", str(data_file), "--out", str(out), "--max-time", "1e-9", "--quiet", *options]) == 0
    config = ConditionalGraphFlow.load(out / "model.pt").config
    assert {key: config[key] for key in expected} == expected


@pytest.mark.filterwarnings("ignore:max_time")
@pytest.mark.parametrize("options, shown", [([], True), (["--quiet"], False)])
def test_quiet_leaves_out_the_progress_bars(data_file, tmp_path, capsys, options, shown):
    assert main(["train", "--input", str(data_file), "--out", str(tmp_path / "run"), "--num-blocks", "1",
                 "--hidden", "4", "--max-time", "1e-9", *options]) == 0
    assert ("JKO blocks" in capsys.readouterr().err) == shown


@pytest.mark.parametrize("command", ["train", "evaluate", "sample"])
def test_every_command_uses_the_device_it_is_given(data_file, tmp_path, capsys, command):
    # The meta device holds no values, so a command that takes it must refuse it.
    _save_taken_as_fitted(tmp_path / "model.pt", torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), 3, 2)
    labels = tmp_path / "labels.npy"
    np.save(labels, np.zeros((2, 3), dtype=np.int64))
    arguments = {
        "train": ["--input", str(data_file), "--out", str(tmp_path / "run"), "--num-blocks", "1", "--hidden", "4",
                  "--max-time", "1e-9", "--quiet"],
        "evaluate": ["--model", str(tmp_path / "model.pt"), "--input", str(data_file)],
        "sample": ["--model", str(tmp_path / "model.pt"), "--labels", str(labels), "--out", str(tmp_path / "s.npz")],
    }
    assert main([command, *arguments[command], "--device", "meta"]) == 2
    assert "'meta' holds no values" in capsys.readouterr().err


@pytest.mark.parametrize("num_nodes, num_features, estimator", [(16, 2, "exact"), (11, 3, "hutchinson")])
def test_evaluate_is_exact_up_to_32_dimensions_by_default(tmp_path, capsys, num_nodes, num_features, estimator):
    # The README: the likelihood is "exact up to V * C = 32 dimensions".
    edges = _path_graph_file(tmp_path / "data.npz", num_nodes, num_features)
    _save_taken_as_fitted(tmp_path / "model.pt", edges, num_nodes, num_features)
    assert main(["evaluate", "--model", str(tmp_path / "model.pt"), "--input", str(tmp_path / "data.npz")]) == 0
    assert json.loads(capsys.readouterr().out)["nll_estimator"] == estimator


def test_evaluate_draws_the_likelihood_estimates_probes_with_its_seed(tmp_path, capsys):
    edges = _path_graph_file(tmp_path / "data.npz", 3, 2)
    model = _save_taken_as_fitted(tmp_path / "model.pt", edges, 3, 2)
    assert main(["evaluate", "--model", str(tmp_path / "model.pt"), "--input", str(tmp_path / "data.npz"),
                 "--exact-max-dim", "0", "--seed", "3"]) == 0
    with np.load(tmp_path / "data.npz") as arrays:
        X_test, Y_test = torch.from_numpy(arrays["X"][8:]), torch.from_numpy(arrays["Y"][8:])  # round(0.8 * 10) = 8
    expected = -model.log_prob(X_test, Y_test, exact=False, seed=3).mean().item() / 6
    assert json.loads(capsys.readouterr().out)["test_nll_per_dim"] == pytest.approx(expected, rel=1e-5)


def test_an_unknown_dataset_option_is_reported_in_one_line(tmp_path, capsys):
    assert main(["train", "--dataset", "three_node", "--data-option", "nosuch=1", "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("igraphflow train: error: unknown option 'nosuch'") and len(error.splitlines()) == 1


def test_an_exact_max_dim_that_is_no_whole_number_is_named(data_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--model", str(tmp_path / "model.pt"), "--input", str(data_file), "--exact-max-dim", "2.5"])
    assert exit_info.value.code == 2
    assert "argument --exact-max-dim: not an integer: '2.5'" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["num_train", "=40"])
def test_a_data_option_needs_a_key_and_a_value(tmp_path, capsys, option):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dataset", "three_node", "--data-option", option, "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2 and f"expected KEY=VALUE, got {option!r}" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["a=b.csv", "my data.csv"])
def test_a_data_option_splits_at_the_first_equals_sign_and_keeps_values_python_cannot_read_as_text(tmp_path, capsys, name):
    # Neither path is a Python literal; the first also holds an "=", which belongs to the value.
    path = tmp_path / name
    assert main(["train", "--dataset", "traffic", "--data-option", f"path={path}", "--out", str(tmp_path / "run")]) == 2
    assert f"traffic: no such file {path}" in capsys.readouterr().err


def test_seed_seeds_a_simulated_dataset(tmp_path, capsys):
    # The test signals scored are those of the dataset loaded with that seed.
    data = load("three_node", seed=3, num_train=10, num_test=10)
    model = _save_taken_as_fitted(tmp_path / "model.pt", data.edge_index, data.num_nodes, data.num_features)
    assert main(["evaluate", "--model", str(tmp_path / "model.pt"), "--dataset", "three_node", "--data-option", "num_train=10",
                 "--data-option", "num_test=10", "--seed", "3"]) == 0
    expected = -model.log_prob(data.X_test, data.Y_test).mean().item() / (data.num_nodes * data.num_features)
    assert json.loads(capsys.readouterr().out)["test_nll_per_dim"] == pytest.approx(expected, rel=1e-5)


def test_evaluate_on_other_features_or_more_classes_names_the_model_and_the_data(data_file, tmp_path, capsys):
    # The same graph with three lags, or four classes, failed in the model's input checks
    # ("X must have shape [N, num_nodes=3, num_features=2], got [...]"), naming neither.
    out = tmp_path / "run"
    assert main(["train", "--input", str(data_file), "--out", str(out), "--num-blocks", "1", "--hidden", "4",
                 "--max-time", "1", "--quiet"]) == 0
    with np.load(data_file) as arrays:
        np.savez(tmp_path / "lags.npz", **{**arrays, "X": np.concatenate([arrays["X"], arrays["X"][..., :1]], -1)})
        np.savez(tmp_path / "classes.npz", **{**arrays, "Y": arrays["Y"] + (np.arange(len(arrays["Y"])) % 3 == 0)[:, None]})
    capsys.readouterr()
    model = str(out / "model.pt")
    assert main(["evaluate", "--model", model, "--input", str(tmp_path / "lags.npz")]) == 2
    assert f"lags.npz has 3 features per node, the model {model} 2" in capsys.readouterr().err
    assert main(["evaluate", "--model", model, "--input", str(tmp_path / "classes.npz")]) == 2
    assert f"classes.npz has labels of 3 classes, the model {model} knows 2" in capsys.readouterr().err


def test_num_classes_saved_as_a_float_is_read_as_a_count(data_file, tmp_path, capsys):
    # np.savez(..., num_classes=3.0) stores a 0-d float array, refused as "got array(3.)".
    with np.load(data_file) as arrays:
        np.savez(tmp_path / "k.npz", **arrays, num_classes=np.array(3.0))
    with pytest.warns(UserWarning, match=r"labels \[2\] never occur"):
        assert main(["train", "--input", str(tmp_path / "k.npz"), "--out", str(tmp_path / "run"), "--num-blocks", "1",
                     "--hidden", "4", "--max-time", "1", "--quiet"]) == 0
    assert ConditionalGraphFlow.load(tmp_path / "run" / "model.pt").num_classes == 3
    with np.load(data_file) as arrays:
        np.savez(tmp_path / "half.npz", **arrays, num_classes=np.array(2.5))
    assert main(["train", "--input", str(tmp_path / "half.npz"), "--out", str(tmp_path / "run2"), "--quiet"]) == 2
    assert "half.npz: num_classes must be an integer >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("key, value, message", [
    ("Y", lambda a: np.where(a["Y"] == 0, np.nan, 1.0), "data.npz: Y must hold integer class labels"),
    ("X", lambda a: np.where(np.arange(a["X"].size).reshape(a["X"].shape) == 7, np.inf, a["X"]), "data.npz: X holds 1 NaN"),
])
def test_bad_values_in_an_input_file_name_the_file(data_file, tmp_path, capsys, key, value, message):
    with np.load(data_file) as arrays:
        arrays = dict(arrays)
    np.savez(data_file, **{**arrays, key: value(arrays)})
    assert main(["train", "--input", str(data_file), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "evaluate", "compare"])
def test_help_names_the_datasets(capsys, command):
    # "a name from igraphflow.datasets.available()" sent a command-line user to Python.
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "solar_hope, traffic, nsrdb" in text
    if command == "compare":
        assert "--no-figures write metrics.json only" in text


def test_warnings_are_one_line_naming_the_command(data_file, tmp_path):
    # Python's format showed cli.py, a line number and the call `model.fit(train["X"], ...)`.
    with np.load(data_file) as arrays:
        np.savez(tmp_path / "gap.npz", **{**arrays, "Y": 2 * arrays["Y"]})
    # The copy of igraphflow under test, not whichever one is installed.
    root = str(Path(igraphflow.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "igraphflow", "train", "--input", str(tmp_path / "gap.npz"), "--out",
                           str(tmp_path / "run"), "--num-blocks", "1", "--hidden", "4", "--max-time", "1", "--quiet"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "igraphflow train: warning: labels [1] never occur in Y" in done.stderr
    assert "cli.py" not in done.stderr and "model.fit(" not in done.stderr


def test_train_options_reach_the_model_and_bad_ones_are_named(data_file, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--input", str(data_file), "--num-blocks", "1", "--hidden", "4", "--max-time", "2", "--quiet"]
    assert main([*base, "--out", str(out), "--option", "fit_noise_first=True", "--option", "orders=(0, 1)",
                 "--option", "lr=0.005"]) == 0
    config = ConditionalGraphFlow.load(out / "model.pt").config
    assert config["fit_noise_first"] is True and config["orders"] == (0, 1) and config["lr"] == 0.005
    for option, message in [("hidden=8", "--option hidden: give it by its own flag (--hidden)"),
                            ("num_blocks=2", "--option num_blocks: give it by its own flag (--num-blocks)"),
                            ("hiden=8", "--option hiden: not a setting of ConditionalGraphFlow"),
                            ("num_nodes=3", "--option num_nodes: not a setting of ConditionalGraphFlow"),
                            ("lr=-1", "lr must be")]:
        capsys.readouterr()
        assert main([*base, "--out", str(tmp_path / "other"), "--option", option]) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "other").exists()


def test_evaluate_warns_when_the_dataset_options_differ_from_those_of_training(tmp_path, capsys, recwarn):
    out = tmp_path / "run"
    options = ["--data-option", "num_train=64", "--data-option", "num_test=32"]
    assert main(["train", "--dataset", "three_node", *options, "--out", str(out), "--num-blocks", "1", "--hidden", "4",
                 "--max-time", "2", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"] == {"dataset": "three_node", "input": None, "seed": 0, "data_options": {"num_train": 64, "num_test": 32}}
    evaluate = ["evaluate", "--model", str(out / "model.pt"), "--dataset", "three_node"]
    assert main([*evaluate, *options]) == 0 and not [w for w in recwarn if "summary.json" in str(w.message)]
    assert main([*evaluate, *options, "--seed", "3"]) == 0 and not [w for w in recwarn if "summary.json" in str(w.message)]
    # Its test split, signals 40 to 71 of the simulation, holds 24 that the model was trained on.
    assert main([*evaluate, "--data-option", "num_train=40", "--data-option", "num_test=32"]) == 0
    (warning,) = [w for w in recwarn if "summary.json" in str(w.message)]
    assert ("trained on dataset 'three_node' with the options {'num_train': 64, 'num_test': 32} (its summary.json), "
            "not {'num_train': 40, 'num_test': 32}") in str(warning.message)
    (out / "summary.json").write_text("{")  # a damaged summary: nothing to compare with, no error either
    assert main([*evaluate, "--data-option", "num_train=40", "--data-option", "num_test=32"]) == 0
