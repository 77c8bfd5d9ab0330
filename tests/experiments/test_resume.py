"""torch_lottery/experiments/resume.py: ``torch-lottery run`` resumes after any interruption to the same records.

In-process tests interrupt the command (``KeyboardInterrupt``, as Ctrl-C raises
it) at the start of a chosen training or inside the write of the outputs, then
run it again; the slow test kills real runs with SIGKILL and SIGINT at random
moments. Every rerun must give the records of an uninterrupted run and train
only what was not finished (at most the one training in progress is lost).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from torch_lottery import _files, cli
from torch_lottery.driver import checkpoints
from torch_lottery.experiments import report, resume, runner

#: A tiny run (about a second in-process): 2 seeds, 2 rounds, batches of 400 MNIST-1D examples.
TINY = [
    "run",
    "--epochs",
    "1",
    "--rounds",
    "2",
    "--replicates",
    "2",
    "--controls",
    "reinit,random_pruning,supermask",
    "--batch-size",
    "400",
    "--no-progress",
]
#: Per seed: 3 ticket rounds, 3 random-pruning rounds (with its dense one), 2 reinit; the supermask trains nothing.
PER_SEED = 8
TRAININGS = 2 * PER_SEED


def comparable(out: Path) -> dict:
    """results.json without its wall-clock field."""
    result = json.loads((out / report.RESULTS_JSON).read_text())
    result.pop("seconds")
    return result


def folder_state(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def finished_trainings(out: Path) -> int:
    """Count the trainings the state under ``out`` keeps."""
    count = 0
    for seed in (0, 1):
        replicate = resume.RunState(str(out), runner.RunConfig()).replicate(seed)
        if os.path.isfile(os.path.join(replicate.folder, resume.RECORDS_FILE)):
            count += PER_SEED
            continue
        count += len(checkpoints.finished_rounds(replicate.ticket_dir))
        count += len(checkpoints.finished_rounds(replicate.random_pruning_dir))
        if os.path.isdir(replicate.controls_dir):
            count += sum(not name.startswith("supermask") for name in os.listdir(replicate.controls_dir))
    return count


TRAIN = runner.Trainer.train


class Trainings:
    """Counts ``Trainer.train`` calls; raises ``KeyboardInterrupt`` at the start of call ``interrupt_at``."""

    def __init__(self, monkeypatch, interrupt_at: int | None = None) -> None:
        self.calls = 0
        self.interrupt_at = interrupt_at
        real = TRAIN

        def train(trainer, *args, **kwargs):
            self.calls += 1
            if self.calls == self.interrupt_at:
                raise KeyboardInterrupt
            return real(trainer, *args, **kwargs)

        monkeypatch.setattr(runner.Trainer, "train", train)


def run(out: Path, *extra: str) -> int:
    return cli.main([*TINY, *extra, "--out", str(out)])


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The output folder of an uninterrupted run (copy it before changing it)."""
    out = tmp_path_factory.mktemp("finished") / "out"
    assert run(out) == 0
    return out


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    shutil.copytree(finished, tmp_path / "out")
    return tmp_path / "out"


def test_a_finished_run_keeps_its_settings_and_each_seeds_records_only(finished):
    files = sorted(str(p.relative_to(finished)) for p in finished.rglob("*") if p.is_file())
    assert files == [
        ".state/seed-0/records.pt",
        ".state/seed-1/records.pt",
        ".state/settings.pt",
        "accuracy.png",
        "results.csv",
        "results.json",
    ]


def test_the_records_are_those_of_a_run_without_state(finished):
    config = runner.RunConfig(
        rounds=2,
        epochs=1,
        replicates=2,
        controls=("reinit", "random_pruning", "supermask"),
        batch_size=400,
        progress=False,
    )
    plain = runner.run_experiment(config)  # masks and dense weights from the observer, not from the round files
    assert plain["records"] == comparable(finished)["records"]


def test_a_finished_run_run_again_trains_nothing_and_writes_the_same(copy, finished, monkeypatch):
    trainings = Trainings(monkeypatch)
    assert run(copy) == 0
    assert trainings.calls == 0
    assert comparable(copy) == comparable(finished)


@pytest.mark.parametrize("interrupt_at", [1, 3, 4, 7, 9, 16])
def test_an_interrupted_run_resumes_to_the_same_records(interrupt_at, finished, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    interrupted = Trainings(monkeypatch, interrupt_at)
    assert run(out) == 130
    assert capsys.readouterr().err.splitlines() == [
        "torch-lottery run: interrupted; run the same command again to resume after the last finished training"
    ]
    assert finished_trainings(out) == interrupt_at - 1  # every training before the interrupted one is kept
    assert not (out / report.RESULTS_JSON).exists()
    assert checkpoints.LOCK_FILE not in os.listdir(out)
    again = Trainings(monkeypatch)
    assert run(out) == 0
    assert again.calls == TRAININGS - (interrupt_at - 1)  # only the interrupted training is trained again
    assert interrupted.calls - 1 + again.calls == TRAININGS
    assert comparable(out) == comparable(finished)


def _old_set(out: Path) -> dict[str, bytes]:
    old = {**json.loads((out / report.RESULTS_JSON).read_text()), "config": {"note": "the previous run"}}
    old["summary"] = old["summary"][:2]
    report.write_outputs(old, str(out))
    return {name: (out / name).read_bytes() for name in report.OUTPUTS}


@pytest.mark.parametrize("at", [1, 2, 3, 4])
def test_interrupted_while_writing_the_outputs(at, copy, finished, monkeypatch, capsys):
    """Replace 1 writes the journal (the commit point); 2-4 rename results.csv, accuracy.png, results.json."""
    old = _old_set(copy)
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == at:
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(_files.os, "replace", replace)
    assert run(copy) == 130
    monkeypatch.setattr(_files.os, "replace", real)
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert (copy / ".state" / resume.SETTINGS_FILE).is_file()
    on_disk = {name: (copy / name).read_bytes() for name in report.OUTPUTS}
    loaded = report.load_results(str(copy))  # what `torch-lottery report` reads: one whole set
    if at == 1:  # not committed: the old set, untouched, and nothing else
        assert on_disk == old and loaded["config"] == {"note": "the previous run"}
        assert sorted(os.listdir(copy)) == [".state", *sorted(report.OUTPUTS)]
    else:  # committed: the new set, though results.json still has its temporary name
        assert on_disk[report.RESULTS_JSON] == old[report.RESULTS_JSON]
        loaded.pop("seconds")
        assert loaded == comparable(finished)
    trainings = Trainings(monkeypatch)
    assert run(copy) == 0
    assert trainings.calls == 0
    assert comparable(copy) == comparable(finished)
    assert (copy / report.RESULTS_CSV).read_bytes() == (finished / report.RESULTS_CSV).read_bytes()
    assert sorted(os.listdir(copy)) == [".state", *sorted(report.OUTPUTS)]  # no journal, no temporary


def test_other_settings_are_refused_naming_out_the_setting_and_fresh(copy, capsys):
    before = folder_state(copy)
    assert run(copy, "--epochs", "2", "--seed", "1") == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f"torch-lottery run: error: --out={str(copy)!r} holds the state of a run with other settings"
    )
    assert "--epochs: 1 there, 2 here" in line and "--seed: 0 there, 1 here" in line and "--fresh" in line
    assert folder_state(copy) == before


def test_fresh_starts_over_only_once_the_run_really_starts(copy, monkeypatch, capsys):
    before = folder_state(copy)
    (copy.parent / "empty").mkdir()
    assert run(copy, "--fresh", "--dataset", "mnist", "--data-root", str(copy.parent / "empty")) == 2
    assert "data set mnist not found" in capsys.readouterr().err
    assert folder_state(copy) == before  # the failed run removed nothing
    trainings = Trainings(monkeypatch)
    assert run(copy, "--fresh", "--rounds", "1") == 0
    assert trainings.calls == 2 * 5  # everything trained again: 2 + 2 + 1 per seed
    assert {r["round"] for r in comparable(copy)["records"]} == {0, 1}
    assert run(copy) == 2  # the state is now the --rounds 1 run's
    assert "--rounds: 1 there, 2 here" in capsys.readouterr().err


def test_a_second_live_run_is_refused_naming_out_and_the_holder(copy, capsys):
    before = folder_state(copy)
    with checkpoints.locked(str(copy), "--out"):  # (another open file: flock refuses it even in this process)
        assert run(copy) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"--out={str(copy)!r} is in use by another run (pid {os.getpid()} on " in line
    assert folder_state(copy) == before


def test_damaged_state_is_reported_with_the_remedy(copy, capsys):
    path = copy / ".state" / "seed-1" / resume.RECORDS_FILE
    path.write_bytes(path.read_bytes()[:200])  # truncated (by a disk or a copy: writes are atomic)
    before = folder_state(copy)
    assert run(copy) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "records.pt" in line and "pass --fresh to start the run over" in line
    assert folder_state(copy) == before


def test_a_state_folder_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / resume.STATE_DIR).write_text("x")
    assert run(tmp_path / "out") == 2
    assert "holds a file named '.state'" in capsys.readouterr().err


def test_a_failed_run_leaves_no_folder_behind(tmp_path, capsys):
    assert run(tmp_path / "runs" / "new", "--validation", "100000") == 2
    assert "validation=100000" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []  # neither the lock's folder nor its parent


# -- real kills --------------------------------------------------------------------------------
#: The command line, counting every training start in $TRAIN_LOG (the library has no test hooks).
COUNTING = textwrap.dedent(
    """
    import os, sys
    from torch_lottery.experiments import runner
    real = runner.Trainer.train
    def train(self, *args, **kwargs):
        with open(os.environ["TRAIN_LOG"], "a") as log:
            log.write("start\\n")
        return real(self, *args, **kwargs)
    runner.Trainer.train = train
    from torch_lottery_cli import console_script
    sys.exit(console_script())
    """
)


def _env(log: Path) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TRAIN_LOG=str(log))
    root = str(Path(cli.__file__).resolve().parents[1])  # this checkout's package, before any installed one
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _starts(log: Path) -> int:
    return len(log.read_text().split()) if log.exists() else 0


@pytest.mark.slow
def test_runs_killed_at_random_moments_resume_to_the_same_records(finished, tmp_path, capsys):
    """SIGKILL or SIGINT at random moments (fixed seed), then a rerun that finishes: same records, little lost."""
    rng = random.Random(20240612)
    out = tmp_path / "out"
    # (signal, after how many training starts, then how long): one kill during start-up, the rest in training
    # (a process starts at most 4 of the 16 trainings, so each is still running when its signal comes)
    moments = [(signal.SIGKILL, 0, rng.uniform(0.5, 2.0))]
    moments += [
        (sig, rng.randint(1, 4), rng.uniform(0.0, 0.3)) for sig in (signal.SIGKILL, signal.SIGINT, signal.SIGKILL)
    ]
    lost = []
    for number, (sig, after, delay) in enumerate([*moments, (None, None, None)]):
        log = tmp_path / f"train-{number}.log"
        kept = finished_trainings(out)
        process = subprocess.Popen(
            [sys.executable, "-c", COUNTING, *TINY, "--out", str(out)],
            env=_env(log),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if sig is not None:
            deadline = time.monotonic() + 120
            while _starts(log) < after and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if number == 1:  # a second run on the same --out while this one holds it: refused, naming its pid
                assert run(out) == 2
                assert f"is in use by another run (pid {process.pid} on " in capsys.readouterr().err
            time.sleep(delay)
            process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=300)
        if sig is None:
            assert process.returncode == 0, stderr
            assert _starts(log) == TRAININGS - kept  # nothing finished is trained again
            break
        if sig == signal.SIGINT:  # Ctrl-C: one line, status 130, the state kept
            assert process.returncode == 130, stderr
            assert len(stderr.splitlines()) == 1 and "interrupted" in stderr
        else:
            assert process.returncode == -signal.SIGKILL, stderr
        lost.append(_starts(log) - (finished_trainings(out) - kept))
    assert len(lost) == len(moments) and all(count <= 1 for count in lost), lost  # at most the one in progress
    assert comparable(out) == comparable(finished)
