"""torch_lottery/driver/instability.py: the error barrier, instability_analysis and rewind_iteration="auto"."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torch_lottery as tl
from torch_lottery.driver.instability import AutoRewind, error_barrier

X = torch.randn(128, 4, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0] + X[:, 1] > 0).long()
DATA = [(X, Y)]
STEPS = 16


def make_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))


def train(model, context):
    """SGD on minibatches drawn from torch's global RNG (which the driver seeds: the data order follows the seed)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(STEPS):
        index = torch.randint(0, len(X), (8,))
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(X[index]), Y[index]).backward()
        optimizer.step()
        context.step()


def test_the_barrier_is_the_highest_error_on_the_line_minus_the_mean_of_its_ends():
    model = nn.Linear(1, 1, bias=False).double()
    first, second = (
        {"weight": torch.zeros(1, 1, dtype=torch.float64)},
        {"weight": torch.ones(1, 1, dtype=torch.float64)},
    )

    def error(m):  # by hand: the error at w is 0.1 + w (1 - w) + 0.2 w, so 0.1 at w=0, 0.3 at w=1, 0.45 at w=0.5
        w = float(m.weight.detach())
        return 0.1 + w * (1 - w) + 0.2 * w

    barrier, errors, alphas = error_barrier(model, first, second, error, points=3)
    assert alphas == [0.0, 0.5, 1.0]
    assert errors == pytest.approx([0.1, 0.45, 0.3])
    assert barrier == pytest.approx(0.45 - (0.1 + 0.3) / 2)
    assert model.training  # the mode is restored


def test_the_barrier_interpolates_floating_buffers_and_keeps_integer_ones():
    model = nn.BatchNorm1d(2)
    first = {k: v.clone() for k, v in [("weight", torch.ones(2)), ("bias", torch.zeros(2))]}
    first.update({"running_mean": torch.zeros(2), "running_var": torch.ones(2), "num_batches_tracked": torch.tensor(3)})
    second = {k: v + 2 if v.is_floating_point() else v + 5 for k, v in first.items()}
    seen = []
    error_barrier(
        model, first, second, lambda m: seen.append((m.running_mean.clone(), int(m.num_batches_tracked))) or 0.0, 3
    )
    assert [float(mean[0]) for mean, _ in seen] == [0.0, 1.0, 2.0]
    assert [count for _, count in seen] == [3, 3, 3]


def test_instability_analysis_measures_each_iteration_and_leaves_the_model_as_it_was():
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match=r"candidates \[99\] lie at or after the end"):
        results = tl.instability_analysis(model, train, data=DATA, iterations=[8, 0, 4, 99], points=5)
    assert [r.iteration for r in results] == [0, 4, 8]  # sorted; 99 is past the end of the 16-step run
    assert [r.iterations for r in results] == [16, 12, 8]  # each copy trains the rest of the run
    for r in results:
        assert len(r.errors) == 5 and r.alphas == (0.0, 0.25, 0.5, 0.75, 1.0)
        assert r.barrier == pytest.approx(max(r.errors) - (r.errors[0] + r.errors[-1]) / 2)
        assert r.stable == (r.barrier <= 0.02)
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_copies_that_train_identically_are_reported():
    def fixed_order(model, context):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        for i in range(STEPS):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(X[i : i + 8]), Y[i : i + 8]).backward()
            optimizer.step()
            context.step()

    with pytest.warns(UserWarning, match="ended identical"):
        results = tl.instability_analysis(make_model(), fixed_order, data=DATA, iterations=[0])
    assert results[0].barrier == 0.0


class Scripted:
    """An error function returning prepared values call by call (points=3 per candidate)."""

    def __init__(self, values):
        self.values = list(values)

    def __call__(self, model):
        return self.values.pop(0)


def test_auto_rewinds_to_the_earliest_stable_candidate_and_records_every_barrier():
    error = Scripted([0.1, 0.6, 0.1, 0.1, 0.11, 0.1])  # k=0: barrier 0.5 (unstable); k=4: 0.01 (stable)
    model = make_model()
    plan = AutoRewind(candidates=(0, 4, 8), points=3, error=error)
    ticket = tl.find_ticket(model, train, rewind_iteration=plan, rounds=1)
    record = ticket.history[0]
    assert [r["iteration"] for r in record["instability"]] == [0, 4]  # stops at the first stable one
    assert [r["barrier"] for r in record["instability"]] == pytest.approx([0.5, 0.01])
    assert [r["stable"] for r in record["instability"]] == [False, True]
    assert record["rewind_iteration"] == 4 and ticket.rewind.iteration == 4
    assert ticket.config["rewind_iteration"]["auto"]["candidates"] == [0, 4, 8]
    assert not error.values


def test_auto_without_a_stable_candidate_takes_the_smallest_barrier_and_warns():
    error = Scripted([0.0, 0.3, 0.0, 0.0, 0.2, 0.0])
    with pytest.warns(UserWarning, match="no candidate was stable"):
        ticket = tl.find_ticket(
            make_model(), train, rewind_iteration=AutoRewind(candidates=(2, 6), points=3, error=error), rounds=1
        )
    assert ticket.history[0]["rewind_iteration"] == 6


def test_auto_rewind_restores_the_dense_weights_before_pruning():
    """The first round prunes the trained dense model, not a copy of the analysis."""
    seen = {}

    class Record(tl.strategies.OneShotMagnitude):
        def prune(self, context):
            seen.update({n: w.clone() for n, w in context.weights.items()})
            return super().prune(context)

    plain = tl.find_ticket(make_model(), train, strategy=Record(remaining=0.5), rounds=1)
    dense = dict(seen)
    tl.find_ticket(make_model(), train, strategy=Record(remaining=0.5), rounds=1, rewind_iteration="auto", data=DATA)
    assert all(torch.equal(dense[n], seen[n]) for n in dense)
    assert plain.history[0]["metrics"]["iterations"] == STEPS


def test_auto_resumes_with_the_iteration_it_picked(tmp_path):
    first = tl.find_ticket(make_model(), train, rewind_iteration="auto", data=DATA, rounds=1, checkpoint_dir=tmp_path)
    again = tl.find_ticket(make_model(), train, rewind_iteration="auto", data=DATA, rounds=2, checkpoint_dir=tmp_path)
    assert again.history[0]["instability"] == first.history[0]["instability"]
    assert again.rewind.iteration == first.history[0]["rewind_iteration"]
    assert [r["round"] for r in again.history] == [0, 1, 2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rewind_iteration": "auto"}, "pass data="),
        ({"rewind_iteration": "late", "data": DATA}, "rewind_iteration='late'"),
        ({"rewind_iteration": -1}, "rewind_iteration"),
        ({"rewind_iteration": 5, "strategy_options": {"rewind_iteration": 3}}, "set it in one place"),
        ({"rewind_iteration": "auto", "data": DATA, "strategy": "synflow"}, "no dense run"),
        ({"rewind_iteration": {"points": 1}}, "rewind_iteration"),
    ],
)
def test_bad_rewind_settings_are_refused_before_anything_trains(kwargs, match):
    calls = []
    model = make_model()
    kwargs.setdefault("strategy", "imp")
    if kwargs["strategy"] == "synflow":
        kwargs["data"] = DATA
    with pytest.raises((ValueError, TypeError), match=match):
        tl.find_ticket(model, lambda m, c: calls.append(1), rounds=1, **kwargs)
    assert calls == []


def test_an_explicit_rewind_iteration_is_used_like_the_strategy_option():
    ticket = tl.find_ticket(make_model(), train, rewind_iteration=5, rounds=1)
    assert ticket.rewind.iteration == 5 and ticket.config["rewind_iteration"] == 5


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"points": 1}, "points=1"),
        ({"threshold": -0.1}, "threshold=-0.1"),
        ({"candidates": []}, "candidates is empty"),
        ({"candidates": [0, -2]}, "candidates holds -2"),
        ({"candidates": "0, 4"}, "candidates must be"),
        ({"error": "accuracy"}, "error must be callable"),
    ],
)
def test_bad_auto_rewind_options_name_the_option(options, match):
    with pytest.raises((ValueError, TypeError), match=match):
        AutoRewind(**options)
