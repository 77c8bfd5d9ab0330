"""Bad input across the public API and the CLI, as one table.

Every row is a bad call (wrong types, NaN/Inf weights or scores, empty parameter
lists, tensors on a device without data or on several devices in one pool, amounts
that would empty a tensor, rewind points, tickets and checkpoints of another
architecture, unknown strategies, plugins that raise, damaged files). Each API row
runs on a fresh and on an already pruned model; the error must have the expected
type and name the argument and the value, and the model (state_dict, parameter
and buffer names and objects, forward pre-hooks, computed masked weights,
train/eval flags) and every file in the working folder must be exactly as they
were. CLI rows run ``torch_lottery.cli.main`` and check the exit status, the single
error line, the absence of a traceback and the files.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import torch_lottery as tl
from torch_lottery import cli
from torch_lottery.export import SparseState, export, to_sparse_inference
from torch_lottery.plugins.manager import PluginError, StrategyError
from torch_lottery.strategies.base import PruneContext

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = {
    "types": "wrong types and values",
    "nonfinite": "NaN or infinite weights, scores or rewind values",
    "empty": "empty parameter lists",
    "devices": "tensors without data (meta device) or on several devices in one pool",
    "emptying": "amounts that would empty a tensor",
    "architecture": "rewind points, tickets and checkpoints of another architecture",
    "strategy": "unknown strategy names and options",
    "plugin": "plugins and strategies that raise",
    "files": "missing, damaged or foreign files",
}


# --------------------------------------------------------------------------- the world of one row
def make_net(width: int = 5) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, 3))


class Env:
    """A model (fresh, or pruned once with a rewind point), another architecture, and a folder."""

    def __init__(self, tmp: Path, pruned: bool) -> None:
        self.tmp = tmp
        self.model = make_net()
        self.point = tl.RewindPoint.capture(self.model)
        if pruned:
            tl.lottery_magnitude(self.model[0], "weight", amount=0.3, rewind_point=self.point)
            tl.lottery_magnitude(self.model[2], "weight", amount=0.3, rewind_point=self.point)
        self.other = make_net(width=4)  # same names, other shapes
        self.other_point = tl.RewindPoint.capture(self.other)

    @property
    def params(self):
        return [(self.model[0], "weight"), (self.model[2], "weight")]

    def poison(self, value: float, layer: int = 0) -> None:
        """Put ``value`` into a surviving entry of ``model[layer].weight`` (and refresh the computed weight)."""
        module = self.model[layer]
        orig = module.weight_orig if hasattr(module, "weight_orig") else module.weight
        mask = tl.get_mask(module, "weight").reshape(-1)
        index = int(mask.nonzero()[0])
        with torch.no_grad():
            orig.view(-1)[index] = value
        self.model(torch.zeros(1, 6))  # stock global_unstructured reads the computed weight

    def context(self, weights=None, masks=None) -> PruneContext:
        names = ("0.weight", "2.weight")
        tensors = (self.model[0].weight, self.model[2].weight)
        weights = weights or {n: p.detach() for n, p in zip(names, tensors, strict=True)}
        masks = masks or {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
        return PruneContext(self.model, names, weights, masks, None, 1, torch.Generator().manual_seed(0))


def no_training(model, context):
    """A train function that changes nothing (so a failing run leaves the model as it was)."""


def train(model, context):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(4, 6)).pow(2).mean().backward()
        optimizer.step()
        context.step()


class RaisingObserver:
    @tl.hookimpl
    def torch_lottery_round_start(self, round_index):
        raise RuntimeError("observer broke")


class BadHookSignature:
    @tl.hookimpl
    def torch_lottery_round_start(self, round_index, no_such_argument):
        pass


class BrokenStrategy(tl.Strategy):
    name = "broken"

    def prune(self, context):
        raise RuntimeError("strategy broke")


class BrokenRegistration:
    @tl.hookimpl
    def torch_lottery_register_strategies(self, register):
        register("ghost", BrokenStrategy)
        raise RuntimeError("registration broke")


def flip_tensor_byte(path: Path) -> None:
    """Flip one bit inside the first tensor's data (torch.load does not notice; the digest does)."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if re.search(r"/data/\d+$", i.filename) and i.file_size)
    name_length, extra_length = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    raw[info.header_offset + 30 + name_length + extra_length] ^= 0x10
    path.write_bytes(bytes(raw))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def finished_run(e: Env, folder: str = "run", model: nn.Module | None = None, rounds: int = 1) -> Path:
    path = e.tmp / folder
    tl.find_ticket(model if model is not None else make_net(), train, rounds=rounds, checkpoint_dir=path)
    return path


# --------------------------------------------------------------------------- the table
@dataclass
class Case:
    id: str
    category: str
    call: Callable[[Env], Any]
    error: type[BaseException]
    words: tuple[str, ...]
    setup: Callable[[Env], Any] | None = None
    states: tuple[str, ...] = ("fresh", "pruned")


def lm(e, **kw):
    return tl.lottery_magnitude(e.model[0], "weight", **{"amount": 0.2, **kw})


def gm(e, **kw):
    return tl.global_magnitude(kw.pop("parameters", e.params), **{"amount": 0.2, **kw})


def find(e, **kw):
    return tl.find_ticket(kw.pop("model", e.model), kw.pop("train", no_training), **{"rounds": 1, **kw})


CASES = [
    # -- wrong types and values --------------------------------------------------------------------------
    Case("amount-str", "types", lambda e: lm(e, amount="0.2"), TypeError, ("amount", "'0.2'")),
    Case("amount-bool", "types", lambda e: lm(e, amount=True), TypeError, ("amount", "True")),
    Case("amount-tensor", "types", lambda e: lm(e, amount=torch.tensor(0.2)), TypeError, ("amount", "Tensor")),
    Case("amount-nan", "types", lambda e: lm(e, amount=float("nan")), ValueError, ("amount=nan",)),
    Case("amount-negative", "types", lambda e: lm(e, amount=-0.1), ValueError, ("amount=-0.1",)),
    Case("amount-above-one", "types", lambda e: lm(e, amount=1.5), ValueError, ("amount=1.5",)),
    Case("name-int", "types", lambda e: tl.lottery_magnitude(e.model[0], 3, 0.2), TypeError, ("name", "3")),
    Case(
        "name-unknown",
        "types",
        lambda e: tl.lottery_magnitude(e.model[0], "wieght", 0.2),
        ValueError,
        ("name='wieght'", "weight"),
    ),
    Case(
        "module-str", "types", lambda e: tl.lottery_magnitude("layer", "weight", 0.2), TypeError, ("module", "'layer'")
    ),
    Case(
        "criterion-unknown",
        "types",
        lambda e: lm(e, criterion="biggest"),
        ValueError,
        ("criterion='biggest'", "large_final"),
    ),
    Case("rewind-point-list", "types", lambda e: lm(e, rewind_point=[1, 2]), TypeError, ("rewind_point", "[1, 2]")),
    Case("rewind-flag-str", "types", lambda e: lm(e, rewind="no"), TypeError, ("rewind", "'no'")),
    Case(
        "global-parameters-str", "types", lambda e: gm(e, parameters="weights"), TypeError, ("parameters", "'weights'")
    ),
    Case(
        "global-triple",
        "types",
        lambda e: gm(e, parameters=[(e.model[0], "weight", 1)]),
        TypeError,
        ("parameters", "(module, name) pairs"),
    ),
    Case(
        "global-twice",
        "types",
        lambda e: gm(e, parameters=e.params + e.params[:1]),
        ValueError,
        ("parameters", "twice"),
    ),
    Case(
        "global-multipliers-list",
        "types",
        lambda e: gm(e, rate_multipliers=[0.5]),
        TypeError,
        ("rate_multipliers", "[0.5]"),
    ),
    Case(
        "global-multiplier-negative",
        "types",
        lambda e: gm(e, rate_multipliers={e.params[1]: -1.0}),
        ValueError,
        ("rate_multipliers", "-1.0"),
    ),
    Case(
        "global-min-remaining-negative", "types", lambda e: gm(e, min_remaining=-1), ValueError, ("min_remaining=-1",)
    ),
    Case("global-exclude-module", "types", lambda e: gm(e, exclude=e.model[0]), TypeError, ("exclude",)),
    Case(
        "global-scores-list",
        "types",
        lambda e: gm(e, importance_scores=[torch.ones(5, 6)]),
        TypeError,
        ("importance_scores",),
    ),
    Case(
        "scores-shape",
        "types",
        lambda e: lm(e, importance_scores=torch.ones(6, 5)),
        ValueError,
        ("importance_scores", "(6, 5)"),
    ),
    Case(
        "permutation-seed-float",
        "types",
        lambda e: tl.random_permutation(e.model[0], "weight", seed=1.5),
        TypeError,
        ("seed", "1.5"),
    ),
    Case(
        "permutation-seed-and-generator",
        "types",
        lambda e: tl.random_permutation(e.model[0], "weight", seed=1, generator=torch.Generator()),
        ValueError,
        ("generator", "seed"),
    ),
    Case(
        "fixed-mask-list", "types", lambda e: tl.fixed_mask(e.model[0], "weight", [[1]]), TypeError, ("mask", "[[1]]")
    ),
    Case(
        "fixed-mask-values",
        "types",
        lambda e: tl.fixed_mask(e.model[0], "weight", torch.full((5, 6), 2.0)),
        ValueError,
        ("mask", "0 and 1"),
    ),
    Case(
        "fixed-mask-shape",
        "types",
        lambda e: tl.fixed_mask(e.model[0], "weight", torch.ones(6, 5)),
        ValueError,
        ("mask", "(6, 5)"),
    ),
    Case(
        "capture-iteration-negative",
        "types",
        lambda e: tl.RewindPoint.capture(e.model, iteration=-1),
        ValueError,
        ("iteration=-1",),
    ),
    Case("capture-model-str", "types", lambda e: tl.RewindPoint.capture("model"), TypeError, ("model", "'model'")),
    Case("rewind-point-load-int", "types", lambda e: tl.RewindPoint.load(3), TypeError, ("path", "3")),
    Case("ticket-masks-list", "types", lambda e: tl.Ticket([1], {}), TypeError, ("masks", "[1]")),
    Case(
        "ticket-strict-str",
        "types",
        lambda e: tl.Ticket({"0.weight": torch.ones(5, 6)}, e.point).apply(e.model, strict="yes"),
        TypeError,
        ("strict", "'yes'"),
    ),
    Case("ticket-save-none", "types", lambda e: tl.Ticket({}, {}).save(None), TypeError, ("path", "None")),
    Case(
        "ticket-exclude-str",
        "types",
        lambda e: tl.Ticket({"0.weight": torch.ones(5, 6)}, e.point).apply(e.model, exclude="2"),
        TypeError,
        ("exclude", "'2'"),
    ),
    Case(
        "ticket-exclude-names-nothing",
        "types",
        lambda e: tl.Ticket({"0.weight": torch.ones(5, 6)}, e.point).apply(e.model, exclude=["2.weight", "9"]),
        ValueError,
        ("exclude names '9'", "0.weight"),
    ),
    Case("overlap-a-str", "types", lambda e: tl.mask_overlap("t.pt", e.model), TypeError, ("a must be", "'t.pt'")),
    Case(
        "overlap-layers-unknown",
        "types",
        lambda e: tl.mask_overlap(e.model, e.model, layers="some"),
        ValueError,
        ("layers='some'",),
    ),
    Case(
        "overlap-mask-not-binary",
        "types",
        lambda e: tl.mask_overlap(e.model, {"0.weight": torch.full((5, 6), 0.5), "2.weight": torch.ones(3, 5)}),
        ValueError,
        ("b['0.weight']", "0 and 1"),
    ),
    Case("find-train-str", "types", lambda e: find(e, train="train"), TypeError, ("train", "'train'")),
    Case("find-rounds-float", "types", lambda e: find(e, rounds=1.5), TypeError, ("rounds", "1.5")),
    Case("find-no-stop", "types", lambda e: find(e, rounds=None), ValueError, ("rounds", "target_remaining")),
    Case(
        "find-target-above-one",
        "types",
        lambda e: find(e, rounds=None, target_remaining=1.5),
        ValueError,
        ("target_remaining=1.5",),
    ),
    Case("find-seed-str", "types", lambda e: find(e, seed="0"), TypeError, ("seed", "'0'")),
    Case("find-plugins-int", "types", lambda e: find(e, plugins=3), TypeError, ("plugins", "3")),
    Case("find-progress-str", "types", lambda e: find(e, progress="yes"), TypeError, ("progress", "'yes'")),
    Case("find-checkpoint-dir-int", "types", lambda e: find(e, checkpoint_dir=3), TypeError, ("checkpoint_dir", "3")),
    Case(
        "find-checkpoint-dir-is-a-file",
        "types",
        lambda e: find(e, checkpoint_dir=e.tmp / "afile"),
        ValueError,
        ("checkpoint_dir=", "afile", "not a directory"),
        setup=lambda e: (e.tmp / "afile").write_text("x"),
    ),
    Case("find-optimizer-str", "types", lambda e: find(e, optimizer="sgd"), TypeError, ("optimizer", "'sgd'")),
    Case(
        "find-rewind-state-without-optimizer",
        "types",
        lambda e: find(e, rewind_state=True),
        ValueError,
        ("rewind_state=True", "optimizer"),
    ),
    Case(
        "find-parameters-unknown",
        "types",
        lambda e: find(e, parameters=["9.weight"]),
        ValueError,
        ("parameters", "'9.weight'"),
    ),
    Case("export-path-int", "types", lambda e: export(e.model, path=3), TypeError, ("path", "3")),
    Case("export-ticket-dict", "types", lambda e: export(e.model, ticket={}), TypeError, ("ticket", "{}")),
    Case(
        "sparse-min-batch-zero",
        "types",
        lambda e: to_sparse_inference(e.model, min_batch=0),
        ValueError,
        ("min_batch=0",),
    ),
    Case(
        "sparse-min-sparsity-nan",
        "types",
        lambda e: to_sparse_inference(e.model, min_sparsity=float("nan")),
        ValueError,
        ("min_sparsity=nan",),
    ),
    Case(
        "report-include-bias-str",
        "types",
        lambda e: tl.sparsity_report(e.model, include_bias="yes"),
        TypeError,
        ("include_bias", "'yes'"),
    ),
    Case("reinit-seed-float", "types", lambda e: tl.random_reinit(e.model, seed=1.5), TypeError, ("seed", "1.5")),
    Case(
        "reinit-init-str", "types", lambda e: tl.random_reinit(e.model, init="xavier"), TypeError, ("init", "'xavier'")
    ),
    Case("compact-hooks-str", "types", lambda e: tl.compact_hooks("model"), TypeError, ("model", "'model'")),
    Case("get-strategy-int", "types", lambda e: tl.get_strategy(3), TypeError, ("strategy name", "3")),
    # -- NaN or infinite weights, scores or rewind values ------------------------------------------------
    Case(
        "weights-nan",
        "nonfinite",
        lambda e: lm(e),
        ValueError,
        ("Linear.weight", "NaN"),
        setup=lambda e: e.poison(float("nan")),
    ),
    Case(
        "weights-inf",
        "nonfinite",
        lambda e: lm(e),
        ValueError,
        ("Linear.weight", "infinite", "inf"),
        setup=lambda e: e.poison(float("inf")),
    ),
    Case(
        "weights-minus-inf",
        "nonfinite",
        lambda e: lm(e, criterion="small_final"),
        ValueError,
        ("Linear.weight", "infinite", "-inf"),
        setup=lambda e: e.poison(float("-inf")),
    ),
    Case(
        "scores-nan",
        "nonfinite",
        lambda e: lm(e, importance_scores=torch.full((5, 6), float("nan"))),
        ValueError,
        ("importance_scores", "NaN"),
    ),
    Case(
        "scores-inf",
        "nonfinite",
        lambda e: lm(e, importance_scores=torch.full((5, 6), float("inf"))),
        ValueError,
        ("importance_scores", "infinite"),
    ),
    Case(
        "global-weights-nan",
        "nonfinite",
        lambda e: gm(e),
        ValueError,
        ("Linear.weight", "NaN"),
        setup=lambda e: e.poison(float("nan"), layer=2),
    ),
    Case(
        "global-weights-inf",
        "nonfinite",
        lambda e: gm(e),
        ValueError,
        ("Linear.weight", "infinite"),
        setup=lambda e: e.poison(float("inf"), layer=2),
    ),
    Case(
        "global-scores-inf",
        "nonfinite",
        lambda e: gm(e, importance_scores={e.params[0]: torch.full((5, 6), float("inf"))}),
        ValueError,
        ("importance_scores", "infinite"),
    ),
    Case(
        "global-rewind-values-nan",
        "nonfinite",
        lambda e: gm(
            e,
            criterion="large_init",
            rewind_point=tl.RewindPoint(
                {k: torch.full_like(v, float("nan")) for k, v in e.point.items()}, model=e.model
            ),
        ),
        ValueError,
        ("rewind_point", "NaN"),
    ),
    Case(
        "stock-global-weights-inf",
        "nonfinite",
        lambda e: prune.global_unstructured(e.params, pruning_method=tl.LotteryMagnitude, amount=0.2),
        ValueError,
        ("Linear.weight", "infinite"),
        setup=lambda e: e.poison(float("inf")),
    ),
    Case(
        "supermask-rewind-nan",
        "nonfinite",
        lambda e: tl.sign_preserving_supermask(
            e.model[0], "weight", 0.2, rewind_point=torch.full((5, 6), float("nan"))
        ),
        ValueError,
        ("rewind_point", "NaN"),
    ),
    Case(
        "movement-rewind-inf",
        "nonfinite",
        lambda e: lm(e, criterion="movement", rewind_point=torch.full((5, 6), float("inf"))),
        ValueError,
        ("rewind_point", "infinite"),
    ),
    Case(
        "imp-weights-inf",
        "nonfinite",
        lambda e: tl.get_strategy("imp")().prune(
            e.context({"0.weight": torch.full((5, 6), float("inf")), "2.weight": torch.ones(3, 5)})
        ),
        ValueError,
        ("weights['0.weight']", "infinite"),
    ),
    Case(
        "find-nan-weights",
        "nonfinite",
        lambda e: find(e),
        ValueError,
        ("'0.weight'", "capture", "NaN"),
        setup=lambda e: e.poison(float("nan")),
    ),
    Case(
        "reinit-init-nan",
        "nonfinite",
        lambda e: tl.random_reinit(e.model, init=lambda t: t.fill_(float("nan"))),
        ValueError,
        ("init=", "NaN"),
    ),
    # -- empty parameter lists ---------------------------------------------------------------------------
    Case("global-empty", "empty", lambda e: gm(e, parameters=[]), ValueError, ("parameters", "empty")),
    Case("global-empty-generator", "empty", lambda e: gm(e, parameters=iter(())), ValueError, ("parameters", "empty")),
    Case("find-parameters-empty", "empty", lambda e: find(e, parameters=[]), ValueError, ("parameters", "empty")),
    Case(
        "find-no-prunable-tensor",
        "empty",
        lambda e: find(e, model=nn.Sequential(nn.ReLU())),
        ValueError,
        ("no prunable parameters",),
    ),
    # -- meta device, several devices ---------------------------------------------------------------------
    Case(
        "meta-module",
        "devices",
        lambda e: lm(e),
        ValueError,
        ("Linear.weight", "meta device"),
        setup=lambda e: e.model[0].to("meta"),
    ),
    Case(
        "global-pool-with-meta",
        "devices",
        lambda e: gm(e),
        ValueError,
        ("Linear.weight", "meta device"),
        setup=lambda e: e.model[2].to("meta"),
    ),
    Case(
        "fixed-mask-meta",
        "devices",
        lambda e: tl.fixed_mask(e.model[0], "weight", torch.ones(5, 6, device="meta")),
        ValueError,
        ("mask", "meta device"),
    ),
    Case(
        "find-meta-tensor",
        "devices",
        lambda e: find(e),
        ValueError,
        ("'2.weight'", "meta device"),
        setup=lambda e: e.model[2].to("meta"),
    ),
    Case(
        "capture-meta",
        "devices",
        lambda e: tl.RewindPoint.capture(e.model),
        ValueError,
        ("'2.", "meta device"),
        setup=lambda e: e.model[2].to("meta"),
    ),
    Case(
        "rewind-point-meta",
        "devices",
        lambda e: tl.RewindPoint({"0.weight": torch.ones(5, 6, device="meta")}).restore(e.model),
        ValueError,
        ("tensors['0.weight']", "meta device"),
    ),
    Case(
        "ticket-mask-meta",
        "devices",
        lambda e: tl.Ticket({"0.weight": torch.ones(5, 6, device="meta")}, {}),
        ValueError,
        ("masks['0.weight']", "meta device"),
    ),
    Case(
        "global-scope-several-devices",
        "devices",
        lambda e: tl.get_strategy("imp")(scope="global").prune(
            e.context(
                {"0.weight": torch.ones(5, 6), "2.weight": torch.ones(3, 5, device="meta")},
                {"0.weight": torch.ones(5, 6, dtype=torch.bool), "2.weight": torch.ones(3, 5, dtype=torch.bool)},
            )
        ),
        ValueError,
        ("scope='global'", "cpu", "meta"),
    ),
    # -- amounts that would empty a tensor ------------------------------------------------------------------
    Case(
        "global-amount-one",
        "emptying",
        lambda e: gm(e, amount=1.0, on_floor="raise"),
        ValueError,
        ("amount=1.0", "min_remaining=1", "on_floor"),
    ),
    Case(
        "global-count-too-large", "emptying", lambda e: gm(e, amount=10_000), ValueError, ("amount=10000", "surviving")
    ),
    Case(
        "global-apply-all",
        "emptying",
        lambda e: tl.GlobalMagnitude.apply(e.model[0], "weight", amount=1.0, on_floor="raise"),
        ValueError,
        ("amount=1.0", "min_remaining"),
    ),
    Case("local-count-too-large", "emptying", lambda e: lm(e, amount=31), ValueError, ("amount=31", "surviving")),
    Case(
        "global-multiplier-above-one",
        "emptying",
        lambda e: gm(e, amount=0.5, rate_multipliers={e.params[1]: 3}),
        ValueError,
        ("amount=0.5", "rate_multipliers", "exceeds 1"),
    ),
    Case("imp-rate-one", "emptying", lambda e: find(e, strategy_options={"rate": 1.0}), ValueError, ("rate=1.0",)),
    Case(
        "imp-multiplier-empties",
        "emptying",
        lambda e: find(e, strategy_options={"rate": 0.5, "rate_multipliers": {"2.weight": 2.5}}),
        ValueError,
        ("rate_multipliers['2.weight']", "2.5"),
    ),
    Case(
        "one-shot-remaining-zero",
        "emptying",
        lambda e: find(e, strategy="one_shot", strategy_options={"remaining": 0.0}),
        ValueError,
        ("remaining=0.0",),
    ),
    # -- another architecture -------------------------------------------------------------------------------
    Case(
        "restore-other",
        "architecture",
        lambda e: e.other_point.restore(e.model),
        ValueError,
        ("rewind_point['0.weight']", "(4, 6)", "another model"),
    ),
    Case(
        "bind-other",
        "architecture",
        lambda e: tl.RewindPoint(dict(e.other_point.items())).bind(e.model),
        ValueError,
        ("(4, 6)", "another model"),
    ),
    Case(
        "prune-with-other-point",
        "architecture",
        lambda e: lm(e, rewind_point=e.other_point),
        ValueError,
        ("rewind_point", "not part of the model"),
    ),
    Case(
        "prune-with-other-tensor",
        "architecture",
        lambda e: lm(e, rewind_point=torch.ones(4, 6)),
        ValueError,
        ("rewind_point", "(4, 6)", "another model"),
    ),
    Case(
        "global-with-other-point",
        "architecture",
        lambda e: gm(e, rewind_point=e.other_point),
        ValueError,
        ("rewind_point", "not part of the model"),
    ),
    Case(
        "stock-global-with-other-point",
        "architecture",
        lambda e: prune.global_unstructured(
            e.params,
            pruning_method=tl.LotteryMagnitude,
            amount=0.2,
            rewind_point=e.other_point.select([(e.other[0], "weight"), (e.other[2], "weight")]),
        ),
        ValueError,
        ("rewind_point",),
    ),
    Case(
        "load-point-for-other",
        "architecture",
        lambda e: tl.RewindPoint.load(e.tmp / "o.pt", model=e.model),
        ValueError,
        ("(4, 6)", "another model"),
        setup=lambda e: e.other_point.save(e.tmp / "o.pt"),
    ),
    Case(
        "ticket-of-other",
        "architecture",
        lambda e: tl.Ticket({"0.weight": torch.ones(4, 6), "2.weight": torch.ones(3, 4)}, e.other_point).apply(e.model),
        ValueError,
        ("does not fit", "0.weight: ticket (4, 6) vs model (5, 6)"),
    ),
    Case(
        "ticket-of-other-with-exclude",
        "architecture",
        lambda e: tl.Ticket({"0.weight": torch.ones(4, 6), "2.weight": torch.ones(3, 4)}, e.other_point).apply(
            e.model, exclude=["2"]
        ),
        ValueError,
        ("does not fit", "0.weight: ticket (4, 6) vs model (5, 6)"),
    ),
    Case(
        "export-ticket-of-other",
        "architecture",
        lambda e: export(e.model, e.tmp / "s.pt", ticket=tl.Ticket({"0.weight": torch.ones(4, 6)}, {})),
        ValueError,
        ("does not fit", "0.weight: ticket (4, 6) vs model (5, 6)"),
    ),
    Case(
        "export-ticket-missing-layer",
        "architecture",
        lambda e: export(e.model, e.tmp / "s.pt", ticket=tl.Ticket({"9.weight": torch.ones(4, 6)}, {})),
        ValueError,
        ("missing: 9.weight",),
    ),
    Case(
        "overlap-other-shapes",
        "architecture",
        lambda e: tl.mask_overlap(e.model, e.other),
        ValueError,
        ("'0.weight'", "(5, 6) in a", "(4, 6) in b"),
    ),
    Case(
        "overlap-one-sided-layer",
        "architecture",
        lambda e: tl.mask_overlap(e.model, {"0.weight": torch.ones(5, 6)}),
        ValueError,
        ("only in a: 2.weight", "layers='common'"),
    ),
    Case(
        "ticket-file-of-other",
        "architecture",
        lambda e: tl.Ticket.load(e.tmp / "o.pt").apply(e.model),
        ValueError,
        ("does not fit", "(4, 6)"),
        setup=lambda e: tl.Ticket({"0.weight": torch.ones(4, 6)}, e.other_point).save(e.tmp / "o.pt"),
    ),
    Case(
        "sign-reinit-other",
        "architecture",
        lambda e: tl.sign_preserving_reinit(e.model, e.other_point),
        ValueError,
        ("(4, 6)", "another model"),
    ),
    Case(
        "signed-constant-other",
        "architecture",
        lambda e: tl.signed_constant(e.model, e.other_point),
        ValueError,
        ("(4, 6)", "another model"),
    ),
    Case(
        "resume-other-architecture",
        "architecture",
        lambda e: find(e, rounds=2, train=train, checkpoint_dir=e.tmp / "run"),
        ValueError,
        ("round-0001.pt", "another architecture"),
        setup=lambda e: finished_run(e, model=make_net(width=4)),
        states=("fresh",),
    ),
    # -- unknown strategies and options ------------------------------------------------------------------------
    Case(
        "find-unknown-strategy",
        "strategy",
        lambda e: find(e, strategy="nope"),
        StrategyError,
        ("unknown strategy 'nope'", "imp"),
    ),
    Case(
        "get-unknown-strategy",
        "strategy",
        lambda e: tl.get_strategy("nope"),
        StrategyError,
        ("unknown strategy 'nope'", "one_shot"),
    ),
    Case("find-strategy-int", "strategy", lambda e: find(e, strategy=3), TypeError, ("strategy", "3")),
    Case(
        "find-unknown-option",
        "strategy",
        lambda e: find(e, strategy_options={"rat": 0.2}),
        TypeError,
        ("strategy 'imp'", "'rat'"),
    ),
    Case(
        "find-options-not-dict",
        "strategy",
        lambda e: find(e, strategy_options=[("rate", 0.2)]),
        TypeError,
        ("strategy_options", "[('rate', 0.2)]"),
    ),
    Case(
        "find-options-with-instance",
        "strategy",
        lambda e: find(e, strategy=tl.strategies.IterativeMagnitude(), strategy_options={"rate": 0.5}),
        ValueError,
        ("strategy_options",),
    ),
    Case(
        "imp-criterion-unknown",
        "strategy",
        lambda e: find(e, strategy_options={"criterion": "nope"}),
        ValueError,
        ("criterion='nope'",),
    ),
    Case(
        "imp-scope-unknown",
        "strategy",
        lambda e: find(e, strategy_options={"scope": "planet"}),
        ValueError,
        ("scope='planet'",),
    ),
    Case(
        "imp-multiplier-unknown-tensor",
        "strategy",
        lambda e: find(e, strategy_options={"rate_multipliers": {"9.weight": 0.5}}),
        ValueError,
        ("rate_multipliers", "9.weight"),
    ),
    # -- plugins and strategies that raise -----------------------------------------------------------------------
    Case(
        "observer-raises",
        "plugin",
        lambda e: find(e, plugins=[RaisingObserver()], checkpoint_dir=e.tmp / "c"),
        PluginError,
        ("RaisingObserver", "torch_lottery_round_start", "observer broke"),
    ),
    Case(
        "observer-bad-signature",
        "plugin",
        lambda e: find(e, plugins=[RaisingObserver(), BadHookSignature()]),
        PluginError,
        ("plugins[1]", "BadHookSignature", "no_such_argument"),
    ),
    Case(
        "strategy-raises",
        "plugin",
        lambda e: find(e, strategy=BrokenStrategy()),
        PluginError,
        ("strategy 'broken'", "round 1", "strategy broke", "nothing was pruned"),
    ),
    Case(
        "registration-raises",
        "plugin",
        lambda e: tl.get_strategy("ghost"),
        StrategyError,
        ("'ghost'", "registration broke"),
        setup=lambda e: e.register(BrokenRegistration()),
    ),
    # -- files -------------------------------------------------------------------------------------------
    Case("ticket-save-to-a-folder", "files", lambda e: tl.Ticket({}, {}).save(e.tmp), ValueError, ("is a directory",)),
    Case(
        "export-to-a-missing-folder",
        "files",
        lambda e: export(e.model, e.tmp / "nowhere" / "s.pt"),
        FileNotFoundError,
        ("nowhere", "does not exist"),
    ),
    Case(
        "point-save-over-a-folder",
        "files",
        lambda e: e.point.save(e.tmp / "p.pt"),
        ValueError,
        ("p.pt", "is a directory"),
        setup=lambda e: (e.tmp / "p.pt").mkdir(),
    ),
    Case("ticket-missing", "files", lambda e: tl.Ticket.load(e.tmp / "missing.pt"), FileNotFoundError, ("missing.pt",)),
    Case(
        "ticket-truncated",
        "files",
        lambda e: tl.Ticket.load(e.tmp / "t.pt"),
        ValueError,
        ("t.pt", "readable"),
        setup=lambda e: (
            tl.Ticket({"0.weight": torch.ones(5, 6)}, e.point).save(e.tmp / "t.pt"),
            truncate(e.tmp / "t.pt"),
        ),
    ),
    Case(
        "ticket-flipped-byte",
        "files",
        lambda e: tl.Ticket.load(e.tmp / "t.pt"),
        ValueError,
        ("t.pt", "SHA-256 digest"),
        setup=lambda e: (
            tl.Ticket({"0.weight": torch.ones(5, 6)}, e.point).save(e.tmp / "t.pt"),
            flip_tensor_byte(e.tmp / "t.pt"),
        ),
    ),
    Case(
        "ticket-is-a-rewind-point",
        "files",
        lambda e: tl.Ticket.load(e.tmp / "p.pt"),
        ValueError,
        ("p.pt", "not a ticket"),
        setup=lambda e: e.point.save(e.tmp / "p.pt"),
    ),
    Case("ticket-is-a-folder", "files", lambda e: tl.Ticket.load(e.tmp), ValueError, ("is a directory",)),
    Case(
        "point-flipped-byte",
        "files",
        lambda e: tl.RewindPoint.load(e.tmp / "p.pt"),
        ValueError,
        ("p.pt", "SHA-256 digest"),
        setup=lambda e: (e.point.save(e.tmp / "p.pt"), flip_tensor_byte(e.tmp / "p.pt")),
    ),
    Case(
        "point-garbage",
        "files",
        lambda e: tl.RewindPoint.load(e.tmp / "p.pt"),
        ValueError,
        ("p.pt",),
        setup=lambda e: (e.tmp / "p.pt").write_bytes(b"\x00garbage" * 50),
    ),
    Case(
        "export-flipped-byte",
        "files",
        lambda e: SparseState.load(e.tmp / "s.pt"),
        ValueError,
        ("s.pt", "SHA-256 digest"),
        setup=lambda e: (export(make_net(), e.tmp / "s.pt"), flip_tensor_byte(e.tmp / "s.pt")),
    ),
    Case(
        "export-pickled-code",
        "files",
        lambda e: SparseState.load(e.tmp / "s.pt"),
        ValueError,
        ("s.pt",),
        setup=lambda e: torch.save(
            {"format": "torch_lottery.sparse", "x": Payload(str(e.tmp / "pwned"))}, e.tmp / "s.pt"
        ),
    ),
    Case(
        "resume-flipped-byte",
        "files",
        lambda e: find(e, rounds=2, train=train, checkpoint_dir=e.tmp / "run"),
        ValueError,
        ("round-0001.pt", "SHA-256 digest", "round-0000.pt is intact"),
        setup=lambda e: flip_tensor_byte(finished_run(e) / "round-0001.pt"),
        states=("fresh",),
    ),
    Case(
        "resume-truncated",
        "files",
        lambda e: find(e, rounds=2, train=train, checkpoint_dir=e.tmp / "run"),
        ValueError,
        ("round-0001.pt", "readable"),
        setup=lambda e: truncate(finished_run(e) / "round-0001.pt"),
        states=("fresh",),
    ),
    Case(
        "resume-other-settings",
        "files",
        lambda e: find(e, rounds=2, train=train, checkpoint_dir=e.tmp / "run", seed=5),
        ValueError,
        ("checkpoint_dir=", "seed: 0 vs 5"),
        setup=lambda e: finished_run(e),
        states=("fresh",),
    ),
]


class Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# --------------------------------------------------------------------------- state of the world
def _bits(t: torch.Tensor):
    t = t.detach()
    if t.device.type == "meta":
        return ("meta", t.dtype, tuple(t.shape))
    return (
        t.dtype,
        tuple(t.shape),
        t.cpu().contiguous().view(-1).view(torch.uint8).clone()
        if t.numel() and t.dtype != torch.bool
        else t.cpu().clone(),
    )


def model_state(model: nn.Module) -> dict[str, Any]:
    computed = {}
    for prefix, module in model.named_modules():
        for _key, hook in module._forward_pre_hooks.items():
            name = getattr(hook, "_tensor_name", None)
            if name is not None and isinstance(module.__dict__.get(name), torch.Tensor):
                computed[f"{prefix}.{name}"] = _bits(module.__dict__[name])
    return {
        "state": {k: _bits(v) for k, v in model.state_dict().items()},
        "parameters": [(n, id(p), p.requires_grad) for n, p in model.named_parameters()],
        "buffers": [(n, id(b)) for n, b in model.named_buffers()],
        "hooks": [
            (p, k, id(h), type(h).__name__, [type(m).__name__ for m in getattr(h, "_pruning_methods", ())])
            for p, m in model.named_modules()
            for k, h in m._forward_pre_hooks.items()
        ],
        "computed": computed,
        "training": [m.training for m in model.modules()],
    }


def folder_state(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def make_env(tmp_path: Path, state: str, request) -> Env:
    work = tmp_path / "work"
    work.mkdir()
    e = Env(work, pruned=state == "pruned")

    def register(plugin):
        tl.plugins.get_plugin_manager().register(plugin)
        request.addfinalizer(lambda: tl.plugins.get_plugin_manager().unregister(plugin))

    e.register = register
    return e


API_PARAMS = [pytest.param(case, state, id=f"{case.id}-{state}") for case in CASES for state in case.states]


@pytest.mark.parametrize("case, state", API_PARAMS)
def test_bad_input_is_refused_and_changes_nothing(case: Case, state: str, tmp_path, monkeypatch, request):
    env = make_env(tmp_path, state, request)
    monkeypatch.chdir(env.tmp)
    if case.setup is not None:
        case.setup(env)
    model_before, files_before = model_state(env.model), folder_state(env.tmp)
    with pytest.raises(case.error) as info:
        case.call(env)
    message = str(info.value)
    for word in case.words:
        assert word in message, f"{word!r} not in {message!r}"
    assert _same(model_state(env.model), model_before), "the model changed"
    assert folder_state(env.tmp) == files_before, "files changed"
    assert not (env.tmp / "pwned").exists()


def test_every_category_has_rows():
    assert {c.category for c in CASES} == set(CATEGORIES)
    assert len({c.id for c in CASES}) == len(CASES)


# --------------------------------------------------------------------------- accepted on purpose
@pytest.mark.parametrize(
    "dtypes", [(torch.float16, torch.float32), (torch.float64, torch.float16), (torch.bfloat16, torch.float32)]
)
def test_mixed_float_dtypes_in_one_pool_rank_exactly(dtypes):
    """Not refused: a pool of float16/bfloat16/float32/float64 tensors ranks in the common dtype, which
    holds every value exactly, so the masks equal those of the same values in float64."""
    mixed, wide = make_net(), make_net()
    mixed[0].to(dtypes[0])
    mixed[2].to(dtypes[1])
    with torch.no_grad():
        for m, w in ((mixed[0], wide[0]), (mixed[2], wide[2])):
            w.weight.copy_(m.weight.double())
    wide.double()
    for _ in range(3):
        tl.global_magnitude([(mixed[0], "weight"), (mixed[2], "weight")], amount=0.3)
        tl.global_magnitude([(wide[0], "weight"), (wide[2], "weight")], amount=0.3)
        for i in (0, 2):
            assert torch.equal(mixed[i].weight_mask.bool(), wide[i].weight_mask.bool())


def test_amount_one_empties_a_single_tensor_as_stock_does():
    """Not refused: lottery_magnitude keeps stock prune's semantics (L1Unstructured empties it too);
    the pooled method and the strategies have floors (min_remaining) against layer collapse."""
    layer, stock = nn.Linear(4, 3), nn.Linear(4, 3)
    stock.load_state_dict(layer.state_dict())
    tl.lottery_magnitude(layer, "weight", amount=1.0)
    prune.l1_unstructured(stock, "weight", amount=1.0)
    assert int(layer.weight_mask.sum()) == 0 and torch.equal(layer.weight_mask, stock.weight_mask)


def test_a_failed_run_leaves_no_empty_checkpoint_folder(tmp_path):
    with pytest.raises(PluginError):
        tl.find_ticket(make_net(), no_training, rounds=1, plugins=[RaisingObserver()], checkpoint_dir=tmp_path / "c")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- the command line
@dataclass
class CliCase:
    id: str
    argv: list[str]
    words: tuple[str, ...]
    setup: Callable[[Path], Any] | None = None
    usage: bool = False  # argparse errors print the usage before the error line
    files: dict[str, bytes] = field(default_factory=dict)


def _results(summary) -> str:
    return json.dumps({"summary": summary, "config": {}})


GOOD_ROW = {
    "kind": "ticket",
    "round": 0,
    "n": 1,
    "remaining": 1.0,
    "test_accuracy_mean": 0.5,
    "test_accuracy_std": 0.0,
    "test_accuracy_min": 0.5,
    "test_accuracy_max": 0.5,
}


def _config_case(name: str, toml: str, words: str, *flags: str) -> CliCase:
    """``run --config run.toml FLAGS`` with ``run.toml`` holding ``toml``; the error line holds ``words``."""
    return CliCase(
        name, ["run", "--config", "run.toml", *flags], (words,), setup=lambda d: (d / "run.toml").write_text(toml)
    )


CLI_CASES = [
    CliCase("no-command", [], ("the following arguments are required: COMMAND",), usage=True),
    CliCase("unknown-command", ["bogus"], ("invalid choice: 'bogus'",), usage=True),
    CliCase("rounds-not-int", ["run", "--rounds", "x"], ("--rounds", "'x'"), usage=True),
    CliCase("rounds-negative", ["run", "--rounds", "-1"], ("--rounds", "-1"), usage=True),
    CliCase("lr-not-float", ["run", "--lr", "fast"], ("--lr", "'fast'"), usage=True),
    CliCase("unknown-option", ["run", "--speed", "9"], ("unrecognized arguments: --speed 9",), usage=True),
    CliCase("unknown-control", ["run", "--controls", "reinit,bogus"], ("unknown control 'bogus'",), usage=True),
    CliCase("unknown-metric", ["report", "out", "--metric", "bogus"], ("--metric", "'bogus'"), usage=True),
    CliCase("seed-negative", ["sum-of-two", "--seed", "-1"], ("--seed", "-1"), usage=True),
    CliCase("lr-nan", ["run", "--lr", "nan", "--no-progress"], ("lr=nan",)),
    CliCase("lr-negative", ["run", "--lr", "-1", "--no-progress"], ("lr=-1.0",)),
    CliCase("rate-above-one", ["run", "--rate", "1.5", "--no-progress"], ("rate=1.5",)),
    CliCase("output-rate-above-one", ["run", "--output-rate", "2", "--no-progress"], ("output_rate=2.0",)),
    CliCase("epochs-zero", ["run", "--epochs", "0", "--no-progress"], ("epochs=0",)),
    CliCase("replicates-zero", ["run", "--replicates", "0", "--no-progress"], ("replicates=0",)),
    CliCase("batch-size-zero", ["run", "--batch-size", "0", "--no-progress"], ("batch_size=0",)),
    CliCase("momentum-nan", ["run", "--momentum", "nan", "--no-progress"], ("momentum=nan",)),
    CliCase("unknown-dataset", ["run", "--dataset", "imagenet", "--no-progress"], ("dataset='imagenet'",)),
    CliCase("unknown-device", ["run", "--device", "meta", "--no-progress"], ("device='meta'",)),
    CliCase("validation-too-large", ["run", "--validation", "100000", "--no-progress"], ("validation=100000",)),
    CliCase(
        "unknown-model",
        [
            "run",
            "--model",
            "lenet5",
            "--rounds",
            "0",
            "--epochs",
            "1",
            "--replicates",
            "1",
            "--controls",
            "none",
            "--no-progress",
        ],
        ("'lenet5'", "not a known model"),
    ),
    CliCase(
        "missing-mnist",
        ["run", "--dataset", "mnist", "--data-root", "empty", "--no-progress"],
        ("data set mnist not found", "--download"),
        setup=lambda d: (d / "empty").mkdir(),
    ),
    CliCase(
        "out-is-a-file",
        ["run", "--out", "afile", "--no-progress"],
        ("--out='afile'", "not a directory"),
        setup=lambda d: (d / "afile").write_text("x"),
    ),
    CliCase(
        "out-inside-a-file",
        ["run", "--out", "afile/sub", "--no-progress"],
        ("--out='afile/sub'", "inside a file"),
        setup=lambda d: (d / "afile").write_text("x"),
    ),
    CliCase(
        "sum-of-two-out-is-a-file",
        ["sum-of-two", "--out", "afile"],
        ("--out='afile'", "not a directory"),
        setup=lambda d: (d / "afile").write_text("x"),
    ),
    CliCase("sum-of-two-on-cuda", ["sum-of-two", "--device", "cuda"], ("--device='cuda'",)),
    CliCase("report-missing-dir", ["report", "nowhere"], ("'nowhere' has no results.json",)),
    CliCase(
        "report-a-file",
        ["report", "afile"],
        ("'afile' has no results.json",),
        setup=lambda d: (d / "afile").write_text("x"),
    ),
    CliCase(
        "report-corrupt-json",
        ["report", "out"],
        ("is not valid JSON",),
        setup=lambda d: ((d / "out").mkdir(), (d / "out" / "results.json").write_text('{"summary": [1, 2')),
    ),
    CliCase(
        "report-binary-json",
        ["report", "out"],
        ("is not valid JSON",),
        setup=lambda d: ((d / "out").mkdir(), (d / "out" / "results.json").write_bytes(b"\xff\xfe\x00garbage")),
    ),
    CliCase(
        "report-list-json",
        ["report", "out"],
        ("no summary",),
        setup=lambda d: ((d / "out").mkdir(), (d / "out" / "results.json").write_text("[1, 2]")),
    ),
    CliCase(
        "report-bad-row",
        ["report", "out"],
        ("out/results.json: summary[0] must be an object, got 1",),
        setup=lambda d: ((d / "out").mkdir(), (d / "out" / "results.json").write_text(_results([1]))),
    ),
    CliCase(
        "report-row-without-round",
        ["report", "out"],
        ("out/results.json: summary[0].round is missing",),
        setup=lambda d: (
            (d / "out").mkdir(),
            (d / "out" / "results.json").write_text(_results([{k: v for k, v in GOOD_ROW.items() if k != "round"}])),
        ),
    ),
    CliCase(
        "report-metric-missing",
        ["report", "out", "--metric", "test_loss"],
        ("out/results.json: summary[0].test_loss_mean is missing",),
        setup=lambda d: ((d / "out").mkdir(), (d / "out" / "results.json").write_text(_results([GOOD_ROW]))),
    ),
    CliCase(
        "report-record-metric-text",
        ["report", "out", "--layers"],
        ("out/results.json: records[0].test_accuracy must be a number, got 'abc'",),
        setup=lambda d: (
            (d / "out").mkdir(),
            (d / "out" / "results.json").write_text(
                json.dumps({"summary": [GOOD_ROW], "records": [{**GOOD_ROW, "test_accuracy": "abc"}]})
            ),
        ),
    ),
    CliCase(
        "report-config-a-list",
        ["report", "out"],
        ("out/results.json: config must be an object, got []",),
        setup=lambda d: (
            (d / "out").mkdir(),
            (d / "out" / "results.json").write_text(json.dumps({"summary": [GOOD_ROW], "config": []})),
        ),
    ),
    CliCase(
        "unknown-strategy", ["run", "--strategy", "bogus"], ("--strategy: unknown strategy 'bogus'; registered:", "imp")
    ),
    CliCase(
        "strategy-option-bad-value",
        ["run", "--strategy", "snip", "--strategy-option", "remaining=2"],
        ("--strategy-option remaining=2: remaining=2 must be in (0, 1]",),
    ),
    CliCase(
        "strategy-option-unknown",
        ["run", "--strategy", "snip", "--strategy-option", "bogus=1"],
        ("--strategy-option bogus=1: strategy 'snip' has no option 'bogus' (its options: remaining,",),
    ),
    CliCase(
        "strategy-option-malformed", ["run", "--strategy-option", "rate"], ("--strategy-option 'rate'", "KEY=VALUE")
    ),
    CliCase(
        "strategy-option-twice",
        ["run", "--strategy-option", "rate=0.1", "--strategy-option", "rate=0.2"],
        ("--strategy-option 'rate' is given twice",),
    ),
    CliCase(
        "control-misfit-random-pruning",
        ["run", "--strategy", "snip", "--controls", "random_pruning"],
        ("controls='random_pruning'", "'snip'"),
    ),
    CliCase(
        "control-misfit-supermask",
        ["run", "--strategy", "rigl", "--controls", "supermask"],
        ("controls='supermask'", "'rigl'", "no dense run"),
    ),
    CliCase("config-missing", ["run", "--config", "none.toml"], ("--config='none.toml' does not exist",)),
    _config_case("config-unknown-key", "round = 1\n", "run.toml: unknown key 'round'"),
    _config_case("config-malformed", "rounds = [1\n", "run.toml: is not valid TOML"),
    _config_case("config-wrong-type", 'rounds = "x"\n', "run.toml: rounds must be an int, got 'x'", "--epochs", "1"),
    _config_case(
        "config-bad-strategy-option",
        'strategy = "snip"\n[strategy_options]\nremaining = 2\n',
        "run.toml: strategy_options.remaining=2: remaining=2 must be in (0, 1]",
    ),
    _config_case("config-unknown-strategy", 'strategy = "snipp"\n', "run.toml: strategy: unknown strategy 'snipp'"),
    _config_case(  # the file is fine, the flag is not: the flag is named, not the file
        "config-flag-at-fault-names-the-flag",
        'strategy = "snip"\n[strategy_options]\nremaining = 0.2\n',
        "error: --strategy-option remaining=3: remaining=3 must be in (0, 1]",
        "--strategy-option",
        "remaining=3",
    ),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_bad_input_is_one_line_nonzero_and_writes_nothing(case: CliCase, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)
    if case.setup is not None:
        case.setup(tmp_path)
    before = folder_state(tmp_path)
    try:
        status = cli.main(case.argv)
    except SystemExit as exit_:  # argparse
        status = exit_.code
    captured = capsys.readouterr()
    assert status not in (0, None)
    assert captured.out == ""
    assert "Traceback" not in captured.err
    lines = captured.err.splitlines()
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and errors[0] == lines[-1], captured.err
    if case.usage:
        assert lines[0].startswith("usage: torch-lottery") and all(line.startswith(" ") for line in lines[1:-1])
    else:
        assert len(lines) == 1, captured.err
    for word in case.words:
        assert word in lines[-1], (word, lines[-1])
    assert folder_state(tmp_path) == before


def test_cli_unexpected_errors_are_one_line_too(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "strategies", broken)
    assert cli.main(["strategies"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"torch-lottery strategies: error: internal error ZeroDivisionError: a bug "
        f"(set {cli.TRACEBACK_ENV}=1 for the traceback)"
    ]
    monkeypatch.setenv(cli.TRACEBACK_ENV, "1")
    with pytest.raises(ZeroDivisionError):
        cli.main(["strategies"])
