"""Tables, CSV, JSON and plots of experiment results, on small hand-made results."""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import shutil
from pathlib import Path

import pytest

from torch_lottery.experiments.report import (
    LABELS,
    PLOT_PNG,
    RESULTS_CSV,
    RESULTS_JSON,
    check_results,
    layer_table,
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


# -- damaged or edited results.json: one check on load, naming the file and the field ----------------
def _with_layers(result):
    """``result`` as a run writes it now: the ticket's records carry layers, plus strategy and versions."""
    result = copy.deepcopy(result)
    for record in result["records"]:
        if record["kind"] == "ticket":
            record["layers"] = {"fc1.weight": record["remaining"], "fc2.weight": 1.0}
    result["strategy"] = {"name": "imp", "options": {"rate": 0.2}, "plugin": "p", "distribution": "d", "version": "1"}
    result["versions"] = {"torch-lottery": "0.1.0", "torch": "2"}
    return result


def _set(path, value):
    """A change that sets ``result[path[0]][path[1]]... = value`` (or deletes it for ``DELETE``)."""

    def change(result):
        target = result
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return result

    return change


DELETE = object()
DAMAGE = {
    "top level a list": (lambda r: [r], "is not a torch-lottery results file (no summary)"),
    "no summary": (_set(["summary"], DELETE), "is not a torch-lottery results file (no summary)"),
    "summary an object": (_set(["summary"], {}), "summary must be a list of objects, got {}"),
    "summary empty": (_set(["summary"], []), "summary is empty"),
    "row not an object": (_set(["summary", 1], 7), "summary[1] must be an object, got 7"),
    "row without kind": (_set(["summary", 1, "kind"], DELETE), "summary[1].kind is missing"),
    "unknown kind": (_set(["summary", 1, "kind"], "lucky"), "summary[1].kind='lucky' is not one of ticket, reinit"),
    "round a string": (_set(["summary", 1, "round"], "1"), "summary[1].round must be an int, got '1'"),
    "round negative": (_set(["summary", 1, "round"], -1), "summary[1].round=-1 must be >= 0"),
    "round a bool": (_set(["summary", 1, "round"], True), "summary[1].round must be an int, got True"),
    "n zero": (_set(["summary", 1, "n"], 0), "summary[1].n=0 must be >= 1"),
    "no n": (_set(["summary", 1, "n"], DELETE), "summary[1].n is missing"),
    "remaining above 1": (_set(["summary", 1, "remaining"], 1.5), "summary[1].remaining=1.5 must be in [0, 1]"),
    "remaining text": (_set(["summary", 1, "remaining"], "80%"), "summary[1].remaining must be a number, got '80%'"),
    "mean text": (
        _set(["summary", 1, "test_accuracy_mean"], "abc"),
        "summary[1].test_accuracy_mean must be a number, got 'abc'",
    ),
    "mean NaN": (
        _set(["summary", 1, "test_accuracy_mean"], math.nan),
        "summary[1].test_accuracy_mean=nan must be finite",
    ),
    "std null beside a mean": (
        _set(["summary", 1, "test_accuracy_std"], None),
        "summary[1].test_accuracy_std must be a number where test_accuracy_mean is one, got None",
    ),
    "repeated row": (
        lambda r: {**r, "summary": r["summary"] + [r["summary"][1]]},
        "summary[5] repeats kind 'ticket' round 1 (summary[1])",
    ),
    "missing metric column": (
        _set(["summary", 2, "test_accuracy_max"], DELETE),
        "summary[2].test_accuracy_max is missing",
    ),
    "records an object": (_set(["records"], {"a": 1}), "records must be a list of objects, got {'a': 1}"),
    "record a list": (_set(["records", 3], []), "records[3] must be an object, got []"),
    "record metric text": (
        _set(["records", 3, "test_accuracy"], "abc"),
        "records[3].test_accuracy must be a number, got 'abc'",
    ),
    "record remaining NaN": (_set(["records", 3, "remaining"], math.nan), "records[3].remaining=nan must be finite"),
    "record unknown kind": (_set(["records", 7, "kind"], "bogus"), "records[7].kind='bogus' is not one of"),
    "record without round": (_set(["records", 7, "round"], DELETE), "records[7].round is missing"),
    "layers a list": (
        _set(["records", 0, "layers"], [1.0]),
        "records[0].layers must be an object of tensor name: fraction",
    ),
    "layers empty": (
        _set(["records", 0, "layers"], {}),
        "records[0].layers must be an object of tensor name: fraction",
    ),
    "layer above 1": (
        _set(["records", 2, "layers", "fc1.weight"], 2),
        "records[2].layers['fc1.weight']=2 must be in [0, 1]",
    ),
    "config a list": (_set(["config"], ["mnist1d"]), "config must be an object, got ['mnist1d']"),
    "versions text": (_set(["versions"], "new"), "versions must be an object, got 'new'"),
    "strategy a number": (_set(["strategy"], 3), "strategy must be an object, got 3"),
    "seconds text": (_set(["seconds"], "fast"), "seconds must be a number, got 'fast'"),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_report_of_a_damaged_results_json_names_the_file_and_the_field_and_writes_nothing(
    result, tmp_path, capsys, name
):
    from torch_lottery.cli import main

    change, fragment = DAMAGE[name]
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / RESULTS_JSON).write_text(json.dumps(change(_with_layers(result)), indent=1))
    (directory / RESULTS_CSV).write_text("the old csv")
    (directory / PLOT_PNG).write_bytes(PNG_MAGIC + b"the old plot")
    before = {f: (directory / f).read_bytes() for f in os.listdir(directory)}
    assert main(["report", str(directory), "--layers"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1, captured.err
    assert captured.err.startswith(f"torch-lottery report: error: {directory / RESULTS_JSON}: "), captured.err
    assert fragment in captured.err, captured.err
    assert {f: (directory / f).read_bytes() for f in os.listdir(directory)} == before  # nothing rewritten


def test_a_damaged_results_json_raises_value_error_from_load_results(result, tmp_path):
    (tmp_path / RESULTS_JSON).write_text(json.dumps(_set(["records", 3, "test_accuracy"], "abc")(result)))
    with pytest.raises(ValueError, match=r"results\.json: records\[3\]\.test_accuracy must be a number"):
        load_results(str(tmp_path))


def test_check_results_passes_what_a_run_writes(result):
    current = _with_layers(result)
    assert check_results(current) is current
    current["records"][0]["test_accuracy_at_early_stop"] = math.nan  # no validation set: not measured
    current["records"][1]["test_loss"] = None
    check_results(current)


def test_report_reads_an_older_results_json_and_says_layers_are_not_recorded(tmp_path, capsys):
    from torch_lottery.cli import main

    old = Path(__file__).resolve().parents[2] / "docs" / "results" / "mnist1d-lenet300100.json"
    saved = json.loads(old.read_text())
    assert not {"strategy", "versions"} & set(saved) and "layers" not in saved["records"][0]
    directory = tmp_path / "old"
    directory.mkdir()
    shutil.copy(old, directory / RESULTS_JSON)
    assert main(["report", str(directory), "--layers"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test accuracy % (mean ± std over 3 seeds)")
    assert "layer densities: not recorded" in out
    assert json.loads((directory / RESULTS_JSON).read_text()) == saved  # read, and written back unchanged


def test_layer_table_shows_the_mean_over_seeds_per_round_and_tensor(result):
    current = _with_layers(result)
    current["records"][2]["layers"]["fc2.weight"] = 0.5  # seed 0, round 1
    lines = layer_table(current).splitlines()
    assert lines[0] == "ticket weights remaining per layer % (mean over 2 seeds)"
    assert lines[1].split() == ["round", "all", "fc1.weight", "fc2.weight"]
    assert [line.split() for line in lines[3:]] == [
        ["0", "100.0", "100.0", "100.0"],
        ["1", "80.0", "80.0", "75.0"],  # (0.5 + 1.0) / 2
        ["2", "64.0", "64.0", "100.0"],
    ]
    assert len({len(line) for line in lines[1:]}) == 1


def test_report_layers_prints_the_layer_table_after_the_accuracy_table(result, tmp_path, capsys):
    from torch_lottery.cli import main

    write_outputs(_with_layers(result), str(tmp_path))
    assert main(["report", str(tmp_path), "--layers"]) == 0
    out = capsys.readouterr().out
    assert out.split("\n\n")[1] == layer_table(_with_layers(result))
    assert main(["report", str(tmp_path)]) == 0
    assert "per layer" not in capsys.readouterr().out
