"""Checkpoints and resume: a run killed with SIGKILL at any point and restarted ends with the same ticket.

Kill points: during training (before and after the rewind point is captured,
mid-round, at the start of a round), right after a prune, right after a rewind,
after training but before the round's checkpoint, and during file writes: half
of a round file written, the temporary file complete but not yet renamed, the
rename done but the directory not yet synced, half of the ticket file written.
The write kills patch ``torch.save`` / ``os.replace`` in the child only.
"""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from torch_lottery import Ticket, find_ticket
from torch_lottery import hookimpl as tl_hookimpl
from torch_lottery.driver import checkpoints
from torch_lottery.plugins.manager import PluginError

from helpers import assert_state_equal, state_of

SCRIPT = textwrap.dedent(
    """
    import os
    import signal
    import sys

    import torch
    from torch import nn

    import torch_lottery as tl

    KILL_ROUND = int(os.environ.get("KILL_ROUND", "-1"))
    KILL_STEP = int(os.environ.get("KILL_STEP", "-1"))
    MARKER = os.environ.get("KILL_MARKER", "")
    # KILL_AT: "after_prune" / "after_rewind" / "round_end" (at KILL_ROUND), or
    # "write:<file>:half" / "write:<file>:before_replace" / "write:<file>:after_replace"
    KILL_AT = os.environ.get("KILL_AT", "")
    LOG = os.environ.get("TRAIN_LOG", "")
    MODE = os.environ.get("MODE", "plain")
    STEPS = 12

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 2))
    extra = {}
    if MODE in ("state", "carry"):  # an optimizer and scheduler living across rounds
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
        # "state": rewound with the weights; "carry": carried on from round to round
        extra = {"optimizer": optimizer, "scheduler": scheduler, "rewind_state": MODE == "state"}


    def kill_now():
        open(MARKER, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)


    def armed():
        return bool(MARKER) and not os.path.exists(MARKER)


    class Killer:  # an observer plugin that dies at a hook
        @tl.hookimpl
        def torch_lottery_after_prune(self, round_index):
            if KILL_AT == "after_prune" and round_index == KILL_ROUND and armed():
                kill_now()

        @tl.hookimpl
        def torch_lottery_after_rewind(self, round_index):
            if KILL_AT == "after_rewind" and round_index == KILL_ROUND and armed():
                kill_now()

        @tl.hookimpl
        def torch_lottery_round_end(self, round_index):
            if KILL_AT == "round_end" and round_index == KILL_ROUND and armed():
                kill_now()


    if KILL_AT.startswith("write:"):
        import io

        _, TARGET, WHEN = KILL_AT.split(":")
        real_save, real_replace = torch.save, os.replace

        def writing_target(name):
            return os.path.basename(str(name)).startswith("." + TARGET + ".")

        def save(obj, f, *args, **kwargs):
            if WHEN == "half" and writing_target(getattr(f, "name", "")) and armed():
                buffer = io.BytesIO()
                real_save(obj, buffer, *args, **kwargs)
                data = buffer.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                kill_now()
            return real_save(obj, f, *args, **kwargs)

        def replace(src, dst, *args, **kwargs):
            if os.path.basename(str(dst)) == TARGET and armed():
                if WHEN == "before_replace":
                    kill_now()
                if WHEN == "after_replace":
                    real_replace(src, dst, *args, **kwargs)
                    kill_now()
            return real_replace(src, dst, *args, **kwargs)

        torch.save, os.replace = save, replace


    def train(model, context):
        if LOG:
            with open(LOG, "a") as log:
                log.write(f"{context.round_index}\\n")
        opt = extra["optimizer"] if extra else torch.optim.SGD(model.parameters(), lr=0.1)
        model.train()
        for step in range(STEPS):
            if (context.round_index == KILL_ROUND and step == KILL_STEP and MARKER
                    and not os.path.exists(MARKER)):
                open(MARKER, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            if extra:
                extra["scheduler"].step()
            else:
                context.step()
        return {"loss": loss.item(), "lr": opt.param_groups[0]["lr"]}


    @torch.no_grad()
    def evaluate(model):
        model.eval()
        g = torch.Generator().manual_seed(123)
        x = torch.randn(64, 8, generator=g)
        return {"out": model(x).sum().item()}


    ticket = tl.find_ticket(model, train, evaluate, strategy="imp",
                            strategy_options={"rate": 0.2, "rewind_iteration": 3}, rounds=4,
                            checkpoint_dir=sys.argv[1], seed=0, plugins=[Killer()], **extra)
    ticket.save(sys.argv[2])
    """
)

ROUNDS = 4


# --------------------------------------------------------------------------- helpers
def _env(tmp, kill_round=None, kill_step=None, mode="plain", kill_at=""):
    env = dict(os.environ)
    env.update(
        {
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "MODE": mode,
            "TRAIN_LOG": str(tmp / "train.log"),
            "KILL_MARKER": str(tmp / "killed.marker"),
            "KILL_AT": kill_at,
        }
    )
    env.pop("KILL_ROUND", None)
    env.pop("KILL_STEP", None)
    if kill_round is not None:
        env["KILL_ROUND"] = str(kill_round)
    if kill_step is not None:
        env["KILL_STEP"] = str(kill_step)
    return env


def _launch(script, tmp, env):
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp / "ckpt"), str(tmp / "out.pt")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc):
    out, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _round_files(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith("round-"))


def _strip(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def assert_same_ticket(a: Ticket, b: Ticket) -> None:
    assert list(a.masks) == list(b.masks)
    for k in a.masks:
        assert torch.equal(a.masks[k], b.masks[k]), k
    assert list(a.rewind.keys()) == list(b.rewind.keys())
    for k in a.rewind:
        assert torch.equal(a.rewind[k], b.rewind[k]), k
    assert a.rewind.iteration == b.rewind.iteration
    assert _strip(a.history) == _strip(b.history)
    assert a.config == b.config


def _rounds(*indices) -> list[str]:
    return [f"round-{i:04d}.pt" for i in indices]


ALL = tuple(range(ROUNDS + 1))
# (name, mode, kill round, kill step, kill point, round files left by the killed run,
#  file whose temporary the kill leaves behind, rounds the killed run trained)
SCENARIOS = [
    ("mid-round-0", "plain", 0, 2, "", [], None, [0]),  # before the rewind point (iteration 3) is captured
    ("mid-round-2", "plain", 2, 7, "", _rounds(0, 1), None, [0, 1, 2]),
    ("start-of-round-3", "plain", 3, 0, "", _rounds(0, 1, 2), None, [0, 1, 2, 3]),
    ("state-mid-round-1", "state", 1, 4, "", _rounds(0), None, [0, 1]),
    ("carry-mid-round-2", "carry", 2, 6, "", _rounds(0, 1), None, [0, 1, 2]),
    ("right-after-prune-2", "plain", 2, None, "after_prune", _rounds(0, 1), None, [0, 1]),
    ("right-after-rewind-3", "state", 3, None, "after_rewind", _rounds(0, 1, 2), None, [0, 1, 2]),
    ("trained-not-saved-2", "carry", 2, None, "round_end", _rounds(0, 1), None, [0, 1, 2]),
    ("half-written-round-0", "plain", None, None, "write:round-0000.pt:half", [], "round-0000.pt", [0]),
    (
        "half-written-round-2",
        "state",
        None,
        None,
        "write:round-0002.pt:half",
        _rounds(0, 1),
        "round-0002.pt",
        [0, 1, 2],
    ),
    (
        "written-not-renamed-3",
        "plain",
        None,
        None,
        "write:round-0003.pt:before_replace",
        _rounds(0, 1, 2),
        "round-0003.pt",
        [0, 1, 2, 3],
    ),
    ("renamed-not-synced-1", "carry", None, None, "write:round-0001.pt:after_replace", _rounds(0, 1), None, [0, 1]),
    ("half-written-ticket", "plain", None, None, "write:ticket.pt:half", _rounds(*ALL), "ticket.pt", list(ALL)),
]


def _is_temporary_of(name: str, target: str) -> bool:
    return re.fullmatch(rf"\.{re.escape(target)}\.\d+\.[0-9a-f]+\.tmp", name) is not None


def _unreadable(folder) -> dict[str, str]:
    errors = {}
    for name in _round_files(folder):
        try:
            checkpoints.load_checkpoint(str(folder / name), [])
        except ValueError as error:
            errors[name] = str(error)
    return errors


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run the uninterrupted baselines and the killed runs concurrently, then restart the killed ones."""
    root = tmp_path_factory.mktemp("resume")
    script = root / "find.py"
    script.write_text(SCRIPT)

    baselines = {}
    first = {}
    envs = {}
    for mode in ("plain", "state", "carry"):
        tmp = root / f"baseline-{mode}"
        tmp.mkdir()
        baselines[mode] = (tmp, _launch(script, tmp, _env(tmp, mode=mode)))
    for name, mode, kill_round, kill_step, kill_at, *_ in SCENARIOS:
        tmp = root / name
        tmp.mkdir()
        envs[name] = _env(tmp, kill_round, kill_step, mode=mode, kill_at=kill_at)
        first[name] = (tmp, _launch(script, tmp, envs[name]))

    results = {"baseline": {}, "killed": {}, "resumed": {}}
    for mode, (tmp, proc) in baselines.items():
        code, err = _finish(proc)
        assert code == 0, err
        results["baseline"][mode] = tmp
    second = {}
    for name, *_ in SCENARIOS:
        tmp, proc = first[name]
        code, err = _finish(proc)
        results["killed"][name] = {
            "code": code,
            "stderr": err,
            "files": _round_files(tmp / "ckpt"),
            "all_files": sorted(os.listdir(tmp / "ckpt")),
            "out_exists": (tmp / "out.pt").exists(),
            "log": (tmp / "train.log").read_text().split(),
            "unreadable": _unreadable(tmp / "ckpt"),
        }
        second[name] = (tmp, _launch(script, tmp, envs[name]))  # the same command again
    for name, (tmp, proc) in second.items():
        code, err = _finish(proc)
        results["resumed"][name] = {
            "code": code,
            "stderr": err,
            "dir": tmp,
            "log": (tmp / "train.log").read_text().split(),
        }
    return results


@pytest.mark.slow
def test_uninterrupted_run_writes_every_round_and_the_ticket(runs):
    for mode, tmp in runs["baseline"].items():
        assert _round_files(tmp / "ckpt") == [f"round-{i:04d}.pt" for i in range(ROUNDS + 1)]
        assert sorted(os.listdir(tmp / "ckpt")) == _round_files(tmp / "ckpt") + ["ticket.pt"]  # no temp files
        assert (tmp / "train.log").read_text().split() == [str(i) for i in range(ROUNDS + 1)]
        ticket = Ticket.load(tmp / "out.pt")
        assert_same_ticket(ticket, Ticket.load(tmp / "ckpt" / "ticket.pt"))
        assert len(ticket.history) == ROUNDS + 1
        assert ticket.rewind.iteration == 3
        assert ticket.config["rewind_state"] is (mode == "state")
        assert [h["remaining_weights"] for h in ticket.history] == [320, 256, 205, 164, 131]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, mode, kill_round, kill_step, kill_at, files, torn, trained", SCENARIOS, ids=[s[0] for s in SCENARIOS]
)
def test_killed_run_resumes_to_the_same_ticket(runs, name, mode, kill_round, kill_step, kill_at, files, torn, trained):
    killed = runs["killed"][name]
    assert killed["code"] == -signal.SIGKILL, killed["stderr"]
    # only finished rounds were written, each whole; no ticket; at most the killed write's temporary file;
    # the lock file of the killed run stays (its OS lock died with the process) and the rerun takes it over
    assert killed["files"] == files
    assert checkpoints.LOCK_FILE in killed["all_files"]
    others = [f for f in killed["all_files"] if f not in files and f not in ("ticket.pt", checkpoints.LOCK_FILE)]
    if torn is None:
        assert others == []
    else:
        assert len(others) == 1 and _is_temporary_of(others[0], torn), killed["all_files"]
    assert ("ticket.pt" in killed["all_files"]) is False
    assert not killed["out_exists"]
    assert killed["log"] == [str(i) for i in trained]
    assert killed["unreadable"] == {}  # every round file left behind loads and passes its digest check

    resumed = runs["resumed"][name]
    assert resumed["code"] == 0, resumed["stderr"]
    # the restart redid the unfinished round from its start and skipped the finished ones
    first_unfinished = len(files)
    assert resumed["log"] == killed["log"] + [str(i) for i in range(first_unfinished, ROUNDS + 1)]
    assert sorted(os.listdir(resumed["dir"] / "ckpt")) == _rounds(*ALL) + ["ticket.pt"]  # temporaries, lock gone

    baseline = Ticket.load(runs["baseline"][mode] / "out.pt")
    ticket = Ticket.load(resumed["dir"] / "out.pt")
    assert_same_ticket(baseline, ticket)
    assert [h["metrics"] for h in ticket.history] == [h["metrics"] for h in baseline.history]
    assert_same_ticket(ticket, Ticket.load(resumed["dir"] / "ckpt" / "ticket.pt"))


# --------------------------------------------------------------------------- in-process resume
def make_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))


class Train:
    def __init__(self) -> None:
        self.rounds: list[int] = []

    def __call__(self, model, context):
        self.rounds.append(context.round_index)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(10):
            x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            context.step()
        return {"loss": loss.item()}


def _hooks(model):
    return sum(len(m._forward_pre_hooks) for m in model.modules())


def test_restarting_a_finished_run_trains_nothing_and_returns_the_same_ticket(tmp_path):
    first = find_ticket(make_model(), Train(), strategy_options={"rate": 0.2}, rounds=2, checkpoint_dir=tmp_path)
    train = Train()
    again = find_ticket(make_model(), train, strategy_options={"rate": 0.2}, rounds=2, checkpoint_dir=tmp_path)
    assert train.rounds == []
    assert_same_ticket(first, again)


def test_extending_a_run_with_more_rounds_matches_a_longer_run(tmp_path):
    find_ticket(make_model(), Train(), strategy_options={"rate": 0.2}, rounds=2, checkpoint_dir=tmp_path / "a")
    train = Train()
    extended = find_ticket(make_model(), train, strategy_options={"rate": 0.2}, rounds=4, checkpoint_dir=tmp_path / "a")
    assert train.rounds == [3, 4]
    straight = find_ticket(make_model(), Train(), strategy_options={"rate": 0.2}, rounds=4)
    assert_same_ticket(
        extended, Ticket(straight.masks, straight.rewind, straight.history, {**straight.config, "rounds": 4})
    )


@pytest.mark.parametrize(
    "change, named",
    [
        ({"strategy_options": {"rate": 0.5}}, r"strategy_options: \{.*'rate': 0\.2.*\} vs \{.*'rate': 0\.5"),
        ({"seed": 1}, r"seed: 0 vs 1"),
        ({"strategy": "random"}, r"strategy: 'imp' vs 'random'"),
        ({"strategy_options": {"rate": 0.2, "rewind_iteration": 2}}, r"rewind_iteration: 0 vs 2"),
        ({"parameters": ["0.weight"]}, r"names: \['0\.weight', '2\.weight'\] vs \['0\.weight'\]"),
    ],
    ids=["rate", "seed", "strategy", "rewind_iteration", "parameters"],
)
def test_resuming_with_other_settings_is_refused(tmp_path, change, named):
    settings = {"strategy": "imp", "strategy_options": {"rate": 0.2}, "rounds": 2, "seed": 0}
    find_ticket(make_model(), Train(), checkpoint_dir=tmp_path, **settings)
    model = make_model()
    before, hooks = state_of(model), _hooks(model)
    train = Train()
    with pytest.raises(ValueError, match=named) as info:
        find_ticket(model, train, checkpoint_dir=tmp_path, **{**settings, **change, "rounds": 3})
    assert "checkpoint_dir" in str(info.value)
    assert train.rounds == []
    assert _hooks(model) == hooks
    assert_state_equal(model, before)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "not-a-checkpoint"])
def test_damaged_latest_round_file_is_refused(tmp_path, damage):
    find_ticket(make_model(), Train(), strategy_options={"rate": 0.2}, rounds=2, checkpoint_dir=tmp_path)
    latest = tmp_path / "round-0002.pt"
    if damage == "garbage":
        latest.write_bytes(os.urandom(64) + b"garbage" * 100)
    elif damage == "truncated":
        data = latest.read_bytes()
        latest.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        latest.write_bytes(b"")
    else:
        torch.save({"format": "something.else", "round": 2}, latest)
    train = Train()
    with pytest.raises(ValueError, match="round-0002"):
        find_ticket(make_model(), train, strategy_options={"rate": 0.2}, rounds=3, checkpoint_dir=tmp_path)
    assert train.rounds == []


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    find_ticket(make_model(), Train(), strategy_options={"rate": 0.2}, rounds=1, checkpoint_dir=tmp_path)
    latest = tmp_path / "round-0001.pt"
    state = torch.load(latest, weights_only=True)
    marker = tmp_path / "pwned"
    state["history"] = _Payload(str(marker))
    torch.save(state, latest)
    with pytest.raises(ValueError, match="round-0001"):
        find_ticket(make_model(), Train(), strategy_options={"rate": 0.2}, rounds=2, checkpoint_dir=tmp_path)
    assert not marker.exists()


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# --------------------------------------------------------------------------- damaged files and other models
def flip_tensor_byte(path, record: int = 0, offset: int = 5) -> None:
    """Flip one bit inside the data of the ``record``-th tensor of a torch zip file (which torch.load misses)."""
    with zipfile.ZipFile(path) as archive:
        infos = [i for i in archive.infolist() if re.search(r"/data/\d+$", i.filename) and i.file_size > offset]
        info = infos[record]
    data = bytearray(Path(path).read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    data[info.header_offset + 30 + name_length + extra_length + offset] ^= 0x04
    Path(path).write_bytes(bytes(data))


def test_flipped_byte_in_the_latest_round_is_detected_and_the_remedy_named(tmp_path):
    find_ticket(make_model(), Train(), strategy_options={"rate": 0.2}, rounds=3, checkpoint_dir=tmp_path)
    latest = tmp_path / "round-0003.pt"
    flip_tensor_byte(latest)
    torch.load(latest, weights_only=True)  # torch itself loads the damaged file without complaint
    model = make_model()
    before = state_of(model)
    train = Train()
    with pytest.raises(ValueError) as info:
        find_ticket(model, train, strategy_options={"rate": 0.2}, rounds=3, checkpoint_dir=tmp_path)
    message = str(info.value)
    assert "round-0003.pt" in message and "SHA-256 digest" in message
    assert "round-0002.pt is intact" in message and "resume from round 2" in message
    assert train.rounds == []
    assert_state_equal(model, before)


def test_following_the_remedy_resumes_from_the_previous_round_with_the_same_ticket(tmp_path):
    straight = find_ticket(make_model(), Train(), strategy_options={"rate": 0.2}, rounds=3)
    find_ticket(make_model(), Train(), strategy_options={"rate": 0.2}, rounds=3, checkpoint_dir=tmp_path / "run")
    flip_tensor_byte(tmp_path / "run" / "round-0003.pt", record=1)
    with pytest.raises(ValueError, match="move round-0003.pt out"):
        find_ticket(make_model(), Train(), strategy_options={"rate": 0.2}, rounds=3, checkpoint_dir=tmp_path / "run")
    (tmp_path / "run" / "round-0003.pt").rename(tmp_path / "damaged-round-0003.pt")
    train = Train()
    again = find_ticket(make_model(), train, strategy_options={"rate": 0.2}, rounds=3, checkpoint_dir=tmp_path / "run")
    assert train.rounds == [3]
    assert_same_ticket(again, straight)


def test_damaged_only_round_says_to_start_over(tmp_path):
    find_ticket(make_model(), Train(), strategy_options={"rate": 0.2}, rounds=0, checkpoint_dir=tmp_path)
    flip_tensor_byte(tmp_path / "round-0000.pt")
    with pytest.raises(ValueError, match=r"round-0000\.pt.*start the run over"):
        find_ticket(make_model(), Train(), strategy_options={"rate": 0.2}, rounds=1, checkpoint_dir=tmp_path)


def test_two_damaged_rounds_are_both_named(tmp_path):
    find_ticket(make_model(), Train(), strategy_options={"rate": 0.2}, rounds=2, checkpoint_dir=tmp_path)
    flip_tensor_byte(tmp_path / "round-0002.pt")
    flip_tensor_byte(tmp_path / "round-0001.pt")
    with pytest.raises(ValueError, match=r"round-0002\.pt.*round-0001\.pt, is damaged too"):
        find_ticket(make_model(), Train(), strategy_options={"rate": 0.2}, rounds=2, checkpoint_dir=tmp_path)


def _wide_model(width: int) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 2))


@pytest.mark.parametrize("finished_rounds", [0, 2])
def test_resuming_with_another_architecture_is_refused_and_changes_nothing(tmp_path, finished_rounds):
    """Same tensor names, other widths: the config matches, the shapes do not."""
    find_ticket(
        _wide_model(32), Train(), strategy_options={"rate": 0.2}, rounds=finished_rounds, checkpoint_dir=tmp_path
    )
    model = _wide_model(16)
    before, hooks, names = state_of(model), _hooks(model), [n for n, _ in model.named_parameters()]
    train = Train()
    with pytest.raises(ValueError, match=r"another architecture") as info:
        find_ticket(model, train, strategy_options={"rate": 0.2}, rounds=3, checkpoint_dir=tmp_path)
    assert f"round-{finished_rounds:04d}.pt" in str(info.value)
    assert train.rounds == []
    assert _hooks(model) == hooks and [n for n, _ in model.named_parameters()] == names
    assert_state_equal(model, before)


def test_resuming_without_the_optimizer_of_the_first_run_is_refused(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def train(model, context):
        for _ in range(3):
            optimizer.zero_grad()
            model(torch.randn(4, 8)).sum().backward()
            optimizer.step()

    find_ticket(model, train, rounds=1, optimizer=optimizer, checkpoint_dir=tmp_path)
    fresh = make_model()
    before = state_of(fresh)
    with pytest.raises(ValueError, match="with optimizer="):
        find_ticket(fresh, Train(), rounds=2, checkpoint_dir=tmp_path)
    assert_state_equal(fresh, before)
    other = make_model()
    two_groups = torch.optim.SGD(
        [{"params": [other[0].weight]}, {"params": [other[0].bias, other[2].weight, other[2].bias]}], lr=0.1
    )
    with pytest.raises(ValueError, match=r"parameter groups of sizes \[4\].*sizes \[1, 3\]"):
        find_ticket(other, train, rounds=2, optimizer=two_groups, checkpoint_dir=tmp_path)


class _FailsAfterPrune:
    """An observer that raises right after the prune of round 2."""

    @tl_hookimpl
    def torch_lottery_after_prune(self, round_index):
        if round_index == 2:
            raise RuntimeError("logger lost its connection")


def test_an_observer_raising_mid_run_is_named_and_the_run_resumes_to_the_same_ticket(tmp_path):
    straight = find_ticket(make_model(), Train(), strategy_options={"rate": 0.2}, rounds=3)
    with pytest.raises(PluginError, match=r"_FailsAfterPrune.*torch_lottery_after_prune \(round 2\).*connection"):
        find_ticket(
            make_model(),
            Train(),
            strategy_options={"rate": 0.2},
            rounds=3,
            checkpoint_dir=tmp_path,
            plugins=[_FailsAfterPrune()],
        )
    assert _round_files(tmp_path) == ["round-0000.pt", "round-0001.pt"]
    train = Train()
    again = find_ticket(make_model(), train, strategy_options={"rate": 0.2}, rounds=3, checkpoint_dir=tmp_path)
    assert train.rounds == [2, 3]
    assert_same_ticket(again, straight)
