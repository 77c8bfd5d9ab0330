"""torch_lottery/driver/run.py: the phases: pruning at initialization, retrain modes, controls, early stops."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import torch_lottery as tl
from torch_lottery.strategies import PruneContext
from torch_lottery.strategies.context import build_context

import helpers

X = torch.randn(64, 6, generator=torch.Generator().manual_seed(3))
Y = torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(4))
DATA = [(X[i : i + 16], Y[i : i + 16]) for i in range(0, 64, 16)]


def make_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


class Train:
    """SGD on fixed data; records each call's round, retrain mode and the weights it started from."""

    def __init__(self, steps: int = 5, optimizer: torch.optim.Optimizer | None = None, check_stop: bool = True):
        self.calls: list[tuple[int, str]] = []
        self.start: dict[int, dict[str, torch.Tensor]] = {}
        self.steps, self.optimizer, self.check_stop = steps, optimizer, check_stop

    def __call__(self, model, context):
        self.calls.append((context.round_index, context.retrain))
        self.start[context.round_index] = {k: v.detach().clone() for k, v in model.named_parameters()}
        optimizer = self.optimizer or torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(self.steps):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(X), Y).backward()
            optimizer.step()
            if self.optimizer is None:
                context.step()
            if self.check_stop and context.should_stop:
                break
        return {"loss": float(nn.functional.cross_entropy(model(X), Y))}


class KeepLargestAtInit(tl.Strategy):
    """Prune at initialization to half of each tensor by |w| (a minimal at-init strategy)."""

    when = "at_init"
    max_rounds = 1

    def __init__(self):
        super().__init__()
        self.seen: list[PruneContext] = []

    def prune(self, context):
        self.seen.append(context)
        self.weights = {n: w.clone() for n, w in context.weights.items()}  # the context's views follow training
        out = {}
        for name in context.names:
            w = context.weights[name].abs().reshape(-1)
            keep = torch.zeros_like(w, dtype=torch.bool)
            keep[w.argsort(descending=True)[: w.numel() // 2]] = True
            out[name] = keep.reshape(context.weights[name].shape)
        return out


# --------------------------------------------------------------------------- pruning at initialization
def test_an_at_init_strategy_prunes_the_initial_weights_and_trains_once():
    model, train, strategy = make_model(), Train(), KeepLargestAtInit()
    initial = {k: v.detach().clone() for k, v in model.named_parameters()}
    evaluated = []
    ticket = tl.find_ticket(
        model,
        train,
        lambda m: evaluated.append(1) or {"acc": 0.5},
        strategy=strategy,
        rounds=1,
        data=DATA,
        loss=nn.functional.cross_entropy,
    )
    assert train.calls == [(1, "rewind")]  # no dense run: one training, of the ticket
    context = strategy.seen[0]
    for name in context.names:  # it ranked the initial weights
        assert torch.equal(strategy.weights[name], initial[name])
    assert set(context.initial) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert context.data is DATA and context.loss is nn.functional.cross_entropy and context.rounds == 1
    assert ticket.history[0]["metrics"] == {"acc": 0.5, "iterations": 0}  # the initial model, evaluated
    assert ticket.history[1]["metrics"]["iterations"] == 5 and len(evaluated) == 2
    assert ticket.remaining == pytest.approx(0.5, abs=0.02)
    for name, mask in ticket.masks.items():
        assert torch.equal(
            mask,
            (
                initial[name].abs()
                >= initial[name].abs().reshape(-1).sort().values[initial[name].numel() - initial[name].numel() // 2]
            ),
        )


def test_an_at_init_strategy_with_a_rewind_iteration_is_refused():
    strategy = KeepLargestAtInit()
    strategy.rewind_iteration = 3
    with pytest.raises(ValueError, match="no dense run.*rewind_iteration=3"):
        tl.find_ticket(make_model(), Train(), strategy=strategy, rounds=1)


def test_an_at_init_run_resumes_after_round_0(tmp_path):
    train = Train()

    class Killed(Exception):
        pass

    def killing(model, context):
        raise Killed

    with pytest.raises(Killed):
        tl.find_ticket(make_model(), killing, strategy=KeepLargestAtInit(), rounds=1, checkpoint_dir=tmp_path)
    ticket = tl.find_ticket(make_model(), train, strategy=KeepLargestAtInit(), rounds=1, checkpoint_dir=tmp_path)
    assert train.calls == [(1, "rewind")] and len(ticket.history) == 2


# --------------------------------------------------------------------------- the seam: validate, needs_data
def test_validate_sees_the_model_and_the_data_before_anything_trains():
    seen = {}

    class Checks(tl.Strategy):
        def validate(self, names, model=None, data=None):
            seen.update(names=names, model=model, data=data)
            raise ValueError("option x does not fit")

        def prune(self, context):
            raise AssertionError("never reached")

    model, train = make_model(), Train()
    with pytest.raises(ValueError, match="option x does not fit"):
        tl.find_ticket(model, train, strategy=Checks(), rounds=1, data=DATA)
    assert seen == {"names": ("0.weight", "2.weight"), "model": model, "data": DATA} and train.calls == []


def test_an_older_validate_taking_names_only_still_works():
    class Old(tl.Strategy):
        def validate(self, names):
            self.names = names

        def prune(self, context):
            return dict(context.masks)

    strategy = Old()
    tl.find_ticket(make_model(), Train(), strategy=strategy, rounds=1)
    assert strategy.names == ("0.weight", "2.weight")


def test_a_strategy_that_needs_data_is_refused_without_it_naming_data():
    class NeedsData(KeepLargestAtInit):
        needs_data = True

    train = Train()
    with pytest.raises(ValueError, match=r"scores with the data: pass data="):
        tl.find_ticket(make_model(), train, strategy=NeedsData(), rounds=1)
    assert train.calls == []


def test_data_must_be_re_iterable():
    with pytest.raises(TypeError, match="data must be re-iterable"):
        tl.find_ticket(make_model(), Train(), rounds=1, data=iter(DATA))


def test_gradients_are_dense_and_leave_the_model_as_it_was():
    model = make_model()
    tl.lottery_magnitude(model[0], "weight", amount=0.5)
    before = helpers.snapshot(model)
    context = build_context(
        model,
        ("0.weight", "2.weight"),
        [(model[0], "weight"), (model[2], "weight")],
        data=DATA,
        loss=nn.functional.cross_entropy,
    )
    grads = context.gradients(batches=None)
    helpers.assert_unchanged(model, before)
    # by hand: the loss of the masked model, summed over the batches, differentiated w.r.t. the masked weight
    w0 = (model[0].weight_orig * model[0].weight_mask).detach().requires_grad_(True)
    total = sum(
        nn.functional.cross_entropy(
            nn.functional.linear(
                torch.relu(nn.functional.linear(x, w0, model[0].bias)), model[2].weight, model[2].bias
            ),
            y,
        )
        for x, y in DATA
    )
    (expected,) = torch.autograd.grad(total, [w0])
    assert torch.allclose(grads["0.weight"], expected, atol=1e-6)
    assert bool((grads["0.weight"][model[0].weight_mask == 0] != 0).any())  # pruned entries get a gradient too


# --------------------------------------------------------------------------- retrain modes
def _run(retrain, optimizer_too=False, scheduler_too=False, rewind_iteration=0):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.4, momentum=0.9) if optimizer_too else None
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5) if scheduler_too else None
    train = Train(steps=4, optimizer=optimizer)
    if scheduler is not None:
        inner = train.__call__

        def stepping(model, context):
            out = inner(model, context)
            for _ in range(4):
                scheduler.step()
            return out

        train_fn = stepping
    else:
        train_fn = train
    watched = {}

    class Watch:
        @tl.hookimpl
        def torch_lottery_after_prune(self, round_index, model):
            watched[round_index] = {k: v.detach().clone() for k, v in model.named_parameters()}
            if optimizer is not None:
                watched[(round_index, "lr")] = optimizer.param_groups[0]["lr"]
                watched[(round_index, "state")] = bool(optimizer.state)

    ticket = tl.find_ticket(
        model,
        train_fn,
        strategy_options={"rate": 0.5, "rewind_iteration": rewind_iteration},
        rounds=2,
        retrain=retrain,
        optimizer=optimizer,
        scheduler=scheduler,
        plugins=[Watch()],
    )
    return ticket, train, watched, optimizer, scheduler


def test_retrain_rewind_resets_every_weight_to_the_rewind_point():
    ticket, train, watched, _, _ = _run("rewind")
    assert train.calls == [(0, "dense"), (1, "rewind"), (2, "rewind")]
    for name, value in train.start[1].items():
        assert torch.equal(value, ticket.rewind[name.replace("_orig", "")]), name


def test_retrain_finetune_keeps_the_trained_weights_and_the_optimizer():
    ticket, train, watched, optimizer, _ = _run("finetune", optimizer_too=True)
    assert train.calls == [(0, "dense"), (1, "finetune"), (2, "finetune")]
    for name, value in train.start[2].items():  # round 2 starts where round 1 ended (after its pruning)
        assert torch.equal(value, watched[2][name]), name
    assert not torch.equal(train.start[1]["0.weight_orig"], ticket.rewind["0.weight"])
    assert watched[(1, "state")] is True and optimizer.state  # momentum carried on


def test_retrain_lr_rewind_keeps_the_weights_and_replays_the_schedule_from_k():
    ticket, train, watched, optimizer, scheduler = _run(
        "lr_rewind", optimizer_too=True, scheduler_too=True, rewind_iteration=2
    )
    assert train.calls == [(0, "dense"), (1, "lr_rewind"), (2, "lr_rewind")]
    for name, value in train.start[1].items():  # the trained (masked) weights, not the rewind point
        assert torch.equal(value, watched[1][name]), name
    assert not torch.equal(train.start[1]["0.weight_orig"], ticket.rewind["0.weight"])


def test_lr_rewind_restores_the_rate_of_iteration_k_and_clears_the_optimizer_state():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.4, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    rates, states = [], []

    def train(model, context):
        rates.append(optimizer.param_groups[0]["lr"])
        states.append(len(optimizer.state))
        for _ in range(3):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(X), Y).backward()
            optimizer.step()
            scheduler.step()

    tl.find_ticket(
        model,
        train,
        strategy_options={"rate": 0.5, "rewind_iteration": 1},
        rounds=2,
        retrain="lr_rewind",
        optimizer=optimizer,
        scheduler=scheduler,
    )
    # the dense run starts at 0.4; after step 1 the rate is 0.2 (iteration 1 is the rewind point): each round
    # restarts there, with no momentum
    assert rates == [0.4, 0.2, 0.2] and states == [0, 0, 0]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"retrain": "restart"}, "retrain='restart' is not one of rewind, lr_rewind, finetune"),
        ({"retrain": "finetune", "rewind_state": True}, "rewind_state=True rewinds with the weights"),
        ({"retrain": "lr_rewind", "strategy_options": {"rewind_iteration": 2}}, "pass scheduler="),
        ({"control": "flip"}, "control='flip' is not one of shuffle, invert, reinit"),
    ],
)
def test_bad_retrain_and_control_settings_are_refused_before_training(kwargs, words):
    train = Train()
    optimizer = torch.optim.SGD(make_model().parameters(), lr=0.1)
    extra = {"optimizer": optimizer} if kwargs.get("rewind_state") else {}
    with pytest.raises(ValueError, match=words):
        tl.find_ticket(make_model(), train, rounds=1, **extra, **kwargs)
    assert train.calls == []


# --------------------------------------------------------------------------- controls (Frankle et al. 2021)
def _ticket(**kwargs):
    return tl.find_ticket(make_model(), Train(), strategy_options={"rate": 0.5}, rounds=1, seed=7, **kwargs)


def test_control_shuffle_keeps_each_tensors_density_at_random_places():
    plain, shuffled, again = _ticket(), _ticket(control="shuffle"), _ticket(control="shuffle")
    for name in plain.masks:
        assert int(shuffled.masks[name].sum()) == int(plain.masks[name].sum())
        assert not torch.equal(shuffled.masks[name], plain.masks[name])
        assert torch.equal(shuffled.masks[name], again.masks[name])  # seeded


def test_control_invert_prunes_the_largest_weights():
    model, train = make_model(), Train()
    watched = {}

    class Watch:
        @tl.hookimpl
        def torch_lottery_after_prune(self, model):
            watched["w"] = model[0].weight_orig.detach().abs().clone()

    ticket = tl.find_ticket(model, train, strategy_options={"rate": 0.5}, rounds=1, control="invert", plugins=[Watch()])
    kept, pruned = watched["w"][ticket.masks["0.weight"]], watched["w"][~ticket.masks["0.weight"]]
    assert float(kept.max()) <= float(pruned.min())


def test_control_invert_needs_scores():
    with pytest.raises(ValueError, match="control='invert' inverts a strategy's scores"):
        tl.find_ticket(make_model(), Train(), strategy=KeepLargestAtInit(), rounds=1, control="invert")


def test_control_reinit_gives_the_pruned_tensors_fresh_values_and_keeps_the_rest():
    train = Train()
    ticket = tl.find_ticket(make_model(), train, strategy_options={"rate": 0.5}, rounds=1, control="reinit")
    start = train.start[1]
    assert not torch.equal(start["0.weight_orig"], ticket.rewind["0.weight"])
    assert torch.equal(start["0.bias"], ticket.rewind["0.bias"])  # the rest is rewound as usual
    other = Train()
    tl.find_ticket(make_model(), other, strategy_options={"rate": 0.5}, rounds=1, control="reinit")
    assert torch.equal(other.start[1]["0.weight_orig"], start["0.weight_orig"])  # seeded


# --------------------------------------------------------------------------- ending a round early
class StopAt(tl.Strategy):
    """Stop the dense run at a given iteration (``on_step``), then keep every weight."""

    max_rounds = 1

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def on_step(self, context):
        if context.round_index == 0 and context.iteration == self.at:
            context.stop(f"stopped at {self.at}")

    def prune(self, context):
        return dict(context.masks)


@pytest.mark.parametrize("check_stop", [True, False], ids=["loop-checks-should_stop", "loop-ignores-it"])
def test_a_strategy_ends_the_dense_run_early(check_stop):
    train = Train(steps=20, check_stop=check_stop)
    ticket = tl.find_ticket(make_model(), train, strategy=StopAt(6), rounds=1)
    record = ticket.history[0]["metrics"]
    assert record["stopped_early"] == "stopped at 6" and record["iterations"] == 6
    assert ("loss" in record) is check_stop  # an ignoring loop is interrupted: its return value is lost
    assert ticket.history[1]["metrics"]["iterations"] == 20  # the next round trains in full


def test_with_optimizer_the_driver_stops_before_the_next_step():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    twin = copy.deepcopy(model)
    train = Train(steps=20, optimizer=optimizer, check_stop=False)
    seen = {}

    class Watch:
        @tl.hookimpl
        def torch_lottery_round_end(self, round_index, model):
            if round_index == 0:
                seen["w"] = model[0].weight.detach().clone()

    ticket = tl.find_ticket(model, train, strategy=StopAt(6), rounds=1, optimizer=optimizer, plugins=[Watch()])
    assert ticket.history[0]["metrics"]["iterations"] == 6
    opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    for _ in range(6):  # exactly six steps, not seven
        opt.zero_grad()
        nn.functional.cross_entropy(twin(X), Y).backward()
        opt.step()
    assert torch.equal(seen["w"], twin[0].weight.detach())
