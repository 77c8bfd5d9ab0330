"""Checkpoints and resume: a run killed with SIGKILL mid-round and restarted ends with the same ticket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from torch_lottery import Ticket, find_ticket

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
                            checkpoint_dir=sys.argv[1], seed=0, **extra)
    ticket.save(sys.argv[2])
    """
)

ROUNDS = 4


# --------------------------------------------------------------------------- helpers
def _env(tmp, kill_round=None, kill_step=None, mode="plain"):
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MODE": mode,
                "TRAIN_LOG": str(tmp / "train.log"), "KILL_MARKER": str(tmp / "killed.marker")})
    env.pop("KILL_ROUND", None)
    env.pop("KILL_STEP", None)
    if kill_round is not None:
        env.update({"KILL_ROUND": str(kill_round), "KILL_STEP": str(kill_step)})
    return env


def _launch(script, tmp, env):
    return subprocess.Popen([sys.executable, str(script), str(tmp / "ckpt"), str(tmp / "out.pt")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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
    for k in a.rewind.keys():
        assert torch.equal(a.rewind[k], b.rewind[k]), k
    assert a.rewind.iteration == b.rewind.iteration
    assert _strip(a.history) == _strip(b.history)
    assert a.config == b.config


# (name, mode, kill round, kill step, round files left by the killed run)
SCENARIOS = [
    ("mid-round-0", "plain", 0, 2, []),  # before the rewind point (iteration 3) is captured
    ("mid-round-2", "plain", 2, 7, ["round-0000.pt", "round-0001.pt"]),
    ("start-of-round-3", "plain", 3, 0, ["round-0000.pt", "round-0001.pt", "round-0002.pt"]),
    ("state-mid-round-1", "state", 1, 4, ["round-0000.pt"]),
    ("carry-mid-round-2", "carry", 2, 6, ["round-0000.pt", "round-0001.pt"]),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run the uninterrupted baselines and the killed runs concurrently, then restart the killed ones."""
    root = tmp_path_factory.mktemp("resume")
    script = root / "find.py"
    script.write_text(SCRIPT)

    baselines = {}
    first = {}
    for mode in ("plain", "state", "carry"):
        tmp = root / f"baseline-{mode}"
        tmp.mkdir()
        baselines[mode] = (tmp, _launch(script, tmp, _env(tmp, mode=mode)))
    for name, mode, kill_round, kill_step, _ in SCENARIOS:
        tmp = root / name
        tmp.mkdir()
        first[name] = (tmp, _launch(script, tmp, _env(tmp, kill_round, kill_step, mode=mode)))

    results = {"baseline": {}, "killed": {}, "resumed": {}}
    for mode, (tmp, proc) in baselines.items():
        code, err = _finish(proc)
        assert code == 0, err
        results["baseline"][mode] = tmp
    second = {}
    for name, mode, kill_round, kill_step, _ in SCENARIOS:
        tmp, proc = first[name]
        code, err = _finish(proc)
        results["killed"][name] = {
            "code": code, "stderr": err,
            "files": _round_files(tmp / "ckpt"),
            "all_files": sorted(os.listdir(tmp / "ckpt")),
            "out_exists": (tmp / "out.pt").exists(),
            "log": (tmp / "train.log").read_text().split(),
        }
        second[name] = (tmp, _launch(script, tmp, _env(tmp, kill_round, kill_step, mode=mode)))
    for name, (tmp, proc) in second.items():
        code, err = _finish(proc)
        results["resumed"][name] = {"code": code, "stderr": err, "dir": tmp,
                                    "log": (tmp / "train.log").read_text().split()}
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
@pytest.mark.parametrize("name, mode, kill_round, kill_step, files", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_killed_run_resumes_to_the_same_ticket(runs, name, mode, kill_round, kill_step, files):
    killed = runs["killed"][name]
    assert killed["code"] == -signal.SIGKILL, killed["stderr"]
    # only finished rounds were written; no ticket and no torn temporary file
    assert killed["files"] == files
    assert killed["all_files"] == files
    assert not killed["out_exists"]
    assert killed["log"] == [str(i) for i in range(kill_round + 1)]

    resumed = runs["resumed"][name]
    assert resumed["code"] == 0, resumed["stderr"]
    # the restart redid the killed round from its start and skipped the finished ones
    assert resumed["log"] == killed["log"] + [str(i) for i in range(kill_round, ROUNDS + 1)]
    assert _round_files(resumed["dir"] / "ckpt") == [f"round-{i:04d}.pt" for i in range(ROUNDS + 1)]

    baseline = Ticket.load(runs["baseline"][mode] / "out.pt")
    ticket = Ticket.load(resumed["dir"] / "out.pt")
    assert_same_ticket(baseline, ticket)
    assert [h["metrics"] for h in ticket.history] == [h["metrics"] for h in baseline.history]


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


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


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
    extended = find_ticket(make_model(), train, strategy_options={"rate": 0.2}, rounds=4,
                           checkpoint_dir=tmp_path / "a")
    assert train.rounds == [3, 4]
    straight = find_ticket(make_model(), Train(), strategy_options={"rate": 0.2}, rounds=4)
    assert_same_ticket(extended, Ticket(straight.masks, straight.rewind, straight.history,
                                        {**straight.config, "rounds": 4}))


@pytest.mark.parametrize("change, named", [
    ({"strategy_options": {"rate": 0.5}}, r"strategy_options: \{.*'rate': 0\.2.*\} vs \{.*'rate': 0\.5"),
    ({"seed": 1}, r"seed: 0 vs 1"),
    ({"strategy": "random"}, r"strategy: 'imp' vs 'random'"),
    ({"strategy_options": {"rate": 0.2, "rewind_iteration": 2}}, r"rewind_iteration: 0 vs 2"),
    ({"parameters": ["0.weight"]}, r"names: \['0\.weight', '2\.weight'\] vs \['0\.weight'\]"),
], ids=["rate", "seed", "strategy", "rewind_iteration", "parameters"])
def test_resuming_with_other_settings_is_refused(tmp_path, change, named):
    settings = {"strategy": "imp", "strategy_options": {"rate": 0.2}, "rounds": 2, "seed": 0}
    find_ticket(make_model(), Train(), checkpoint_dir=tmp_path, **settings)
    model = make_model()
    before, hooks = _snapshot(model), _hooks(model)
    train = Train()
    with pytest.raises(ValueError, match=named) as info:
        find_ticket(model, train, checkpoint_dir=tmp_path, **{**settings, **change, "rounds": 3})
    assert "checkpoint_dir" in str(info.value)
    assert train.rounds == []
    assert _hooks(model) == hooks
    after = _snapshot(model)
    assert list(after) == list(before) and all(torch.equal(before[k], after[k]) for k in before)


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
