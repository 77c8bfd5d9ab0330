"""The comparison: every point's density and compute, determinism, the table, the files, the command line."""

from __future__ import annotations

import json
import math
import os

import pytest

from torch_lottery import prunable_parameters
from torch_lottery.cli import main
from torch_lottery.experiments import compare
from torch_lottery.experiments.compare import (
    COMPARE_CSV,
    COMPARE_JSON,
    COMPARE_PNG,
    POINT_FIELDS,
    load_compare,
    parse_strategy_options,
    run_compare,
    summarize,
    table,
    write_outputs,
)
from torch_lottery.experiments.data import load_dataset
from torch_lottery.experiments.models import build_model
from torch_lottery.experiments.runner import METRICS

STRATEGIES, DENSITIES, SEEDS = ["imp", "snip", "early_bird", "rigl"], [0.5, 0.4], 2
TINY = dict(epochs=1, log=None)


@pytest.fixture(scope="module")
def result():
    """Four strategies (one of each kind) on MNIST-1D, one epoch per training, two seeds, two densities."""
    return run_compare(STRATEGIES, DENSITIES, SEEDS, **TINY)


def _weights():
    """The prunable tensors' sizes of LeNet-300-100 on MNIST-1D."""
    data = load_dataset("mnist1d", validation=500, seed=0)
    model = build_model("lenet300100", data.input_shape, data.num_classes)
    return [getattr(module, name).numel() for module, name in prunable_parameters(model)]


def _of(result, strategy, seed=None):
    return [p for p in result["points"] if p["strategy"] == strategy and seed in (None, p["seed"])]


@pytest.mark.slow  # (the module's comparison: seconds)
def test_settings_versions_and_one_point_per_strategy_seed_and_density(result):
    settings = result["settings"]
    assert settings["strategies"] == STRATEGIES and settings["densities"] == DENSITIES
    assert settings["seeds"] == [0, 1] and settings["config"]["epochs"] == 1
    assert set(result["versions"]) == {"torch_lottery", "torch", "python"}
    rounds = settings["strategy"]["imp"]["rounds"]
    assert rounds == math.ceil(math.log(min(DENSITIES)) / math.log(0.8)) + 2  # the smallest density, and 2 more
    assert [d["seed"] for d in result["dense"]] == [0, 1]
    assert len(_of(result, "imp")) == SEEDS * rounds
    for name in STRATEGIES[1:]:
        assert sorted((p["seed"], p["target"]) for p in _of(result, name)) == sorted(
            (s, d) for s in range(SEEDS) for d in DENSITIES
        )
    for point in [*result["dense"], *result["points"]]:
        assert set(point) == {*POINT_FIELDS, *METRICS}
        assert 0.0 <= point["test_accuracy"] <= 1.0 and 0.0 <= point["test_accuracy_at_early_stop"] <= 1.0
        assert point["seconds"] > 0


@pytest.mark.slow  # (the module's comparison: seconds)
def test_every_point_holds_the_density_its_strategy_reached(result):
    sizes = _weights()
    total = sum(sizes)
    for point in _of(result, "rigl"):
        assert point["density"] == point["target"]  # dynamic sparse training: exactly
    for name in ("snip", "early_bird"):
        for point in _of(result, name):  # one global threshold: within one weight per layer of the target
            assert abs(point["density"] * total - point["target"] * total) <= len(sizes)
    for seed in range(SEEDS):
        imp = [p["density"] for p in sorted(_of(result, "imp", seed), key=lambda p: p["round"])]
        assert imp == sorted(imp, reverse=True) and imp[-1] < min(DENSITIES) < imp[0] < 1.0
    assert all(d["density"] == 1.0 and d["round"] == 0 for d in result["dense"])


@pytest.mark.slow  # (the module's comparison: seconds)
def test_compute_counts_every_training_that_led_to_the_ticket(result):
    steps = result["settings"]["steps_per_training"]
    assert steps == math.ceil(result["data"]["train"] / result["settings"]["setup"]["batch_size"])
    for seed in range(SEEDS):
        imp = sorted(_of(result, "imp", seed), key=lambda p: p["round"])
        # IMP at round r: the dense run and every round up to r
        assert [p["steps"] for p in imp] == [steps * (p["round"] + 1) for p in imp]
        assert [p["search_steps"] for p in imp] == [steps * p["round"] for p in imp]
        assert [p["seconds"] for p in imp] == sorted(p["seconds"] for p in imp)
    for point in _of(result, "early_bird"):  # its dense run (up to the draw) and the ticket's training
        assert 0 < point["search_steps"] <= steps and point["steps"] == point["search_steps"] + steps
    for point in _of(result, "snip"):  # scoring is no training step, but its batch is counted
        assert (point["steps"], point["search_steps"], point["scoring_batches"]) == (steps, 0, 1)
    for point in _of(result, "rigl"):
        assert (point["steps"], point["search_steps"], point["scoring_batches"]) == (steps, 0, 0)
    assert all(d["steps"] == steps for d in result["dense"])


@pytest.mark.slow  # (the module's comparison: seconds)
def test_the_same_seed_gives_the_same_numbers_whatever_else_runs(result):
    again = run_compare(["snip"], [DENSITIES[0]], 1, **TINY)  # alone, without imp: its own dense run
    strip = lambda p: {k: v for k, v in p.items() if k != "seconds"}  # noqa: E731
    expected = [strip(p) for p in _of(result, "snip", 0) if p["target"] == DENSITIES[0]]
    assert [strip(p) for p in again["points"]] == expected
    assert strip(again["dense"][0]) == strip(result["dense"][0])


@pytest.mark.slow  # (the module's comparison: seconds)
def test_the_table_shows_every_strategy_and_density_with_the_seeds(result):
    text = table(result)
    rows = [line.split() for line in text.splitlines()[3:]]
    assert [(r[0], float(r[1])) for r in rows] == [("dense", 100.0)] + [
        (name, 100 * d) for name in STRATEGIES for d in DENSITIES
    ]
    snip = [p for p in _of(result, "snip") if p["target"] == DENSITIES[0]]
    assert f"{100 * snip[0]['test_accuracy']:.1f}, {100 * snip[1]['test_accuracy']:.1f}" in text
    imp = next(r for r in rows if r[0] == "imp")  # the round nearest the density
    nearest = min(_of(result, "imp", 0), key=lambda p: abs(math.log(p["density"] / DENSITIES[0])))
    assert float(imp[2]) == pytest.approx(100 * nearest["density"], abs=0.05)
    assert int(imp[-3]) == nearest["steps"]
    assert "early stop" in table(result, "test_accuracy_at_early_stop")


@pytest.mark.slow  # (the module's comparison: seconds)
def test_summarize_gives_one_row_per_imp_round_and_per_target(result):
    rows = summarize(result)
    assert [r["strategy"] for r in rows].count("imp") == result["settings"]["strategy"]["imp"]["rounds"]
    assert [r["strategy"] for r in rows].count("rigl") == len(DENSITIES)
    assert all(r["n"] == SEEDS and len(r["values"]) == SEEDS for r in rows)
    with pytest.raises(ValueError, match="metric"):
        summarize(result, "accuracy")


def test_strategy_options_per_strategy_read_as_json():
    assert parse_strategy_options(["rigl.every=5", "rigl.distribution=uniform", "imp.rate=0.5"], ["imp", "rigl"]) == {
        "rigl": {"every": 5, "distribution": "uniform"},
        "imp": {"rate": 0.5},
    }
    with pytest.raises(ValueError, match="given twice"):
        parse_strategy_options(["rigl.every=5", "rigl.every=6"], ["rigl"])


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        (dict(strategies=["imp", "nope"]), "strategies='nope'"),
        (dict(strategies=["edge_popup"]), "without a density"),
        (dict(strategies=["imp", "imp"]), "given twice"),
        (dict(densities=[0.5, 0]), r"densities=0 must be in \(0, 1\)"),
        (dict(seeds=0), "seeds=0"),
        (dict(strategy_options={"rigl": {"every": 5}}), "'rigl' is not a compared"),
        (dict(strategy_options={"snip": {"remaining": 0.2}}), "snip.remaining: compare sets it"),
        (dict(strategy_options={"snip": {"batches": 0}}), "strategy_options snip.batches=0: batches=0"),
        (dict(rounds=3), "run_compare got rounds=3"),
        (dict(epochs=0), "epochs=0"),
    ],
)
def test_bad_arguments_are_refused_before_any_data_is_read(arguments, match, monkeypatch):
    monkeypatch.setattr(compare, "run_replicate", lambda *a: pytest.fail("trained"))
    monkeypatch.setattr("torch_lottery.experiments.data.load_dataset", lambda *a, **k: pytest.fail("read data"))
    with pytest.raises((TypeError, ValueError), match=match):
        run_compare(**{"strategies": ["imp", "snip"], "densities": [0.5], "seeds": 1, **arguments}, log=None)


# -- the command line ----------------------------------------------------------------------------
@pytest.mark.slow  # (the module's comparison: seconds)
def test_cli_writes_the_three_files_and_reports_them_again(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["compare", "--strategies", "imp,synflow", "--densities", "0.5", "--seeds", "1", "--epochs", "1"]
    argv += ["--strategy-option", "synflow.iterations=5", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert sorted(os.listdir(out)) == sorted([COMPARE_CSV, COMPARE_JSON, COMPARE_PNG])
    assert "synflow" in printed.out and "[" in printed.err  # the table; progress lines on stderr
    saved = load_compare(str(out))
    assert saved["settings"]["strategy"]["synflow"]["options"]["iterations"] == 5
    header, *lines = (out / COMPARE_CSV).read_text().splitlines()
    assert set(header.split(",")) == {*POINT_FIELDS, *METRICS} and len(lines) == 1 + len(saved["points"])
    (out / COMPARE_CSV).unlink()
    assert main(["compare", "--report", str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["strategy"] for r in rows][:2] == ["dense", "imp"] and (out / COMPARE_CSV).is_file()


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--strategies", "imp,nope"], "--strategies='nope'"),
        (["--densities", "0.5,x"], "--densities '0.5,x'"),
        (["--densities", "0.5,2"], "--densities=2.0 must be in (0, 1)"),
        (["--seeds", "0"], "--seeds=0"),
        (["--strategy-option", "rigl.every=5"], "--strategy-option 'rigl.every=5': 'rigl' is not a compared"),
        (["--strategy-option", "snip.batches=0"], "--strategy-option snip.batches=0: batches=0"),
        (["--strategy-option", "snip.bogus=1"], "--strategy-option snip.bogus=1"),
        (["--strategy-option", "snipbatches=1"], "--strategy-option 'snipbatches=1': write STRATEGY.KEY=VALUE"),
        (["--out", "FILE"], "--out="),
        (["--report", "EMPTY"], "has no compare.json"),
    ],
)
def test_cli_bad_arguments_exit_2_naming_the_flag_and_write_nothing(argv, flag, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(compare, "run_replicate", lambda *a: pytest.fail("trained"))
    (tmp_path / "FILE").write_text("kept")
    (tmp_path / "EMPTY").mkdir()
    argv = [str(tmp_path / a) if a in ("FILE", "EMPTY") else a for a in argv]
    out = ["--out", str(tmp_path / "out")] if "--out" not in argv else []
    base = ["compare", "--strategies", "imp,snip", "--densities", "0.5", "--seeds", "1", "--epochs", "1"]
    assert main([*base, *out, *argv]) == 2
    assert flag in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["EMPTY", "FILE"] and not os.listdir(tmp_path / "EMPTY")
    assert (tmp_path / "FILE").read_text() == "kept"


def test_a_damaged_compare_json_is_named(tmp_path):
    (tmp_path / COMPARE_JSON).write_text(json.dumps({"settings": {}, "dense": [], "points": []}))
    with pytest.raises(ValueError, match="settings has no list strategies"):
        load_compare(str(tmp_path))
    settings = {"strategies": ["snip"], "densities": [0.5]}
    (tmp_path / COMPARE_JSON).write_text(json.dumps({"settings": settings, "dense": [], "points": [{"seed": 0}]}))
    with pytest.raises(ValueError, match="point 0 has no valid strategy, round"):
        load_compare(str(tmp_path))
    (tmp_path / COMPARE_JSON).write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_compare(str(tmp_path))


@pytest.mark.slow  # (the module's comparison: seconds)
def test_the_three_files_are_replaced_as_one_set(result, tmp_path, monkeypatch):
    """A write that fails part-way (here: the plot) leaves the previous comparison's three files as they were."""
    matplotlib = pytest.importorskip("matplotlib")
    old = {**result, "points": result["points"][:2]}
    write_outputs(old, str(tmp_path))
    before = {name: (tmp_path / name).read_bytes() for name in (COMPARE_JSON, COMPARE_CSV, COMPARE_PNG)}

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", fail)
    with pytest.raises(OSError, match="disk full"):
        write_outputs(result, str(tmp_path))
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert sorted(os.listdir(tmp_path)) == sorted(before)  # no temporary left behind
    monkeypatch.undo()
    write_outputs(result, str(tmp_path))
    assert load_compare(str(tmp_path)) == json.loads(json.dumps(result))
