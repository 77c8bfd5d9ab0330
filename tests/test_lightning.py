"""``torch_lottery.lightning.LotteryTicket`` against real Lightning; Lightning's ``ModelPruning`` with our methods."""

from __future__ import annotations

import copy
import importlib
import inspect
import sys

import pytest
import torch
from torch import nn

import torch_lottery as tl
from torch_lottery import _layout

L = pytest.importorskip("lightning.pytorch")

from torch_lottery.lightning import LotteryTicket  # noqa: E402 (after the importorskip)

BATCHES = 4  # optimizer steps per epoch


class Net(L.LightningModule):
    """A tiny regression model with a BatchNorm (buffers to rewind); Adam + a step scheduler, or plain SGD."""

    def __init__(self, adam: bool = False) -> None:
        super().__init__()
        self.adam = adam
        self.net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        if not self.adam:
            return torch.optim.SGD(self.parameters(), lr=0.1)
        optimizer = torch.optim.Adam(self.parameters(), lr=0.01)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def data() -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8 * BATCHES, 4, generator=g), torch.randn(8 * BATCHES, 1, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)  # fixed order


def model(adam: bool = False) -> Net:
    torch.manual_seed(0)
    return Net(adam)


def trainer(max_epochs: int, callbacks: list, checkpoints: str | None = None) -> L.Trainer:
    if checkpoints is not None:
        callbacks = [*callbacks, L.callbacks.ModelCheckpoint(dirpath=checkpoints, every_n_epochs=1, save_top_k=-1)]
    return L.Trainer(
        max_epochs=max_epochs,
        callbacks=callbacks,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=checkpoints is not None,
        num_sanity_val_steps=0,
    )


def masks(module: nn.Module) -> dict[str, torch.Tensor]:
    return {q: tl.get_mask(m, n).bool().clone() for q, m, n in tl.named_prunable_parameters(module)}


class Spy(L.Callback):
    """Copies the state at global step ``k`` and at the start of every round (after LotteryTicket's rewind)."""

    def __init__(self, k: int, epochs_per_round: int = 1) -> None:
        self.k, self.epochs_per_round = k, epochs_per_round
        self.at_k: dict | None = None
        self.starts: list[dict] = []
        self.ends: list[dict] = []

    def _state(self, trainer) -> dict:
        module = trainer.lightning_module
        scheduler = trainer.lr_scheduler_configs[0].scheduler if trainer.lr_scheduler_configs else None
        return {
            "tensors": _layout.snapshot(module),  # every parameter (the ``_orig`` values) and buffer
            "masks": masks(module),
            "optimizer": copy.deepcopy(trainer.optimizers[0].state_dict()),
            "scheduler": copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None,
        }

    def on_train_start(self, trainer, pl_module):
        if self.k == 0:
            self.at_k = self._state(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.k and self.at_k is None:
            self.at_k = self._state(trainer)

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch and trainer.current_epoch % self.epochs_per_round == 0:
            self.starts.append(self._state(trainer))

    def on_train_epoch_end(self, trainer, pl_module):
        self.ends.append(self._state(trainer))


def parameters_of(state: dict, module: nn.Module) -> dict[str, torch.Tensor]:
    names = {q for q, _, _ in _layout.named_tensors(module)}
    return {q: t for q, t in state["tensors"].items() if q in names}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def surviving(count: int, rate: float, rounds: int) -> list[int]:
    out = [count]
    for _ in range(rounds):
        out.append(out[-1] - int(round(rate * out[-1])))
    return out


@pytest.mark.parametrize("k", [0, 3])
def test_rounds_shrink_the_masks_to_each_target_and_the_reset_really_resets(k):
    net = model()
    init = _layout.snapshot(net)
    options = {"rate": 0.5, "rate_multipliers": {"net.3.weight": 0.5}}  # the output layer at half rate
    lottery = LotteryTicket(rounds=2, rewind_iteration=k, strategy_options=options)
    spy = Spy(k)
    fit = trainer(max_epochs=10, callbacks=[lottery, spy])  # more than needed: the last round ends fit
    fit.fit(net, data())

    assert fit.current_epoch == lottery.max_epochs == 3
    expected = {"net.0.weight": surviving(32, 0.5, 2), "net.3.weight": surviving(8, 0.25, 2)}
    previous = {q: torch.ones_like(m) for q, m in spy.starts[0]["masks"].items()}
    for r, start in enumerate(spy.starts, start=1):
        for name, mask in start["masks"].items():
            assert not bool((mask & ~previous[name]).any()), f"round {r} revived entries of {name}"
            assert int(mask.sum()) == expected[name][r], (r, name)
        previous = start["masks"]
        rewound = parameters_of(start, net)
        assert same(rewound, parameters_of(spy.at_k, net)), f"round {r} did not reset to step {k}"
        assert not same(rewound, parameters_of(spy.ends[r - 1], net))  # it changed what training left
    assert same(parameters_of(spy.at_k, net), {q: init[q] for q in parameters_of(spy.at_k, net)}) == (k == 0)

    ticket = lottery.ticket
    assert ticket.rewind.iteration == k and same(dict(ticket.rewind.items()), parameters_of(spy.at_k, net))
    assert same(ticket.masks, masks(net))
    assert [record["remaining"] for record in ticket.history] == [
        sum(c[r] for c in expected.values()) / 40 for r in range(3)
    ]
    assert ticket.history[-1]["stopped"] == "rounds=2 reached"
    assert ticket.history[0]["metrics"]["iterations"] == BATCHES and "loss" in ticket.history[0]["metrics"]
    assert fit.callback_metrics["lottery/remaining"].item() == pytest.approx(ticket.remaining)
    assert fit.callback_metrics["lottery/round"].item() == 2


@pytest.mark.parametrize("rewind_state", [True, False])
def test_rewind_state_rewinds_the_optimizer_the_scheduler_and_the_buffers_to_step_k(rewind_state):
    net = model(adam=True)
    lottery = LotteryTicket(rounds=2, rewind_iteration=2, rewind_state=rewind_state)
    spy = Spy(2)
    trainer(lottery.max_epochs, [lottery, spy]).fit(net, data())

    at_k = spy.at_k
    assert at_k["optimizer"]["state"][0]["step"].item() == 2
    for start in spy.starts:
        optimizer, buffers = start["optimizer"], ("net.1.running_mean", "net.1.num_batches_tracked")
        restored = [
            all(
                torch.equal(optimizer["state"][i][key], at_k["optimizer"]["state"][i][key])
                for i in at_k["optimizer"]["state"]
            )
            for key in ("exp_avg", "exp_avg_sq", "step")
        ]
        restored += [
            start["scheduler"] == at_k["scheduler"],
            optimizer["param_groups"] == at_k["optimizer"]["param_groups"],
        ]
        restored += [torch.equal(start["tensors"][b], at_k["tensors"][b]) for b in buffers]
        assert restored == [rewind_state] * len(restored)


def test_a_run_resumed_from_a_checkpoint_ends_as_the_uninterrupted_one(tmp_path):
    def run(checkpoints=None, ckpt_path=None, stop_after=None, rate=0.5):
        net = model(adam=True)
        lottery = LotteryTicket(rounds=2, epochs_per_round=2, rewind_iteration=2, rewind_state=True,
                                strategy_options={"rate": rate})  # fmt: skip

        class Stop(L.Callback):
            def on_train_epoch_end(self, trainer, pl_module):
                if trainer.current_epoch == stop_after:
                    trainer.should_stop = True

        fit = trainer(lottery.max_epochs, [lottery, Stop()], checkpoints)
        safe = {"weights_only": True} if ckpt_path and "weights_only" in inspect.signature(fit.fit).parameters else {}
        fit.fit(net, data(), ckpt_path=ckpt_path, **safe)  # (newer Lightning: weights_only=True)
        return net, lottery

    whole, whole_lottery = run()
    run(str(tmp_path), stop_after=3)  # interrupted after round 1 (epochs 2 and 3)
    checkpoint = str(tmp_path / "epoch=3-step=16.ckpt")
    state = torch.load(checkpoint, weights_only=True)["callbacks"]["LotteryTicket"]  # tensors and plain values only
    assert state["round"] == 1 and state["rewind"]["iteration"] == 2
    with pytest.raises(ValueError, match="other settings.*strategy_options"):
        run(ckpt_path=checkpoint, rate=0.3)
    resumed, resumed_lottery = run(ckpt_path=checkpoint)

    assert same(resumed.state_dict(), whole.state_dict())  # weights, masks, buffers
    a, b = whole_lottery.ticket, resumed_lottery.ticket
    assert same(a.masks, b.masks) and same(dict(a.rewind.items()), dict(b.rewind.items()))
    assert [r["masks_sha256"] for r in a.history] == [r["masks_sha256"] for r in b.history]
    assert [r["metrics"]["loss"] for r in a.history] == [r["metrics"]["loss"] for r in b.history]
    assert b.history[-1]["stopped"] == "rounds=2 reached" and b.remaining == 0.25


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"rounds": 0}, ValueError, "rounds=0"),
        ({"rounds": "2"}, TypeError, "rounds must be an int"),
        ({"epochs_per_round": 0}, ValueError, "epochs_per_round=0"),
        ({"rewind_iteration": -1}, ValueError, "rewind_iteration=-1"),
        ({"rewind_iteration": "auto"}, ValueError, "rewind_iteration='auto'"),
        ({"rewind_state": "yes"}, TypeError, "rewind_state must be a bool"),
        ({"verbose": 1}, TypeError, "verbose must be a bool"),
        ({"strategy_options": {"rate": 1.5}}, ValueError, "rate=1.5"),
        ({"strategy_options": {"scope": "everywhere"}}, ValueError, "scope='everywhere'"),
        ({"strategy_options": {"bogus": 1}}, TypeError, "bogus"),
        ({"strategy": "nope"}, tl.StrategyError, "unknown strategy 'nope'"),
        ({"strategy": "synflow"}, ValueError, "strategy='synflow' prunes at_init"),
        ({"strategy": "early_bird"}, ValueError, "strategy='early_bird' acts after every optimizer step"),
    ],
)
def test_bad_options_raise_naming_them(options, error, match):
    with pytest.raises(error, match=match):
        LotteryTicket(**{"rounds": 2, **options})


@pytest.mark.parametrize(
    ("options", "max_epochs", "match"),
    [
        ({}, 2, r"max_epochs=2\) ends fit before the last round.*max_epochs=3"),
        ({"parameters": ["net.9.weight"]}, 3, "parameters names 'net.9.weight'"),
        ({"rewind_iteration": BATCHES + 1}, 3, f"rewind_iteration={BATCHES + 1} lies beyond the dense round"),
    ],
)
def test_options_that_do_not_fit_the_run_raise_before_anything_trains(options, max_epochs, match):
    net = model()
    before = copy.deepcopy(net.state_dict())
    with pytest.raises(ValueError, match=match):
        trainer(max_epochs, [LotteryTicket(rounds=2, **options)]).fit(net, data())
    assert same(net.state_dict(), before)  # not trained, not pruned


def test_the_ticket_needs_a_fit():
    with pytest.raises(RuntimeError, match="no ticket yet"):
        LotteryTicket(rounds=1).ticket


def test_lightnings_model_pruning_runs_our_pruning_methods():
    """``ModelPruning`` takes a ``BasePruningMethod`` class with ``use_global_unstructured=True``: ours fit there."""
    runs = {}
    for method in ("l1_unstructured", tl.LotteryMagnitude):
        net = model()
        init = _layout.snapshot(net)
        pruning = L.callbacks.ModelPruning(
            pruning_fn=method,
            amount=0.5,
            use_global_unstructured=True,
            use_lottery_ticket_hypothesis=True,  # (ModelPruning's reset: to the start of fit)
            make_pruning_permanent=False,
        )
        spy = Spy(k=-1)  # sees each epoch's end after ModelPruning pruned (and reset)
        trainer(2, [pruning, spy]).fit(net, data())
        runs[method] = masks(net), parameters_of({"tensors": _layout.snapshot(net)}, net)
        first = spy.ends[0]["tensors"]
        assert all(torch.equal(first[q], init[q]) for q in ("net.0.weight", "net.3.weight"))  # reset to the init
    (stock_masks, stock_weights), (our_masks, our_weights) = runs.values()
    assert 0 < sum(int(m.sum()) for m in our_masks.values()) < 20  # pruned twice (0.5 of 40, then more)
    assert same(our_masks, stock_masks) and same(our_weights, stock_weights)  # exactly stock L1's masks


def test_importing_without_lightning_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)  # "not installed"
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "torch_lottery.lightning")
    with pytest.raises(ImportError, match=r'pip install "torch-lottery\[lightning\]"'):
        importlib.import_module("torch_lottery.lightning")
