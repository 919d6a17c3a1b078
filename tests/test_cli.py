import json
import re

import numpy as np
import pytest
import torch

from igraphflow import ConditionalGraphFlow
from igraphflow.cli import main


@pytest.fixture
def data_file(tmp_path):
    g = torch.Generator().manual_seed(0)
    Y = torch.randint(0, 2, (120, 3), generator=g)
    X = torch.randn(120, 3, 2, generator=g) + 2.0 * Y.unsqueeze(-1)
    path = tmp_path / "data.npz"
    np.savez(path, X=X.numpy(), Y=Y.numpy(), edge_index=np.array([[0, 1, 1, 2], [1, 0, 2, 1]]))
    return path


def test_train_evaluate_sample(data_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--input", str(data_file), "--out", str(out), "--num-blocks", "2", "--hidden", "8",
                 "--max-time", "5", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_blocks"] >= 1 and summary["round_trip_relative_error"] < 1e-4
    model = ConditionalGraphFlow.load(out / "model.pt")
    assert model.num_nodes == 3

    capsys.readouterr()
    assert main(["evaluate", "--model", str(out / "model.pt"), "--input", str(data_file)]) == 0
    assert json.loads(capsys.readouterr().out)["test_nll_per_dim"] == pytest.approx(summary["test_nll_per_dim"])

    labels = tmp_path / "labels.npy"
    np.save(labels, np.zeros((5, 3), dtype=np.int64))
    assert main(["sample", "--model", str(out / "model.pt"), "--labels", str(labels), "--out", str(tmp_path / "s.npz")]) == 0
    with np.load(tmp_path / "s.npz") as samples:
        assert samples["X"].shape == (5, 3, 2)


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
    ],
)
def test_bad_input_files_fail_before_training(tmp_path, capsys, arrays, message):
    path, out = tmp_path / "bad.npz", tmp_path / "run"
    np.savez(path, edge_index=np.array([[0, 1], [1, 2]]), **arrays)
    assert main(["train", "--input", str(path), "--out", str(out), "--quiet"]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (out / "model.pt").exists()


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert all(command in text for command in ("train", "evaluate", "sample", "compare"))
