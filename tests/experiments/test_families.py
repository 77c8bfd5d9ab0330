"""The families experiment: every part's numbers per seed, the tables, the command line."""

from __future__ import annotations

import json
import math

import pytest

from torch_lottery.experiments import families
from torch_lottery.experiments.families import DYNAMIC, SUPERMASK_LRS, SUPERMASKS, TARGETED, run_families, tables

SEEDS, DENSITY = 2, 0.5


@pytest.fixture(scope="module")
def result():
    """Every part on MNIST-1D, one epoch per training, two seeds, one density."""
    return run_families("mnist1d", SEEDS, (DENSITY,), epochs=1, log=lambda line: None)


def test_settings_and_every_part_with_one_result_per_seed(result):
    settings = result["settings"]
    assert settings["dataset"] == "mnist1d" and settings["seeds"] == SEEDS and settings["densities"] == [DENSITY]
    assert settings["parts"] == list(families.PARTS)
    # a one-epoch run is short: the dynamic masks move every tenth of it, not every 100 steps
    assert settings["every"] == settings["steps"] // 10 < 100
    assert len(result["imp"]["dense"]) == SEEDS
    for part in ("imp", "dynamic", "targeted_dropout", "supermask"):
        lists = [v for k, v in result[part].items() if isinstance(v, list)]
        assert lists and all(len(v) == SEEDS for v in lists), part
    assert result["seconds"] > 0


def test_imp_reports_the_round_nearest_the_density(result):
    for row in result["imp"][str(DENSITY)]:
        assert row["round"] >= 1
        # rounds of 20% (output layer 10%): the nearest round is within one round's factor of the density
        assert DENSITY * 0.8 <= row["remaining"] <= DENSITY / 0.8
        assert 0.0 <= row["test_accuracy"] <= 1.0


def test_dynamic_strategies_keep_exactly_the_density(result):
    for name in DYNAMIC:
        rows = result["dynamic"][f"{name}@{DENSITY}"]
        assert [row["remaining"] for row in rows] == [DENSITY] * SEEDS


def test_targeted_dropout_prunes_the_targeted_fraction_with_and_without_dropout(result):
    for targ in TARGETED:
        for label in ("targeted", "without"):
            for row in result["targeted_dropout"][f"{label}@{targ}"]:
                assert row["remaining"] == pytest.approx(1 - targ)
                assert 0.0 <= row["unpruned"] <= 1.0


def test_supermasks_start_from_the_same_untrained_network_per_seed(result):
    assert result["supermask"]["chance"] == pytest.approx(0.1)
    for seed in range(SEEDS):
        untrained = {
            result["supermask"][f"{name}@lr{lr:g}"][seed]["untrained"] for name in SUPERMASKS for lr in SUPERMASK_LRS
        }
        assert len(untrained) == 1  # one initialization per seed, whatever learns the mask
    for name in SUPERMASKS:
        for row in result["supermask"][f"{name}@lr{SUPERMASK_LRS[0]:g}"]:
            assert row["remaining"] == pytest.approx(DENSITY, abs=0.01)


def test_instability_measures_k_at_zero_and_powers_of_four(result):
    steps = result["instability"]["steps"]
    expected = [0] + [4**j for j in range(int(math.log(steps // 2, 4)) + 1)]
    assert sorted(int(k) for k in result["instability"] if k != "steps") == expected
    for k in expected:
        for row in result["instability"][str(k)]:
            errors = row["errors"]
            assert row["iterations"] == steps - k
            assert row["barrier"] == pytest.approx(max(errors) - (errors[0] + errors[-1]) / 2)


def test_tables_show_every_row_with_its_seeds(result):
    text = tables(result)
    for name in ("dense (IMP round 0)", "imp", *DYNAMIC, *SUPERMASKS, "k=0", "k=16"):
        assert name in text, name
    for targ in TARGETED:
        assert f"targ {targ}: targeted dropout 0.5" in text and f"targ {targ}: no dropout" in text
    seeds = ", ".join(f"{v * 100:.1f}" for v in result["imp"]["dense"])
    assert seeds in text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seeds": 0}, r"seeds=0"),
        ({"seeds": 1.5}, r"seeds"),
        ({"densities": (1.5,)}, r"densities=1.5"),
        ({"densities": (0.0,)}, r"densities=0.0"),
        ({"parts": ("imp", "lottery")}, r"parts='lottery'"),
        ({"dataset": "imagenet"}, r"dataset='imagenet'"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        run_families(**kwargs, log=lambda line: None)


def test_main_writes_the_json_it_prints(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--parts", "supermask", "--seeds", "1", "--epochs", "1", "--densities", "0.5", "--out", str(out)]
    assert families.main(args) == 0
    written = json.loads((out / "families.json").read_text())
    assert set(written) == {"settings", "supermask", "seconds"}
    assert tables(written) in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "match"),
    [(["--densities", "a,b"], "--densities 'a,b'"), (["--parts", "imp,nope"], "parts='nope'")],
)
def test_main_refuses_bad_arguments_and_writes_nothing(tmp_path, capsys, args, match):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as raised:
        families.main([*args, "--out", str(out)])
    assert raised.value.code == 2
    assert match in capsys.readouterr().err
    assert not out.exists()
