"""Training a ticket at the speed its size allows: ``sparse_training`` against the dense and masked paths.

    python benchmarks/bench_ticket_training.py [--quick] [--threads N] [--reps N]

Per training step (zero_grad, forward, cross-entropy, backward, default
``torch.optim.Adam(lr=1.2e-3)`` step) on the CPU, three variants built from the
same initial weights and trained on the same fixed batch:

- ``dense``: the unpruned network;
- ``masked``: every prunable weight pruned with stock ``prune.l1_unstructured`` to
  the given density (stock's masked dense path, what a ticket trains on today);
- ``fast``: the same pruned network trained inside ``tl.sparse_training(model)``
  (kernel ``"auto"``: survivor-only parameters, a CSR kernel or a scatter per
  tensor), the optimizer built inside the block.

The variants alternate within every repetition (order reversed every other
repetition); a repetition's figure per variant is the median over its steps, and
the ratios are per repetition (median and range reported). Parts:

1. the goals on LeNet-300-100 (784-300-100-10), batch 60: ``fast / dense`` at 20%,
   5% and 2% of the weights, and ``fast / masked`` (never slower);
2. the crossover: LeNet-300-100 at densities 90% ... 1% and batches 60, 256, 1024
   (the kernels ``auto`` chose in each cell, the densest cell where ``fast`` beats
   ``dense``, and whether it ever loses to ``masked``);
3. the same figures for the LTH paper's Conv-4 (3x32x32 inputs, batch 60);
4. after the timed steps, ``fast`` and ``masked`` (same masks, same steps) must hold
   the same weights to float32 rounding (largest difference reported): the CSR
   kernel sums in another order, and Adam, which scales each entry's update to about
   ``lr``, can turn a rounding difference in a near-zero gradient into up to one
   step's size (the tests check equality exactly, and in float64, step by step);
5. the cause of the masked path's optimizer cost: ``torch.sqrt`` on CPU over exact
   zeros (the second moments of pruned entries) against tiny normal numbers and
   against ``numpy.sqrt``, and Adam's step over a 80%-pruned first layer.

With one thread (the default) every time is the process's CPU time. Writes
benchmarks/results/ticket_training.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
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

import torch_lottery as tl  # noqa: E402
from torch_lottery.experiments.models import build_model  # noqa: E402
from torch_lottery.pruning.utils import named_prunable_parameters  # noqa: E402

LR = 1.2e-3
CLOCK = time.process_time
VARIANTS = ("dense", "masked", "fast")
#: goal density -> (ratio, bound, kind): fast/dense at most, or dense/fast at least
GOALS = {
    0.2: ("fast/dense", 1.05, "at most"),
    0.05: ("dense/fast", 1.5, "at least"),
    0.02: ("dense/fast", 2.0, "at least"),
}
MODELS = {"lenet300100": (784,), "conv4": (3, 32, 32)}


def fmt(s: dict, digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def build(model: str, density: float | None) -> nn.Module:
    torch.manual_seed(0)
    net = build_model(model, MODELS[model], 10)
    if density is not None:
        for _, module, name in named_prunable_parameters(net):
            prune.l1_unstructured(module, name, amount=1.0 - density)
    return net


def steps(
    net: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, count: int
) -> tuple[float, float]:
    """Run ``count`` training steps; return the median seconds per step and of its optimizer phase."""
    times, optimizer_times = [], []
    for _ in range(count):
        start = CLOCK()
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        middle = CLOCK()
        optimizer.step()
        end = CLOCK()
        times.append(end - start)
        optimizer_times.append(end - middle)
    return statistics.median(times), statistics.median(optimizer_times)


def effective(net: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for qualified, module, name in named_prunable_parameters(net):
        out[qualified] = (getattr(module, name + "_mask") * getattr(module, name + "_orig")).detach().clone()
    return out


def cell(model: str, density: float, batch: int, reps: int, count: int, fused: bool = False) -> dict:
    """One density and batch: the variants side by side, the ratios and the weight check.

    With ``fused``, also ``dense`` and ``fast`` with ``Adam(fused=True)`` (for reference: not the
    default optimizer the goals are about).
    """
    generator = torch.Generator().manual_seed(1)
    x = torch.randn((batch,) + MODELS[model], generator=generator)
    y = torch.randint(0, 10, (batch,), generator=generator)
    variants = VARIANTS + (("dense_fused", "fast_fused") if fused else ())
    nets = {v: build(model, None if v.startswith("dense") else density) for v in variants}
    optimizers = {v: torch.optim.Adam(nets[v].parameters(), lr=LR, fused=v.endswith("fused")) for v in variants}
    with contextlib.ExitStack() as blocks:
        for v in (v for v in variants if v.startswith("fast")):  # the optimizer built inside the block
            report = blocks.enter_context(tl.sparse_training(nets[v]))
            optimizers[v] = torch.optim.Adam(nets[v].parameters(), lr=LR, fused=v.endswith("fused"))
        for v in variants:  # warm-up, the same number of steps for masked and fast
            steps(nets[v], optimizers[v], x, y, max(2, count // 2))
        runs: dict[str, list[float]] = {v: [] for v in variants}
        optimizer_runs: dict[str, list[float]] = {v: [] for v in variants}
        for rep in range(reps):
            for v in variants if rep % 2 == 0 else variants[::-1]:
                step_time, optimizer_time = steps(nets[v], optimizers[v], x, y, count)
                runs[v].append(step_time)
                optimizer_runs[v].append(optimizer_time)
    want, got = effective(nets["masked"]), effective(nets["fast"])
    difference = max(float((want[k] - got[k]).abs().max()) for k in want)
    scale = max(float(want[k].abs().max()) for k in want)

    def ratios(a: str, b: str) -> dict:
        return summary([ra / rb for ra, rb in zip(runs[a], runs[b], strict=True)])

    fused_ratios = (
        {
            "fast_fused/dense": ratios("fast_fused", "dense"),
            "fast_fused/dense_fused": ratios("fast_fused", "dense_fused"),
        }
        if fused
        else {}
    )
    return {
        "model": model,
        "density": density,
        "batch": batch,
        "reps": reps,
        "steps_per_rep": count,
        "ms_per_step": {v: summary([t * 1e3 for t in runs[v]]) for v in variants},
        "ms_optimizer_step": {v: summary([t * 1e3 for t in optimizer_runs[v]]) for v in variants},
        **fused_ratios,
        "fast/dense": ratios("fast", "dense"),
        "dense/fast": ratios("dense", "fast"),
        "masked/dense": ratios("masked", "dense"),
        "fast/masked": ratios("fast", "masked"),
        "kernels": report.kernels,
        "parameters": report.parameters,
        "dense_parameters": report.dense_parameters,
        "max_weight_difference": difference,
        "max_weight": scale,
    }


def bench_sqrt(reps: int) -> dict:
    """torch.sqrt over exact zeros vs tiny normal numbers vs numpy.sqrt; Adam over an 80%-pruned layer."""
    import numpy as np

    n = 300 * 784
    zeros, tiny = torch.zeros(n), torch.full((n,), 1e-30)
    out = torch.empty(n)
    zeros_np, out_np = zeros.numpy(), np.empty(n, dtype=np.float32)
    cases = {
        "torch.sqrt(zeros)": lambda: torch.sqrt(zeros, out=out),
        "torch.sqrt(1e-30)": lambda: torch.sqrt(tiny, out=out),
        "numpy.sqrt(zeros)": lambda: np.sqrt(zeros_np, out=out_np),
    }
    adam = {}
    for label, kwargs in (("Adam()", {}), ("Adam(fused=True)", {"fused": True})):
        for kind in ("dense", "80% pruned"):
            param = nn.Parameter(torch.randn(300, 784))
            keep = (torch.rand(300, 784) >= 0.8).float() if kind != "dense" else torch.ones(300, 784)
            optimizer = torch.optim.Adam([param], **kwargs)

            def step(param=param, keep=keep, optimizer=optimizer) -> None:
                param.grad = torch.randn(300, 784) * keep
                optimizer.step()

            step()
            adam[f"{label}, {kind}"] = step
    runs: dict[str, list[float]] = {k: [] for k in list(cases) + list(adam)}
    for _ in range(reps):
        for key, fn in list(cases.items()) + list(adam.items()):
            start = CLOCK()
            for _ in range(20):
                fn()
            runs[key].append((CLOCK() - start) / 20)
    return {"numel": n, "us": {k: summary([s * 1e6 for s in v]) for k, v in runs.items()}}


def crossover(cells: list[dict], batch: int) -> float | None:
    """The densest density at which fast beats dense (median ratio below 1) at ``batch``."""
    winning = [c["density"] for c in cells if c["batch"] == batch and c["fast/dense"]["median"] < 1.0]
    return max(winning) if winning else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and cells")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0: torch's default)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default: 3 quick, 7 full)")
    args = parser.parse_args()
    global CLOCK
    CLOCK = set_threads(args.threads)
    reps = args.reps or (3 if args.quick else 7)
    results: dict = {"machine": machine(), "quick": args.quick, "optimizer": f"Adam(lr={LR})", "clock": CLOCK.__name__}
    results["goals"] = [cell("lenet300100", d, 60, reps, 20, fused=True) for d in GOALS]
    densities = (0.5, 0.1, 0.01) if args.quick else (0.9, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
    batches = (60, 1024) if args.quick else (60, 256, 1024)
    results["sweep"] = [
        cell("lenet300100", d, b, max(3, reps // 2), max(4, 20 * 60 // b)) for b in batches for d in densities
    ]
    results["conv4"] = [cell("conv4", d, 60, 3, 3 if args.quick else 5) for d in GOALS]
    results["sqrt"] = bench_sqrt(reps)
    markdown = report(results)
    print(markdown)
    write_result("ticket_training", results, markdown)


def report(results: dict) -> str:
    goals = []
    for c in results["goals"]:
        key, bound, kind = GOALS[c["density"]]
        value = c[key]["median"]
        ok = value <= bound if kind == "at most" else value >= bound
        goals.append(
            [
                f"LeNet-300-100, batch 60, {c['density']:.0%} of the weights: {key} {kind} {bound}",
                fmt(c[key]),
                "met" if ok else "**missed**",
            ]
        )
    every = results["goals"] + results["sweep"] + results["conv4"]
    # cells where auto kept every tensor masked train the same path twice: their ratio is noise
    changed = [c for c in every if set(c["kernels"].values()) != {"masked"}]
    worst = max(changed, key=lambda c: c["fast/masked"]["median"])
    goals.append(
        [
            f"never slower than the masked dense path: worst fast/masked over the {len(changed)} cells where "
            f"auto changed a kernel at most 1 (the other {len(every) - len(changed)} keep every tensor masked)",
            f"{fmt(worst['fast/masked'])} ({worst['model']}, {worst['density']:.0%}, batch {worst['batch']})",
            "met" if worst["fast/masked"]["median"] <= 1.0 else "**missed**",
        ]
    )
    worst_diff = max(every, key=lambda c: c["max_weight_difference"])
    goals.append(
        [
            "fast and masked hold the same weights after the same steps, to float32 rounding as Adam "
            f"carries it (at most one step's size, lr = {LR})",
            f"largest difference {worst_diff['max_weight_difference']:.2e} ({worst_diff['model']}, "
            f"{worst_diff['density']:.0%}, batch {worst_diff['batch']}; weights up to {worst_diff['max_weight']:.2f})",
            "met" if worst_diff["max_weight_difference"] <= LR else "**missed**",
        ]
    )
    lines = [
        f"Machine: {machine_line(results['machine'])}; clock: time.{results['clock']}; {results['optimizer']} "
        "(the default for-loop CPU implementation). Ratios: median (min-max) of per-repetition ratios.",
        "",
        table(["goal", "measured", ""], goals),
        "",
    ]

    def rows(cells: list[dict]) -> list[list]:
        return [
            [
                c["model"],
                f"{c['density']:.0%}",
                c["batch"],
                f"{c['ms_per_step']['dense']['median']:.2f}",
                fmt(c["masked/dense"]),
                fmt(c["fast/dense"]),
                fmt(c["fast/masked"]),
                ", ".join(f"{k}: {v}" for k, v in c["kernels"].items()),
                f"{c['parameters']} / {c['dense_parameters']}",
            ]
            for c in cells
        ]

    headers = [
        "model",
        "weights",
        "batch",
        "dense ms/step",
        "masked/dense",
        "fast/dense",
        "fast/masked",
        "kernels (auto)",
        "trained entries / dense",
    ]
    lines += [table(headers, rows(results["goals"] + results["conv4"] + results["sweep"])), ""]
    phases = []
    for c in results["goals"]:
        ms, opt = c["ms_per_step"], c["ms_optimizer_step"]
        for v in VARIANTS:
            rest = ms[v]["median"] - opt[v]["median"]
            phases.append(
                [f"{c['density']:.0%}", v, f"{ms[v]['median']:.3f}", f"{rest:.3f}", f"{opt[v]['median']:.3f}"]
            )
    lines += [
        table(
            ["LeNet-300-100, batch 60: weights", "variant", "ms/step", "zero_grad, forward, backward ms", "Adam ms"],
            phases,
        ),
        "",
    ]
    lines += [
        table(
            [
                "LeNet-300-100, batch 60, with Adam(fused=True) (reference)",
                "fast fused / dense",
                "fast fused / dense fused",
            ],
            [
                [f"{c['density']:.0%} of the weights", fmt(c["fast_fused/dense"]), fmt(c["fast_fused/dense_fused"])]
                for c in results["goals"]
            ],
        ),
        "",
    ]
    batches = sorted({c["batch"] for c in results["sweep"]})
    cross = []
    for b in batches:
        d = crossover(results["sweep"], b)
        cross.append([b, "never" if d is None else f"{d:.0%}"])
    lines += [table(["batch (LeNet-300-100)", "densest weights fraction where fast beats dense"], cross), ""]
    us = results["sqrt"]["us"]
    lines += [
        table(
            ["operation (CPU, 235,200 float32)", "us, median (min-max)"],
            [[k, fmt(v, 0)] for k, v in us.items()],
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
