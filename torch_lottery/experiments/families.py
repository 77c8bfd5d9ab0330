"""The training-time families against IMP: the measurements behind ``docs/results.md`` (issue 11).

``python -m torch_lottery.experiments.families --dataset mnist1d --seeds 3`` runs, on one
data set and LeNet-300-100 with the paper's setup, for every seed:

- ``imp``: IMP (the paper's rates) until at most the smallest density is left; its
  accuracy at the round nearest each density;
- ``dynamic``: ``sparse_momentum``, ``rigl`` and ``set`` at each density (one training
  run each, as long as one IMP round, masks updated every 100 steps or a tenth of a short
  run, the strategy's defaults otherwise);
- ``targeted_dropout``: the ``targeted_dropout`` strategy (post-hoc pruning of the
  targeted fraction, no retraining) with the paper's rates, against the same pruning of
  a network trained without it (``drop_rate=0``);
- ``supermask``: ``edge_popup`` and ``learned_supermask`` over untrained weights,
  against chance and the trained dense network;
- ``instability``: the error barrier (test error) between two copies of the dense
  network trained from iteration k, for k in 0 and powers of four.

It prints one table per part (mean ± standard deviation over the seeds, and the seeds'
values) and writes every number to ``--out``/families.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .._files import atomic_write
from .._validation import check_choice, check_fraction, check_nonneg_int
from ..driver.instability import instability_analysis
from .runner import DATASET_VALIDATION, RunConfig, Trainer, resolve_setup, run_replicate

PARTS = ("imp", "dynamic", "targeted_dropout", "supermask", "instability")
DYNAMIC = ("sparse_momentum", "rigl", "set")
SUPERMASKS = ("edge_popup", "learned_supermask")
#: The scores of the supermasks train with SGD (momentum 0.9) at edge-popup's learning rate 0.1 and at 100
#: (the gradient of a score is the weight's times sigmoid'(s) or smaller: tiny next to a weight's own).
SUPERMASK_LRS = (0.1, 100.0)
#: Targeted fractions of the targeted-dropout part (with drop_rate 0.5, against 0: the same pruning, no dropout).
TARGETED = (0.5, 0.9)


def _accuracy(records: list[dict[str, Any]], round_index: int) -> tuple[float, float]:
    """Return (remaining, test accuracy) of the ticket's record of ``round_index``."""
    for record in records:
        if record["kind"] == "ticket" and record["round"] == round_index:
            return float(record["remaining"]), float(record["test_accuracy"])
    raise LookupError(f"no ticket record of round {round_index}")


def _test_error(trainer: Trainer, model: torch.nn.Module) -> float:
    return 1.0 - trainer.evaluate(model)["test_accuracy"]


def _imp_rounds(density: float, rate: float = 0.2) -> int:
    """Rounds of IMP at ``rate`` (output layer at half of it) until at most ``density`` is left, with margin."""
    return math.ceil(math.log(density) / math.log(1 - rate)) + 2


def dynamic_every(steps: int) -> int:
    """Return the dynamic strategies' update interval for a run of ``steps``: 100 steps, or a tenth of a short run.

    Examples:
        >>> dynamic_every(59), dynamic_every(1770)
        (5, 100)
    """
    return min(100, max(1, steps // 10))


def run_families(
    dataset: str = "mnist1d",
    seeds: int = 3,
    densities: Sequence[float] = (0.1, 0.02),
    parts: Sequence[str] = PARTS,
    epochs: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the parts of the comparison; return ``{"settings", <part>: {...}}`` with every seed's numbers.

    Args:
        dataset: ``"mnist1d"`` or ``"fashion-mnist"`` (or any of the runner's).
        seeds: seeds 0 .. seeds-1.
        densities: fractions of weights kept for IMP and the dynamic strategies.
        parts: which of :data:`PARTS` to run.
        epochs: epochs per training run (default: the runner's for the data set).
        log: where progress lines go.

    Returns:
        dict: the settings and, per part, per configuration, the list of per-seed results.

    Raises:
        ValueError: on a bad argument, naming it.
    """
    check_nonneg_int(seeds, "seeds")
    if seeds < 1:
        raise ValueError(f"seeds={seeds} must be at least 1")
    densities = [check_fraction(d, "densities", low_open=True, high_open=True) for d in densities]
    for part in parts:
        check_choice(part, PARTS, "parts")
    base: dict[str, Any] = {"dataset": dataset, "epochs": epochs, "replicates": 1, "controls": (), "progress": False}
    RunConfig(**base).check()
    from .data import load_dataset
    from .models import build_model

    validation = DATASET_VALIDATION.get(dataset, 5000)
    out: dict[str, Any] = {
        "settings": {"dataset": dataset, "seeds": seeds, "densities": densities, "parts": list(parts)}
    }
    started = time.perf_counter()
    data = load_dataset(dataset, validation=validation, seed=0)

    def build() -> torch.nn.Module:
        return build_model("lenet300100", data.input_shape, data.num_classes)

    steps = Trainer(data, resolve_setup(RunConfig(**base), build()), 1, False).steps()
    every = dynamic_every(steps)
    out["settings"].update(steps=steps, every=every)

    for seed in range(seeds):

        def run(seed: int = seed, **changes: Any) -> list[dict[str, Any]]:
            config = RunConfig(**{**base, **changes})
            config.check()
            return run_replicate(config, data, seed, build)

        if "imp" in parts:
            records = run(strategy="imp", rounds=_imp_rounds(min(densities)))
            ticket = [r for r in records if r["kind"] == "ticket"]
            out.setdefault("imp", {}).setdefault("dense", []).append(_accuracy(records, 0)[1])
            for d in densities:
                nearest = min(ticket[1:], key=lambda r: abs(math.log(r["remaining"] / d)))
                out["imp"].setdefault(str(d), []).append(
                    {
                        "remaining": nearest["remaining"],
                        "test_accuracy": nearest["test_accuracy"],
                        "round": nearest["round"],
                    }
                )
            log(f"seed {seed}: imp done ({time.perf_counter() - started:.0f} s)")
        if "dynamic" in parts:
            for name in DYNAMIC:
                for d in densities:
                    records = run(strategy=name, strategy_options={"density": d, "every": every})
                    remaining, accuracy = _accuracy(records, 1)
                    out.setdefault("dynamic", {}).setdefault(f"{name}@{d}", []).append(
                        {"remaining": remaining, "test_accuracy": accuracy}
                    )
            log(f"seed {seed}: dynamic done ({time.perf_counter() - started:.0f} s)")
        if "targeted_dropout" in parts:
            for targ in TARGETED:
                for label, drop in (("targeted", 0.5), ("without", 0.0)):
                    records = run(strategy="targeted_dropout", strategy_options={"drop_rate": drop, "targ_rate": targ})
                    remaining, accuracy = _accuracy(records, 1)
                    unpruned = next(r for r in records if r["kind"] == "ticket" and r["round"] == 1)
                    out.setdefault("targeted_dropout", {}).setdefault(f"{label}@{targ}", []).append(
                        {
                            "remaining": remaining,
                            "test_accuracy": accuracy,
                            "unpruned": unpruned["test_accuracy_at_early_stop"],
                        }
                    )
            log(f"seed {seed}: targeted dropout done ({time.perf_counter() - started:.0f} s)")
        if "supermask" in parts:
            for name in SUPERMASKS:
                for lr in SUPERMASK_LRS:
                    records = run(strategy=name, optimizer="sgd", lr=lr, momentum=0.9)
                    remaining, accuracy = _accuracy(records, 1)
                    out.setdefault("supermask", {}).setdefault(f"{name}@lr{lr:g}", []).append(
                        {"remaining": remaining, "test_accuracy": accuracy, "untrained": _accuracy(records, 0)[1]}
                    )
            out["supermask"]["chance"] = 1.0 / data.num_classes
            log(f"seed {seed}: supermasks done ({time.perf_counter() - started:.0f} s)")
        if "instability" in parts:
            torch.manual_seed(seed)
            model = build()
            trainer = Trainer(data, resolve_setup(RunConfig(**base), model), 1, False)
            ks = [0] + [4**j for j in range(int(math.log(max(steps // 2, 1), 4)) + 1)]

            results = instability_analysis(
                model,
                functools.partial(trainer.train, title="instability"),
                functools.partial(_test_error, trainer),
                iterations=ks,
                seed=seed,
            )
            for r in results:
                out.setdefault("instability", {}).setdefault(str(r.iteration), []).append(
                    {"barrier": r.barrier, "errors": list(r.errors), "iterations": r.iterations}
                )
            out["instability"]["steps"] = steps
            log(f"seed {seed}: instability done ({time.perf_counter() - started:.0f} s)")
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def _mean_std(values: Sequence[float], scale: float = 100.0) -> str:
    values = [v * scale for v in values]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):6.2f} ± {spread:4.2f}"


def _seeds(values: Sequence[float], scale: float = 100.0) -> str:
    return ", ".join(f"{v * scale:.1f}" for v in values)


def tables(result: dict[str, Any]) -> str:
    """Render the tables of a :func:`run_families` result (accuracy and barriers in %)."""
    lines: list[str] = []
    densities = result["settings"]["densities"]
    if "imp" in result or "dynamic" in result:
        lines += ["test accuracy % at a density (mean ± std over seeds; seeds' values)", ""]
        lines.append(f"{'method':<18} {'density %':>9}  {'accuracy':>13}  seeds")
        if "imp" in result:
            lines.append(
                f"{'dense (IMP round 0)':<18} {100.0:9.1f}  {_mean_std(result['imp']['dense'])}  "
                f"{_seeds(result['imp']['dense'])}"
            )
        for d in densities:
            if "imp" in result:
                rows = result["imp"][str(d)]
                kept = statistics.fmean(r["remaining"] for r in rows) * 100
                acc = [r["test_accuracy"] for r in rows]
                lines.append(f"{'imp':<18} {kept:9.1f}  {_mean_std(acc)}  {_seeds(acc)}")
            for name in DYNAMIC:
                rows = result.get("dynamic", {}).get(f"{name}@{d}")
                if rows:
                    acc = [r["test_accuracy"] for r in rows]
                    lines.append(f"{name:<18} {d * 100:9.1f}  {_mean_std(acc)}  {_seeds(acc)}")
        lines.append("")
    if "targeted_dropout" in result:
        lines += [
            "post-hoc pruning of the targeted fraction, no retraining (test accuracy %; before pruning: at the",
            "best-validation point of training)",
            "",
        ]
        for targ in TARGETED:
            for label, title in (("targeted", "targeted dropout 0.5"), ("without", "no dropout")):
                rows = result["targeted_dropout"].get(f"{label}@{targ}")
                if not rows:
                    continue
                acc = [r["test_accuracy"] for r in rows]
                before = [r["unpruned"] for r in rows]
                kept = statistics.fmean(r["remaining"] for r in rows) * 100
                lines.append(
                    f"targ {targ}: {title:<22} {kept:5.1f}% kept  pruned {_mean_std(acc)}  ({_seeds(acc)})  "
                    f"before {_mean_std(before)}"
                )
        lines.append("")
    if "supermask" in result:
        chance = result["supermask"]["chance"]
        lines += [f"supermasks over untrained weights (test accuracy %; chance {chance * 100:.1f}%)", ""]
        for name in SUPERMASKS:
            for lr in SUPERMASK_LRS:
                rows = result["supermask"][f"{name}@lr{lr:g}"]
                acc = [r["test_accuracy"] for r in rows]
                kept = statistics.fmean(r["remaining"] for r in rows) * 100
                before = [r["untrained"] for r in rows]
                lines.append(
                    f"{name:<18} lr {lr:<5g} {kept:5.1f}% kept  {_mean_std(acc)}  {_seeds(acc)}  "
                    f"(dense untrained: {_mean_std(before)})"
                )
        lines.append("")
    if "instability" in result:
        lines += [
            f"error barrier % between two copies trained from iteration k ({result['instability']['steps']} "
            "steps in all)",
            "",
        ]
        for k, rows in result["instability"].items():
            if k == "steps":
                continue
            barriers = [r["barrier"] for r in rows]
            lines.append(f"k={int(k):<6} {_mean_std(barriers)}  {_seeds(barriers)}")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run from the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m torch_lottery.experiments.families", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dataset", default="mnist1d")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--densities", default="0.1,0.02", help="comma-separated fractions kept (default 0.1,0.02)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated of {', '.join(PARTS)}")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per training (default: the runner's)")
    parser.add_argument("--out", default=None, help="folder for families.json (default runs/families-<dataset>)")
    args = parser.parse_args(argv)
    try:
        densities = [float(d) for d in args.densities.split(",") if d]
    except ValueError:
        parser.error(f"--densities {args.densities!r}: give comma-separated fractions such as 0.1,0.02")
    try:
        result = run_families(
            args.dataset,
            args.seeds,
            densities,
            [p for p in args.parts.split(",") if p],
            args.epochs,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    out = Path(args.out or f"runs/families-{args.dataset}")
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1).encode()
    atomic_write(out / "families.json", lambda handle: handle.write(text))
    print(tables(result))
    print(f"{result['seconds']} s; every number in {out / 'families.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
