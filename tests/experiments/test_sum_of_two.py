"""The sum-of-two-inputs experiment: IMP with late resetting finds the 4-weight ticket."""

from __future__ import annotations

import json
import re

import pytest

from torch_lottery.experiments.sum_of_two import HIDDEN, KEEP, format_result, make_model, run

ENTRY = re.compile(r"^    \[(\d+), (\d+)\]: [+-]\d+\.\d{6}$")


@pytest.fixture(scope="module")
def result():
    return run(seed=0)


def _check_ticket(result):
    """At most 2 surviving weights per layer (4 in all), routing both inputs to the output."""
    layer0, layer1 = result["winning_ticket"]
    assert result["weights_remaining"] == 2 * KEEP == 4
    assert result["weights_total"] == sum(p.numel() for p in make_model().parameters()) == 3 * HIDDEN
    assert len(layer0) <= KEEP and len(layer1) <= KEEP
    assert len(layer0) + len(layer1) <= 4
    assert all(entry["value"] != 0.0 for entry in layer0 + layer1)
    # layer 0 weights are [hidden unit, input]; layer 1 weights are [0, hidden unit]
    assert {entry["index"][1] for entry in layer0} == {0, 1}
    assert all(0 <= entry["index"][0] < HIDDEN for entry in layer0)
    assert all(entry["index"][0] == 0 for entry in layer1)
    used_hidden = {entry["index"][0] for entry in layer0}
    assert used_hidden <= {entry["index"][1] for entry in layer1}


def test_seed_0_finds_the_4_weight_ticket(result):
    _check_ticket(result)
    assert result["seed"] == 0
    history = result["history"]
    assert result["rounds"] == len(history) - 1 > 0
    remaining = [h["remaining_weights"] for h in history]
    assert remaining[0] == 600 and remaining[-1] == 4
    assert all(a > b for a, b in zip(remaining, remaining[1:], strict=False))


def test_rmse_of_ticket_controls_and_full_model(result):
    rmse = result["rmse"]
    assert set(rmse) == {"winning_ticket", "random_reinit", "random_permutation", "full_model"}
    assert rmse["winning_ticket"] < 1e-2
    assert rmse["random_permutation"] > 0.1
    assert rmse["full_model"] < 1e-2
    assert result["history"][-1]["test_rmse"] == pytest.approx(rmse["winning_ticket"], rel=1e-6)


def test_controls_keep_the_ticket_shape(result):
    # The random-reinit ticket uses the ticket's mask; the permuted one has as many weights per layer.
    ticket_layers = [{tuple(e["index"]) for e in layer} for layer in result["winning_ticket"]]
    reinit_layers = [{tuple(e["index"]) for e in layer} for layer in result["random_reinit_ticket"]]
    assert all(r <= t for r, t in zip(reinit_layers, ticket_layers, strict=True))
    assert all(len(layer) <= KEEP for layer in result["permuted_ticket"])


def test_result_is_json_serializable(result):
    text = json.dumps(result)
    assert json.loads(text) == result


def test_format_result_prints_four_rows_for_the_ticket(result):
    text = format_result(result)
    assert text.startswith(f"{result['rounds']} rounds of 25% pruning per layer: 4 of 600 weights remain")
    section = text.split("winning ticket:\n", 1)[1].split("random-reinit ticket:", 1)[0]
    rows = [line for line in section.splitlines() if ENTRY.match(line)]
    assert len(rows) == 4
    expected = {tuple(e["index"]) for layer in result["winning_ticket"] for e in layer}
    assert {tuple(map(int, ENTRY.match(line).groups())) for line in rows} == expected
    assert "  layer 0" in section and "  layer 1" in section
    rmse_section = text.split("test RMSE on [1, 2]:\n", 1)[1]
    for name, value in result["rmse"].items():
        assert re.search(rf"^  {name}\s+{re.escape(f'{value:.3e}')}$", rmse_section, re.M), name


@pytest.mark.parametrize("seed", [1, 2])
def test_other_seeds_find_4_weights(seed):
    other = run(seed=seed)
    assert other["seed"] == seed
    _check_ticket(other)
    assert other["rmse"]["winning_ticket"] < 1e-2
