"""torch_lottery/loggers.py: JSON lines, CSV, TensorBoard and callback loggers on tiny find_ticket runs."""

from __future__ import annotations

import csv
import json
import math
import os
import sys

import pytest
import torch
from torch import nn

import torch_lottery as tl
from torch_lottery.loggers import (
    EVENTS,
    CallbackLogger,
    CSVLogger,
    JSONLinesLogger,
    TaggedLogger,
    TensorBoardLogger,
    loggers_for,
    scalars,
)

STEPS = 4
ROUND_EVENTS = ["round_start", "after_prune", "after_rewind", "round_end"]


def find(plugins, rounds=2, fail_in_round=None, **kwargs):
    """A 2-layer MLP, ``rounds`` rounds of IMP (rate 0.5) with a plain SGD loop; round 1 reports one more metric."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
    x, y = torch.randn(32, 6), torch.randint(0, 2, (32,))

    def train(model, context):
        if context.round_index == fail_in_round:
            raise RuntimeError("killed")
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(STEPS):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            context.step()
        metrics = {"loss": loss.item()}
        if context.round_index >= 1:
            metrics["late"] = float(context.round_index)
        return metrics

    return tl.find_ticket(model, train, strategy_options={"rate": 0.5}, rounds=rounds, plugins=plugins, **kwargs)


def events_of(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def rows_of(path):
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


# -- JSON lines ------------------------------------------------------------------------------
def test_jsonl_logs_every_event_and_the_ticket_history(tmp_path):
    path = tmp_path / "logs" / "run.jsonl"  # the folder is created at the first event
    ticket = find([JSONLinesLogger(path, tags={"seed": 0})])
    events = events_of(path)
    assert [e["event"] for e in events] == ["round_start", "round_end", *ROUND_EVENTS, *ROUND_EVENTS]
    assert all(e["seed"] == 0 for e in events)
    ends = [e for e in events if e["event"] == "round_end"]
    assert [{k: v for k, v in e.items() if k not in ("event", "seed")} for e in ends] == ticket.history
    prunes = [e for e in events if e["event"] == "after_prune"]
    assert [p["per_tensor"] for p in prunes] == [r["per_tensor"] for r in ticket.history[1:]]  # densities, no masks
    assert [p["remaining"] for p in prunes] == [r["remaining"] for r in ticket.history[1:]]
    assert {e["rewind_iteration"] for e in events if e["event"] == "after_rewind"} == {0}


def test_jsonl_keeps_what_a_killed_run_logged_and_appends(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_text('{"event": "earlier"}\n')
    with pytest.raises(RuntimeError, match="killed"):
        find([JSONLinesLogger(path, events=("round_end",))], fail_in_round=2)
    events = events_of(path)
    assert [e["event"] for e in events] == ["earlier", "round_end", "round_end"]
    assert [e["round"] for e in events[1:]] == [0, 1]


def test_events_are_json_safe_and_masks_are_summaries():
    seen = []
    logger = CallbackLogger(seen.append, events=EVENTS, tags={"run": "a"})
    logger.torch_lottery_round_end(
        round_index=0,
        record={"round": 0, "t": torch.tensor(2.5), "m": torch.ones(2, 3, dtype=torch.bool), "x": math.inf},
    )
    logger.torch_lottery_after_prune(
        round_index=1, masks={"w": torch.tensor([True, False, False, False])}, remaining=0.25
    )
    assert seen[0] == {
        "event": "round_end",
        "run": "a",
        "round": 0,
        "t": 2.5,
        "m": {"shape": [2, 3], "dtype": "bool", "mean": 1.0},
        "x": None,
    }
    assert seen[1] == {"event": "after_prune", "run": "a", "round": 1, "remaining": 0.25, "per_tensor": {"w": 0.25}}
    json.dumps(seen, allow_nan=False)


# -- CSV ------------------------------------------------------------------------------------------
def test_csv_has_one_row_per_round_and_the_union_of_columns(tmp_path):
    path = tmp_path / "run.csv"
    ticket = find([CSVLogger(path)])
    header, rows = rows_of(path)
    first = ["round", "remaining", "remaining_weights", "total_weights", "per_tensor/0.weight", "per_tensor/2.weight"]
    assert header[:6] == first
    assert header[-2:] == ["metrics/late", "stopped"]  # the columns rounds 1 and 2 brought, after the others
    assert [int(r["round"]) for r in rows] == [0, 1, 2]
    for row, record in zip(rows, ticket.history, strict=True):
        assert float(row["remaining"]) == record["remaining"]
        assert int(row["remaining_weights"]) == record["remaining_weights"]
        assert float(row["per_tensor/0.weight"]) == record["per_tensor"]["0.weight"]
        assert float(row["metrics/loss"]) == record["metrics"]["loss"]
        assert row["masks_sha256"] == record["masks_sha256"]
    assert rows[0]["metrics/late"] == "" and float(rows[2]["metrics/late"]) == 2.0
    assert [r["stopped"] for r in rows] == ["", "", "rounds=2 reached"]


def test_csv_continues_an_existing_file(tmp_path):
    path = tmp_path / "run.csv"
    logger = CSVLogger(path, tags={"seed": 0})
    logger.torch_lottery_round_end(round_index=0, record={"round": 0, "remaining": 1.0})
    again = CSVLogger(path, tags={"seed": 1})
    again.torch_lottery_round_end(round_index=0, record={"round": 0, "remaining": 1.0, "metrics": {"loss": 0.5}})
    again.torch_lottery_round_end(round_index=1, record={"round": 1, "remaining": 0.5})
    header, rows = rows_of(path)
    assert header == ["seed", "round", "remaining", "metrics/loss"]
    assert [(r["seed"], r["round"], r["metrics/loss"]) for r in rows] == [
        ("0", "0", ""),
        ("1", "0", "0.5"),
        ("1", "1", ""),
    ]


# -- TensorBoard ----------------------------------------------------------------------------------
def _scalars_of(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_tensorboard_scalars_equal_the_records(tmp_path):
    pytest.importorskip("tensorboard")
    with TensorBoardLogger(tmp_path / "tb") as logger:
        ticket = find([logger.with_tags(seed=0)])
    (run,) = os.listdir(tmp_path / "tb")
    assert run == "seed=0"  # each set of tags is a run of its own
    written = _scalars_of(tmp_path / "tb" / run)
    assert {"remaining", "remaining_weights", "metrics/loss", "metrics/late", "per_tensor/0.weight"} <= set(written)
    assert "round" not in written and "seed" not in written
    for tag in ("remaining", "metrics/loss", "per_tensor/2.weight"):
        expected = [(r["round"], scalars(r)[tag]) for r in ticket.history]
        assert [(s, pytest.approx(v, rel=1e-6)) for s, v in expected] == written[tag]
    assert [s for s, _ in written["metrics/late"]] == [1, 2]


def test_tensorboard_without_per_tensor(tmp_path):
    pytest.importorskip("tensorboard")
    logger = TensorBoardLogger(tmp_path, per_tensor=False)
    logger.torch_lottery_round_end(round_index=3, record={"round": 3, "remaining": 0.5, "per_tensor": {"w": 0.5}})
    logger.close()
    assert _scalars_of(tmp_path) == {"remaining": [(3, 0.5)]}


def test_tensorboard_missing_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard raises ImportError
    with pytest.raises(ImportError, match=r'pip install "torch-lottery\[tensorboard\]"'):
        TensorBoardLogger(tmp_path / "tb")
    assert os.listdir(tmp_path) == []


# -- callbacks (Weights & Biases and the like) ------------------------------------------------------
def test_callback_gets_round_records_as_flat_numbers_for_trackers():
    logged = []
    ticket = find([CallbackLogger(lambda event: logged.append((event["round"], scalars(event))))])
    assert [step for step, _ in logged] == [0, 1, 2]
    assert [numbers["remaining"] for _, numbers in logged] == [r["remaining"] for r in ticket.history]
    assert logged[1][1]["metrics/loss"] == ticket.history[1]["metrics"]["loss"]
    assert all("masks_sha256" not in numbers and "stopped" not in numbers for _, numbers in logged)


def test_a_callback_that_raises_stops_the_run_with_a_plugin_error():
    def broken(event):
        raise KeyError("no such project")

    with pytest.raises(tl.PluginError, match="torch_lottery_round_end.*KeyError"):
        find([CallbackLogger(broken)], rounds=1)


def test_with_tags_is_a_plugin_of_its_own_sharing_the_file(tmp_path):
    logger = JSONLinesLogger(tmp_path / "run.jsonl", events=("round_end",), tags={"study": "x"})
    find([logger.with_tags(seed=0)], rounds=0)
    find([logger.with_tags(seed=1)], rounds=0)
    assert [(e["study"], e["seed"]) for e in events_of(tmp_path / "run.jsonl")] == [("x", 0), ("x", 1)]
    assert logger.tags == {"study": "x"}


def test_loggers_for_makes_the_files_of_log(tmp_path):
    made = loggers_for(["jsonl", "csv", "jsonl"], tmp_path / "out")
    assert [type(m) for m in made] == [JSONLinesLogger, CSVLogger]
    assert [os.path.basename(m.path) for m in made] == ["log.jsonl", "log.csv"]
    assert not (tmp_path / "out").exists()  # nothing is created before the first record


# -- bad arguments ----------------------------------------------------------------------------------
def _file(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    return tmp_path / "file.txt"


BAD = [
    (lambda p: JSONLinesLogger(3), TypeError, r"path must be a str or os.PathLike, got 3"),
    (lambda p: JSONLinesLogger(p), ValueError, r"path=.* is a directory"),
    (
        lambda p: CSVLogger(_file(p) / "x.csv"),
        ValueError,
        r"path=.*x.csv' cannot be written: its folder=.*file.txt' is a file",
    ),
    (lambda p: TensorBoardLogger(_file(p)), ValueError, r"log_dir=.*file.txt' is a file, not a directory"),
    (lambda p: TensorBoardLogger(p, per_tensor="yes"), TypeError, r"per_tensor must be a bool, got 'yes'"),
    (lambda p: JSONLinesLogger(p / "a.jsonl", events=("round_end", "epoch")), ValueError, r"events='epoch' is not one"),
    (lambda p: JSONLinesLogger(p / "a.jsonl", events="round_end"), TypeError, r"events must be a list of names"),
    (lambda p: CSVLogger(p / "a.csv", tags={"round": 1}), ValueError, r"tags\['round'\] would hide"),
    (lambda p: CSVLogger(p / "a.csv", tags={"seed": [1]}), TypeError, r"tags\['seed'\] must be a str, number"),
    (lambda p: CSVLogger(p / "a.csv", tags=[("seed", 1)]), TypeError, r"tags must be a dict"),
    (lambda p: CallbackLogger("wandb"), TypeError, r"fn must be callable as fn\(event\), got 'wandb'"),
    (lambda p: CallbackLogger(print).with_tags(event="x"), ValueError, r"tags\['event'\] would hide"),
    (lambda p: TaggedLogger(print, {}), TypeError, r"logger must be one of torch_lottery.loggers' loggers"),
    (lambda p: loggers_for(["jsonl", "xml"], p), ValueError, r"log='xml' is not one of jsonl, csv, tensorboard"),
]


@pytest.mark.parametrize("make, error, match", BAD, ids=[m for _, _, m in BAD])
def test_bad_arguments_are_named_and_nothing_is_written(tmp_path, make, error, match):
    if "per_tensor" in match:
        pytest.importorskip("tensorboard")
    with pytest.raises(error, match=match):
        make(tmp_path)
    assert set(os.listdir(tmp_path)) <= {"file.txt"}


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ValueError, match=r"path=.* cannot be written: .*not writable"):
            JSONLinesLogger(folder / "run.jsonl")
    finally:
        folder.chmod(0o700)


def test_the_module_is_reached_from_the_root_without_root_names():
    assert tl.loggers.CSVLogger is CSVLogger and "loggers" in dir(tl)
    assert not {"CSVLogger", "JSONLinesLogger", "TensorBoardLogger", "CallbackLogger"} & set(tl.__all__)
