"""torch_lottery/strategies/supermask.py, edge_popup.py, learned_supermask.py: scores trained over frozen weights."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import torch_lottery as tl
from torch_lottery.strategies import EdgePopup, LearnedSupermask, StepContext, SupermaskStrategy
from torch_lottery.strategies.base import keep_top
from torch_lottery.strategies.supermask import kaiming_uniform_scores, scores_name, straight_through
from torch_lottery.testing import check_prune, make_context

# -- a tiny separable task: the class is the side of a random hyperplane ----------------------------------
_G = torch.Generator().manual_seed(0)
X = torch.randn(256, 8, generator=_G)
_W = torch.randn(8, generator=_G)
Y = (X @ _W > 0).long()
X_TEST = torch.randn(512, 8, generator=_G)
Y_TEST = (X_TEST @ _W > 0).long()


def mlp(seed: int = 0, width: int = 64) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 2))


def accuracy(model: nn.Module) -> float:
    was = model.training
    model.eval()
    with torch.no_grad():
        out = float((model(X_TEST).argmax(dim=1) == Y_TEST).float().mean())
    model.train(was)
    return out


def full_batch(optimizer: torch.optim.Optimizer | None, steps: int, make=None, check=None):
    """A user's loop: ``steps`` full-batch steps of ``optimizer`` (or of ``make(model)``, built inside)."""

    def train(model, context):
        opt = optimizer if make is None else make(model)
        for step in range(1, steps + 1):
            opt.zero_grad()
            nn.functional.cross_entropy(model(X), Y).backward()
            opt.step()
            if make is not None:
                context.step()
            if check is not None:
                check(model, step)

    return train


def parameters_by_name(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter by its state_dict name (``0.weight_orig`` once pruned), detached copies."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def plain_pruned_keys(model: nn.Module) -> list[str]:
    """The state_dict keys of ``model`` once its weights are pruned the stock way."""
    twin = copy.deepcopy(model)
    for module in twin:
        if isinstance(module, nn.Linear):
            prune.identity(module, "weight")
    return sorted(twin.state_dict())


def step_context(model: nn.Module, pairs, optimizer=None) -> StepContext:
    """The StepContext of round 1 for ``pairs``: ``[(qualified name, (module, tensor name)), ...]``."""
    return StepContext(
        model, tuple(q for q, _ in pairs), [p for _, p in pairs], 1, 0, 1, None, lambda r: None, optimizer
    )


def start(strategy: SupermaskStrategy, model: nn.Module, optimizer=None, seed: int = 0) -> StepContext:
    """What the driver does before training: prune (install the starting masks), then begin."""
    context = make_context(model, seed=seed)
    masks = strategy.prune(context)
    pairs = []
    for name in context.names:
        module = model.get_submodule(name.rsplit(".", 1)[0])
        tl.fixed_mask(module, "weight", masks[name])
        pairs.append((name, (module, "weight")))
    step = step_context(model, pairs, optimizer)
    strategy.begin(step)
    return step


# -- the straight-through estimator and the score init -----------------------------------------------------
def test_straight_through_gives_the_hard_value_exactly_and_the_gradient_to_soft():
    soft = torch.tensor([0.1, 0.7, 2.5], dtype=torch.float64, requires_grad=True)
    hard = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    out = straight_through(hard, soft)
    assert torch.equal(out, hard)  # bit for bit: no hard + soft - soft rounding
    (out * torch.tensor([2.0, -3.0, 5.0], dtype=torch.float64)).sum().backward()
    assert soft.grad.tolist() == [2.0, -3.0, 5.0]


def test_kaiming_uniform_scores_are_bounded_by_one_over_sqrt_fan_in_and_seeded():
    weight = torch.empty(50, 9, 2, 2)
    scores = kaiming_uniform_scores(weight, torch.Generator().manual_seed(3))
    bound = 1 / math.sqrt(9 * 2 * 2)
    assert scores.shape == weight.shape and float(scores.abs().max()) <= bound
    assert float(scores.abs().max()) > 0.95 * bound  # the whole range is used
    assert abs(float(scores.mean())) < 0.1 * bound  # centred: the mean of 1800 draws is within 0.014 * bound
    assert torch.equal(scores, kaiming_uniform_scores(weight, torch.Generator().manual_seed(3)))


# -- hand computations on a tiny float64 layer -------------------------------------------------------------
SCORES = torch.tensor([[0.3, -0.9, 0.1], [-0.2, 0.5, -0.7]], dtype=torch.float64)
INPUTS = torch.tensor([[1.0, 2.0, -1.0], [0.5, -1.0, 3.0]], dtype=torch.float64)
COEFFS = torch.tensor([[1.0, -2.0], [3.0, 0.5]], dtype=torch.float64)  # loss = sum(output * COEFFS)


def tiny_layer() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2)).double()


def test_edge_popup_score_gradient_is_the_weight_gradient_times_the_weight_through_abs():
    model = tiny_layer()
    w = model[0].weight.detach().clone()
    b = model[0].bias.detach().clone()
    strategy = EdgePopup(remaining=0.5)
    step = start(strategy, model)
    scores = model[0].weight_scores
    with torch.no_grad():
        scores.copy_(SCORES)
    out = model(INPUTS)
    # top 3 of |s| = 0.9, 0.7, 0.5: entries (0, 1), (1, 2), (1, 1)
    mask = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    assert torch.equal(out, INPUTS @ (w * mask).T + b)
    (out * COEFFS).sum().backward()
    grad_effective = COEFFS.T @ INPUTS  # d loss / d (w * m), by hand
    expected = grad_effective * w * SCORES.sign()
    assert torch.allclose(scores.grad, expected, rtol=0, atol=1e-12)
    positive = SCORES > 0  # where s > 0 it is the paper's d loss / d s = g * w
    assert torch.allclose(scores.grad[positive], (grad_effective * w)[positive], rtol=0, atol=1e-12)
    assert model[0].weight_orig.grad is None and model[0].bias.grad is None  # frozen: nothing reaches them
    strategy.end(step)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_learned_supermask_score_gradient_goes_through_the_sample_to_the_sigmoid(mode):
    model = tiny_layer()
    w = model[0].weight.detach().clone()
    b = model[0].bias.detach().clone()
    strategy = LearnedSupermask(final="threshold")
    step = start(strategy, model)
    scores = model[0].weight_scores
    with torch.no_grad():
        scores.copy_(SCORES)
    model.train(mode == "train")
    out = model(INPUTS)
    mask = (model[0].weight.detach() != 0).double()  # the mask this forward used (no weight is 0)
    if mode == "eval":  # final="threshold": the most likely mask, sigmoid(s) > 1/2
        assert torch.equal(mask, (SCORES > 0).double())
    assert torch.equal(out, INPUTS @ (w * mask).T + b)
    (out * COEFFS).sum().backward()
    sigma = torch.sigmoid(SCORES)
    expected = (COEFFS.T @ INPUTS) * w * sigma * (1 - sigma)  # g * w * sigmoid'(s), whatever was sampled
    assert torch.allclose(scores.grad, expected, rtol=0, atol=1e-12)
    strategy.end(step)


def test_learned_supermask_samples_bernoulli_of_the_sigmoid_in_train_mode():
    model = nn.Sequential(nn.Linear(40, 50)).double()
    strategy = LearnedSupermask()
    step = start(strategy, model)
    with torch.no_grad():
        model[0].weight_scores.copy_(torch.linspace(-3, 3, 50, dtype=torch.float64).repeat(40, 1).T)
    kept = torch.zeros(50, 40, dtype=torch.float64)
    for _ in range(100):
        model(torch.zeros(1, 40, dtype=torch.float64))
        kept += (model[0].weight.detach() != 0).double()
    frequency = kept.mean(dim=1) / 100  # per row: 4000 draws of one probability
    assert torch.allclose(frequency, torch.sigmoid(torch.linspace(-3, 3, 50, dtype=torch.float64)), atol=0.04)
    strategy.end(step)


# -- top-k exact per layer ---------------------------------------------------------------------------------
def test_edge_popup_keeps_exactly_k_of_the_largest_abs_scores_in_each_layer():
    model = nn.Sequential(nn.Linear(7, 13), nn.ReLU(), nn.Linear(13, 3))
    strategy = EdgePopup(remaining=0.3)
    masks = check_prune(strategy, make_context(model))
    assert {n: int(m.sum()) for n, m in masks.items()} == {"0.weight": round(0.3 * 91), "2.weight": round(0.3 * 39)}
    step = start(strategy, model)
    with torch.no_grad():
        for module in (model[0], model[2]):
            module.weight_scores.add_(torch.randn_like(module.weight_scores))
    final = strategy.end(step)
    for name, module in (("0.weight", model[0]), ("2.weight", model[2])):
        assert not hasattr(module, "weight_scores")
        assert int(final[name].sum()) == strategy.count(module.weight_orig.numel()) == int(masks[name].sum())
    assert strategy.count(1) == 1 and EdgePopup(remaining=0.01).count(10) == 1  # at least one survivor


def test_the_final_edge_popup_mask_is_the_top_k_of_the_trained_scores():
    model = nn.Sequential(nn.Linear(6, 5))
    strategy = EdgePopup(remaining=0.4)
    step = start(strategy, model)
    trained = torch.randn(5, 6, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        model[0].weight_scores.copy_(trained)
    final = strategy.end(step)
    assert torch.equal(final["0.weight"], keep_top(trained.abs(), 12))
    kept, dropped = trained.abs()[final["0.weight"]], trained.abs()[~final["0.weight"]]
    assert float(kept.min()) >= float(dropped.max())


# -- end to end: the weights never move, the ticket scores well --------------------------------------------
def check_clean(model: nn.Module, initial: dict[str, torch.Tensor]) -> None:
    """The model is a plain pruned model: no scores, no hooks but pruning's, weights bit for bit, requires_grad on."""
    assert not any(k.endswith("_scores") for k in model.state_dict())
    assert sorted(model.state_dict()) == plain_pruned_keys(mlp(width=model[0].out_features))
    for key, value in model.named_parameters():
        assert torch.equal(value, initial[key]), key  # bit for bit
        assert value.requires_grad, key  # restored
    for module in model.modules():
        assert all(isinstance(h, prune.BasePruningMethod) for h in module._forward_pre_hooks.values())


def pruned_name(key: str) -> str:
    return key.replace("weight", "weight_orig")


def test_edge_popup_with_the_optimizer_made_before_leaves_every_weight_bit_identical_and_finds_a_good_ticket():
    model = mlp()
    initial = {pruned_name(k): v.detach().clone() for k, v in model.named_parameters()}
    before = accuracy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9, weight_decay=1e-3)
    strategy = EdgePopup(remaining=0.5, every=5)
    seen = []

    def buffer_follows(model, step):  # update writes the top-k of the scores now into <name>_mask
        if step % 5 == 0:
            for module in (model[0], model[2]):
                top = keep_top(module.weight_scores.detach().abs(), strategy.count(module.weight_orig.numel()))
                seen.append(torch.equal(module.weight_mask.bool(), top))

    ticket = tl.find_ticket(
        model, full_batch(optimizer, 100, check=buffer_follows), strategy=strategy, optimizer=optimizer
    )
    check_clean(model, initial)
    assert len(optimizer.param_groups) == 1 and len(optimizer.param_groups[0]["params"]) == 4
    assert all(any(p is q for q in model.parameters()) for p in optimizer.state)  # no state of the scores left
    assert seen and all(seen)
    starting = EdgePopup(remaining=0.5).prune(make_context(mlp()))
    for name, mask in ticket.masks.items():
        assert int(mask.sum()) == round(0.5 * mask.numel())  # exactly k per tensor
        assert not torch.equal(mask, starting[name])  # the scores moved the masks
        assert torch.equal(tl.get_mask(model.get_submodule(name[0]), "weight").bool(), mask)
    assert [t["iteration"] for t in strategy.trace] == list(range(5, 101, 5))
    assert strategy.trace[0]["changed"] > 0 and all(t["remaining"] == 0.5 for t in strategy.trace)
    after = accuracy(model)  # the pruned model, its weights the untrained initial ones
    assert after > 0.75 and after > before + 0.2, (before, after)


def test_edge_popup_with_the_optimizer_built_inside_train_trains_the_registered_scores():
    model = mlp(seed=1)
    initial = {pruned_name(k): v.detach().clone() for k, v in model.named_parameters()}
    before = accuracy(model)
    held = []

    def make(model):
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9, weight_decay=1e-3)
        held.extend(p for group in optimizer.param_groups for p in group["params"])
        return optimizer

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the scores were trained: no warning
        ticket = tl.find_ticket(model, full_batch(None, 100, make=make), strategy="edge_popup", seed=1)
    assert sum(p.shape == (64, 8) for p in held) == 2  # the weight and its scores
    check_clean(model, initial)
    assert all(int(m.sum()) == m.numel() // 2 for m in ticket.masks.values())
    after = accuracy(model)
    assert after > 0.75 and after > before + 0.2, (before, after)


@pytest.mark.parametrize("final", ["sample", "threshold"])
def test_learned_supermask_leaves_the_weights_untrained_learns_its_density_and_scores_well(final):
    model = mlp(seed=3)
    initial = {pruned_name(k): v.detach().clone() for k, v in model.named_parameters()}
    before = accuracy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=10.0, momentum=0.9, weight_decay=1e-4)
    strategy = LearnedSupermask(final=final)
    ticket = tl.find_ticket(model, full_batch(optimizer, 150), strategy=strategy, optimizer=optimizer, seed=3)
    check_clean(model, initial)
    assert len(optimizer.param_groups) == 1
    kept = sum(int(m.sum()) for m in ticket.masks.values())
    total = sum(m.numel() for m in ticket.masks.values())
    assert ticket.history[-1]["remaining"] == kept / total  # the learned density, recorded with the round
    assert 0 < kept < total
    assert len(strategy.trace) == 15 and all(0 < t["expected"] < 1 for t in strategy.trace)
    assert strategy.trace[-1]["expected"] != 0.5  # the density moved from the initial 1/2
    after = accuracy(model)
    assert after > 0.75 and after > before + 0.2, (before, after)


def test_freeze_pruned_trains_the_biases_but_not_the_pruned_weights():
    model = mlp(seed=2)
    initial = parameters_by_name(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    strategy = EdgePopup(freeze="pruned")
    tl.find_ticket(model, full_batch(optimizer, 10), strategy=strategy, optimizer=optimizer, seed=2)
    assert torch.equal(model[0].weight_orig, initial["0.weight"]) and torch.equal(
        model[2].weight_orig, initial["2.weight"]
    )
    assert not torch.equal(model[0].bias, initial["0.bias"]) and not torch.equal(model[2].bias, initial["2.bias"])


def test_a_tensor_the_user_froze_stays_frozen_and_batchnorm_affine_weights_are_frozen_too():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    model[3].bias.requires_grad_(False)
    initial = parameters_by_name(model)
    stats = model[1].running_mean.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
    tl.find_ticket(model, full_batch(optimizer, 5), strategy="edge_popup", optimizer=optimizer)
    for key, value in model.named_parameters():
        assert torch.equal(value, initial[key.replace("_orig", "")]), key
    assert model[1].weight.requires_grad and not model[3].bias.requires_grad  # as they were
    assert not torch.equal(model[1].running_mean, stats)  # statistics, not weights: they follow the masked net


def test_a_gradient_held_from_before_the_run_cannot_move_the_frozen_weights():
    model = mlp()
    nn.functional.cross_entropy(model(X), Y).backward()  # every parameter holds a gradient now
    initial = {pruned_name(k): v.detach().clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9, weight_decay=1e-2)

    def train(model, context):  # zeroes gradients in place: a stale one would stay, and decay would apply
        for _ in range(3):
            optimizer.zero_grad(set_to_none=False)
            nn.functional.cross_entropy(model(X), Y).backward()
            optimizer.step()

    tl.find_ticket(model, train, strategy="edge_popup", optimizer=optimizer)
    check_clean(model, initial)
    assert all(p.grad is None for p in model.parameters())


# -- errors, and what is left after them ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["edge_popup", "learned_supermask"])
def test_a_training_loop_that_raises_leaves_the_model_clean(name):
    model = mlp()
    initial = {pruned_name(k): v.detach().clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9, weight_decay=1e-3)

    def train(model, context):
        full_batch(optimizer, 3)(model, context)
        raise RuntimeError("the loop broke")

    with pytest.raises(RuntimeError, match="the loop broke"):
        tl.find_ticket(model, train, strategy=name, optimizer=optimizer)
    check_clean(model, initial)
    assert len(optimizer.param_groups) == 1 and len(optimizer.state) == 0  # the frozen tensors never stepped
    assert all(p.grad is None for p in model.parameters())  # the frozen tensors got no gradient
    for module in (model[0], model[2]):
        assert torch.equal(module.weight, module.weight_orig * module.weight_mask)  # from the buffer again
        assert module.weight.grad_fn is None  # no graph through the (removed) scores


def test_untrained_scores_warn_that_nothing_trained_them():
    model = mlp()
    other = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)

    def train(model, context):  # an optimizer without the scores (and find_ticket got none)
        for _ in range(3):
            other.zero_grad()
            nn.functional.cross_entropy(model(X), Y).backward()
            other.step()

    with pytest.warns(RuntimeWarning, match="the scores never changed"):
        ticket = tl.find_ticket(model, train, strategy="edge_popup")
    assert torch.equal(ticket.masks["0.weight"], EdgePopup().prune(make_context(mlp()))["0.weight"])


@pytest.mark.parametrize(
    ("factory", "kwargs", "error", "words"),
    [
        (EdgePopup, {"remaining": 0.0}, ValueError, "remaining=0.0"),
        (EdgePopup, {"remaining": 1.5}, ValueError, "remaining=1.5"),
        (EdgePopup, {"remaining": "half"}, TypeError, "remaining must be a number, got 'half'"),
        (EdgePopup, {"every": 0}, ValueError, "every=0"),
        (EdgePopup, {"every": 2.5}, TypeError, "every must be an int, got 2.5"),
        (EdgePopup, {"freeze": "weights"}, ValueError, "freeze='weights' is not one of all, pruned"),
        (LearnedSupermask, {"score_init": "xavier"}, ValueError, "score_init='xavier' is not one of kaiming_uniform"),
        (LearnedSupermask, {"score_init": math.inf}, ValueError, "score_init=inf must be finite"),
        (LearnedSupermask, {"score_init": True}, TypeError, "score_init must be a number"),
        (LearnedSupermask, {"final": "mode"}, ValueError, "final='mode' is not one of sample, threshold"),
        (LearnedSupermask, {"every": -1}, ValueError, "every=-1"),
    ],
)
def test_bad_options_are_refused_naming_the_option_and_value(factory, kwargs, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(")):
        factory(**kwargs)


def test_the_built_ins_are_registered_and_their_options_round_trip():
    assert tl.get_strategy("edge_popup") is EdgePopup and tl.get_strategy("learned_supermask") is LearnedSupermask
    for strategy in (
        EdgePopup(remaining=0.2, every=3, freeze="pruned"),
        LearnedSupermask("kaiming_uniform", "threshold"),
    ):
        assert type(strategy)(**strategy.options()).options() == strategy.options()
        assert strategy.when == "during_training"


def test_a_module_without_room_for_the_scores_or_an_attention_out_proj_is_refused_before_training():
    model = mlp()
    model[0].weight_scores = nn.Parameter(torch.zeros(1))
    calls = []
    with pytest.raises(ValueError, match="'0.weight': its module already has an attribute 'weight_scores'"):
        tl.find_ticket(model, lambda m, c: calls.append(1), strategy="edge_popup")
    attention = nn.MultiheadAttention(4, 2)
    with pytest.raises(ValueError, match="'out_proj.weight' is the out_proj weight of an nn.MultiheadAttention"):
        tl.find_ticket(attention, lambda m, c: calls.append(1), strategy="learned_supermask")
    assert calls == [] and not hasattr(model[2], "weight_mask")


def test_entries_pruned_before_the_run_stay_pruned_and_too_few_survivors_are_refused():
    model = mlp()
    before = {i: (torch.arange(model[i].weight.numel()) % 2 == 0).view_as(model[i].weight) for i in (0, 2)}
    for i, mask in before.items():
        tl.fixed_mask(model[i], "weight", mask)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    ticket = tl.find_ticket(
        model,
        full_batch(optimizer, 5),
        strategy="edge_popup",
        strategy_options={"remaining": 0.25},
        optimizer=optimizer,
    )
    for i, mask in before.items():
        assert not bool((ticket.masks[f"{i}.weight"] & ~mask).any())
        assert int(ticket.masks[f"{i}.weight"].sum()) == round(0.25 * mask.numel())
    with pytest.raises(
        ValueError, match="'0.weight': remaining=0.75 keeps 384 of the 512 entries of a tensor, but only 128"
    ):
        tl.find_ticket(model, full_batch(optimizer, 1), strategy="edge_popup", strategy_options={"remaining": 0.75})
    assert all(torch.equal(tl.get_mask(model[i], "weight").bool(), ticket.masks[f"{i}.weight"]) for i in (0, 2))


def test_the_shuffle_and_invert_controls_are_refused():
    model = mlp()
    calls = []
    with pytest.raises(ValueError, match="control='shuffle' permutes the masks a strategy computes; EdgePopup"):
        tl.find_ticket(model, lambda m, c: calls.append(1), strategy="edge_popup", control="shuffle")
    with pytest.raises(ValueError, match="control='invert' inverts a strategy's scores"):
        tl.find_ticket(model, lambda m, c: calls.append(1), strategy="learned_supermask", control="invert")
    assert calls == [] and not hasattr(model[0], "weight_mask")


def test_a_tied_weight_gets_one_score_tensor_and_one_mask():
    torch.manual_seed(0)
    emb = nn.Embedding(10, 6)
    head = nn.Linear(6, 10, bias=False)
    head.weight = emb.weight
    model = nn.Sequential(emb, head)
    tokens = torch.arange(10)
    initial = emb.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)

    def train(model, context):
        for _ in range(5):
            optimizer.zero_grad()
            assert model[0].weight_scores is model[1].weight_scores
            nn.functional.cross_entropy(model(tokens), tokens).backward()
            optimizer.step()

    ticket = tl.find_ticket(model, train, strategy="edge_popup", optimizer=optimizer)
    assert torch.equal(ticket.masks["0.weight"], ticket.masks["1.weight"]) and int(ticket.masks["0.weight"].sum()) == 30
    assert torch.equal(emb.weight_orig, initial) and emb.weight_orig is head.weight_orig


def test_begin_without_prune_and_a_second_begin_are_refused():
    model = mlp()
    tl.fixed_mask(model[0], "weight", torch.ones(64, 8))
    context = step_context(model, [("0.weight", (model[0], "weight"))])
    with pytest.raises(RuntimeError, match="call prune first"):
        EdgePopup().begin(context)
    strategy = EdgePopup()
    start_context = start(strategy, mlp())
    with pytest.raises(ValueError, match="already has an attribute 'weight_scores'"):
        strategy.begin(start_context)
    with pytest.warns(RuntimeWarning, match="the scores never changed"):
        assert strategy.end(start_context) is not None  # the first install is still whole, and comes out
    layer = start_context.model[0]
    assert not hasattr(layer, "weight_scores") and layer.weight_orig.requires_grad and layer.bias.requires_grad
    assert scores_name("weight") == "weight_scores"


@pytest.mark.parametrize("name", ["edge_popup", "learned_supermask"])
def test_a_seed_gives_the_same_ticket(name):
    def run(seed):
        model = mlp(width=16)
        optimizer = torch.optim.SGD(model.parameters(), lr=5.0, momentum=0.9)
        return tl.find_ticket(model, full_batch(optimizer, 10), strategy=name, optimizer=optimizer, seed=seed).masks

    first, again, other = run(0), run(0), run(1)
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert any(not torch.equal(first[n], other[n]) for n in first)
