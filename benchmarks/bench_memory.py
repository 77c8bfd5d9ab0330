"""Memory held by a pruned model after 1 and after 10 rounds of iterative pruning: stock vs ours.

    python benchmarks/bench_memory.py [--quick]

Counts (does not time) the bytes of every distinct tensor storage the model keeps
alive: parameters, buffers, tensor attributes (the computed ``module.<name>``) and
whatever the forward pre-hooks hold (stock ``CustomFromMask`` keeps its mask, a view
of the whole pool's mask, one more per round). Each scenario prunes 20% of the
surviving weights per round, 10 rounds, and records the bytes after round 1 and
after round 10 (``find_ticket`` runs twice, with ``rounds=1`` and ``rounds=10``, and a
training function that does nothing). The model: LeNet-300-100 (``--quick``), plus
torchvision ResNet-18's conv/linear weights (weights=None) in the full run.

Then, as the process sees it: 10 rounds of global pooling (amount=0.2) over
torchvision ResNet-50's conv/linear weights (``--quick``: ResNet-18, 3 rounds),
``tl.global_magnitude`` and stock ``prune.global_unstructured(L1Unstructured)``
(stock for fewer rounds: it is slow and grows), each in a fresh forked process.
After a warm-up on a small model (library code paged in) the model is built, the
freed memory of the build given back (``malloc_trim``, once, before the baseline)
and the baseline RSS taken; after each round the table gives the RSS growth over
the baseline and the high-water mark (VmHWM, reset at the baseline) over it, in
multiples of the weights' bytes. Nothing is trimmed during the rounds.
Writes benchmarks/results/memory.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import _harness as h  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils import prune  # noqa: E402

import torch_lottery as tl  # noqa: E402

ROUNDS = 10
RATE = 0.2


def build(name: str) -> tuple[nn.Module, list]:
    torch.manual_seed(0)
    if name == "lenet300100":
        model = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10)
        )
    else:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None)
    return model, [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def stock_global(model, params, compact):
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=RATE)
    if compact:
        tl.compact_hooks(model)


def stock_local(model, params, compact):
    for module, name in params:
        prune.l1_unstructured(module, name, amount=RATE)
    if compact:
        tl.compact_hooks(model)


def stock_global_lottery(model, params, compact):
    prune.global_unstructured(params, pruning_method=tl.LotteryMagnitude, amount=RATE)
    if compact:
        tl.compact_hooks(model)


def ours_local(model, params, compact):
    for module, name in params:
        tl.lottery_magnitude(module, name, amount=RATE)


def ours_global(model, params, compact):
    tl.global_magnitude(params, amount=RATE, min_remaining=0)


SCENARIOS = [
    # (label, round function, compact_hooks after each round, ours?)
    ("stock global_unstructured(L1Unstructured)", stock_global, False, False),
    ("stock global_unstructured(L1Unstructured) + compact_hooks", stock_global, True, False),
    ("stock l1_unstructured per tensor", stock_local, False, False),
    ("stock global_unstructured(LotteryMagnitude)", stock_global_lottery, False, False),
    ("stock global_unstructured(LotteryMagnitude) + compact_hooks", stock_global_lottery, True, True),
    ("lottery_magnitude per tensor", ours_local, False, True),
    ("global_magnitude", ours_global, False, True),
]


def run_scenario(model_name: str, fn, compact: bool) -> tuple[int, int, int]:
    model, params = build(model_name)
    weight_bytes = sum(m.weight.numel() * m.weight.element_size() for m, _ in params)
    after = []
    with torch.no_grad():
        for round_ in range(1, ROUNDS + 1):
            fn(model, params, compact)
            if round_ in (1, ROUNDS):
                after.append(tl.pruning.held_bytes(model))
    return after[0], after[1], weight_bytes


RSS_MODEL, RSS_ROUNDS, RSS_STOCK_ROUNDS = "resnet50", 10, 4
RSS_QUICK = ("resnet18", 3, 2)
STOCK = "stock global_unstructured(L1Unstructured)"
RSS_METHODS = {"global_magnitude": ours_global, STOCK: stock_global}
#: The goal: the high-water mark of the process over 10 rounds of global_magnitude, above the baseline.
RSS_GOAL = 2.0


def rss_rounds(model_name: str, method: str, rounds: int, threads: int) -> dict:
    """In a fresh (forked) process: prune ``model_name`` ``rounds`` times; RSS growth and peak per round."""
    if threads:
        torch.set_num_threads(threads)
    fn = RSS_METHODS[method]
    small = nn.Sequential(nn.Conv2d(64, 64, 3), nn.Flatten(), nn.Linear(512, 512))
    for _ in range(2):  # the code paths (and library pages) a round needs, loaded before the baseline
        fn(small, [(small[0], "weight"), (small[2], "weight")], False)
    del small
    model, params = build(model_name)
    weight_bytes = sum(m.weight.numel() * m.weight.element_size() for m, _ in params)
    gc.collect()
    h.trim()  # once, before the baseline: the build's freed memory is not counted as headroom
    base = h.rss_bytes()
    exact = h.reset_peak()
    out = []
    with torch.no_grad():
        for round_ in range(1, rounds + 1):
            start = time.perf_counter()
            fn(model, params, False)
            seconds = time.perf_counter() - start
            out.append(
                {
                    "round": round_,
                    "seconds": seconds,
                    "rss_growth": h.rss_bytes() - base,
                    "peak_growth": h.peak_rss_bytes() - base,
                    "held_bytes": tl.pruning.held_bytes(model),
                }
            )
    return {
        "weight_bytes": weight_bytes,
        "baseline_rss": base,
        "exact_peak": exact,
        "mask_dtype": str(params[0][0].weight_mask.dtype),
        "survivors": sum(int(torch.count_nonzero(m.weight_mask)) for m, _ in params),
        "rounds": out,
    }


def rss_section(quick: bool, threads: int) -> tuple[dict, str]:
    """The forked RSS measurements and their Markdown (runs before any torch work in this process)."""
    model_name, rounds, stock_rounds = RSS_QUICK if quick else (RSS_MODEL, RSS_ROUNDS, RSS_STOCK_ROUNDS)
    runs = {}
    for method in RSS_METHODS:
        n = rounds if method == "global_magnitude" else stock_rounds
        runs[method] = h.forked(rss_rounds, model_name, method, n, threads)
    wb = runs["global_magnitude"]["weight_bytes"]
    rows = []
    for method, run in runs.items():
        for r in run["rounds"]:
            rows.append(
                [
                    method,
                    r["round"],
                    f"{r['rss_growth'] / 2**20:.0f}",
                    f"{r['rss_growth'] / wb:.2f}x",
                    f"{r['peak_growth'] / wb:.2f}x",
                    f"{r['held_bytes'] / wb:.2f}x",
                    f"{r['seconds']:.2f}",
                ]
            )
    ours = runs["global_magnitude"]["rounds"]
    peak = max(r["peak_growth"] for r in ours) / wb
    stock_peak = max(r["peak_growth"] for r in runs[STOCK]["rounds"]) / wb
    met = peak <= RSS_GOAL
    data = {
        "model": model_name,
        "rounds": rounds,
        "stock_rounds": stock_rounds,
        "weight_bytes": wb,
        "runs": runs,
        "goal": {"peak_x_weights": peak, "limit": RSS_GOAL, "met": met, "stock_peak_x_weights": stock_peak},
    }
    markdown = "\n".join(
        [
            f"{rounds} rounds of global pooling (amount={RATE}) on {model_name} "
            f"({wb / 2**20:.1f} MiB of conv/linear weights), process RSS over the baseline after building the model:",
            "",
            h.table(
                [
                    "method",
                    "round",
                    "RSS growth MiB",
                    "RSS growth / weights",
                    "peak RSS (VmHWM) / weights",
                    "bytes held by the model / weights",
                    "round s",
                ],
                rows,
            ),
            "",
            h.table(
                ["goal", "measured", "status"],
                [
                    [
                        f"peak RSS over {rounds} rounds of global_magnitude <= {RSS_GOAL:g}x weights ({model_name})",
                        f"{peak:.2f}x (masks {runs['global_magnitude']['mask_dtype']}; stock's after "
                        f"{stock_rounds} rounds: {stock_peak:.2f}x)",
                        "met" if met else "missed",
                    ]
                ],
            ),
        ]
    )
    return data, markdown


def run_driver(model_name: str) -> tuple[int, int, int]:
    out = []
    for rounds in (1, ROUNDS):
        model, params = build(model_name)
        names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        tl.find_ticket(
            model,
            lambda m, context: None,
            strategy="imp",
            strategy_options={"rate": RATE, "scope": "global", "min_remaining": 0},
            rounds=rounds,
            parameters=[f"{n}.weight" for n in names],
        )
        out.append(tl.pruning.held_bytes(model))
    return out[0], out[1], sum(m.weight.numel() * m.weight.element_size() for m, _ in params)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="LeNet-300-100 only")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: the cores are shared; 0: torch's default); counts do not depend on it",
    )
    parser.add_argument("--rss-only", action="store_true", help="only the process-RSS rounds (forked)")
    args = parser.parse_args(argv)
    rss, rss_markdown = rss_section(args.quick, args.threads)  # forked first: no torch work here before it
    if args.rss_only:
        print(rss_markdown)
        return {"rss": rss}
    if args.threads:
        torch.set_num_threads(args.threads)
    models = ["lenet300100"] if args.quick else ["lenet300100", "resnet18"]
    machine = h.machine()
    results = {"machine": machine, "rounds": ROUNDS, "rate": RATE, "models": {}, "rss": rss}
    rows = []
    for model_name in models:
        entries = []
        for label, fn, compact, ours in SCENARIOS:
            one, ten, wb = run_scenario(model_name, fn, compact)
            entries.append({"scenario": label, "ours": ours, "after_1": one, "after_10": ten, "weight_bytes": wb})
        one, ten, wb = run_driver(model_name)
        entries.append(
            {
                "scenario": "find_ticket (strategy imp, global)",
                "ours": True,
                "after_1": one,
                "after_10": ten,
                "weight_bytes": wb,
            }
        )
        results["models"][model_name] = entries
        for e in entries:
            wb = e["weight_bytes"]
            rows.append(
                [
                    model_name,
                    e["scenario"],
                    f"{e['after_1'] / 2**20:.2f}",
                    f"{e['after_10'] / 2**20:.2f}",
                    f"{e['after_10'] / e['after_1']:.2f}x",
                    f"{e['after_1'] / wb:.2f}x",
                    f"{e['after_10'] / wb:.2f}x",
                    "yes" if e["after_1"] == e["after_10"] else "no",
                ]
            )
    flat = all(e["after_1"] == e["after_10"] for m in results["models"].values() for e in m if e["ours"])
    results["goal"] = {"flat_for_ours": flat, "peak_rss_x_weights": rss["goal"]}
    markdown = "\n".join(
        [
            f"Machine: {h.machine_line(machine)}",
            f"Command: `{h.command()}`",
            "",
            h.table(
                [
                    "model",
                    "scenario",
                    "MiB after 1 round",
                    "MiB after 10 rounds",
                    "10 / 1",
                    "after 1 / prunable weights",
                    "after 10 / prunable weights",
                    "flat",
                ],
                rows,
            ),
            "",
            h.table(
                ["goal", "measured", "status"],
                [
                    [
                        "memory held after 10 rounds equals that after 1 round, with our methods, compact_hooks and "
                        "the driver",
                        "equal in every such scenario" if flat else "NOT equal",
                        "met" if flat else "missed",
                    ]
                ],
            ),
            "",
            rss_markdown,
        ]
    )
    print(markdown)
    h.write_result("memory", results, markdown)
    return results


if __name__ == "__main__":
    main()
