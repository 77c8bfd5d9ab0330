"""Tables, CSV, JSON and plots of experiment results, on small hand-made results."""

from __future__ import annotations

import csv
import json
import os

import pytest

from torch_lottery.experiments.report import (
    LABELS,
    PLOT_PNG,
    RESULTS_CSV,
    RESULTS_JSON,
    load_results,
    plot,
    table,
    write_csv,
    write_outputs,
)
from torch_lottery.experiments.runner import METRICS, summarize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _record(kind, round_index, remaining, accuracy, early_stop=10):
    return {
        "kind": kind,
        "round": round_index,
        "remaining": remaining,
        "test_accuracy": accuracy,
        "test_accuracy_at_early_stop": accuracy,
        "early_stop_iteration": early_stop,
        "test_loss": 1 - accuracy,
    }


@pytest.fixture
def result():
    """Two seeds: the ticket over rounds 0-2, random reinit over rounds 1-2."""
    records = [
        _record("ticket", 0, 1.0, 0.90, 100),
        _record("ticket", 0, 1.0, 0.80, 120),
        _record("ticket", 1, 0.8, 0.95, 90),
        _record("ticket", 1, 0.8, 0.85, 70),
        _record("ticket", 2, 0.64, 0.97, 60),
        _record("ticket", 2, 0.64, 0.97, 60),
        _record("reinit", 1, 0.8, 0.70),
        _record("reinit", 1, 0.8, 0.60),
        _record("reinit", 2, 0.64, 0.50),
        _record("reinit", 2, 0.64, 0.40),
    ]
    return {
        "config": {"dataset": "mnist1d", "model": "lenet300100"},
        "records": records,
        "summary": summarize(records),
        "seconds": 1.0,
    }


def _rows(text):
    lines = text.splitlines()
    return lines[0], lines[1], lines[2], lines[3:]


def test_table_formats_mean_and_std_in_percent(result):
    title, header, rule, rows = _rows(table(result))
    assert title == "test accuracy % (mean ± std over 2 seeds)"
    assert header.split("  ")[0].strip() == "round"
    for name in ("weights %", LABELS["ticket"], LABELS["reinit"], "early stop (ticket)"):
        assert name in header
    assert "random pruning" not in header  # only kinds present in the results
    assert set(rule.replace("  ", "")) == {"-"}
    assert len(rows) == 3
    cells = [[c.strip() for c in row.split("  ") if c.strip()] for row in rows]
    # mean ± std of 0.9/0.8 is 85.00 ± 7.07; of 0.95/0.85 90.00 ± 7.07; identical seeds give ± 0.00
    assert cells[0] == ["0", "100.0", "85.00 ± 7.07", "-", "110"]
    assert cells[1] == ["1", "80.0", "90.00 ± 7.07", "65.00 ± 7.07", "80"]
    assert cells[2] == ["2", "64.0", "97.00 ± 0.00", "45.00 ± 7.07", "60"]
    # columns are right-aligned to the header's width
    assert len({len(line) for line in [header, rule] + rows}) == 1


def test_table_other_metrics(result):
    title, _, _, rows = _rows(table(result, "early_stop_iteration"))
    assert title == "early stop iteration (mean ± std over 2 seeds)"
    assert "110 ± 14" in rows[0]
    title, _, _, rows = _rows(table(result, "test_loss"))
    assert title.startswith("test loss (")
    assert "0.15 ± 0.071" in rows[0]


def test_table_without_ticket_rows_uses_a_control_for_remaining(result):
    result["summary"] = [r for r in result["summary"] if not (r["kind"] == "ticket" and r["round"] == 2)]
    _, _, _, rows = _rows(table(result))
    assert rows[2].split()[:2] == ["2", "64.0"]
    assert rows[2].split()[-1] == "-"  # no early-stop figure without the ticket


def test_write_csv_columns(result, tmp_path):
    path = tmp_path / "summary.csv"
    write_csv(result, str(path))
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
        rows = list(reader)
    assert header[:4] == ["kind", "round", "n", "remaining"]
    assert header[4:] == [f"{m}_{s}" for m in METRICS for s in ("mean", "std", "min", "max")]
    assert [(r["kind"], int(r["round"])) for r in rows] == [
        ("ticket", 0),
        ("ticket", 1),
        ("ticket", 2),
        ("reinit", 1),
        ("reinit", 2),
    ]
    assert all(r["n"] == "2" for r in rows)
    assert float(rows[0]["test_accuracy_mean"]) == pytest.approx(0.85)
    assert float(rows[4]["test_accuracy_min"]) == pytest.approx(0.40)
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


def test_write_csv_of_an_empty_summary(tmp_path):
    path = tmp_path / "empty.csv"
    write_csv({"summary": []}, str(path))
    assert path.read_text().splitlines() == ["kind,round"]


def test_plot_writes_a_png(result, tmp_path):
    path = tmp_path / "plot.png"
    assert plot(result, str(path)) is True
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_write_outputs_writes_the_three_files(result, tmp_path):
    directory = tmp_path / "nested" / "run"
    paths = write_outputs(result, str(directory))
    assert paths == {
        "json": str(directory / RESULTS_JSON),
        "csv": str(directory / RESULTS_CSV),
        "plot": str(directory / PLOT_PNG),
    }
    assert sorted(os.listdir(directory)) == sorted([RESULTS_JSON, RESULTS_CSV, PLOT_PNG])
    assert json.loads((directory / RESULTS_JSON).read_text()) == result
    assert (directory / PLOT_PNG).read_bytes().startswith(PNG_MAGIC)
    assert len((directory / RESULTS_CSV).read_text().splitlines()) == 1 + len(result["summary"])
    assert load_results(str(directory)) == result


def test_load_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no results.json"):
        load_results(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="has no results.json"):
        load_results(str(tmp_path))  # exists, but no results.json
    (tmp_path / RESULTS_JSON).write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_results(str(tmp_path))
    (tmp_path / RESULTS_JSON).write_text(json.dumps({"records": []}))
    with pytest.raises(ValueError, match="no summary"):
        load_results(str(tmp_path))
    (tmp_path / RESULTS_JSON).write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="no summary"):
        load_results(str(tmp_path))
