"""torch_lottery/driver/run.py: the during-training phase (update every ``every`` steps); the stop rule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torch_lottery as tl

X = torch.randn(64, 6, generator=torch.Generator().manual_seed(3))
Y = torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(4))
DATA = [(X[i : i + 16], Y[i : i + 16]) for i in range(0, 64, 16)]


def make_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def train_with(optimizer: torch.optim.Optimizer, steps: int = 12):
    def train(model, context):
        for _ in range(steps):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(X), Y).backward()
            optimizer.step()
        return {"loss": float(nn.functional.cross_entropy(model(X), Y).detach())}

    return train


class MoveOne(tl.Strategy):
    """Keep half of each tensor; every update, move the smallest survivor of each tensor to its first pruned entry."""

    when = "during_training"
    needs_optimizer = True

    def __init__(self, every: int = 3, grow_extra: bool = False):
        super().__init__()
        self.every, self.grow_extra = every, grow_extra
        self.updates: list[int] = []
        self.densities: list[int] = []
        self.grown: list[tuple[str, int]] = []
        self.begun = self.ended = 0

    def prune(self, context):
        out = {}
        for name in context.names:
            w = context.weights[name].abs().flatten()
            mask = torch.zeros_like(w, dtype=torch.bool)
            mask[torch.topk(w, w.numel() // 2).indices] = True
            out[name] = mask.view_as(context.weights[name])
        return out

    def begin(self, context):
        self.begun += 1

    def update(self, context):
        self.updates.append(context.iteration)
        masks, weights = context.masks(), context.weights()
        self.densities.append(sum(int(m.sum()) for m in masks.values()))
        out = {}
        for name, mask in masks.items():
            flat = mask.flatten().clone()
            scores = torch.where(flat, weights[name].flatten().abs(), torch.inf)
            drop = int(scores.argmin())
            grow = int((~flat).nonzero()[0])
            flat[drop], flat[grow] = False, True
            if self.grow_extra:
                flat[int((~flat).nonzero()[0])] = True
            self.grown.append((name, grow))
            out[name] = flat.view_as(mask)
        return out

    def end(self, context):
        self.ended += 1


def test_update_runs_every_few_steps_and_moves_masks_at_exact_density():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    strategy = MoveOne(every=3)
    ticket = tl.find_ticket(model, train_with(optimizer), strategy=strategy, optimizer=optimizer)
    assert strategy.updates == [3, 6, 9, 12]
    assert strategy.begun == strategy.ended == 1
    total = sum(int(m.numel()) // 2 for m in ticket.masks.values())
    assert strategy.densities == [total] * 4
    assert sum(int(m.sum()) for m in ticket.masks.values()) == total
    # no dense round: round 0 records the untrained initial model, round 1 is the one training run
    assert [r["round"] for r in ticket.history] == [0, 1]
    assert ticket.history[0]["metrics"]["iterations"] == 0 and ticket.history[1]["metrics"]["iterations"] == 12
    assert ticket.history[-1]["stopped"] == "rounds=1 reached"
    initial = MoveOne().prune(tl.strategies.context.build_context(make_model(), *_names(make_model())))
    assert any(not torch.equal(ticket.masks[n], initial[n]) for n in ticket.masks)  # the masks moved


def _names(model):
    names = tuple(n for n, p in model.named_parameters() if n.endswith("weight"))
    pairs = [(model.get_submodule(n.rsplit(".", 1)[0]), "weight") for n in names]
    return names, pairs


def test_regrown_weights_start_at_zero_with_fresh_optimizer_state():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    seen = []

    class Watch(MoveOne):
        def update(self, context):
            out = super().update(context)
            seen.append(out)
            return out

    strategy = Watch(every=4)
    tl.find_ticket(model, train_with(optimizer, steps=4), strategy=strategy, optimizer=optimizer)
    # the one update happened after the last step: what it grew is zero, momentum too
    for name, index in strategy.grown:
        module = model.get_submodule(name.rsplit(".", 1)[0])
        assert float(module.weight_orig.detach().flatten()[index]) == 0.0
        assert float(optimizer.state[module.weight_orig]["momentum_buffer"].flatten()[index]) == 0.0
        assert bool(module.weight_mask.flatten()[index])


def test_an_update_changing_the_density_is_refused_with_the_step():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"from \d+ to \d+ at step 3 of round 1"):
        tl.find_ticket(model, train_with(optimizer), strategy=MoveOne(grow_extra=True), optimizer=optimizer)


def test_during_training_settings_are_checked_before_anything_trains():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []

    def train(model, context):
        calls.append(1)

    with pytest.raises(ValueError, match="pass optimizer="):
        tl.find_ticket(model, train, strategy=MoveOne())
    with pytest.raises(ValueError, match="rounds=3"):
        tl.find_ticket(model, train, strategy=MoveOne(), optimizer=optimizer, rounds=3)
    with pytest.raises(ValueError, match="target_remaining=0.5"):
        tl.find_ticket(model, train, strategy=MoveOne(), optimizer=optimizer, target_remaining=0.5)
    with pytest.raises(ValueError, match="every"):
        tl.find_ticket(model, train, strategy=MoveOne(every=0), optimizer=optimizer)
    assert calls == []
    assert not any(hasattr(m, "weight_mask") for m in model.modules())


class Rotate(tl.Strategy):
    """A between-rounds strategy that moves its survivors each round without changing their number."""

    may_grow = True

    def prune(self, context):
        if context.round_index == 1:
            return {n: torch.arange(m.numel()).view_as(m) % 2 == 0 for n, m in context.masks.items()}
        return {n: m.flatten().roll(1).view_as(m) for n, m in context.masks.items()}


def test_the_stop_rule_compares_masks_not_counts():
    model = make_model()
    train = train_with(torch.optim.SGD(model.parameters(), lr=0.1), 2)
    ticket = tl.find_ticket(model, train, strategy=Rotate(), rounds=4)
    assert [r["round"] for r in ticket.history] == [0, 1, 2, 3, 4]
    assert len({r["remaining_weights"] for r in ticket.history[1:]}) == 1
    assert ticket.history[-1]["stopped"] == "rounds=4 reached"


class Stay(tl.Strategy):
    def prune(self, context):
        if context.round_index == 1:
            return {n: torch.arange(m.numel()).view_as(m) % 2 == 0 for n, m in context.masks.items()}
        return dict(context.masks)


def test_a_round_that_leaves_the_masks_as_they_were_ends_the_run_and_says_why():
    model = make_model()
    train = train_with(torch.optim.SGD(model.parameters(), lr=0.1), 2)
    ticket = tl.find_ticket(model, train, strategy=Stay(), rounds=5)
    assert [r["round"] for r in ticket.history] == [0, 1, 2]
    assert "left the masks as they were" in ticket.history[-1]["stopped"]
