"""Masked-training benchmark: the cost of training a pruned model against the same dense model.

    python benchmarks/bench_training.py [--quick] [--threads N] [--reps N]

Part 1, per training step (zero_grad, forward, loss, backward, Adam step) on CPU
at 80% sparsity, for LeNet-300-100 (784-300-100-10, batch 60) and the LTH
paper's Conv-4 (3x32x32 inputs, batch 128; torch_lottery.experiments.models),
three variants built from the same initial weights:

- ``dense``: the unpruned model;
- ``stock``: every prunable weight pruned with ``prune.l1_unstructured(amount=0.8)``
  (stock ``L1Unstructured`` forward pre-hooks);
- ``driver``: the same masks installed with ``FixedMask`` (a ``LotteryContainer``
  hook per tensor), exactly what ``find_ticket`` and the experiment runner train.

Each variant has its own Adam optimizer (lr 1.2e-3) and steps on the same fixed
batch; the variants alternate within every repetition (order reversed every other
repetition) and each repetition times ``steps`` steps of each (its figure: the
median over those steps, which a preemption on the shared machine does not
move). Reported: the median and range over repetitions of the per-repetition
ratios (variant / dense, driver / stock), for the whole step and for its phases
(forward with the pre-hooks, backward, optimizer step); and the pruning
pre-hooks alone (all of a model's, in grad mode, stock and driver alternating
call by call). After timing, the stock and driver models (same masks, same
steps) must hold bit-identical weights.

Part 2, a whole IMP run: ``find_ticket(strategy="imp")`` (20% per round, output
layer 10%, rewind to init) on LeNet-300-100 with synthetic preloaded data
against a hand-written loop that does the same training (same seeds, batches
and Adam) and the same pruning with stock ``prune.l1_unstructured`` and a
rewind of ``weight_orig``/biases. Runs alternate; reported: the ratio
driver / hand-written (median, range) and whether both end with the same masks.

Part 3, a diagnosis: ``torch.sqrt`` (Adam's second-moment square root) over a
tensor the size of LeNet's first layer, with 80% exact zeros (the state of
pruned entries, whose gradients are always zero) against no zeros; and the
LeNet dense and driver steps again with ``Adam(fused=True)``, whose fused CPU
kernel computes the square root itself.

Threads default to 1 and every time is then the process's CPU time
(``time.process_time``), which leaves out the time the process waits for a core
while other jobs share the machine (with one thread it equals the wall time on an
idle machine); with more threads, wall time. Writes
benchmarks/results/training.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _harness import machine, machine_line, set_threads, summary, table, write_result  # noqa: E402

from torch_lottery import find_ticket  # noqa: E402
from torch_lottery.driver.context import round_seed  # noqa: E402  (to seed the hand-written loop alike)
from torch_lottery.experiments.models import build_model  # noqa: E402
from torch_lottery.pruning.fixed import FixedMask  # noqa: E402
from torch_lottery.pruning.utils import named_prunable_parameters  # noqa: E402

VARIANTS = ("dense", "stock", "driver")
PHASES = ("step", "forward", "backward", "optimizer")
SPARSITY = 0.8
LR = 1.2e-3
# name -> (model, input shape, batch)
MODELS = {"lenet300100": ("lenet300100", (1, 28, 28), 60), "conv4": ("conv4", (3, 32, 32), 128)}
#: The clock of every measurement: the process's CPU time with one thread (it leaves out the time
#: the process waits for a core on a shared machine), wall time with more (set in main).
CLOCK = time.perf_counter


def fmt(s: dict, digits: int = 3) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


# -- part 1: per-step cost ------------------------------------------------------------
def build_variants(model_name: str, shape: tuple[int, ...], seed: int = 0) -> dict[str, nn.Module]:
    models = {}
    for variant in VARIANTS:
        torch.manual_seed(seed)
        models[variant] = build_model(model_name, shape, 10)
    stock = models["stock"]
    for _, module, name in named_prunable_parameters(stock):
        prune.l1_unstructured(module, name, amount=SPARSITY)
    masks = {q: m.weight_mask.clone() for q, m, _ in named_prunable_parameters(stock)}
    for qualified, module, name in named_prunable_parameters(models["driver"]):
        FixedMask.apply(module, name, masks[qualified], source="bench")
    return models


def timed_steps(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, steps: int
) -> dict[str, float]:
    """Run ``steps`` training steps; return the median seconds per step of each phase.

    Medians over the steps, not sums: a preemption by another process on the
    shared machine lands on one step and does not move them.
    """
    times: dict[str, list[float]] = {p: [] for p in PHASES}
    clock = CLOCK
    for _ in range(steps):
        t0 = clock()
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        t1 = clock()
        loss.backward()
        t2 = clock()
        optimizer.step()
        t3 = clock()
        times["forward"].append(t1 - t0)
        times["backward"].append(t2 - t1)
        times["optimizer"].append(t3 - t2)
        times["step"].append(t3 - t0)
    return {p: statistics.median(v) for p, v in times.items()}


def effective_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = {}
        for qualified, module, name in named_prunable_parameters(model):
            if hasattr(module, name + "_orig"):
                out[qualified] = getattr(module, name + "_orig") * getattr(module, name + "_mask")
            else:
                out[qualified] = getattr(module, name).clone()
        return out


def bench_steps(key: str, reps: int, steps: int, warmup: int, variants: tuple[str, ...] = VARIANTS, **adam) -> dict:
    model_name, shape, batch = MODELS[key]
    models = build_variants(model_name, shape)
    optimizers = {v: torch.optim.Adam(models[v].parameters(), lr=LR, **adam) for v in VARIANTS}
    generator = torch.Generator().manual_seed(1)
    x = torch.randn((batch,) + shape, generator=generator)
    y = torch.randint(0, 10, (batch,), generator=generator)
    for v in variants:
        timed_steps(models[v], optimizers[v], x, y, warmup)
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for rep in range(reps):
        for v in variants if rep % 2 == 0 else variants[::-1]:
            runs[v].append(timed_steps(models[v], optimizers[v], x, y, steps))
    out = {
        "batch": batch,
        "input_shape": list(shape),
        "adam": adam,
        "reps": reps,
        "steps_per_rep": steps,
        "ms_per_step": {v: {p: summary([r[p] * 1e3 for r in runs[v]]) for p in PHASES} for v in variants},
        "ratios": {},
    }
    for a, b in (("stock", "dense"), ("driver", "dense"), ("driver", "stock")):
        if a in runs and b in runs:
            out["ratios"][f"{a}/{b}"] = {
                p: summary([ra[p] / rb[p] for ra, rb in zip(runs[a], runs[b], strict=True)]) for p in PHASES
            }
    if "stock" in runs:
        stock_w, driver_w = effective_weights(models["stock"]), effective_weights(models["driver"])
        out["stock_and_driver_weights_identical"] = all(torch.equal(stock_w[k], driver_w[k]) for k in stock_w)
        out["pre_hooks"] = bench_hooks(models["stock"], models["driver"], 3 * reps)
    return out


def pruning_hooks(model: nn.Module) -> list:
    return [
        (module, hook)
        for module in model.modules()
        for hook in module._forward_pre_hooks.values()
        if isinstance(hook, prune.BasePruningMethod)
    ]


def bench_hooks(stock: nn.Module, driver: nn.Module, reps: int, calls: int = 51) -> dict:
    """Time the pruning pre-hooks alone (all of a model's, as one forward runs them), in grad mode.

    Stock and driver alternate call by call, so both see the same allocator and
    cache state; a repetition's figure is the median over its calls, which a
    preemption by another process on the shared machine does not move.
    """
    hooks = {"stock": pruning_hooks(stock), "driver": pruning_hooks(driver)}
    runs: dict[str, list[float]] = {"stock": [], "driver": []}
    clock = CLOCK
    for rep in range(reps):
        order = ("stock", "driver") if rep % 2 == 0 else ("driver", "stock")
        spent: dict[str, list[float]] = {"stock": [], "driver": []}
        for _ in range(calls):
            for key in order:
                start = clock()
                for _ in range(5):
                    for module, hook in hooks[key]:
                        hook(module, None)
                spent[key].append((clock() - start) / 5)
        for key in order:
            runs[key].append(statistics.median(spent[key]))
    return {
        "us_per_forward": {k: summary([t * 1e6 for t in v]) for k, v in runs.items()},
        "ratio_driver/stock": summary([d / s for d, s in zip(runs["driver"], runs["stock"], strict=True)]),
    }


# -- part 2: a whole IMP run ----------------------------------------------------------
def synthetic_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 784, generator=generator)
    teacher = torch.randn(784, 10, generator=generator)
    y = (x @ teacher).argmax(1)
    return x, y


def train_epochs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, context=None) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 60):
            idx = order[start : start + 60]
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            if context is not None:
                context.step()
    return loss.item()


def imp_driver(x, y, rounds: int, epochs: int) -> tuple[float, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = build_model("lenet300100", (784,), 10)
    start = CLOCK()
    ticket = find_ticket(
        model,
        lambda m, c: {"loss": train_epochs(m, x, y, epochs, c)},
        strategy="imp",
        strategy_options={"rate": 0.2, "scope": "local", "rate_multipliers": {"fc3.weight": 0.5}},
        rounds=rounds,
        seed=0,
    )
    seconds = CLOCK() - start
    return seconds, {k: v.bool() for k, v in ticket.masks.items()}


def imp_hand_written(x, y, rounds: int, epochs: int) -> tuple[float, dict[str, torch.Tensor]]:
    """The same IMP written directly on stock prune: train, prune 20% (output 10%), rewind, repeat."""
    torch.manual_seed(0)
    model = build_model("lenet300100", (784,), 10)
    start = CLOCK()
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    layers = [(model.fc1, 0.2), (model.fc2, 0.2), (model.fc3, 0.1)]
    for round_index in range(rounds + 1):
        if round_index > 0:
            for layer, rate in layers:
                # rank the current weights: stock would use module.weight, computed at the last
                # forward, i.e. before the last optimizer step
                current = layer.weight_orig.detach() if hasattr(layer, "weight_orig") else layer.weight.detach()
                prune.l1_unstructured(layer, "weight", amount=rate, importance_scores=current)
            with torch.no_grad():  # rewind the survivors (and biases) to initialization
                for layer, prefix in ((model.fc1, "fc1"), (model.fc2, "fc2"), (model.fc3, "fc3")):
                    layer.weight_orig.copy_(init[f"{prefix}.weight"])
                    layer.bias.copy_(init[f"{prefix}.bias"])
        torch.manual_seed(round_seed(0, round_index))  # the driver's per-round seeds: same batches
        train_epochs(model, x, y, epochs)
    seconds = CLOCK() - start
    return seconds, {f"{p}.weight": getattr(model, p).weight_mask.bool() for p in ("fc1", "fc2", "fc3")}


def bench_imp(reps: int, n: int, rounds: int, epochs: int) -> dict:
    x, y = synthetic_data(n)
    runners = {"driver": imp_driver, "hand_written": imp_hand_written}
    runs: dict[str, list[float]] = {k: [] for k in runners}
    masks = {}
    for run in runners.values():  # warm up: the first optimizer step of a process imports torch._dynamo (~1 s)
        run(x[:60], y[:60], 1, 1)
    for rep in range(reps):
        for key in runners if rep % 2 == 0 else list(runners)[::-1]:
            seconds, masks[key] = runners[key](x, y, rounds, epochs)
            runs[key].append(seconds)
    same = all(torch.equal(masks["driver"][k], masks["hand_written"][k]) for k in masks["driver"])
    differing = sum(int((masks["driver"][k] != masks["hand_written"][k]).sum()) for k in masks["driver"])
    remaining = sum(int(m.sum()) for m in masks["driver"].values()) / sum(m.numel() for m in masks["driver"].values())
    return {
        "examples": n,
        "rounds": rounds,
        "epochs_per_round": epochs,
        "batch": 60,
        "reps": reps,
        "steps": (rounds + 1) * epochs * -(-n // 60),
        "remaining": remaining,
        "seconds": {k: summary(v) for k, v in runs.items()},
        "ratio_driver/hand_written": summary(
            [a / b for a, b in zip(runs["driver"], runs["hand_written"], strict=True)]
        ),
        "same_masks": same,
        "mask_entries_differing": differing,
    }


# -- part 3: why Adam costs more on a pruned model ------------------------------------------
def bench_sqrt(reps: int) -> dict:
    n = 300 * 784
    generator = torch.Generator().manual_seed(0)
    dense = torch.rand(n, generator=generator) * 1e-6 + 1e-9
    sparse = dense * (torch.rand(n, generator=generator) >= SPARSITY)
    runs = {"no_zeros": [], "80%_zeros": []}
    for rep in range(reps):
        for key, t in (
            (("no_zeros", dense), ("80%_zeros", sparse))
            if rep % 2 == 0
            else (("80%_zeros", sparse), ("no_zeros", dense))
        ):
            start = CLOCK()
            for _ in range(20):
                t.sqrt()
            runs[key].append((CLOCK() - start) / 20)
    return {
        "numel": n,
        "us": {k: summary([s * 1e6 for s in v]) for k, v in runs.items()},
        "ratio_zeros/no_zeros": summary([a / b for a, b in zip(runs["80%_zeros"], runs["no_zeros"], strict=True)]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and a smaller IMP run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0: torch's default)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default: 5 quick, 15 full)")
    args = parser.parse_args()
    global CLOCK
    CLOCK = set_threads(args.threads)
    reps = args.reps or (5 if args.quick else 15)
    results: dict = {
        "machine": machine(),
        "quick": args.quick,
        "sparsity": SPARSITY,
        "optimizer": f"Adam lr={LR}",
        "clock": CLOCK.__name__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "steps": {},
    }
    results["steps"]["lenet300100"] = bench_steps("lenet300100", reps, steps=20, warmup=20)
    results["steps"]["conv4"] = bench_steps("conv4", 3 if args.quick else 15, steps=1, warmup=1 if args.quick else 2)
    # the same LeNet comparison with Adam's fused CPU kernel (not bit-identical to the default one)
    results["fused_adam"] = bench_steps(
        "lenet300100", reps, steps=20, warmup=20, variants=("dense", "driver"), fused=True
    )
    if args.quick:
        results["imp"] = bench_imp(3, n=3000, rounds=2, epochs=1)
    else:
        results["imp"] = bench_imp(9, n=3000, rounds=3, epochs=2)
    results["sqrt"] = bench_sqrt(reps)

    markdown = report(results)
    print(markdown)
    write_result("training", results, markdown)


def met(value: float, goal: float, at_most: bool = True) -> str:
    return "met" if (value <= goal if at_most else value >= goal) else "**missed**"


def report(results: dict) -> str:
    """The Markdown tables of a run: goals first, then the detail behind them."""
    steps, imp, sq = results["steps"], results["imp"], results["sqrt"]
    fused = results["fused_adam"]["ratios"]["driver/dense"]
    goals = []
    for key, r in steps.items():
        ratio = r["ratios"]["driver/dense"]["step"]
        goals.append([f"{key}: driver training step / dense step <= 1.05", fmt(ratio), met(ratio["median"], 1.05)])
    for key, r in steps.items():
        ratio = r["pre_hooks"]["ratio_driver/stock"]
        goals.append([f"{key}: driver pre-hooks / stock pre-hooks <= 1", fmt(ratio), met(ratio["median"], 1.0)])
    ratio = imp["ratio_driver/hand_written"]
    goals.append(
        ["whole IMP run: find_ticket / hand-written stock loop <= 1.05", fmt(ratio), met(ratio["median"], 1.05)]
    )
    lines = [
        f"Machine: {machine_line(results['machine'])}; clock: time.{results['clock']}. "
        f"Sparsity {SPARSITY:.0%}, {results['optimizer']}. Ratios: median (min-max) of per-repetition ratios.",
        "",
        table(["goal", "measured", ""], goals),
        "",
    ]
    rows = []
    for key, r in steps.items():
        for pair, phases in r["ratios"].items():
            rows.append([f"{key} (batch {r['batch']})", pair] + [fmt(phases[p]) for p in PHASES])
    fused_row = [fmt(fused[p]) for p in PHASES]
    rows.append(["lenet300100 (batch 60), Adam(fused=True)", "driver/dense"] + fused_row)
    lines += [table(["model", "ratio", "step", "forward (with pre-hooks)", "backward", "optimizer step"], rows), ""]
    rows = []
    for key, r in steps.items():
        ms, hk = r["ms_per_step"], r["pre_hooks"]
        rows.append(
            [
                key,
                f"{ms['dense']['step']['median']:.2f}",
                f"{ms['stock']['step']['median']:.2f}",
                f"{ms['driver']['step']['median']:.2f}",
                f"{hk['us_per_forward']['stock']['median']:.1f}",
                f"{hk['us_per_forward']['driver']['median']:.1f}",
                r["stock_and_driver_weights_identical"],
            ]
        )
    lines += [
        table(
            [
                "model",
                "dense ms/step",
                "stock ms/step",
                "driver ms/step",
                "stock pre-hooks us/forward",
                "driver pre-hooks us/forward",
                "stock and driver weights bit-identical",
            ],
            rows,
        ),
        "",
    ]
    lines += [
        table(
            [
                "whole IMP run, LeNet-300-100 on synthetic data",
                "find_ticket s",
                "hand-written s",
                "ratio",
                "same final masks",
            ],
            [
                [
                    f"{imp['examples']} examples, {imp['rounds']} rounds x {imp['epochs_per_round']} epochs "
                    f"({imp['steps']} steps)",
                    fmt(imp["seconds"]["driver"], 2),
                    fmt(imp["seconds"]["hand_written"], 2),
                    fmt(imp["ratio_driver/hand_written"]),
                    imp["same_masks"],
                ]
            ],
        ),
        "",
    ]
    lines.append(
        f"Diagnosis: torch.sqrt over {sq['numel']} float32 (LeNet's first layer): no zeros "
        f"{sq['us']['no_zeros']['median']:.0f} us, 80% exact zeros {sq['us']['80%_zeros']['median']:.0f} us "
        f"(ratio {fmt(sq['ratio_zeros/no_zeros'], 2)})."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
