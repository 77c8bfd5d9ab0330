"""The built-in ``early_bird`` strategy (You et al. 2020): the mask distance, the stop rule, and a run it cuts short."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torch_lottery as tl
from torch_lottery.strategies.early_bird import EarlyBird, mask_distance

X = torch.randn(256, 10, generator=torch.Generator().manual_seed(0))
TEACHER = torch.randn(10, 3, generator=torch.Generator().manual_seed(1))
Y = (X @ TEACHER).argmax(dim=1)


def make_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))


def train(model, context, steps: int = 400):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(X), Y).backward()
        optimizer.step()
        context.step()
        if context.should_stop:
            break
    return {"loss": float(nn.functional.cross_entropy(model(X), Y))}


def test_mask_distance_is_the_normalized_hamming_distance():
    a = {"x": torch.tensor([True, True, False, False]), "y": torch.tensor([[True, False]])}
    b = {"x": torch.tensor([True, False, False, True]), "y": torch.tensor([[True, False]])}
    assert mask_distance(a, b) == pytest.approx(2 / 6)
    assert mask_distance(a, a) == 0.0


def test_the_ticket_is_drawn_once_the_masks_settle_and_the_dense_run_is_cut_short():
    ticket = tl.find_ticket(make_model(), train, strategy=EarlyBird(remaining=0.2, every=10, window=5), rounds=1)
    dense = ticket.history[0]["metrics"]
    assert "early-bird ticket drawn at iteration" in dense["stopped_early"]
    assert 50 <= dense["iterations"] < 400  # at least window * every steps, far fewer than the full run
    assert dense["iterations"] % 10 == 0
    assert ticket.history[1]["metrics"]["iterations"] == 400  # the ticket trains in full
    assert ticket.remaining == pytest.approx(0.2, abs=0.01)


def test_the_drawn_mask_is_the_magnitude_mask_of_the_weights_at_the_stop():
    seen = {}

    class Watch:
        @tl.hookimpl
        def torch_lottery_round_end(self, round_index, model):
            if round_index == 0:
                seen["weights"] = {n: model.get_parameter(n).detach().clone() for n in ("0.weight", "2.weight")}

    ticket = tl.find_ticket(
        make_model(), train, strategy=EarlyBird(remaining=0.3, every=5, window=3), rounds=1, plugins=[Watch()]
    )
    scores = torch.cat([seen["weights"][n].abs().reshape(-1) for n in ("0.weight", "2.weight")])
    keep = torch.cat([ticket.masks[n].reshape(-1) for n in ("0.weight", "2.weight")])
    assert float(scores[keep].min()) >= float(scores[~keep].max())  # one global threshold on those weights


def test_masks_that_never_settle_train_the_dense_run_to_its_end():
    bird = EarlyBird(remaining=0.5, every=10, window=5, threshold=1e-9)  # no two masks that close
    ticket = tl.find_ticket(make_model(), lambda m, c: train(m, c, steps=120), strategy=bird, rounds=1)
    assert "stopped_early" not in ticket.history[0]["metrics"]
    assert ticket.history[0]["metrics"]["iterations"] == 120


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"remaining": 0.0}, ValueError, "remaining=0.0"),
        ({"every": 0}, ValueError, "every=0"),
        ({"every": 2.5}, TypeError, "every"),
        ({"threshold": 1.5}, ValueError, "threshold=1.5"),
        ({"window": 0}, ValueError, "window=0"),
    ],
)
def test_bad_options_are_refused_naming_the_option(kwargs, error, words):
    with pytest.raises(error, match=words):
        EarlyBird(**kwargs)


def test_options_round_trip():
    bird = EarlyBird(remaining=0.25, every=7, threshold=0.05, window=4, scope="local")
    assert EarlyBird(**bird.options()).options() == bird.options()
