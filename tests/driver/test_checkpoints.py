"""torch_lottery/driver/checkpoints.py: the lock, the path checks, and what a resume refuses, changing nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
import torch
from torch import nn

import torch_lottery as tl
from torch_lottery import _files
from torch_lottery.driver import checkpoints

import helpers


def make_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


class Train:
    """A few SGD steps; records the rounds it trained, and can wait for an event before training."""

    def __init__(self, gate: threading.Event | None = None, started: threading.Event | None = None) -> None:
        self.rounds: list[int] = []
        self.gate, self.started = gate, started

    def __call__(self, model, context):
        self.rounds.append(context.round_index)
        if self.started is not None:
            self.started.set()
        if self.gate is not None:
            assert self.gate.wait(30)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        g = torch.Generator().manual_seed(context.seed % 1000)
        for _ in range(4):
            x, y = torch.randn(16, 8, generator=g), torch.randint(0, 2, (16,), generator=g)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            context.step()


def listing(folder) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder)) if (folder / name).is_file()}


# --------------------------------------------------------------------------- the lock
def test_a_second_live_run_on_the_same_directory_is_refused_naming_it_and_the_holder(tmp_path):
    gate, started = threading.Event(), threading.Event()
    first = {}

    def run_first():
        first["ticket"] = tl.find_ticket(make_model(), Train(gate, started), rounds=2, checkpoint_dir=tmp_path)

    thread = threading.Thread(target=run_first)
    thread.start()
    try:
        assert started.wait(30)
        model, train = make_model(), Train()
        before, files = helpers.snapshot(model), listing(tmp_path)
        with pytest.raises(
            ValueError,
            match=rf"checkpoint_dir={re.escape(repr(str(tmp_path)))} is in use by another "
            rf"run \(pid {os.getpid()} on .*, since ",
        ):
            tl.find_ticket(model, train, strategy_options={"rate": 0.5}, rounds=3, checkpoint_dir=tmp_path)
        assert train.rounds == []
        helpers.assert_unchanged(model, before)
        assert listing(tmp_path) == files
    finally:
        gate.set()
        thread.join(60)
    assert first["ticket"].remaining == pytest.approx(0.8**2, abs=0.01)
    assert checkpoints.LOCK_FILE not in os.listdir(tmp_path)  # released and removed at the end
    again = tl.find_ticket(make_model(), Train(), rounds=2, checkpoint_dir=tmp_path)  # the lock is free again
    assert again.remaining == first["ticket"].remaining


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        from torch_lottery.driver import checkpoints
        with checkpoints.locked({str(tmp_path)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=rf"in use by another run \(pid {holder.pid} "):
            tl.find_ticket(make_model(), Train(), rounds=1, checkpoint_dir=tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    assert checkpoints.LOCK_FILE in os.listdir(tmp_path)  # left behind, but its OS lock died with the process
    ticket = tl.find_ticket(make_model(), Train(), rounds=1, checkpoint_dir=tmp_path)
    assert len(ticket.history) == 2


# --------------------------------------------------------------------------- path problems, before the first round
def _dangling(tmp_path):
    os.symlink(tmp_path / "nowhere", tmp_path / "link")
    return tmp_path / "link"


def _file(tmp_path):
    (tmp_path / "plain").write_text("x")
    return tmp_path / "plain"


def _taken(name):
    def make(tmp_path):
        (tmp_path / "ckpt" / name).mkdir(parents=True)
        return tmp_path / "ckpt"

    return make


@pytest.mark.parametrize(
    "make, words",
    [
        (_file, "is a file, not a directory"),
        (lambda tmp_path: _file(tmp_path) / "sub", "is inside a file"),
        (_dangling, "dangling symbolic link"),
        (lambda tmp_path: _dangling(tmp_path) / "sub", "inside a dangling symbolic link"),
        (_taken("ticket.pt"), "holds a directory named 'ticket.pt'"),
        (_taken(checkpoints.LOCK_FILE), f"holds a directory named '{checkpoints.LOCK_FILE}'"),
        (_taken("round-0000.pt"), "holds 'round-0000.pt', which is not a file"),
    ],
    ids=["file", "inside-file", "dangling-link", "inside-dangling-link", "ticket-dir", "lock-dir", "round-dir"],
)
def test_every_path_problem_is_found_before_anything_trains(tmp_path, make, words):
    path = make(tmp_path)
    train = Train()
    with pytest.raises(ValueError, match=rf"checkpoint_dir=.*{re.escape(words)}"):
        tl.find_ticket(make_model(), train, rounds=1, checkpoint_dir=path)
    assert train.rounds == []


def test_a_read_only_directory_is_found_before_anything_trains(tmp_path, monkeypatch):
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: False if os.fspath(path) == str(tmp_path) else real(path, mode)
    )
    train = Train()
    with pytest.raises(ValueError, match=r"checkpoint_dir=.* is not writable"):
        tl.find_ticket(make_model(), train, rounds=1, checkpoint_dir=tmp_path / "new")
    assert train.rounds == [] and not (tmp_path / "new").exists()


# --------------------------------------------------------------------------- what a resume refuses
def _edit_round(path, edit) -> None:
    """Change a round file and sign it again, as a tool that writes valid but wrong checkpoints would."""
    state = torch.load(path, weights_only=True)
    del state[_files.DIGEST_FIELD]
    edit(state)
    _files.save_state(state, path)


def _mask(value):
    def edit(state):
        # a float mask (stock's kind, which a checkpoint may hold), so that NaN and 2 can be written
        state["model"]["0.weight_mask"] = torch.full(state["model"]["0.weight_mask"].shape, value)

    return edit


def _recorded_mask_all_ones(state):
    state["masks"]["0.weight"] = torch.ones_like(state["masks"]["0.weight"])


def _int_orig(state):
    state["model"]["0.weight_orig"] = state["model"]["0.weight_orig"].round().long()


def _history(field):
    def edit(state):
        del state["history"][-1][field]

    return edit


@pytest.mark.parametrize(
    "edit, words",
    [
        (_mask(float("nan")), "'0.weight_mask' must hold only 0 and 1"),
        (_mask(2.0), "'0.weight_mask' must hold only 0 and 1"),
        (_mask(1.0), "'0.weight_mask' differs from the recorded mask of '0.weight'"),
        (_recorded_mask_all_ones, "'0.weight_mask' differs from the recorded mask of '0.weight'"),
        (_int_orig, "'0.weight_orig' has dtype torch.int64 there and torch.float32 here"),
        (_history("remaining_weights"), "history record 2 has no valid 'remaining_weights'"),
        (_history("remaining"), "history record 2 has no valid 'remaining'"),
    ],
    ids=[
        "nan-mask",
        "two-mask",
        "all-ones-mask",
        "recorded-all-ones",
        "int64-orig",
        "history-count",
        "history-fraction",
    ],
)
def test_a_resume_refuses_an_edited_checkpoint_before_changing_anything(tmp_path, edit, words):
    tl.find_ticket(make_model(), Train(), rounds=2, checkpoint_dir=tmp_path)
    _edit_round(tmp_path / "round-0002.pt", edit)
    model, train = make_model(), Train()
    before = helpers.snapshot(model)
    with pytest.raises(ValueError, match=re.escape(words)):
        tl.find_ticket(model, train, rounds=3, checkpoint_dir=tmp_path)
    assert train.rounds == []
    helpers.assert_unchanged(model, before)


def test_an_unedited_checkpoint_resumes(tmp_path):
    """The control of the test above: the same steps without the edit resume and train one more round."""
    tl.find_ticket(make_model(), Train(), rounds=2, checkpoint_dir=tmp_path)
    _edit_round(tmp_path / "round-0002.pt", lambda state: None)
    train = Train()
    ticket = tl.find_ticket(make_model(), train, rounds=3, checkpoint_dir=tmp_path)
    assert train.rounds == [3] and len(ticket.history) == 4


def test_check_history_names_the_record_and_the_field():
    good = {
        "round": 0,
        "remaining": 1.0,
        "remaining_weights": 4,
        "total_weights": 4,
        "per_tensor": {},
        "metrics": {},
        "seconds": 0.1,
    }
    assert checkpoints.check_history([good], 1) is None
    assert checkpoints.check_history([good], 2) == "its history is not 2 round records"
    assert checkpoints.check_history([{**good, "round": 3}], 1) == "history record 0 says round 3"
    assert (
        checkpoints.check_history([{**good, "seconds": True}], 1)
        == "history record 0 has no valid 'seconds' (found True)"
    )
    assert checkpoints.check_history(["x"], 1) == "history record 0 is not a dict"
