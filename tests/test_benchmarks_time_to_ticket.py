"""The goal logic of benchmarks/bench_time_to_ticket.py, on made-up results (nothing trains)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_time_to_ticket.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_time_to_ticket", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines only; main() runs under __main__
    return module


def rows(**methods):
    """IMP at 60% with 20000 steps, then ``name=(accuracy %, steps)``."""
    out = [{"strategy": "imp", "mean": 0.60, "steps": 20000, "seconds": 40.0, "cpu_seconds": 38.0}]
    for name, (accuracy, steps) in methods.items():
        out.append(
            {"strategy": name, "mean": accuracy / 100, "steps": steps, "seconds": steps / 500, "cpu_seconds": None}
        )
    return out


def test_met_by_a_cheap_method_within_one_point(bench):
    g = bench.goal(rows(snip=(59.2, 2000), synflow=(52.0, 1770)))
    assert g["met"] and g["best"] == "snip" and g["measure"] == "steps"
    snip = g["methods"]["snip"]
    assert snip["gap"] == pytest.approx(0.8)
    assert snip["compute"] == pytest.approx(0.1) and snip["seconds"] == pytest.approx(0.1)
    assert "cpu_seconds" not in snip  # no CPU time measured: no ratio
    assert snip["points_short"] == 0 and snip["compute_over"] == pytest.approx(0.5)
    assert not g["methods"]["synflow"]["met"]


def test_missed_on_accuracy_says_how_far(bench):
    g = bench.goal(rows(early_bird=(52.6, 2124), synflow=(51.9, 1770)))
    assert not g["met"] and g["best"] == "early_bird"
    assert g["methods"]["early_bird"]["points_short"] == pytest.approx(6.4)
    assert g["methods"]["synflow"]["gap"] == pytest.approx(8.1)


def test_an_accurate_method_over_the_compute_budget_is_not_the_best(bench):
    # one_shot matches IMP but spends half its steps; the best within the budget decides
    g = bench.goal(rows(one_shot=(60.5, 10000), snip=(55.0, 1770)))
    assert not g["met"] and g["best"] == "snip"
    one_shot = g["methods"]["one_shot"]
    assert one_shot["within_gap"] and not one_shot["within_compute"] and not one_shot["met"]
    assert one_shot["compute_over"] == pytest.approx(2.5)
    # at exactly 1/5 of the steps and 1 point it is met
    assert bench.goal(rows(a=(59.0, 4000)))["met"]
    # with nothing within the budget, the most accurate method is judged
    g = bench.goal(rows(a=(59.9, 8000), b=(55.0, 6000)))
    assert g["best"] == "a" and not g["met"]


def test_summarize_takes_imp_round_nearest_the_target_and_cpu_matches(bench):
    def point(strategy, seed, round_, density, accuracy, steps, target=None):
        return {
            "strategy": strategy,
            "seed": seed,
            "target": target,
            "round": round_,
            "density": density,
            "test_accuracy": accuracy,
            "steps": steps,
            "search_steps": steps - 10,
            "scoring_batches": 0,
            "seconds": 1.0 * (round_ + 1),
        }

    result = {
        "settings": {"strategies": ["imp", "snip"], "seeds": [0, 1]},
        "points": [
            point("imp", s, r, d, 0.6 - r / 100, 10 * (r + 1))
            for s in (0, 1)
            for r, d in ((1, 0.2), (2, 0.09), (3, 0.05))
        ]
        + [point("snip", s, 1, 0.1, 0.5 + s / 100, 10, target=0.1) for s in (0, 1)],
    }
    runs = [[(r, 0.5, 1.0) for r in range(4)], [(0, 0.5, 1.0), (1, 0.5, 1.0)]] * 2
    assert bench.attach_cpu(result, runs)
    imp, snip = bench.summarize(result, 0.1)
    assert imp["round"] == 2 and imp["steps"] == 30 and imp["cpu_seconds"] == pytest.approx(1.5)
    assert snip["mean"] == pytest.approx(0.505) and snip["n"] == 2 and snip["cpu_seconds"] == pytest.approx(1.0)
    assert not bench.attach_cpu(result, runs[:3])  # a run missing: no match
