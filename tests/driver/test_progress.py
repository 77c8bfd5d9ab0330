"""torch_lottery/driver/progress.py: find_ticket(progress=True) shows rounds, steps and surviving weights."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import torch_lottery as tl
from torch_lottery.driver import progress as progress_module

from helpers import state_of, train_steps

STEPS = 5


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 2))


X = torch.randn(16, 6)


def train(model, context):
    for _ in range(STEPS):
        train_steps(model, X, steps=1, lr=0.1)
        context.step()


def test_progress_shows_rounds_steps_and_remaining_weights(capsys):
    ticket = tl.find_ticket(make_model(), train, strategy_options={"rate": 0.5}, rounds=2, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "ticket: 100%" in captured.err and "3/3" in captured.err
    assert f"remaining {ticket.remaining:.1%}" in captured.err
    assert "round 2" in captured.err and "step" in captured.err


def test_no_progress_prints_nothing(capsys):
    tl.find_ticket(make_model(), train, rounds=1)
    tl.find_ticket(make_model(), train, rounds=1, progress=False)
    assert capsys.readouterr() == ("", "")


def test_the_rounds_bar_ends_full_when_the_target_stops_the_run_early(capsys):
    ticket = tl.find_ticket(make_model(), train, rounds=5, target_remaining=0.5, progress=True)
    assert len(ticket.history) < 6
    assert f"{len(ticket.history)}/{len(ticket.history)}" in capsys.readouterr().err


class Counting(progress_module.RunProgress):
    """The bar, counting the steps each round shows."""

    seen: list[int] = []

    @tl.hookimpl
    def torch_lottery_round_end(self):
        Counting.seen.append(self.steps.n)
        super().torch_lottery_round_end()


@pytest.mark.parametrize("counted_by", ["context.step", "optimizer="])
def test_every_training_step_moves_the_steps_bar(monkeypatch, counted_by):
    monkeypatch.setattr(progress_module, "RunProgress", Counting)
    Counting.seen = []
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def own_optimizer(model, context):  # the driver counts the steps of optimizer=
        train_steps(model, X, steps=STEPS + 1, optimizer=optimizer)

    if counted_by == "optimizer=":
        ticket = tl.find_ticket(model, own_optimizer, optimizer=optimizer, rounds=1, progress=True)
    else:
        ticket = tl.find_ticket(model, train, rounds=1, progress=True)
    assert Counting.seen == [r["metrics"]["iterations"] for r in ticket.history]
    assert Counting.seen == [STEPS + (counted_by == "optimizer=")] * 2


def test_progress_without_tqdm_warns_once_and_runs(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import tqdm.auto raises ImportError
    with pytest.warns(RuntimeWarning, match=r"needs tqdm \(pip install tqdm\); running without") as warned:
        ticket = tl.find_ticket(make_model(), train, rounds=1, progress=True)
    assert len(warned) == 1 and len(ticket.history) == 2
    assert capsys.readouterr() == ("", "")


def test_progress_must_be_a_bool_and_nothing_runs():
    model = make_model()
    before = state_of(model)
    with pytest.raises(TypeError, match="progress must be a bool, got 'yes'"):
        tl.find_ticket(model, train, rounds=1, progress="yes")
    for name, value in state_of(model).items():
        assert torch.equal(value, before[name])
