"""find_ticket: the driver around a real user training loop (strategies, rewinding, state, seeds, errors)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torch_lottery as tl
from torch_lottery import StrategyError, find_ticket, hookimpl

from helpers import assert_state_equal, state_of

STEPS = 20
NAMES = ["0.weight", "2.weight"]
ALL_PARAMS = ["0.weight", "0.bias", "2.weight", "2.bias"]


# --------------------------------------------------------------------------- helpers
def make_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))


def make_bn_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 2))


def train(model: nn.Module, context) -> dict:
    """An ordinary loop: fresh SGD each round, random batches drawn from torch's global RNG."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = None
    for _ in range(STEPS):
        x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        context.step()
    return {"loss": loss.item()}


def tensor_of(model: nn.Module, qualified: str) -> torch.Tensor:
    prefix, _, name = qualified.rpartition(".")
    module = model.get_submodule(prefix)
    orig = module._parameters.get(name + "_orig")
    return orig if orig is not None else module._parameters[name]


def mask_of(model: nn.Module, qualified: str) -> torch.Tensor | None:
    prefix, _, name = qualified.rpartition(".")
    return model.get_submodule(prefix)._buffers.get(name + "_mask")


def hook_counts(model: nn.Module) -> dict[str, int]:
    return {name: len(m._forward_pre_hooks) + len(m._forward_hooks) for name, m in model.named_modules()}


class PruneObserver:
    """Records every mask the driver installs (plugin on torch_lottery_after_prune)."""

    def __init__(self) -> None:
        self.masks: list[tuple[int, dict[str, torch.Tensor]]] = []
        self.remaining: list[float] = []

    @hookimpl
    def torch_lottery_after_prune(self, round_index, masks, remaining):
        self.masks.append((round_index, {k: v.clone() for k, v in masks.items()}))
        self.remaining.append(remaining)


class RewindObserver:
    """Records the model's tensors (weight_orig, biases, masks) right after each rewind."""

    def __init__(self) -> None:
        self.rounds: list[int] = []
        self.tensors: list[dict[str, torch.Tensor]] = []
        self.effective: list[dict[str, torch.Tensor]] = []
        self.masks: list[dict[str, torch.Tensor]] = []
        self.points = []

    @hookimpl
    def torch_lottery_after_rewind(self, round_index, model, rewind_point):
        self.rounds.append(round_index)
        self.tensors.append({q: tensor_of(model, q).detach().clone() for q in ALL_PARAMS})
        prefix = {q: q.rpartition(".") for q in ALL_PARAMS}
        self.effective.append(
            {q: getattr(model.get_submodule(p), n).detach().clone() for q, (p, _, n) in prefix.items()}
        )
        self.masks.append({q: mask_of(model, q).clone() for q in NAMES})
        self.points.append(rewind_point)


def counts(masks: dict[str, torch.Tensor]) -> dict[str, int]:
    return {k: int(v.count_nonzero()) for k, v in masks.items()}


# --------------------------------------------------------------------------- strategies
STRATEGY_CASES = [
    ("imp", {"rate": 0.2}),
    ("imp", {"rate": 0.2, "scope": "global"}),
    ("random", {"rate": 0.2}),
    ("one_shot", {"remaining": 0.3}),
]


@pytest.mark.parametrize("name, options", STRATEGY_CASES, ids=["imp-local", "imp-global", "random", "one_shot"])
def test_builtin_strategy_masks_only_shrink_and_history_is_complete(name, options):
    observer = PruneObserver()
    rounds = None if name == "one_shot" else 3
    ticket = find_ticket(
        make_model(), train, strategy=name, strategy_options=options, rounds=rounds, plugins=[observer]
    )
    expected_rounds = 1 if name == "one_shot" else 3
    assert [r for r, _ in observer.masks] == list(range(1, expected_rounds + 1))
    assert len(ticket.history) == expected_rounds + 1
    assert [h["round"] for h in ticket.history] == list(range(expected_rounds + 1))

    dense = ticket.history[0]
    assert dense["remaining"] == 1.0
    assert dense["remaining_weights"] == dense["total_weights"] == 8 * 32 + 32 * 2
    assert dense["per_tensor"] == {"0.weight": 1.0, "2.weight": 1.0}

    previous = {
        n: torch.ones(32, 8, dtype=torch.bool) if n == "0.weight" else torch.ones(2, 32, dtype=torch.bool)
        for n in NAMES
    }
    for (round_index, masks), record in zip(observer.masks, ticket.history[1:], strict=True):
        assert set(masks) == set(NAMES)
        for n in NAMES:
            assert masks[n].dtype == torch.bool
            assert not bool((masks[n] & ~previous[n]).any()), f"{n} revived entries in round {round_index}"
        alive = sum(counts(masks).values())
        assert alive < sum(counts(previous).values())
        assert record["remaining_weights"] == alive
        assert record["remaining"] == pytest.approx(alive / 320)
        previous = masks
    # the observer's remaining agrees with the history, the last masks are the ticket's
    assert observer.remaining == pytest.approx([h["remaining"] for h in ticket.history[1:]])
    for n in NAMES:
        assert torch.equal(ticket.masks[n], previous[n])
    assert ticket.config["strategy"] == name


def test_imp_local_prunes_rate_of_each_tensor_every_round():
    observer = PruneObserver()
    ticket = find_ticket(
        make_model(), train, strategy="imp", strategy_options={"rate": 0.2}, rounds=4, plugins=[observer]
    )
    # per tensor: alive - round(0.2 * alive)
    expected = [
        {"0.weight": 205, "2.weight": 51},
        {"0.weight": 164, "2.weight": 41},
        {"0.weight": 131, "2.weight": 33},
        {"0.weight": 105, "2.weight": 26},
    ]
    assert [counts(m) for _, m in observer.masks] == expected
    for record, want in zip(ticket.history[1:], expected, strict=True):
        assert record["remaining_weights"] == sum(want.values())
        assert record["per_tensor"] == pytest.approx(
            {"0.weight": want["0.weight"] / 256, "2.weight": want["2.weight"] / 64}
        )
    assert counts(ticket.masks) == expected[-1]
    assert ticket.remaining_weights == 131


def test_imp_global_prunes_rate_of_the_pool_every_round():
    ticket = find_ticket(
        make_model(), train, strategy="imp", strategy_options={"rate": 0.2, "scope": "global"}, rounds=4
    )
    assert [h["remaining_weights"] for h in ticket.history] == [320, 256, 205, 164, 131]
    # one threshold over the pool: the tensors are not each pruned at 20 %
    per_tensor = ticket.history[1]["per_tensor"]
    assert per_tensor["0.weight"] != pytest.approx(0.8) or per_tensor["2.weight"] != pytest.approx(0.8)


def test_random_prunes_rate_of_each_tensor_and_differs_from_magnitude():
    rnd = find_ticket(make_model(), train, strategy="random", strategy_options={"rate": 0.2}, rounds=2)
    imp = find_ticket(make_model(), train, strategy="imp", strategy_options={"rate": 0.2}, rounds=2)
    assert counts(rnd.masks) == counts(imp.masks) == {"0.weight": 164, "2.weight": 41}
    assert not torch.equal(rnd.masks["0.weight"], imp.masks["0.weight"])


def test_target_remaining_stops_at_first_round_at_or_below_target():
    ticket = find_ticket(make_model(), train, strategy="imp", strategy_options={"rate": 0.2}, target_remaining=0.5)
    remaining = [h["remaining"] for h in ticket.history]
    assert remaining[-1] <= 0.5
    assert all(r > 0.5 for r in remaining[:-1])
    assert len(remaining) == 5  # 1.0, 0.8, 0.64, 0.51.., 0.41..


def test_target_remaining_exactly_reached_stops_there():
    # rate 0.5 on 320 weights: 160 remaining after round 1 = exactly 0.5
    ticket = find_ticket(make_model(), train, strategy="imp", strategy_options={"rate": 0.5}, target_remaining=0.5)
    assert [h["remaining"] for h in ticket.history] == [1.0, 0.5]


def test_rounds_and_target_stop_at_whichever_comes_first():
    ticket = find_ticket(
        make_model(), train, strategy="imp", strategy_options={"rate": 0.2}, rounds=2, target_remaining=0.1
    )
    assert len(ticket.history) == 3
    ticket = find_ticket(
        make_model(), train, strategy="imp", strategy_options={"rate": 0.5}, rounds=5, target_remaining=0.3
    )
    assert [h["remaining"] for h in ticket.history] == [1.0, 0.5, 0.25]


def test_rounds_zero_trains_dense_only():
    ticket = find_ticket(make_model(), train, rounds=0)
    assert len(ticket.history) == 1
    assert ticket.remaining == 1.0


def test_one_shot_stops_after_one_round():
    ticket = find_ticket(make_model(), train, strategy="one_shot", strategy_options={"remaining": 0.3})
    assert len(ticket.history) == 2
    assert counts(ticket.masks) == {"0.weight": 77, "2.weight": 19}  # 256 - round(0.7*256), 64 - round(0.7*64)
    # with a target_remaining only, one_shot still stops after its single round
    ticket = find_ticket(
        make_model(), train, strategy="one_shot", strategy_options={"remaining": 0.3}, target_remaining=0.1
    )
    assert len(ticket.history) == 2


def test_one_shot_stops_after_its_max_rounds_even_with_more_rounds():
    # find_ticket documents max_rounds as a stopping point of its own ("Stops after rounds ...,
    # after the strategy's own max_rounds, or when a round prunes nothing"): a one-shot run must not
    # train a second, prune-nothing round when rounds=3 is passed.
    calls = []

    def counting_train(model, context):
        calls.append(context.round_index)
        return train(model, context)

    ticket = find_ticket(
        make_model(), counting_train, strategy="one_shot", strategy_options={"remaining": 0.3}, rounds=3
    )
    assert calls == [0, 1]
    assert len(ticket.history) == 2


def test_strategy_instance_instead_of_name_gives_same_ticket():
    by_name = find_ticket(make_model(), train, strategy="imp", strategy_options={"rate": 0.3}, rounds=2)
    by_instance = find_ticket(make_model(), train, strategy=tl.strategies.IterativeMagnitude(rate=0.3), rounds=2)
    for n in NAMES:
        assert torch.equal(by_name.masks[n], by_instance.masks[n])
    assert by_instance.config["strategy_options"] == by_name.config["strategy_options"]


def test_strategy_options_with_an_instance_is_refused():
    model = make_model()
    before = state_of(model)
    with pytest.raises(ValueError, match="strategy_options"):
        find_ticket(
            model, train, strategy=tl.strategies.IterativeMagnitude(rate=0.3), strategy_options={"rate": 0.2}, rounds=1
        )
    assert_state_equal(model, before)


# --------------------------------------------------------------------------- rewinding
def test_rewind_is_exact_every_round_and_covers_biases():
    observer = RewindObserver()
    prunes = PruneObserver()
    model = make_model()
    init = state_of(model)
    ticket = find_ticket(
        model, train, strategy="imp", strategy_options={"rate": 0.3}, rounds=3, plugins=[observer, prunes]
    )
    assert set(ticket.rewind.keys()) == set(ALL_PARAMS)
    assert ticket.rewind.iteration == 0
    # rewind_iteration=0: the rewind values are the initialization, bit for bit
    for q in ALL_PARAMS:
        assert torch.equal(ticket.rewind[q], init[q]), q
    assert observer.rounds == [1, 2, 3]
    for round_index, tensors, effective, masks, (_, pruned) in zip(
        observer.rounds, observer.tensors, observer.effective, observer.masks, prunes.masks, strict=False
    ):
        for q in ALL_PARAMS:
            assert torch.equal(tensors[q], ticket.rewind[q]), (round_index, q)
        for q in NAMES:
            assert torch.equal(masks[q], pruned[q].float())  # the mask is untouched by the rewind
            assert torch.equal(effective[q], ticket.rewind[q] * masks[q])
        for q in ("0.bias", "2.bias"):
            assert torch.equal(effective[q], ticket.rewind[q])
    # the rewind point handed to observers is the ticket's
    for point in observer.points:
        for q in ALL_PARAMS:
            assert torch.equal(point[q], ticket.rewind[q])


def test_model_is_left_pruned_and_trained():
    model = make_model()
    ticket = find_ticket(model, train, strategy="imp", strategy_options={"rate": 0.3}, rounds=2)
    for q in NAMES:
        assert torch.equal(mask_of(model, q).bool(), ticket.masks[q])
        assert not torch.equal(tensor_of(model, q), ticket.rewind[q])  # trained after the last rewind
    # the ticket shares no storage with the model: more training or re-masking leaves it alone
    masks = {q: m.clone() for q, m in ticket.masks.items()}
    rewind = {q: t.clone() for q, t in ticket.rewind.items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(8, 8)).square().sum().backward()
        optimizer.step()
    with torch.no_grad():
        model[0].weight_mask.fill_(1)
        model[0].bias.add_(1)
    for q in NAMES:
        assert torch.equal(ticket.masks[q], masks[q])
    for q in ALL_PARAMS:
        assert torch.equal(ticket.rewind[q], rewind[q])


def _late_reset_train(k: int, captured: dict, optimizer: torch.optim.Optimizer | None = None, steps: int = STEPS):
    def train_fn(model, context):
        opt = optimizer if optimizer is not None else torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(steps):
            x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            context.step()  # a no-op when the driver counts through optimizer=
            if context.round_index == 0 and context.iteration == k:
                captured.update({q: tensor_of(model, q).detach().clone() for q in ALL_PARAMS})
        captured.setdefault("iterations", []).append((context.round_index, context.iteration))

    return train_fn


@pytest.mark.parametrize("k", [1, 7, STEPS])
def test_late_resetting_counting_with_context_step(k):
    captured: dict = {}
    observer = RewindObserver()
    ticket = find_ticket(
        make_model(),
        _late_reset_train(k, captured),
        strategy="imp",
        strategy_options={"rate": 0.2, "rewind_iteration": k},
        rounds=2,
        plugins=[observer],
    )
    assert ticket.rewind.iteration == k
    assert ticket.config["rewind_iteration"] == k
    for q in ALL_PARAMS:
        assert torch.equal(ticket.rewind[q], captured[q]), q
    for tensors in observer.tensors:
        for q in ALL_PARAMS:
            assert torch.equal(tensors[q], captured[q]), q
    assert captured["iterations"] == [(0, STEPS), (1, STEPS), (2, STEPS)]
    assert [h["metrics"]["iterations"] for h in ticket.history] == [STEPS] * 3


def test_late_resetting_equals_replayed_training():
    """The rewind point equals k SGD steps of round 0, replayed by hand with the driver's round seed."""
    k, seed = 5, 3
    ticket = find_ticket(
        make_model(), train, strategy="imp", strategy_options={"rate": 0.2, "rewind_iteration": k}, rounds=1, seed=seed
    )
    from torch_lottery.driver.context import round_seed  # the documented per-round seeding

    model = make_model()
    torch.manual_seed(round_seed(seed, 0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(k):
        x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    for q in ALL_PARAMS:
        assert torch.equal(ticket.rewind[q], tensor_of(model, q).detach()), q


@pytest.mark.parametrize("k", [1, 6])
def test_late_resetting_counting_through_optimizer(k):
    captured: dict = {}
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    observer = RewindObserver()
    ticket = find_ticket(
        model,
        _late_reset_train(k, captured, optimizer),
        strategy="imp",
        strategy_options={"rate": 0.2, "rewind_iteration": k},
        rounds=2,
        optimizer=optimizer,
        plugins=[observer],
    )
    # the driver counted each optimizer step once (context.step() was a no-op)
    assert captured["iterations"] == [(0, STEPS), (1, STEPS), (2, STEPS)]
    assert [h["metrics"]["iterations"] for h in ticket.history] == [STEPS] * 3
    assert ticket.rewind.iteration == k
    for q in ALL_PARAMS:
        assert torch.equal(ticket.rewind[q], captured[q]), q
    for tensors in observer.tensors:
        for q in ALL_PARAMS:
            assert torch.equal(tensors[q], captured[q]), q


def test_context_step_is_noop_with_optimizer():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []

    def train_fn(model, context):
        context.step()
        context.step()
        seen.append(context.iteration)
        for _ in range(3):
            optimizer.zero_grad()
            model(torch.randn(4, 8)).sum().backward()
            optimizer.step()
        seen.append(context.iteration)

    find_ticket(model, train_fn, rounds=1, optimizer=optimizer)
    assert seen == [0, 3, 0, 3]


@pytest.mark.parametrize("with_optimizer", [False, True])
def test_rewind_iteration_beyond_training_is_refused(with_optimizer):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1) if with_optimizer else None
    captured: dict = {}
    with pytest.raises(ValueError, match="rewind_iteration"):
        find_ticket(
            model,
            _late_reset_train(STEPS + 1, captured, optimizer),
            strategy="imp",
            strategy_options={"rewind_iteration": STEPS + 1},
            rounds=1,
            optimizer=optimizer,
        )


def test_rewind_iteration_without_counting_is_refused():
    def silent(model, context):  # never calls context.step() and passes no optimizer
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(5):
            optimizer.zero_grad()
            model(torch.randn(4, 8)).sum().backward()
            optimizer.step()

    with pytest.raises(ValueError, match="rewind_iteration=3"):
        find_ticket(make_model(), silent, strategy_options={"rewind_iteration": 3}, rounds=1)


# --------------------------------------------------------------------------- whole-state rewind
def _state_run(rewind_state: bool, k: int = 4, rounds: int = 2):
    model = make_bn_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    params = list(optimizer.param_groups[0]["params"])
    bn = model[1]
    at_k: dict = {}
    end_of_round: dict = {}
    round_start: dict = {}

    def snapshot():
        return {
            "momentum": [
                optimizer.state[p]["momentum_buffer"].clone() if "momentum_buffer" in optimizer.state[p] else None
                for p in params
            ],
            "last_epoch": scheduler.last_epoch,
            "last_lr": list(scheduler.get_last_lr()),
            "group_lr": optimizer.param_groups[0]["lr"],
            "running_mean": bn.running_mean.clone(),
            "running_var": bn.running_var.clone(),
            "num_batches_tracked": bn.num_batches_tracked.clone(),
        }

    def train_fn(model, context):
        round_start[context.round_index] = snapshot()
        model.train()
        for _ in range(10):
            x, y = torch.randn(16, 8) * 2 + 1, torch.randint(0, 2, (16,))
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            scheduler.step()
            if context.round_index == 0 and context.iteration == k:
                at_k.update(snapshot())  # iteration k done: its optimizer and scheduler steps
        end_of_round[context.round_index] = snapshot()
        return {"lr": scheduler.get_last_lr()[0]}

    ticket = find_ticket(
        model,
        train_fn,
        strategy="imp",
        strategy_options={"rate": 0.2, "rewind_iteration": k},
        rounds=rounds,
        optimizer=optimizer,
        scheduler=scheduler,
        rewind_state=rewind_state,
    )
    return ticket, at_k, round_start, end_of_round


def _assert_snapshot_equal(a: dict, b: dict) -> None:
    assert a["last_epoch"] == b["last_epoch"]
    assert a["last_lr"] == b["last_lr"]
    assert a["group_lr"] == b["group_lr"]
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(a[key], b[key]), key
    assert len(a["momentum"]) == len(b["momentum"])
    for i, (x, y) in enumerate(zip(a["momentum"], b["momentum"], strict=True)):
        assert x is not None and y is not None, i
        assert torch.equal(x, y), i


def test_rewind_state_restores_optimizer_scheduler_and_buffers():
    k = 4
    ticket, at_k, round_start, _ = _state_run(True, k=k)
    assert at_k["last_epoch"] == k  # iteration k with its scheduler step: the rewound schedule resumes at k
    assert all(m is not None for m in at_k["momentum"])
    assert int(at_k["num_batches_tracked"]) == k
    assert sorted(round_start) == [0, 1, 2]
    for r in (1, 2):
        _assert_snapshot_equal(round_start[r], at_k)
    assert ticket.config["rewind_state"] is True


def test_without_rewind_state_the_training_state_carries_on():
    k = 4
    _, at_k, round_start, end_of_round = _state_run(False, k=k)
    for r in (1, 2):
        start, previous_end = round_start[r], end_of_round[r - 1]
        # not reset: what round r-1 left behind
        assert start["last_epoch"] == previous_end["last_epoch"] == 10 * r
        assert start["last_epoch"] != at_k["last_epoch"]
        assert start["last_lr"] != at_k["last_lr"]
        assert torch.equal(start["running_mean"], previous_end["running_mean"])
        assert not torch.equal(start["running_mean"], at_k["running_mean"])
        assert int(start["num_batches_tracked"]) == 10 * r
        for x, y in zip(start["momentum"], previous_end["momentum"], strict=True):
            assert torch.equal(x, y)
        assert not all(torch.equal(x, y) for x, y in zip(start["momentum"], at_k["momentum"], strict=True))


def test_rewind_state_at_iteration_zero_resets_to_the_fresh_optimizer():
    ticket, at_k, round_start, _ = _state_run(True, k=0)
    assert at_k == {}  # iteration 0 is never reached inside train: captured before round 0
    fresh = round_start[0]
    assert all(m is None for m in fresh["momentum"]) and fresh["last_epoch"] == 0
    for r in (1, 2):
        start = round_start[r]
        assert all(m is None for m in start["momentum"])  # momentum buffers dropped
        assert start["last_epoch"] == 0
        assert start["last_lr"] == fresh["last_lr"] == [0.1]
        assert start["group_lr"] == 0.1
        for key in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.equal(start[key], fresh[key]), key
    assert ticket.rewind.iteration == 0


def test_rewind_state_needs_optimizer():
    model = make_model()
    before = state_of(model)
    with pytest.raises(ValueError, match="optimizer"):
        find_ticket(model, train, rounds=1, rewind_state=True)
    assert_state_equal(model, before)


def test_scheduler_needs_optimizer():
    model = make_model()
    scheduler = torch.optim.lr_scheduler.StepLR(torch.optim.SGD(model.parameters(), lr=0.1), step_size=1)
    before = state_of(model)
    with pytest.raises(ValueError, match="optimizer"):
        find_ticket(model, train, rounds=1, scheduler=scheduler)
    assert_state_equal(model, before)


# --------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("strategy", ["imp", "random"])
def test_same_seed_same_ticket(strategy):
    a = find_ticket(
        make_model(), train, strategy=strategy, strategy_options={"rate": 0.3, "rewind_iteration": 3}, rounds=2, seed=11
    )
    b = find_ticket(
        make_model(), train, strategy=strategy, strategy_options={"rate": 0.3, "rewind_iteration": 3}, rounds=2, seed=11
    )
    for n in NAMES:
        assert torch.equal(a.masks[n], b.masks[n])
    assert list(a.rewind.keys()) == list(b.rewind.keys())
    for q in a.rewind:
        assert torch.equal(a.rewind[q], b.rewind[q])
    assert [h["metrics"] for h in a.history] == [h["metrics"] for h in b.history]
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in a.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in b.history]


def test_different_seed_different_metrics():
    a = find_ticket(make_model(), train, strategy_options={"rate": 0.3, "rewind_iteration": 3}, rounds=2, seed=1)
    b = find_ticket(make_model(), train, strategy_options={"rate": 0.3, "rewind_iteration": 3}, rounds=2, seed=2)
    for ha, hb in zip(a.history, b.history, strict=True):
        assert ha["metrics"]["loss"] != hb["metrics"]["loss"]
    assert not torch.equal(a.rewind["0.weight"], b.rewind["0.weight"])


def test_context_seed_matches_global_rng_seed():
    seeds = []

    def train_fn(model, context):
        expected = torch.randn(3)
        torch.manual_seed(context.seed)
        seeds.append((context.round_index, context.seed, torch.equal(expected, torch.randn(3))))
        return train(model, context)

    find_ticket(make_model(), train_fn, rounds=2, seed=5)
    assert [r for r, _, _ in seeds] == [0, 1, 2]
    assert len({s for _, s, _ in seeds}) == 3  # one seed per round
    assert all(ok for _, _, ok in seeds)


# --------------------------------------------------------------------------- metrics
def test_train_and_evaluate_metrics_go_to_history():
    def train_fn(model, context):
        train(model, context)
        return {"loss": torch.tensor(0.25), "phase": "train", "round": context.round_index}

    evaluated = []

    def evaluate_fn(model):
        result = {"accuracy": 0.5 + 0.1 * len(evaluated), "ok": True}
        evaluated.append(result)
        return result

    ticket = find_ticket(make_model(), train_fn, evaluate_fn, rounds=2)
    for i, record in enumerate(ticket.history):
        assert record["metrics"] == {
            "loss": 0.25,
            "phase": "train",
            "round": i,
            "accuracy": pytest.approx(0.5 + 0.1 * i),
            "ok": True,
            "iterations": STEPS,
        }
        assert isinstance(record["metrics"]["loss"], float)


def test_float_from_evaluate_becomes_score():
    ticket = find_ticket(make_model(), train, lambda model: 0.75, rounds=1)
    assert [h["metrics"]["score"] for h in ticket.history] == [0.75, 0.75]
    assert all(isinstance(h["metrics"]["loss"], float) for h in ticket.history)
    ticket = find_ticket(make_model(), train, lambda model: 3, rounds=0)
    assert ticket.history[0]["metrics"]["score"] == 3.0
    assert isinstance(ticket.history[0]["metrics"]["score"], float)


def test_none_metrics_are_allowed():
    ticket = find_ticket(make_model(), lambda m, c: None, lambda m: None, rounds=1)
    assert [h["metrics"] for h in ticket.history] == [{"iterations": 0}, {"iterations": 0}]


@pytest.mark.parametrize("bad", [[0.5], "good", object()])
def test_evaluate_returning_non_metrics_is_refused(bad):
    with pytest.raises(TypeError, match="evaluate"):
        find_ticket(make_model(), train, lambda model: bad, rounds=1)


def test_train_returning_non_metrics_is_refused():
    with pytest.raises(TypeError, match="train"):
        find_ticket(make_model(), lambda model, context: [1, 2], rounds=1)


# --------------------------------------------------------------------------- bad input
def _refused(exc, match, **kwargs):
    model = kwargs.pop("model", None) or make_model()
    before, hooks = state_of(model), hook_counts(model)
    arguments = {"train": train, "rounds": 1, **kwargs}
    with pytest.raises(exc, match=match):
        find_ticket(model, **arguments)
    assert_state_equal(model, before)
    assert hook_counts(model) == hooks
    assert all(mask_of(model, q) is None for q in NAMES)


def test_model_not_a_module():
    with pytest.raises(TypeError, match="model"):
        find_ticket({"0.weight": torch.ones(2)}, train, rounds=1)


def test_train_not_callable():
    _refused(TypeError, "train", train="train me")


def test_evaluate_not_callable():
    _refused(TypeError, "evaluate", evaluate=0.5)


def test_unknown_strategy():
    _refused(StrategyError, "no_such_strategy", strategy="no_such_strategy")


def test_strategy_not_a_strategy():
    _refused(TypeError, "strategy", strategy=42)


def test_no_stopping_point():
    _refused(ValueError, "rounds or target_remaining", rounds=None)


@pytest.mark.parametrize(
    "target, exc", [(1.5, ValueError), (1.0, ValueError), (-0.1, ValueError), ("half", TypeError), (True, TypeError)]
)
def test_bad_target_remaining(target, exc):
    _refused(exc, "target_remaining", rounds=None, target_remaining=target)


@pytest.mark.parametrize("rounds, exc", [(-1, ValueError), (1.5, TypeError), ("2", TypeError), (True, TypeError)])
def test_bad_rounds(rounds, exc):
    _refused(exc, "rounds", rounds=rounds)


@pytest.mark.parametrize("seed", ["x", 1.0, None, True])
def test_bad_seed(seed):
    _refused(TypeError, "seed", seed=seed)


@pytest.mark.parametrize("parameters", [["0.weight", "0.nope"], ["5.weight"], ["nothing"]])
def test_parameters_naming_a_missing_tensor(parameters):
    _refused(ValueError, "parameters", parameters=parameters)


def test_parameters_of_another_model():
    other = make_model()
    _refused(ValueError, "parameters", parameters=[(other[0], "weight")])


def test_parameters_as_a_string():
    _refused(TypeError, "parameters", parameters="0.weight")


def test_bad_optimizer_and_scheduler_types():
    _refused(TypeError, "optimizer", optimizer="sgd")
    model = make_model()
    _refused(
        TypeError, "scheduler", model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), scheduler=object()
    )
    _refused(TypeError, "rewind_state", rewind_state=1)


def test_strategy_option_out_of_range():
    _refused(ValueError, "rate", strategy="imp", strategy_options={"rate": 2.0})


def test_strategy_option_unknown():
    _refused(TypeError, "bogus", strategy="imp", strategy_options={"bogus": 1})


def test_strategy_option_naming_an_unknown_tensor_is_refused_before_training():
    # find_ticket: "Raises: TypeError, ValueError: on bad arguments (before anything runs)".
    # A rate multiplier for a tensor that is not pruned is a bad strategy option: it must be refused
    # before the dense run trains (and changes) the model.
    calls = []

    def train_fn(model, context):
        calls.append(context.round_index)
        return train(model, context)

    _refused(
        ValueError,
        r"rate_multipliers.*9\.weight",
        train=train_fn,
        strategy="imp",
        strategy_options={"rate_multipliers": {"9.weight": 0.5}},
    )
    assert calls == []


def test_strategy_options_not_a_dict():
    _refused(TypeError, "strategy_options", strategy="imp", strategy_options=[("rate", 0.2)])


def test_strategy_option_bad_scope_and_rewind_iteration():
    _refused(ValueError, "scope", strategy="imp", strategy_options={"scope": "everywhere"})
    _refused(ValueError, "rewind_iteration", strategy="imp", strategy_options={"rewind_iteration": -1})
    _refused(ValueError, "remaining", strategy="one_shot", strategy_options={"remaining": 0.0})


def test_parameters_restrict_the_masks():
    model = make_model()
    ticket = find_ticket(model, train, strategy_options={"rate": 0.5}, rounds=1, parameters=["2.weight"])
    assert list(ticket.masks) == ["2.weight"]
    assert mask_of(model, "0.weight") is None
    assert counts(ticket.masks) == {"2.weight": 32}
    assert set(ticket.rewind.keys()) == set(ALL_PARAMS)  # the rewind point still covers everything
    ticket = find_ticket(make_model(), train, strategy_options={"rate": 0.5}, rounds=1, parameters=["0.weight"])
    assert list(ticket.masks) == ["0.weight"]


def test_parameters_as_module_name_pairs():
    model = make_model()
    ticket = find_ticket(model, train, strategy_options={"rate": 0.5}, rounds=1, parameters=[(model[2], "weight")])
    assert list(ticket.masks) == ["2.weight"]


def test_plugins_are_unregistered_after_the_run():
    observer = PruneObserver()
    find_ticket(make_model(), train, rounds=1, plugins=[observer])
    assert not tl.plugins.get_plugin_manager().is_registered(observer)
    find_ticket(make_model(), train, rounds=1)
    assert len(observer.masks) == 1
    # also after a failing run
    failing = PruneObserver()
    with pytest.raises(TypeError):
        find_ticket(make_model(), train, lambda m: [1], rounds=1, plugins=[failing])
    assert not tl.plugins.get_plugin_manager().is_registered(failing)


# --------------------------------------------------------------------------- custom strategies
class Grower(tl.Strategy):
    """Prunes half of each tensor in round 1, then tries to revive everything."""

    name = "grower"

    def prune(self, context):
        if context.round_index == 1:
            out = {}
            for n in context.names:
                mask = torch.ones_like(context.masks[n])
                mask.view(-1)[: mask.numel() // 2] = False
                out[n] = mask
            return out
        return {n: torch.ones_like(context.masks[n]) for n in context.names}


class WrongShape(tl.Strategy):
    name = "wrong_shape"

    def prune(self, context):
        masks = {n: context.masks[n].clone() for n in context.names}
        masks["2.weight"] = torch.ones(32, 2, dtype=torch.bool)
        return masks


class Forgetful(tl.Strategy):
    name = "forgetful"

    def prune(self, context):
        return {"0.weight": context.masks["0.weight"].clone()}


def test_custom_strategy_reviving_entries_is_refused():
    with pytest.raises(ValueError, match=r"(?s)grower.*0\.weight.*shrink"):
        find_ticket(make_model(), train, strategy=Grower(), rounds=3)


def test_custom_strategy_may_grow_when_declared():
    class MayGrow(Grower):
        may_grow = True

    ticket = find_ticket(make_model(), train, strategy=MayGrow(), rounds=2)
    assert ticket.history[1]["remaining"] == 0.5
    assert ticket.history[2]["remaining"] == 1.0


def test_custom_strategy_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"(?s)wrong_shape.*2\.weight.*\(2, 32\)"):
        find_ticket(make_model(), train, strategy=WrongShape(), rounds=1)


def test_custom_strategy_missing_mask_is_refused():
    with pytest.raises(ValueError, match=r"(?s)forgetful.*2\.weight"):
        find_ticket(make_model(), train, strategy=Forgetful(), rounds=1)


def test_custom_strategy_returning_non_dict_is_refused():
    class ListStrategy(tl.Strategy):
        name = "lister"

        def prune(self, context):
            return [context.masks[n] for n in context.names]

    with pytest.raises(TypeError, match="lister"):
        find_ticket(make_model(), train, strategy=ListStrategy(), rounds=1)


def test_strategy_that_prunes_nothing_stops_the_run():
    class Idle(tl.Strategy):
        def prune(self, context):
            return {n: context.masks[n].clone() for n in context.names}

    ticket = find_ticket(make_model(), train, strategy=Idle(), rounds=5)
    assert len(ticket.history) == 2
    assert ticket.remaining == 1.0


def test_prune_context_sees_trained_weights_and_rewind_values():
    seen = []

    class Spy(tl.Strategy):
        def prune(self, context):
            seen.append(
                {
                    "round": context.round_index,
                    "names": context.names,
                    "weights": {n: context.weights[n].clone() for n in context.names},
                    "rewind": {n: context.rewind[n].clone() for n in context.names},
                }
            )
            out = {}
            for n in context.names:
                mask = context.masks[n].clone()
                alive = mask.view(-1).nonzero().flatten()
                mask.view(-1)[alive[:4]] = False
                out[n] = mask
            return out

    model = make_model()
    init = state_of(model)
    trained = {}

    def train_fn(model, context):
        train(model, context)
        trained[context.round_index] = {q: tensor_of(model, q).detach().clone() for q in NAMES}

    find_ticket(model, train_fn, strategy=Spy(), rounds=2)
    assert [s["round"] for s in seen] == [1, 2]
    for s in seen:
        assert s["names"] == tuple(NAMES)
        for n in NAMES:
            assert torch.equal(s["rewind"][n], init[n])
            assert torch.equal(s["weights"][n], trained[s["round"] - 1][n])


def test_a_diverged_training_round_stops_before_anything_is_pruned():
    def diverge(model, context):
        with torch.no_grad():
            model[0].weight.fill_(float("nan"))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ValueError, match=r"weights of '0.weight' after training round 0 \(diverged\?\) contains NaN"):
        find_ticket(model, diverge, rounds=1)
    assert not hasattr(model[0], "weight_mask")
