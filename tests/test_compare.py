r"""Smoke test of the comparison: every method trains briefly and metrics.json is complete."""

import importlib.util
import json
import math
import re
import statistics
import sys
from pathlib import Path

import pytest
import numpy as np
import torch

import igraphflow.compare as compare_module
from igraphflow.compare import (
    check_requirements, compare, evaluate, make_model, evaluate_draws, format_table, main, method_settings, plot_pca, plot_samples,
    reference_signals,
)
from igraphflow.checkpoint import load_checked, save_atomic
from igraphflow.datasets import load
from igraphflow.latent import MIXTURE_COMPONENTS
from igraphflow.metrics import energy_distance, mmd
from igraphflow.temperature import TEMPERATURE_BOUNDS
from test_metrics import OnAnotherDevice

torch.set_num_threads(1)

REQUIRED = {"mmd", "energy", "nll", "acc", "train_s"}

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"

#: One epoch of one block: our flow's result is then the same in every run (but its timings).
TINY_JKO = {"num_blocks": 1, "max_epochs": 1, "hidden": 8, "orders": (0, 1)}

FIT_METHOD = compare_module.fit_method


def _script(name):
    r"""Imports ``experiments/<name>.py`` (the folder is no package)."""
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def no_training(monkeypatch):
    r"""Fails the test if any method starts training: the checks must come first."""

    def fail(*args, **kwargs):
        raise AssertionError("a method trained before the arguments were checked")

    monkeypatch.setattr(compare_module, "fit_method", fail)


def test_smoke_all_methods(tmp_path):
    out = tmp_path / "run"
    assert main(["--dataset", "three_node", "--out", str(out), "--max-time", "1.5", "--seed", "0",
                 "--data-option", "num_train=200", "--data-option", "num_test=240",
                 "--option", "num_blocks=2", "--option", "orders=(0,1)", "--option", "ignn.blocks=2"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["dataset"] == "three_node"
    assert set(result["methods"]) == {"jko", "ignn", "cinn", "nsf", "cgan"}
    for method, row in result["methods"].items():
        assert REQUIRED <= set(row), method
        assert row["mmd"] == row["mmd_alpha"]["1"]
        assert set(row["mmd_alpha"]) == {"0.1", "1", "5", "10"}
        assert row["protocol"] == "top3_patterns" and len(row["patterns"]) == 3
        assert row["train_s"] < 30
    assert result["methods"]["cgan"]["nll"] is None and result["methods"]["cgan"]["acc"] is None
    assert result["methods"]["nsf"]["acc"] is None
    for method in ("jko", "ignn"):
        assert 0.0 <= result["methods"][method]["acc"] <= 1.0
        assert isinstance(result["methods"][method]["nll"], float)
    jko = result["methods"]["jko"]
    assert jko["num_blocks"] <= 2 and len(jko["blocks"]) == jko["num_blocks"]
    assert jko["settings"]["orders"] == [0, 1] and result["settings"]["ignn"] == {"blocks": 2}
    assert {"epochs", "stopped_by_time", "w2_per_dim", "val_nll_per_dim"} <= set(jko["blocks"][0])
    assert TEMPERATURE_BOUNDS[0] <= jko["sample_temperature"] <= TEMPERATURE_BOUNDS[1]
    assert jko["noise_components"] in (1,) + MIXTURE_COMPONENTS
    assert isinstance(jko["noise_label_weights"], bool) and isinstance(jko["pattern_mean"], bool)
    assert result["draws"] == 5
    for row in [*result["methods"].values(), result["reference"]]:
        assert len(row["energy_draws"]) == 5 and row["energy"] == pytest.approx(sum(row["energy_draws"]) / 5)
    assert result["reference"]["label"] == "training data (reference)" and "energy" in result["reference"]
    assert format_table(result).splitlines()[-1].startswith("| training data (reference) |")
    for figure in ("samples.png", "pca.png", "training.png"):
        assert (out / figure).stat().st_size > 1000


def test_protocol_falls_back_to_whole_test():
    data = load("three_node", num_train=8, num_test=30)
    real = evaluate(data, data.X_test)
    assert real["protocol"] == "whole_test" and real["patterns"] is None
    assert real["mmd"] == real["mmd_whole"]
    data = load("three_node", num_train=8, num_test=400)
    shifted = evaluate(data, data.X_test + 1.0)
    assert shifted["protocol"] == "top3_patterns" and all(p["count"] >= 20 for p in shifted["patterns"])
    assert shifted["mmd"] > evaluate(data, data.X_test)["mmd"]


def test_whole_test_statistics_leave_out_the_pairs_of_a_signal_and_its_own_draw():
    # The test signals, as if generated for their own labels: with the pairs (i, i) left out of
    # the cross terms both statistics are exactly 0; with them, -2/n of the mean distance.
    data = load("three_node", num_train=8, num_test=30)
    real = evaluate(data, data.X_test)
    assert real["protocol"] == "whole_test"
    assert real["energy"] == pytest.approx(0.0, abs=1e-12) and real["mmd"] == pytest.approx(0.0, abs=1e-12)
    assert energy_distance(data.X_test, data.X_test) < -0.01
    shifted = data.X_test + 0.3
    row = evaluate(data, shifted)
    assert row["energy"] == pytest.approx(energy_distance(shifted, data.X_test, paired=True), rel=1e-12)
    assert row["mmd_alpha"]["0.1"] == pytest.approx(mmd(shifted, data.X_test, 0.1, paired=True)[0.1], rel=1e-12)


def test_three_patterns_of_exactly_the_minimum_count_use_the_pattern_protocol():
    data = load("three_node", num_train=8, num_test=60)
    data.Y_test = torch.tensor([[0, 0, 1]] * 20 + [[1, 0, 0]] * 20 + [[1, 1, 1]] * 20)
    assert evaluate(data, data.X_test, min_pattern_count=20)["protocol"] == "top3_patterns"
    assert evaluate(data, data.X_test, min_pattern_count=21)["protocol"] == "whole_test"


def test_the_pattern_protocol_averages_the_three_most_frequent_patterns_by_count():
    # Patterns of 40, 30 and 25 signals and a rarer one: each statistic within each of the three,
    # weighted by its count, computed here directly.
    data = load("three_node", num_train=8, num_test=110)
    patterns = [[0, 0, 1]] * 25 + [[1, 1, 0]] * 40 + [[0, 1, 0]] * 15 + [[1, 0, 1]] * 30
    data.Y_test = torch.tensor(patterns)
    generated = data.X_test + 0.4 * torch.randn(data.X_test.shape, generator=torch.Generator().manual_seed(0))
    row = evaluate(data, generated)
    assert row["protocol"] == "top3_patterns"
    assert [(p["pattern"], p["count"]) for p in row["patterns"]] == [([1, 1, 0], 40), ([1, 0, 1], 30), ([0, 0, 1], 25)]
    groups = [(slice(25, 65), 40), (slice(80, 110), 30), (slice(0, 25), 25)]
    energy = sum(n * energy_distance(generated[rows], data.X_test[rows]) for rows, n in groups) / 95
    assert row["energy"] == pytest.approx(energy, rel=1e-12)
    for alpha in (0.1, 1.0):
        value = sum(n * mmd(generated[rows], data.X_test[rows], alpha)[alpha] for rows, n in groups) / 95
        assert row["mmd_alpha"][f"{alpha:g}"] == pytest.approx(value, rel=1e-12)
    assert row["energy"] != pytest.approx(row["energy_whole"], rel=1e-3)


def test_compare_records_per_dimension_values_and_its_draw_seeds(monkeypatch):
    # D = 6 = exact_max_dim: exact likelihoods. The NLLs are per dimension (V * C), and so is
    # the movement of each block; draw i of run `seed` uses the sampling seed seed * draws + i.
    data = load("three_node", num_train=200, num_test=40)
    models, seeds = [], []

    def recording(*args, **kwargs):
        model = make_model(*args, **kwargs)
        sample = model.sample
        model.sample = lambda Y, seed=None: seeds.append(seed) or sample(Y, seed=seed)
        models.append(model)
        return model

    make_model = compare_module.make_model
    monkeypatch.setattr(compare_module, "make_model", recording)
    result = compare(data, "jko", max_time=1.0, seed=2, draws=3, exact_max_dim=6, max_eval=30, figures=False,
                     settings={"jko": {"num_blocks": 2, "hidden": 8}})
    model = models[-1]  # the one trained (the settings check builds one too)
    row = result["methods"]["jko"]
    assert result["nll_exact"] is True and seeds == [6, 7, 8] and result["nll_num_samples"] == 30
    # The likelihoods of 30 of the 40 test signals, and of as many training signals, each with its own labels.
    g = torch.Generator().manual_seed(2)
    test_rows = torch.randperm(40, generator=g)[:30].sort().values
    train_rows = torch.randperm(200, generator=g)[:30].sort().values
    X, Y = data.X_test[test_rows], data.Y_test[test_rows]
    assert result["true_nll"] == pytest.approx(-data.true_log_prob(X, Y).mean().item() / 6)
    assert row["nll"] == pytest.approx(-model.log_prob(X, Y).mean().item() / 6, rel=1e-6)
    X, Y = data.X_train[train_rows], data.Y_train[train_rows]
    assert row["nll_train"] == pytest.approx(-model.log_prob(X, Y).mean().item() / 6, rel=1e-6)
    assert [b["w2_per_dim"] for b in row["blocks"]] == pytest.approx([r.w2 / 6 for r in model.history_])


def test_evaluate_draws_averages_the_statistics_of_each_set():
    data = load("three_node", num_train=200, num_test=400)
    sets = {s: data.X_test + 0.3 * torch.randn(data.X_test.shape, generator=torch.Generator().manual_seed(s)) for s in (3, 4, 5)}
    row, first = evaluate_draws(data, sets.__getitem__, [3, 4, 5])
    single = [evaluate(data, sets[s]) for s in (3, 4, 5)]
    assert torch.equal(first, sets[3])
    assert row["protocol"] == "top3_patterns" and row["patterns"] == single[0]["patterns"]
    assert row["energy_draws"] == [r["energy"] for r in single] and len(set(row["energy_draws"])) == 3
    for key in ("mmd", "energy", "mmd_whole", "energy_whole"):
        assert row[key] == pytest.approx(sum(r[key] for r in single) / 3)
    assert row["mmd_alpha"]["0.1"] == pytest.approx(sum(r["mmd_alpha"]["0.1"] for r in single) / 3)
    assert row["mmd"] == row["mmd_alpha"]["1"]
    # The standard error of each mean over the sets, against the textbook formula.
    for key in ("mmd", "energy"):
        assert row[f"{key}_se"] == pytest.approx(statistics.stdev(r[key] for r in single) / math.sqrt(3))
    alone, _ = evaluate_draws(data, sets.__getitem__, [3])
    assert alone["mmd_se"] is None and alone["energy_se"] is None
    with pytest.raises(ValueError, match="at least one seed"):
        evaluate_draws(data, sets.__getitem__, [])


def test_the_table_shows_the_standard_errors_over_the_generated_sets():
    row = {"mmd": 2.5e-6, "mmd_se": 1.04e-7, "mmd_alpha": {"0.1": 0.01, "5": 1e-12, "10": 0.0}, "energy": 0.0912,
           "energy_se": 0.0061, "nll": 0.4, "acc": 0.87, "train_s": 60.2}
    table = format_table({"methods": {"jko": row, "nsf": {**row, "mmd_se": None, "energy_se": None}}})
    jko, nsf = table.splitlines()[2:]
    assert "| 2.5e-06 ± 1e-07 |" in jko and "| 0.0912 ± 0.0061 |" in jko
    assert "±" not in nsf and "| 2.5e-06 |" in nsf


def test_reference_signals_are_training_signals_with_the_test_patterns():
    data = load("three_node", num_train=64, num_test=40)  # all 8 patterns appear in training
    reference = reference_signals(data, seed=0)
    train_rows = [(data.X_train == x).flatten(1).all(1).nonzero().flatten() for x in reference]
    assert all(len(rows) == 1 for rows in train_rows)
    matched = torch.cat(train_rows)
    assert torch.equal(data.Y_train[matched], data.Y_test)
    assert len(matched.unique()) == len(matched)  # no training signal twice
    rare = load("three_node", num_train=16, num_test=40)  # some patterns run out: others fill in
    rows = torch.cat([(rare.X_train == x).flatten(1).all(1).nonzero().flatten() for x in reference_signals(rare)])
    assert len(rows) == 40 and len(rows.unique()) == 16


def test_reference_signals_use_every_training_signal_before_repeating_one():
    # Every training pattern is as far from the test patterns as a pattern can be (all V nodes
    # differ): a used signal must still lose to an unused one.
    data = load("three_node", num_train=2, num_test=2)
    data.Y_train, data.Y_test = torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long)
    for seed in range(3):
        first, second = reference_signals(data, seed=seed)
        assert not torch.equal(first, second)


def test_reference_signals_start_over_when_the_training_signals_run_out():
    # 8 training signals for 24 test patterns, each a training pattern: every round finds them all again.
    data = load("three_node", num_train=8, num_test=30)
    data.X_test, data.Y_test = data.X_train.repeat(3, 1, 1), data.Y_train.repeat(3, 1)
    reference = reference_signals(data, seed=1)
    rows = [int((data.X_train == x).flatten(1).all(1).nonzero()[0]) for x in reference]
    assert torch.equal(data.Y_train[rows], data.Y_test)


def test_reference_signals_fall_back_to_the_nearest_label_pattern():
    data = load("three_node", num_train=64, num_test=40)
    ones = (data.Y_train == 1).all(1)
    data.Y_train[ones] = torch.tensor([1, 1, 0])  # the pattern (1, 1, 1) is no longer in training
    reference = reference_signals(data, seed=1)
    rows = torch.cat([(data.X_train == x).flatten(1).all(1).nonzero().flatten() for x in reference])
    mismatch = (data.Y_train[rows] != data.Y_test).sum(1)
    wanted = (data.Y_test == 1).all(1)
    assert wanted.any() and (mismatch[wanted] == 1).all()  # one node off: the nearest there is
    assert (mismatch[~wanted] == 0).all()


def test_bad_arguments(tmp_path, capsys):
    data = load("three_node", num_train=8, num_test=8)
    with pytest.raises(ValueError, match="unknown methods"):
        compare(data, "jko,vae", max_time=1.0)
    with pytest.raises(ValueError, match="draws"):
        compare(data, "cinn", max_time=1.0, draws=0)
    with pytest.raises(ValueError, match="draws"):
        compare(data, "cinn", max_time=1.0, draws=1.5)
    for max_eval in (0, -1):  # -1 evaluated on all test signals but one, 0 failed after training
        with pytest.raises(ValueError, match="max_eval must be an integer >= 1"):
            compare(data, "cinn", max_time=1.0, max_eval=max_eval)
    with pytest.raises(ValueError, match=r"settings for unknown methods \['nope'\]"):  # were recorded, unused
        compare(data, "cinn", max_time=1.0, settings={"nope": {"hidden": 3}})
    with pytest.raises(ValueError, match=r"settings for \['ignn'\], which are not among the methods compared \(cinn\)"):
        compare(data, "cinn", max_time=1.0, settings={"ignn": {"blocks": 4}})
    for fixed in ({"device": "cuda"}, {"seed": 3}):  # were "got multiple values for keyword argument"
        with pytest.raises(ValueError, match=r"jko settings \['(device|seed)'\] are not settings of a comparison"):
            compare(data, "jko", max_time=1.0, settings={"jko": fixed})
    with pytest.raises(ValueError, match="names no setting"):
        method_settings([("ignn.", 3)])
    for argv, message in ((["--dataset", "nope"], "unknown dataset 'nope'; available: three_moons"),
                          (["--dataset", "three_node", "--option", "vae.hidden=3"], "unknown method 'vae' in option 'vae.hidden'"),
                          # named by their flags, not by compare's arguments
                          (["--dataset", "three_node", "--draws", "0"], "argument --draws: must be an integer >= 1, got 0"),
                          (["--dataset", "three_node", "--exact-max-dim", "-1"], "argument --exact-max-dim: must be an integer >= 0")):
        with pytest.raises(SystemExit) as exit:
            main([*argv, "--out", str(tmp_path)])
        error = capsys.readouterr().err
        assert exit.value.code == 2 and message in error and "Traceback" not in error


def test_missing_packages_are_reported_before_training(tmp_path, monkeypatch, capsys, no_training):
    monkeypatch.setitem(sys.modules, "FrEIA", None)  # imports as if it were not installed
    with pytest.raises(SystemExit) as exit:
        main(["--dataset", "three_node", "--out", str(tmp_path), "--methods", "jko,cinn",
              "--data-option", "num_train=64", "--data-option", "num_test=32"])
    error = capsys.readouterr().err
    assert exit.value.code == 2 and "Traceback" not in error
    assert "the baseline cinn needs the package FrEIA" in error and 'pip install -e ".[baselines]"' in error
    check_requirements(["jko", "ignn", "nsf", "cgan"], figures=False)  # none of these needs FrEIA
    monkeypatch.setitem(sys.modules, "zuko", None)
    for name in ("igraphflow.baselines", "igraphflow.baselines.nsf"):  # imported afresh, without zuko
        monkeypatch.delitem(sys.modules, name, raising=False)
    for method in ("ignn", "cgan"):  # they were built through a package that imported every baseline
        make_model(method, load("three_node", num_train=64, num_test=32), seed=0)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    data = load("three_node", num_train=64, num_test=32)
    with pytest.raises(ModuleNotFoundError, match=r"drawing the figures needs the package matplotlib.*\.\[baselines\]"):
        compare(data, "jko", max_time=1.0, out_dir=tmp_path)


def test_every_method_settings_are_checked_before_training(tmp_path, capsys, no_training):
    data = load("three_node", num_train=64, num_test=32)
    with pytest.raises(ValueError, match=r"bad ignn settings \{'blcoks': 4\}: .*'blcoks'"):
        compare(data, "jko,ignn", max_time=1.0, settings={"ignn": {"blcoks": 4}})
    with pytest.raises(ValueError, match=r"bad ignn settings \{'blocks': 0\}: blocks"):  # a refused value
        compare(data, "jko,ignn", max_time=1.0, settings={"ignn": {"blocks": 0}})
    with pytest.raises(SystemExit) as exit:
        main(["--dataset", "three_node", "--out", str(tmp_path), "--methods", "jko,ignn",
              "--option", "ignn.blcoks=4"])
    assert exit.value.code == 2 and "bad ignn settings {'blcoks': 4}" in capsys.readouterr().err


def test_settings_json_cannot_record_methods_named_twice_and_bad_dims_are_refused_before_training(tmp_path, no_training):
    data = load("three_node", num_train=64, num_test=32)
    # A set of hop radii was accepted by the flow, and compare failed writing metrics.json after training.
    with pytest.raises(ValueError, match="cannot be written to metrics.json"):
        compare(data, "jko", max_time=1.0, settings={"jko": {"orders": {0, 1}}}, out_dir=tmp_path)
    with pytest.raises(AssertionError, match="a method trained"):  # NumPy numbers are numbers
        compare(data, "jko", max_time=1.0, settings={"jko": {"max_epochs": np.int64(1)}}, out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"methods named more than once: \['jko'\]"):
        compare(data, "jko,nsf,jko", max_time=1.0)
    with pytest.raises(ValueError, match="exact_max_dim must be an integer >= 0"):
        compare(data, "jko", max_time=1.0, exact_max_dim=-1)
    for setting in ({"sigma": -1.0}, {"conv": "bogus"}, {"orders": ()}, {"gamma": math.nan}):
        with pytest.raises(ValueError, match="bad ignn settings"):  # were refused only when the iGNN trained
            compare(data, "jko,ignn", max_time=1.0, settings={"ignn": setting})


def test_metrics_are_written_after_every_method(tmp_path, monkeypatch):
    data = load("three_node", num_train=64, num_test=32)
    fit_method = compare_module.fit_method

    def fit_or_fail(model, method, *args):
        if method == "nsf":
            raise RuntimeError("a late method failed")
        return fit_method(model, method, *args)

    monkeypatch.setattr(compare_module, "fit_method", fit_or_fail)
    with pytest.raises(RuntimeError, match="a late method failed"):
        compare(data, "cinn,nsf", max_time=1.0, out_dir=tmp_path, figures=False, draws=1)
    written = json.loads((tmp_path / "metrics.partial.json").read_text())
    assert set(written["methods"]) == {"cinn"} and written["pending"] == ["nsf"]
    # no temporary left behind
    assert sorted(f.name for f in tmp_path.iterdir()) == ["methods", "metrics.partial.json"]
    assert [f.name for f in (tmp_path / "methods").iterdir()] == ["cinn.pt"]
    monkeypatch.setattr(compare_module, "fit_method", fit_method)
    result = compare(data, "cinn,nsf", max_time=1.0, out_dir=tmp_path, figures=False, draws=1)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["methods", "metrics.json"]  # a complete run, and only that
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(result))
    assert "pending" not in result and result["methods"]["nsf"]["nll_train"] is not None


def test_a_test_split_of_one_signal_is_refused_before_training(no_training):
    data = load("three_node", num_train=64, num_test=1)
    with pytest.raises(ValueError, match="has 1 signals; the MMD and energy need at least 2"):
        compare(data, "jko", max_time=1.0)


def test_compare_all_checks_everything_before_training(tmp_path, monkeypatch, capsys, no_training):
    compare_all = _script("compare_all")
    monkeypatch.delenv("IGRAPHFLOW_DATA", raising=False)
    for argv, message in [
        (["--datasets", "three_node,nope"], "unknown dataset 'nope'"),
        (["--datasets", "three_node,solar_hope"], "IGRAPHFLOW_DATA"),
        (["--datasets", "three_node", "--methods", "jko,vae"], "unknown methods ['vae']"),
        (["--datasets", "three_node", "--option", "foo.x=1"], "unknown method 'foo'"),
        (["--datasets", "three_node,traffic", "--option", "ignn.blcoks=4"], "bad ignn settings {'blcoks': 4}"),
        (["--datasets", "chordal", "--methods", "nsf"], "no chosen method runs on chordal"),
        (["--datasets", "three_node", "--methods", "jko", "--option", "ignn.blocks=4"], "not among the methods compared"),
        (["--datasets", "three_node", "--max-time", "-1"], "--max-time: must be a positive number of seconds, got '-1'"),
    ]:
        with pytest.raises(SystemExit) as exit:
            compare_all.main([*argv, "--out", str(tmp_path)])
        assert exit.value.code == 2 and message in capsys.readouterr().err, argv


@pytest.mark.parametrize("script", ["jko_budget", "jko_settings", "three_node_expressiveness", "conditional_means"])
def test_the_experiments_refuse_bad_arguments_before_any_output(script, tmp_path, capsys, no_training):
    # A negative budget was a traceback, after the output folder was made.
    out = [] if script == "conditional_means" else ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit:
        _script(script).main(["--max-time", "-1", *out])
    assert exit.value.code == 2 and "--max-time: must be a positive number of seconds" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    if script in ("jko_budget", "three_node_expressiveness"):  # a bad name: a traceback, the folder made
        with pytest.raises(SystemExit) as exit:
            _script(script).main(["--datasets" if script == "jko_budget" else "--methods", "nope", *out])
        assert exit.value.code == 2 and "nope" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_below_floor_counts_the_values_under_each_coordinates_training_minimum():
    below_floor = _script("conditional_means").below_floor
    train = torch.tensor([[[0.0, 5.0]], [[1.0, 7.0]]])  # floors 0 and 5
    data = type("Data", (), {"X_train": train})
    X = torch.tensor([[[-1.0, 5.0]], [[0.5, 4.5]], [[-3.0, 6.0]]])  # 3 of 6 values below, by 1, 0.5 and 3
    assert below_floor(X, data) == "0.500, 1.500"
    assert below_floor(train, data) == "0.000, 0.000"


def test_compare_all_strips_the_names(tmp_path, monkeypatch):
    compare_all = _script("compare_all")
    runs = []

    def record(data, methods, **kwargs):
        runs.append((data.name, methods))
        return {"methods": {m: {"protocol": "whole_test"} for m in methods}}

    monkeypatch.setattr(compare_all, "compare", record)
    monkeypatch.setattr(compare_all, "format_table", lambda result: "")
    assert compare_all.main(["--datasets", "three_node, traffic", "--methods", " jko", "--out", str(tmp_path)]) == 0
    assert runs == [("three_node", ["jko"]), ("traffic", ["jko"])]


def test_compare_leaves_nsf_out_of_the_default_methods_only_above_its_dimension_cap(tmp_path, monkeypatch):
    # Its autoregressive inverse on chordal (D = 1006) took over 40 minutes and 13 GB to sample.
    runs = []

    def record(data, methods, **kwargs):
        runs.append((data.name, compare_module.parse_methods(methods)))
        return {"dataset": data.name, "methods": {}}

    monkeypatch.setattr(compare_module, "compare", record)
    monkeypatch.setattr(compare_module, "format_table", lambda result: "")
    for name in ("three_node", "chordal"):
        assert compare_module.main(["--dataset", name, "--out", str(tmp_path)]) == 0
    assert compare_module.main(["--dataset", "chordal", "--methods", "jko,nsf", "--out", str(tmp_path)]) == 0
    assert runs == [("three_node", list(compare_module.METHODS)), ("chordal", ["jko", "ignn", "cinn", "cgan"]),
                    ("chordal", ["jko", "nsf"])]
    assert load("chordal").num_nodes * 2 > compare_module.NSF_MAX_DIM >= load("traffic").num_nodes * 2


def test_compare_all_gives_each_dataset_the_settings_of_the_methods_it_runs(tmp_path, monkeypatch):
    # chordal skips nsf: its settings there were refused as those of a method not compared.
    compare_all = _script("compare_all")
    runs = []

    def record(data, methods, settings, **kwargs):
        runs.append((data.name, methods, settings))
        return {"methods": {m: {"protocol": "whole_test"} for m in methods}}

    monkeypatch.setattr(compare_all, "compare", record)
    monkeypatch.setattr(compare_all, "format_table", lambda result: "")
    assert compare_all.main(["--datasets", "three_node,chordal", "--methods", "jko,nsf", "--option", "nsf.bins=4",
                             "--option", "hidden=8", "--out", str(tmp_path)]) == 0
    assert runs == [("three_node", ["jko", "nsf"], {"jko": {"hidden": 8}, "nsf": {"bins": 4}}),
                    ("chordal", ["jko"], {"jko": {"hidden": 8}})]


def test_jko_settings_checks_every_variant_before_training(tmp_path, capsys, no_training):
    jko_settings = _script("jko_settings")
    with pytest.raises(SystemExit) as exit:
        jko_settings.main(["--dataset", "three_node", "--variant", "default", "--variant", "typo:hiden=8",
                           "--out", str(tmp_path)])
    assert exit.value.code == 2
    assert "--variant typo: bad jko settings {'hiden': 8}" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_seed_table_is_the_mean_and_spread_over_runs(tmp_path, capsys):
    seed_table = _script("seed_table")
    for seed, (squared_mmd, energy) in enumerate([(1.0, 0.2), (3.0, 0.4)]):
        (tmp_path / f"seed{seed}" / "traffic").mkdir(parents=True)
        row = {"mmd": squared_mmd, "mmd_alpha": {"0.1": squared_mmd / 10}, "energy": energy, "nll": None, "acc": 0.5}
        (tmp_path / f"seed{seed}" / "traffic" / "metrics.json").write_text(json.dumps({"methods": {"nsf": row}}))
    runs = [tmp_path / "seed0", tmp_path / "seed1"]
    table = seed_table.seed_table(runs, "traffic")
    # mean 2, sample standard deviation sqrt(2); the NLL is missing from both runs
    assert "| nsf | 2 ± 1.4 | 0.2 ± 0.14 | 0.3 ± 0.14 | - | 0.5 ± 0 |" in table
    (tmp_path / "seed1" / "traffic" / "metrics.json").write_text("{")
    (tmp_path / "seed0" / "solar_hope").mkdir()
    (tmp_path / "seed0" / "solar_hope" / "metrics.json").write_text("[]")
    for datasets, message in [("traffic", "seed1/traffic/metrics.json is not a comparison result"),
                              ("solar_hope", "seed0/solar_hope/metrics.json is not a comparison result: it has no"),
                              ("three_node", "no comparison result at")]:
        with pytest.raises(SystemExit) as exit:
            seed_table.main([*map(str, runs), "--datasets", datasets])
        assert exit.value.code == 2 and message in capsys.readouterr().err, datasets


def test_figures_take_signals_on_another_device(tmp_path):
    # The signals went to NumPy from the GPU they were drawn on.
    data = load("three_node", num_train=64, num_test=32)
    generated = {"jko": reference_signals(data).as_subclass(OnAnotherDevice)}
    plot_samples(data, generated, tmp_path / "samples.png")
    plot_pca(data, generated, tmp_path / "pca.png")
    assert (tmp_path / "samples.png").stat().st_size > 0 and (tmp_path / "pca.png").stat().st_size > 0


def test_non_finite_draws_are_warned_about_and_counted():
    # A method that generated only NaN scored finite values, silently.
    data = load("three_node", num_train=64, num_test=64)

    def draw(seed):
        sample = reference_signals(data, seed)
        if seed == 1:
            sample[:3, 0, 0] = math.nan
            sample[5, 1, 1] = math.inf
            sample[6, 2, 0] = -math.inf
        return sample

    with pytest.warns(UserWarning, match=r"5 of 64 generated signals \(draw seed 1\) hold NaN or infinite values"):
        row, first = evaluate_draws(data, draw, [1, 0])
    assert row["nonfinite_draws"] == [5, 0]
    assert math.isfinite(row["energy"])
    assert first[:3, 0, 0].eq(0).all() and first[5, 1, 1] == 1e6 and first[6, 2, 0] == -1e6


def test_an_earlier_runs_results_are_removed_before_training(tmp_path, no_training):
    # They stayed beside a new run's: figures not drawn again (--no-figures, or no curve to plot).
    stale = ["metrics.json", "metrics.partial.json", "samples.png", "pca.png", "training.png"]
    for name in stale + ["notes.txt"]:
        (tmp_path / name).write_text("an earlier run")
    data = load("three_node", num_train=8, num_test=8)
    with pytest.raises(AssertionError, match="a method trained"):
        compare(data, "jko", max_time=1.0, out_dir=tmp_path, figures=False)
    assert [f.name for f in tmp_path.iterdir()] == ["notes.txt"]  # the user's own files stay


def test_seeds_are_checked_before_training_and_before_any_folder(tmp_path, capsys, no_training):
    data = load("three_node", num_train=8, num_test=8)
    with pytest.raises(ValueError, match="seed must be an integer <= 18446744073709551615"):  # was "Overflow when unpacking"
        compare(data, "jko", max_time=1.0, seed=2**70)
    with pytest.raises(ValueError, match=r"seed 3689348814741910323 is too large for 5 draws"):  # failed after training
        compare(data, "jko", max_time=1.0, seed=(2**64 - 1) // 5)
    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset", "three_node", "--methods", "jko", "--seed", str(2**70), "--out", str(tmp_path / "new" / "run")])
    assert exit_info.value.code == 2 and "seed must be an integer <=" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # was left empty


def _fits(monkeypatch, interrupt=None):
    r"""Records the methods that start training, in the list returned; the fit of ``interrupt``
    raises KeyboardInterrupt, as Ctrl-C would."""
    trained = []

    def fit(model, method, *args):
        trained.append(method)
        if method == interrupt:
            raise KeyboardInterrupt
        return FIT_METHOD(model, method, *args)

    monkeypatch.setattr(compare_module, "fit_method", fit)
    return trained


def _interrupted_run(out, monkeypatch):
    r"""``compare`` of our flow and the cGAN into ``out``, interrupted when the cGAN starts;
    returns the data and arguments, those of the rerun."""
    data = load("three_node", num_train=64, num_test=32)
    run = {"max_time": 1.0, "seed": 0, "out_dir": out, "figures": False, "draws": 1, "settings": {"jko": TINY_JKO}}
    trained = _fits(monkeypatch, interrupt="cgan")
    with pytest.raises(KeyboardInterrupt):
        compare(data, "jko,cgan", **run)
    assert trained == ["jko", "cgan"]
    return data, run


def _untimed(row):
    r"""A method's row without its timings, which no two runs share."""
    blocks = [{k: v for k, v in block.items() if k != "seconds"} for block in row.get("blocks", [])]
    return {k: v for k, v in row.items() if k not in ("train_s", "eval_s")} | {"blocks": blocks}


def test_an_interrupted_comparison_reuses_the_methods_it_finished(tmp_path, monkeypatch, capsys):
    data, run = _interrupted_run(tmp_path, monkeypatch)
    assert [f.name for f in (tmp_path / "methods").iterdir()] == ["jko.pt"]  # no temporary of the cGAN's
    recorded = json.loads((tmp_path / "metrics.partial.json").read_text())["methods"]["jko"]
    drawn = {}
    monkeypatch.setattr(compare_module, "plot_samples", lambda data, generated, path: drawn.update(samples=generated))
    monkeypatch.setattr(compare_module, "plot_pca", lambda data, generated, path: None)
    monkeypatch.setattr(compare_module, "plot_curves", lambda curves, path: drawn.update(curves=curves))
    trained = _fits(monkeypatch)
    result = compare(data, "jko,cgan", **run | {"figures": True})
    assert trained == ["cgan"]
    assert f"compare: reusing jko from {tmp_path / 'methods' / 'jko.pt'} (finished earlier)" in capsys.readouterr().err
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == json.loads(json.dumps(result)) and set(written["methods"]) == {"jko", "cgan"}
    assert written["methods"]["jko"] == recorded and "energy" in written["reference"]  # train_s and all
    resumed = drawn.copy()
    # An uninterrupted run gives the same row and figures (one method's row does not depend on the others).
    uninterrupted = compare(data, "jko", **run | {"out_dir": tmp_path / "whole", "figures": True})
    assert _untimed(written["methods"]["jko"]) == _untimed(json.loads(json.dumps(uninterrupted))["methods"]["jko"])
    assert torch.equal(resumed["samples"]["jko"], drawn["samples"]["jko"])
    assert resumed["curves"]["jko"] == drawn["curves"]["jko"] and drawn["curves"]["jko"]


def test_a_rerun_with_other_arguments_trains_again_saying_why(tmp_path, monkeypatch, capsys):
    other_data = load("three_node", num_train=64, num_test=32, seed=1)
    for i, (changed, message) in enumerate((
            ({"seed": 1}, "seed 0, now 1"), ({"max_time": 2.0}, "max_time 1.0, now 2.0"), ({"draws": 2}, "draws 1, now 2"),
            ({"settings": {"jko": TINY_JKO | {"hidden": 4}}}, "'hidden': 8, 'orders': [0, 1]}, now {'num_blocks': 1, "
             "'max_epochs': 1, 'hidden': 4"),
            ({"dataset": other_data}, "the data (signals, labels or graph"),
            ({"code": "other"}, "the code (igraphflow's source files"))):
        data, run = _interrupted_run(tmp_path / str(i), monkeypatch)  # a jko file of the first arguments
        capsys.readouterr()
        if changed.pop("code", None):  # as if the library had changed since
            monkeypatch.setattr(compare_module, "_code_digest", lambda: "other")
        trained = _fits(monkeypatch)
        compare(changed.pop("dataset", data), "jko", **run | changed)
        error = capsys.readouterr().err
        assert trained == ["jko"] and "compare: training jko again" in error and message in error, changed
    _interrupted_run(tmp_path, monkeypatch)
    argv = ["--dataset", "three_node", "--out", str(tmp_path), "--methods", "jko", "--max-time", "1",
            "--draws", "1", "--data-option", "num_train=64", "--data-option", "num_test=32",
            *[f"--option={key}={value}" for key, value in TINY_JKO.items()]]
    trained = _fits(monkeypatch)
    assert main([*argv, "--seed", "1"]) == 0  # a simulated dataset's seed draws other signals, too
    assert "seed 0, now 1; the data" in capsys.readouterr().err and trained == ["jko"]
    assert json.loads(load_checked(tmp_path / "methods" / "jko.pt", compare_module.FINISHED_KIND)["run"])["seed"] == 1
    assert main([*argv, "--seed", "1"]) == 0 and trained == ["jko"]  # now the same arguments: reused
    assert main([*argv, "--seed", "1", "--restart"]) == 0 and trained == ["jko", "jko"]


def test_a_damaged_result_file_is_trained_again(tmp_path, monkeypatch, capsys):
    data, run = _interrupted_run(tmp_path, monkeypatch)
    path = tmp_path / "methods" / "jko.pt"
    path.write_bytes(path.read_bytes()[:300])  # cut short
    capsys.readouterr()
    trained = _fits(monkeypatch)
    compare(data, "jko", **run)
    assert trained == ["jko"] and "sample" in load_checked(path, compare_module.FINISHED_KIND)
    assert re.search(r"training jko again: .*jko\.pt is not a readable checkpoint \(corrupt, truncated", capsys.readouterr().err)
    save_atomic({"row": "{}"}, path, compare_module.FINISHED_KIND)  # the right kind, not its contents
    compare(data, "jko", **run)
    assert trained == ["jko", "jko"] and "sample" in load_checked(path, compare_module.FINISHED_KIND)
    assert re.search(r"jko\.pt does not hold a valid compare method result .*'run'", capsys.readouterr().err)
