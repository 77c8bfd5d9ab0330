"""The ``torch-lottery`` command line, run for real as a console script and as ``python -m torch_lottery``.

Every command runs in a subprocess with its working directory in a temporary
folder, so nothing is written into the repository. Subprocesses get one
OpenMP/MKL thread, like the in-process tests (tests/conftest.py): on a busy
2-core machine PyTorch's default of 2 threads oversubscribes the cores and
slows the tiny networks here down many times over.

Independent commands are started together (:func:`_start_all`) to keep the
wall clock down on a 2-core machine.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SCRIPT = Path(sys.executable).parent / "torch-lottery"
ALL_CONTROLS = "reinit,permute,random_pruning,sign_reinit,supermask"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ENTRY = re.compile(r"^    \[(\d+), (\d+)\]: [+-]\d+\.\d{6}$")
TIMEOUT = 300


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("TORCH_LOTTERY_DATA", None)
    return env


def _command(args, module: bool = False) -> list[str]:
    return ([sys.executable, "-m", "torch_lottery"] if module else [str(SCRIPT)]) + [str(a) for a in args]


def _start_all(cwd: Path, commands: dict[str, list]) -> dict[str, subprocess.CompletedProcess]:
    """Run ``{name: argv}`` concurrently in ``cwd``; return ``{name: CompletedProcess}`` with ``.seconds``."""
    logs = cwd / ".logs"
    logs.mkdir(exist_ok=True)
    running = {}
    for name, argv in commands.items():
        out, err = open(logs / f"{name}.out", "w+b"), open(logs / f"{name}.err", "w+b")  # noqa: SIM115 (closed below)
        process = subprocess.Popen(argv, cwd=cwd, env=_env(), stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        running[name] = (process, out, err, time.perf_counter())
    done = {}
    for name, (process, out, err, started) in running.items():
        process.wait(timeout=TIMEOUT)
        seconds = time.perf_counter() - started
        texts = []
        for handle in (out, err):
            handle.seek(0)
            texts.append(handle.read().decode("utf-8"))
            handle.close()
        completed = subprocess.CompletedProcess(process.args, process.returncode, *texts)
        completed.seconds = seconds
        done[name] = completed
    shutil.rmtree(logs)
    return done


def _run(cwd: Path, *args, module: bool = False) -> subprocess.CompletedProcess:
    return _start_all(cwd, {"cmd": _command(args, module)})["cmd"]


def _ok(process: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert process.returncode == 0, f"exit {process.returncode}\nstdout:\n{process.stdout}\nstderr:\n{process.stderr}"
    assert "Traceback" not in process.stderr
    return process


def test_console_script_is_installed():
    assert SCRIPT.is_file() and os.access(SCRIPT, os.X_OK)


# -- help ----------------------------------------------------------------------------------
SUBCOMMAND_OPTIONS = {
    "sum-of-two": ["--seed", "--json", "--out", "--device"],
    "run": [
        "--dataset",
        "--model",
        "--rounds",
        "--epochs",
        "--batch-size",
        "--optimizer",
        "--lr",
        "--momentum",
        "--weight-decay",
        "--rate",
        "--scope",
        "--output-rate",
        "--rewind-iteration",
        "--strategy",
        "--strategy-option",
        "--controls",
        "--replicates",
        "--seed",
        "--device",
        "--data-root",
        "--download",
        "--validation",
        "--evals-per-epoch",
        "--out",
        "--fresh",
        "--metric",
        "--json",
        "--no-progress",
        "--log",
        "--layers",
        "--config",
    ],
    "report": ["DIR", "--metric", "--layers"],
    "strategies": ["--help"],
}


@pytest.fixture(scope="module")
def helps(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("help")
    commands = {"top": _command(["--help"]), "top-module": _command(["--help"], module=True)}
    commands.update({sub: _command([sub, "--help"]) for sub in SUBCOMMAND_OPTIONS})
    return _start_all(cwd, commands)


@pytest.mark.slow
def test_top_level_help(helps):
    script, module = _ok(helps["top"]), _ok(helps["top-module"])
    assert script.stdout == module.stdout  # the console script and python -m are the same program
    assert script.stdout.startswith("usage: torch-lottery")
    for command in SUBCOMMAND_OPTIONS:
        assert re.search(rf"^\s+{command}\b", script.stdout, re.M), command
    assert "docs/index.md" in script.stdout


@pytest.mark.slow
@pytest.mark.parametrize("subcommand", list(SUBCOMMAND_OPTIONS))
def test_subcommand_help_mentions_every_option(helps, subcommand):
    text = _ok(helps[subcommand]).stdout
    assert text.startswith(f"usage: torch-lottery {subcommand}")
    for option in SUBCOMMAND_OPTIONS[subcommand]:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), option


@pytest.mark.slow
def test_run_help_lists_the_choices(helps):
    text = " ".join(helps["run"].stdout.split())
    for word in (
        "mnist1d",
        "fashion-mnist",
        "cifar10",
        "lenet300100",
        "conv2",
        "torchvision:<name>",
        "reinit",
        "permute",
        "random_pruning",
        "sign_reinit",
        "supermask",
        "test_accuracy_at_early_stop",
    ):
        assert word in text, word


@pytest.mark.slow
def test_run_help_lists_the_registered_strategies(helps):
    from torch_lottery import list_strategies

    text = " ".join(helps["run"].stdout.split())
    assert "the registered strategy that finds the ticket (default imp): " + ", ".join(list_strategies()) in text


# -- strategies -------------------------------------------------------------------------------
def test_strategies_lists_the_builtins_with_their_plugins_and_distribution(tmp_path):
    from importlib import metadata

    process = _ok(_run(tmp_path, "strategies"))
    lines = process.stdout.splitlines()
    assert lines[0].split() == ["name", "plugin", "distribution", "version"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    for name in ("imp", "one_shot", "random"):
        assert rows[name] == [f"torch_lottery.strategies.{name}", "torch-lottery", metadata.version("torch-lottery")]
    assert "conflicts:" not in process.stdout
    assert "error:" not in process.stderr


# -- sum-of-two ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sum_of_two(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("sum_of_two")
    runs = _start_all(
        cwd, {"text": _command(["sum-of-two", "--out", "res"]), "json": _command(["sum-of-two", "--json"], module=True)}
    )
    return cwd, runs


@pytest.mark.slow
def test_sum_of_two_prints_the_ticket_and_the_rmse(sum_of_two):
    cwd, runs = sum_of_two
    process = _ok(runs["text"])
    text = process.stdout
    assert re.match(r"\d+ rounds of 25% pruning per layer: 4 of 600 weights remain", text)
    section = text.split("winning ticket:\n", 1)[1].split("random-reinit ticket:", 1)[0]
    rows = [line for line in section.splitlines() if ENTRY.match(line)]
    assert len(rows) == 4
    rmse = {}
    for line in text.split("test RMSE on [1, 2]:\n", 1)[1].splitlines():
        match = re.match(r"^  (\w+)\s+(\d\.\d{3}e[+-]\d\d)$", line)
        if match:
            rmse[match.group(1)] = float(match.group(2))
    assert set(rmse) == {"winning_ticket", "random_reinit", "random_permutation", "full_model"}
    assert rmse["winning_ticket"] < 1e-2 and rmse["full_model"] < 1e-2 and rmse["random_permutation"] > 0.1
    # --out DIR also writes result.json, matching what was printed
    saved = json.loads((cwd / "res" / "result.json").read_text())
    assert saved["weights_remaining"] == 4
    printed = {tuple(map(int, ENTRY.match(line).groups())) for line in rows}
    assert printed == {tuple(e["index"]) for layer in saved["winning_ticket"] for e in layer}
    assert {k: float(f"{v:.3e}") for k, v in saved["rmse"].items()} == rmse
    assert sorted(os.listdir(cwd / "res")) == ["result.json"]


@pytest.mark.slow
def test_sum_of_two_json_prints_one_object(sum_of_two):
    cwd, runs = sum_of_two
    process = _ok(runs["json"])
    lines = process.stdout.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert isinstance(result, dict)
    assert {"rmse", "winning_ticket", "weights_remaining", "seed"} <= set(result)
    assert result["weights_remaining"] == 4 and result["rmse"]["winning_ticket"] < 1e-2
    # same seed, same figures as the text run's result.json (only the timing differs)
    saved = json.loads((cwd / "res" / "result.json").read_text())
    assert {k: v for k, v in result.items() if k != "seconds"} == {k: v for k, v in saved.items() if k != "seconds"}


# -- run and report ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("run")
    process = _run(
        cwd,
        "run",
        "--rounds",
        2,
        "--epochs",
        1,
        "--replicates",
        1,
        "--controls",
        ALL_CONTROLS,
        "--no-progress",
        "--out",
        "out",
    )
    return cwd, process


KINDS_ROUNDS = [("ticket", 0), ("ticket", 1), ("ticket", 2)] + [
    (kind, r) for kind in ALL_CONTROLS.split(",") for r in (1, 2)
]


def _table(stdout: str) -> str:
    return stdout.split("\n\n", 1)[0]


@pytest.mark.slow
def test_run_prints_the_table(full_run):
    cwd, process = full_run
    _ok(process)
    assert process.stderr == ""  # --no-progress: no bars, and no warnings either
    lines = _table(process.stdout).splitlines()
    assert lines[0] == "test accuracy % (mean ± std over 1 seeds)"
    header = lines[1]
    for label in (
        "round",
        "weights %",
        "winning ticket",
        "random reinit",
        "random permutation",
        "random pruning",
        "sign-preserving reinit",
        "supermask (no training)",
        "early stop (ticket)",
    ):
        assert label in header
    rows = lines[3:]
    assert [row.split()[0] for row in rows] == ["0", "1", "2"]
    assert rows[0].split()[1] == "100.0"
    summary = json.loads((cwd / "out" / "results.json").read_text())["summary"]
    ticket1 = next(r for r in summary if (r["kind"], r["round"]) == ("ticket", 1))
    assert rows[1].split()[1] == f"{100 * ticket1['remaining']:.1f}"
    assert f"{100 * ticket1['test_accuracy_mean']:.2f} ± 0.00" in rows[1]
    assert process.stdout.rstrip().endswith("wrote out/results.json, out/results.csv, out/accuracy.png")


@pytest.mark.slow
def test_run_writes_json_csv_and_png(full_run):
    cwd, process = full_run
    _ok(process)
    out = cwd / "out"
    assert sorted(os.listdir(out)) == [".state", "accuracy.png", "results.csv", "results.json"]  # .state: resume
    assert sorted(os.listdir(cwd)) == ["out"]  # nothing else written into the working directory
    png = (out / "accuracy.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1000
    result = json.loads((out / "results.json").read_text())
    assert result["config"]["rounds"] == 2 and result["config"]["controls"] == ALL_CONTROLS.split(",")
    assert result["setup"]["epochs"] == 1
    assert [(r["kind"], r["round"]) for r in result["summary"]] == KINDS_ROUNDS
    assert len(result["records"]) == len(KINDS_ROUNDS)
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames, list(reader)
    assert header[:5] == ["kind", "round", "n", "remaining", "test_accuracy_mean"]
    assert header == list(result["summary"][0])
    assert [(r["kind"], int(r["round"])) for r in rows] == KINDS_ROUNDS
    for row, expected in zip(rows, result["summary"], strict=True):
        assert float(row["test_accuracy_mean"]) == pytest.approx(expected["test_accuracy_mean"])
        assert float(row["remaining"]) == pytest.approx(expected["remaining"])


@pytest.mark.slow
def test_report_re_renders_a_finished_run(full_run, tmp_path):
    cwd, process = full_run
    _ok(process)
    directory = tmp_path / "copy"
    shutil.copytree(cwd / "out", directory)
    original_csv = (directory / "results.csv").read_text()
    (directory / "results.csv").unlink()
    (directory / "accuracy.png").unlink()
    report = _ok(_run(tmp_path, "report", "copy"))
    assert _table(report.stdout) == _table(process.stdout)
    assert report.stdout.rstrip().endswith("wrote copy/results.json, copy/results.csv, copy/accuracy.png")
    assert (directory / "results.csv").read_text() == original_csv
    assert (directory / "accuracy.png").read_bytes().startswith(PNG_MAGIC)
    assert sorted(os.listdir(directory)) == [".state", "accuracy.png", "results.csv", "results.json"]


@pytest.mark.slow
def test_report_is_refused_while_a_run_holds_the_folder(full_run, tmp_path, capsys):
    from torch_lottery.cli import main
    from torch_lottery.driver.checkpoints import locked

    cwd, process = full_run
    _ok(process)
    directory = tmp_path / "copy"
    shutil.copytree(cwd / "out", directory)
    before = {name: (directory / name).read_bytes() for name in ("results.json", "results.csv", "accuracy.png")}
    with locked(str(directory), argument="--out"):  # what a live run on that --out holds
        assert main(["report", str(directory)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "DIR=" in error and "in use by another run" in error
    assert {name: (directory / name).read_bytes() for name in before} == before
    assert main(["report", str(directory)]) == 0  # the lock gone, the report goes ahead


@pytest.fixture(scope="module")
def seeded_runs(tmp_path_factory):
    """The same tiny run twice with --seed 3: with progress bars and --json, and with --no-progress."""
    cwd = tmp_path_factory.mktemp("seeded")
    tiny = ["run", "--rounds", 1, "--epochs", 1, "--controls", "reinit", "--seed", 3]
    return cwd, _start_all(
        cwd,
        {
            "bars": _command(tiny + ["--json", "--out", "a"]),
            "quiet": _command(tiny + ["--no-progress", "--out", "b"], module=True),
        },
    )


@pytest.mark.slow
def test_run_json_prints_the_summary(seeded_runs):
    cwd, runs = seeded_runs
    process = _ok(runs["bars"])
    lines = process.stdout.splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary == json.loads((cwd / "a" / "results.json").read_text())["summary"]
    assert [(r["kind"], r["round"]) for r in summary] == [("ticket", 0), ("ticket", 1), ("reinit", 1)]


@pytest.mark.slow
def test_progress_bars_on_stderr_unless_disabled(seeded_runs):
    _, runs = seeded_runs
    bars, quiet = _ok(runs["bars"]), _ok(runs["quiet"])
    assert "seed 3: ticket" in bars.stderr and "100%|" in bars.stderr
    assert "seed 3: controls" in bars.stderr
    assert "%|" not in bars.stdout
    assert quiet.stderr == ""
    assert "winning ticket" in quiet.stdout


@pytest.mark.slow
def test_seed_makes_runs_identical(seeded_runs):
    cwd, runs = seeded_runs
    _ok(runs["bars"]), _ok(runs["quiet"])
    a = json.loads((cwd / "a" / "results.json").read_text())
    b = json.loads((cwd / "b" / "results.json").read_text())
    assert a["config"]["seed"] == b["config"]["seed"] == 3
    assert a["summary"] == b["summary"]
    assert a["records"] == b["records"]


# -- --log ---------------------------------------------------------------------------------------
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("logged")
    logs = "jsonl,csv,tensorboard" if HAS_TENSORBOARD else "jsonl,csv"
    tiny = ["run", "--epochs", 1, "--rounds", 1, "--replicates", 1, "--controls", "none", "--no-progress"]
    return cwd, _ok(_run(cwd, *tiny, "--log", logs, "--out", "out"))


@pytest.mark.slow
def test_log_writes_every_round_of_the_run_into_out(logged_run):
    cwd, _ = logged_run
    out = cwd / "out"
    records = json.loads((out / "results.json").read_text())["records"]
    with open(out / "log.jsonl", encoding="utf-8") as handle:
        ends = [e for e in map(json.loads, handle) if e["event"] == "round_end"]
    assert [(e["kind"], e["replicate"], e["seed"], e["round"]) for e in ends] == [
        ("ticket", 0, 0, 0),
        ("ticket", 0, 0, 1),
    ]
    assert [e["remaining"] for e in ends] == [r["remaining"] for r in records]
    assert [e["metrics"]["test_accuracy"] for e in ends] == [r["test_accuracy"] for r in records]
    with open(out / "log.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["kind"], r["replicate"], r["seed"], r["round"]) for r in rows] == [
        ("ticket", "0", "0", "0"),
        ("ticket", "0", "0", "1"),
    ]
    assert [float(r["metrics/test_accuracy"]) for r in rows] == [r["test_accuracy"] for r in records]
    if HAS_TENSORBOARD:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        (run,) = os.listdir(out / "tensorboard")
        assert run == "replicate=0,seed=0,kind=ticket"
        accumulator = EventAccumulator(str(out / "tensorboard" / run))
        accumulator.Reload()
        written = [(e.step, e.value) for e in accumulator.Scalars("metrics/test_accuracy")]
        assert written == [(r["round"], pytest.approx(r["test_accuracy"])) for r in records]


# -- errors ------------------------------------------------------------------------------------------
ERRORS = {
    "unknown dataset": (
        ["run", "--dataset", "imagenet", "--no-progress"],
        ["torch-lottery run: error: dataset='imagenet' is not one of"],
    ),
    "unknown model": (
        ["run", "--model", "lenet5", "--rounds", "0", "--epochs", "1", "--no-progress"],
        ["torch-lottery run: error:", "'lenet5'", "not a known model"],
    ),
    "unknown control": (
        ["run", "--controls", "reinit,bogus"],
        ["torch-lottery run: error:", "unknown control 'bogus'"],
    ),
    "rounds x": (["run", "--rounds", "x"], ["torch-lottery run: error:", "--rounds", "'x'"]),
    "unknown log": (
        ["run", "--log", "jsonl,xml"],
        ["torch-lottery run: error:", "--log='xml' is not one of jsonl, csv, tensorboard"],
    ),
    "report missing dir": (["report", "nowhere"], ["torch-lottery report: error:", "'nowhere' has no results.json"]),
    "report corrupt json": (["report", "corrupt"], ["torch-lottery report: error:", "is not valid JSON"]),
    "report without summary": (["report", "nosummary"], ["torch-lottery report: error:", "no summary"]),
    "missing mnist": (
        ["run", "--dataset", "mnist", "--data-root", "empty", "--rounds", "0", "--epochs", "1", "--no-progress"],
        ["torch-lottery run: error:", "data set mnist not found", "empty", "--download"],
    ),
    "sum-of-two on cuda": (["sum-of-two", "--device", "cuda"], ["torch-lottery sum-of-two: error:", "cuda"]),
    "unknown strategy": (
        ["run", "--strategy", "bogus"],
        ["torch-lottery run: error: --strategy: unknown strategy 'bogus'; registered: ", "imp", "snip"],
    ),
    "report damaged record": (
        ["report", "damaged"],
        ["error: damaged/results.json: records[0].test_accuracy must be a number, got 'abc'"],
    ),
}
if not torch.cuda.is_available():
    ERRORS["cuda without cuda"] = (
        ["run", "--device", "cuda", "--no-progress"],
        ["torch-lottery run: error:", "device='cuda'", "CUDA is not available"],
    )
ARGPARSE_ERRORS = {"unknown control", "rounds x", "unknown log"}  # argparse prints its usage before the error line


@pytest.fixture(scope="module")
def errors(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("errors")
    (cwd / "corrupt").mkdir()
    (cwd / "corrupt" / "results.json").write_text('{"summary": [1, 2')
    (cwd / "nosummary").mkdir()
    (cwd / "nosummary" / "results.json").write_text('{"records": []}')
    (cwd / "empty").mkdir()
    (cwd / "damaged").mkdir()
    row = {"kind": "ticket", "round": 0, "n": 1, "remaining": 1.0}
    (cwd / "damaged" / "results.json").write_text(
        json.dumps({"summary": [row], "records": [{**row, "test_accuracy": "abc"}]})
    )
    runs = _start_all(cwd, {name: _command(args) for name, (args, _) in ERRORS.items()})
    return cwd, runs


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ERRORS))
def test_errors_are_one_line_without_traceback(errors, name):
    _, runs = errors
    process = runs[name]
    assert process.returncode == 2, process.stderr
    assert process.stdout == ""
    assert "Traceback" not in process.stderr
    lines = process.stderr.splitlines()
    error_lines = [line for line in lines if "error:" in line]
    assert len(error_lines) == 1 and error_lines[0] == lines[-1], process.stderr
    if name in ARGPARSE_ERRORS:
        assert lines[0].startswith("usage: torch-lottery run ")
        assert all(line.startswith(" ") for line in lines[1:-1])
    else:
        assert len(lines) == 1, process.stderr
    for fragment in ERRORS[name][1]:
        assert fragment in lines[-1], (fragment, lines[-1])


@pytest.mark.slow
def test_errors_write_nothing(errors):
    cwd, _ = errors
    assert sorted(os.listdir(cwd)) == ["corrupt", "damaged", "empty", "nosummary"]
    assert os.listdir(cwd / "damaged") == ["results.json"]  # no results.csv or accuracy.png written
    assert os.listdir(cwd / "empty") == []  # no download was attempted
    assert os.listdir(cwd / "corrupt") == ["results.json"]
    assert (cwd / "corrupt" / "results.json").read_text() == '{"summary": [1, 2'


# -- --config, --strategy and --strategy-option ----------------------------------------------------------
CONFIG = """
strategy = "magnitude_init"
rounds = 3
epochs = 2
replicates = 1
validation = 100

[strategy_options]
remaining = 0.5
scope = "local"
"""


@pytest.mark.slow
def test_run_from_a_config_file_with_flags_overriding_it(tmp_path):
    (tmp_path / "run.toml").write_text(CONFIG)
    flags = ["--epochs", 1, "--strategy-option", "remaining=0.3", "--layers", "--no-progress", "--out", "out"]
    process = _ok(_run(tmp_path, "run", "--config", "run.toml", *flags))
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    config = result["config"]
    assert (config["strategy"], config["rounds"], config["replicates"]) == ("magnitude_init", 3, 1)  # the file's
    assert config["epochs"] == 1 and result["setup"]["epochs"] == 1  # the flag's
    assert config["strategy_options"] == {"remaining": 0.3, "scope": "local"}  # merged key by key, the flag's wins
    assert config["controls"] == ["reinit", "permute"]  # the strategy's: random_pruning is IMP's
    strategy = result["strategy"]
    assert (strategy["name"], strategy["plugin"], strategy["distribution"]) == (
        "magnitude_init",
        "torch_lottery.strategies.magnitude_init",
        "torch-lottery",
    )
    assert strategy["options"]["remaining"] == 0.3 and strategy["options"]["scope"] == "local"
    assert result["versions"]["torch"] == torch.__version__ and result["versions"]["python"]
    ticket = [r for r in result["records"] if r["kind"] == "ticket"]
    assert [r["round"] for r in ticket] == [0, 1]  # pruning at initialization: one round, whatever rounds says
    assert all(f == pytest.approx(0.3, abs=0.01) for f in ticket[1]["layers"].values())  # local: each tensor
    assert {r["kind"] for r in result["records"]} == {"ticket", "reinit", "permute"}
    layers = process.stdout.split("\n\n")[1].splitlines()
    assert layers[0] == "ticket weights remaining per layer % (mean over 1 seeds)"
    assert layers[1].split() == ["round", "all", "fc1.weight", "fc2.weight", "fc3.weight"]
    assert layers[4].split()[0] == "1" and layers[4].split()[2] == "30.0"
    assert (tmp_path / "run.toml").read_text() == CONFIG
