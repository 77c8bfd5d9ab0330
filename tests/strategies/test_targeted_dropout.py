"""The built-in ``targeted_dropout`` strategy (Gomez et al. 2019): train with the dropout, prune the targeted set."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torch_lottery as tl
from torch_lottery._validation import count_to_prune
from torch_lottery.pruning.targeted_dropout import _TargetedDropoutHook, has_targeted_dropout
from torch_lottery.strategies import TargetedDropout

X = torch.randn(64, 6, generator=torch.Generator().manual_seed(3))
Y = torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(4))


def make_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3))


def layers(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def no_dropout_left(model: nn.Module) -> bool:
    return not any(
        isinstance(h, _TargetedDropoutHook) or isinstance(getattr(h, "__self__", None), _TargetedDropoutHook)
        for m in model.modules()
        for h in (*m._forward_pre_hooks.values(), *m._forward_hooks.values())
    )


def make_train(steps: int = 15, seen: list | None = None):
    def train(model, context):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(steps):
            if seen is not None:
                seen.append([has_targeted_dropout(m, "weight") for m in layers(model)])
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(X), Y).backward()
            optimizer.step()
            context.step()

    return train


def evaluate(model):
    zeros = sum(int((m.weight == 0).sum()) for m in layers(model))
    return {"accuracy": float((model(X).argmax(1) == Y).float().mean()), "zero_weights": zeros}


def test_weight_kind_end_to_end_prunes_the_targeted_count_of_each_unit_by_magnitude():
    model = make_model()
    seen: list = []
    ticket = tl.find_ticket(
        model,
        make_train(seen=seen),
        evaluate,
        strategy="targeted_dropout",
        strategy_options={"drop_rate": 0.5, "targ_rate": 0.3},
    )
    assert seen and all(all(row) for row in seen)  # the loop trained with the dropout on every tensor
    assert no_dropout_left(model)
    for name, layer in zip(("0.weight", "2.weight"), layers(model), strict=True):
        mask, weight = ticket.masks[name], layer.weight_orig.detach()
        per_unit = count_to_prune(0.3, weight.shape[1])
        assert (~mask).sum(dim=1).tolist() == [per_unit] * weight.shape[0]
        for row in range(weight.shape[0]):  # the pruned ones are the smallest |w| of the trained unit
            assert float(weight[row][~mask[row]].abs().max()) <= float(weight[row][mask[row]].abs().min())
    pruned = sum(count_to_prune(0.3, m.weight.shape[1]) * m.weight.shape[0] for m in layers(model))
    total = sum(m.weight.numel() for m in layers(model))
    assert [r["round"] for r in ticket.history] == [0, 1]
    assert ticket.history[0]["metrics"]["iterations"] == 0  # no dense round: round 0 is the initial model
    last = ticket.history[1]
    assert last["remaining_weights"] == total - pruned and last["stopped"] == "rounds=1 reached"
    assert last["metrics"]["iterations"] == 15
    assert last["metrics"]["zero_weights"] >= pruned  # evaluate saw the pruned model (no retraining)
    assert ticket.config["strategy"] == "targeted_dropout"
    assert ticket.config["strategy_options"] == {"drop_rate": 0.5, "targ_rate": 0.3, "kind": "weight"}


def test_unit_kind_end_to_end_prunes_whole_units_of_smallest_norm():
    model = make_model()
    ticket = tl.find_ticket(
        model, make_train(), evaluate, strategy="targeted_dropout", strategy_options={"targ_rate": 0.4, "kind": "unit"}
    )
    assert no_dropout_left(model)
    for name, layer in zip(("0.weight", "2.weight"), layers(model), strict=True):
        mask, norms = ticket.masks[name], layer.weight_orig.detach().norm(dim=1)
        gone = ~mask.any(dim=1)
        assert torch.equal(gone, ~mask.all(dim=1))  # whole units
        assert int(gone.sum()) == count_to_prune(0.4, layer.weight.shape[0])
        assert float(norms[gone].max()) <= float(norms[~gone].min())


def tiny() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(4, 2, dtype=torch.float64))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.5, -0.1, 0.3, 2.0], [1.0, 1.0, -4.0, 0.2]]))
    return model


def untrained(model, context):  # no step: the final masks rank the initial weights
    model(torch.ones(1, 4, dtype=torch.float64))


def test_the_final_masks_against_a_hand_computation():
    ticket = tl.find_ticket(tiny(), untrained, strategy=TargetedDropout(targ_rate=0.5))
    assert ticket.masks["0.weight"].int().tolist() == [[1, 0, 0, 1], [0, 1, 1, 0]]
    ticket = tl.find_ticket(tiny(), untrained, strategy=TargetedDropout(targ_rate=0.5, kind="unit"))
    assert ticket.masks["0.weight"].int().tolist() == [[0, 0, 0, 0], [1, 1, 1, 1]]  # norms 2.08 < 4.25


def test_a_pruned_model_starts_from_its_masks_and_the_targeted_set_ranks_the_survivors():
    model = tiny()
    tl.fixed_mask(model[0], "weight", torch.tensor([[1, 0, 0, 1], [0, 1, 1, 1]]))
    ticket = tl.find_ticket(model, untrained, strategy=TargetedDropout(targ_rate=0.5))
    # survivors 0.5, 2.0 -> round(1.0) = 1 pruned: 0.5; 1.0, -4.0, 0.2 -> round(1.5) = 2 pruned: 0.2, 1.0
    assert ticket.masks["0.weight"].int().tolist() == [[0, 0, 0, 1], [0, 0, 1, 0]]
    assert [r["remaining_weights"] for r in ticket.history] == [5, 2]  # the initial model, then the pruned one


def test_a_run_with_the_same_seed_is_reproducible():
    digests = [
        tl.find_ticket(make_model(), make_train(), strategy="targeted_dropout", seed=5).history[-1]["masks_sha256"]
        for _ in range(2)
    ]
    assert digests[0] == digests[1]


def test_the_dropout_is_removed_when_training_raises():
    model = make_model()

    def failing(model, context):
        model(X)
        raise RuntimeError("the user's loop failed")

    with pytest.raises(RuntimeError, match="the user's loop failed"):
        tl.find_ticket(model, failing, strategy="targeted_dropout")
    assert no_dropout_left(model)
    assert all(torch.equal(m.weight, m.weight_orig * m.weight_mask) for m in layers(model))  # undropped


def test_an_unsupported_tensor_is_refused_before_anything_trains():
    model = nn.Sequential(nn.Linear(3, 3))
    model.append(nn.LSTM(3, 2))
    calls = []
    with pytest.raises(ValueError, match=r"cannot train '1.weight_ih_l0'.*LSTM reads a cached list"):
        tl.find_ticket(model, lambda m, c: calls.append(1), strategy="targeted_dropout")
    assert calls == [] and no_dropout_left(model)
    assert not hasattr(model[0], "weight_mask")


def test_a_tensor_that_already_has_targeted_dropout_is_refused_before_anything_trains():
    model = make_model()
    tl.targeted_dropout(model[2], "weight", 0.5, 0.5)
    calls = []
    with pytest.raises(ValueError, match=r"cannot train '2.weight'.*already has targeted dropout"):
        tl.find_ticket(model, lambda m, c: calls.append(1), strategy="targeted_dropout")
    assert calls == [] and not has_targeted_dropout(model[0], "weight") and has_targeted_dropout(model[2], "weight")


def test_begin_installs_on_all_tensors_or_none():
    model = make_model()
    strategy = TargetedDropout()
    tl.targeted_dropout(model[2], "weight", 0.5, 0.5)  # begin meets it on the second tensor, after the first
    context = tl.strategies.StepContext(
        model, ("0.weight", "2.weight"), [(model[0], "weight"), (model[2], "weight")], 1, 0, 1, None, print
    )
    with pytest.raises(ValueError, match="already has targeted dropout"):
        strategy.begin(context)
    assert not has_targeted_dropout(model[0], "weight")
    assert strategy.update(context) is None


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"drop_rate": 1.5}, ValueError, "drop_rate=1.5"),
        ({"drop_rate": "x"}, TypeError, "drop_rate must be a number"),
        ({"targ_rate": -1}, ValueError, "targ_rate=-1"),
        ({"kind": "filter"}, ValueError, "kind='filter' is not one of weight, unit"),
    ],
)
def test_bad_options_raise_naming_the_option_before_anything_trains(kwargs, error, words):
    calls = []
    with pytest.raises(error, match=words):
        TargetedDropout(**kwargs)
    with pytest.raises(error, match=words):
        tl.find_ticket(make_model(), lambda m, c: calls.append(1), strategy="targeted_dropout", strategy_options=kwargs)
    assert calls == []


def test_registered_with_the_papers_defaults_and_options_that_rebuild_it():
    strategy = tl.get_strategy("targeted_dropout")()
    assert isinstance(strategy, TargetedDropout)
    assert strategy.options() == {"drop_rate": 0.5, "targ_rate": 0.5, "kind": "weight"}
    assert strategy.when == "during_training" and strategy.max_rounds == 1
    assert TargetedDropout(**TargetedDropout(0.2, 0.7, "unit").options()).options() == {
        "drop_rate": 0.2,
        "targ_rate": 0.7,
        "kind": "unit",
    }
