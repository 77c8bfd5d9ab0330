"""Global pooling: stock L1Unstructured vs global_magnitude vs LotteryMagnitude, in one global pool.

    python benchmarks/bench_global.py [--quick] [--threads N] [--reps N] [--models a,b] [--profile MODEL]

Each measurement runs in its own forked process: it builds the torchvision model
(weights=None, seed 0) and prunes all its conv/linear weights once with
amount=0.2, by one of

* ``stock_l1``: ``prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.2)``
* ``global_magnitude``: ``torch_lottery.global_magnitude(params, amount=0.2, min_remaining=0)``
* ``stock_lottery``: ``prune.global_unstructured(params, pruning_method=torch_lottery.LotteryMagnitude, amount=0.2)``
* ``stock_floor`` (not on VGG-19): ``prune.global_unstructured`` with a method that prunes nothing
  (``compute_mask`` returns its ``default_mask``): stock's own cost, the floor no pruning
  method passed to ``global_unstructured`` can go below

Within a repetition the methods run back to back, in alternating order (A B C, then
C B A); the speedup of a method is stock_l1's time / its time in the same
repetition, reported as median (min-max) over the repetitions.

Memory: ``peak`` is the growth of the process's resident set during the call
(VmHWM reset just before it, minus the RSS before it), ``retained`` the RSS still
added after the call (the masks and masked weights that every method installs:
1.25x the weights for ours, 3x for stock, which keeps a third copy in its hooks),
``working`` = peak - retained. All are given in multiples of the weights' bytes
(our masks are bool, 1 byte an entry: 1.25x retained for ours).

The full run with one thread (the default) also times stock_l1 against
global_magnitude on ResNet-50 with torch's default threads (all cores), 3
repetitions, for the goal's second row.
Writes benchmarks/results/global.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import _harness as h  # noqa: E402

METHODS = ("stock_l1", "global_magnitude", "stock_lottery", "stock_floor")
MODELS = ("resnet18", "resnet50", "vgg19")
FULL_REPS = {"resnet18": 3, "resnet50": 5, "vgg19": 3}
AMOUNT = 0.2


def _build(model_name: str, threads: int):
    import torch
    import torchvision
    from torch import nn
    from torch.nn.utils import prune  # noqa: F401  (imported before the timed call)

    import torch_lottery  # noqa: F401

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = getattr(torchvision.models, model_name)(weights=None)
    params = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return model, params


def _noop_method():
    from torch.nn.utils import prune

    class PruneNothing(prune.BasePruningMethod):
        """Prune nothing: what stock global_unstructured costs by itself."""

        PRUNING_TYPE = "unstructured"

        def __init__(self, amount):
            self.amount = amount

        def compute_mask(self, t, default_mask):
            return default_mask

    return PruneNothing


def _call(method: str, params) -> None:
    from torch.nn.utils import prune

    from torch_lottery import LotteryMagnitude, global_magnitude

    if method == "stock_floor":
        prune.global_unstructured(params, pruning_method=_noop_method(), amount=AMOUNT)
    elif method == "stock_l1":
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=AMOUNT)
    elif method == "global_magnitude":
        global_magnitude(params, amount=AMOUNT, min_remaining=0)
    elif method == "stock_lottery":
        prune.global_unstructured(params, pruning_method=LotteryMagnitude, amount=AMOUNT)
    else:
        raise ValueError(method)


def _warm_up(method: str) -> None:
    """Prune a small model once, so that code paths (and library pages) are loaded before measuring."""
    from torch import nn

    small = nn.Sequential(nn.Conv2d(64, 64, 3), nn.Flatten(), nn.Linear(512, 512))
    _call(method, [(small[0], "weight"), (small[2], "weight")])


def measure(model_name: str, method: str, threads: int) -> dict:
    """In a fresh (forked) process: build the model, prune it once, report time and memory."""
    import torch

    model, params = _build(model_name, threads)
    _warm_up(method)
    weight_bytes = sum(m.weight.numel() * m.weight.element_size() for m, _ in params)
    gc.collect()
    h.trim()
    before = h.rss_bytes()
    exact_peak = h.reset_peak()
    start = time.perf_counter()
    _call(method, params)
    seconds = time.perf_counter() - start
    peak = h.peak_rss_bytes()
    after = h.rss_bytes()
    h.trim()
    after_trim = h.rss_bytes()  # without the freed memory the C allocator still keeps
    survivors = [int(torch.count_nonzero(m.weight_mask)) for m, _ in params]
    return {
        "seconds": seconds,
        "peak_bytes": peak - before,
        "retained_bytes": after - before,
        "held_bytes": after_trim - before,
        "weight_bytes": weight_bytes,
        "weights": sum(m.weight.numel() for m, _ in params),
        "tensors": len(params),
        "survivors": survivors,
        "threads": torch.get_num_threads(),
        "exact_peak": exact_peak,
    }


def profile(model_name: str, method: str, threads: int, top: int = 12) -> dict:
    """In a fresh process: cProfile one call; return the top functions by own time."""
    model, params = _build(model_name, threads)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    _call(method, params)
    profiler.disable()
    seconds = time.perf_counter() - start
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]:
        where = func if file == "~" else f"{Path(file).name}:{line}({func})"
        rows.append({"function": where, "calls": nc, "own_s": tt, "cumulative_s": ct})
    return {"seconds": seconds, "top": rows}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="resnet18 only, 3 repetitions")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads in the measurements (default 1: the cores are shared; 0: torch's default)",
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions per model (default: ResNet-50 5, others 3)")
    parser.add_argument("--models", default=None, help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument(
        "--profile",
        metavar="MODEL",
        default=None,
        help="instead: cProfile each method once on MODEL and print where the time goes",
    )
    args = parser.parse_args(argv)

    if args.profile:
        report = {}
        for method in METHODS:
            report[method] = h.forked(profile, args.profile, method, args.threads)
            print(f"\n### {method} on {args.profile}: {report[method]['seconds']:.3f} s (under cProfile)\n")
            print(
                h.table(
                    ["function", "calls", "own s", "cumulative s"],
                    [
                        [r["function"], r["calls"], f"{r['own_s']:.3f}", f"{r['cumulative_s']:.3f}"]
                        for r in report[method]["top"]
                    ],
                )
            )
        return report

    models = args.models.split(",") if args.models else (["resnet18"] if args.quick else list(MODELS))
    if "vgg19" in models:
        avail = 0
        try:
            with open("/proc/meminfo") as meminfo:
                line = next(line for line in meminfo if line.startswith("MemAvailable"))
            avail = int(line.split()[1]) * 1024
        except (OSError, StopIteration):
            pass
        if avail < 10 * 2**30:  # stock needs about 11x VGG-19's 0.57 GB of weights
            print(f"skipping vgg19: {avail / 2**30:.1f} GiB available, 10 GiB needed", file=sys.stderr)
            models.remove("vgg19")
    machine = h.machine(args.threads or None)
    results = {"machine": machine, "amount": AMOUNT, "models": {}}
    rows, goal_rows = [], []
    for model_name in models:
        reps = args.reps or (3 if args.quick else FULL_REPS.get(model_name, 3))
        methods = METHODS if model_name != "vgg19" else METHODS[:3]  # the floor would add 3 x 15 s
        runs = {m: [] for m in methods}
        for rep in range(reps):
            for method in methods if rep % 2 == 0 else methods[::-1]:  # alternate the order
                runs[method].append(h.forked(measure, model_name, method, args.threads))
        first = runs["stock_l1"][0]
        wb = first["weight_bytes"]
        entry = {
            "weights": first["weights"],
            "weight_bytes": wb,
            "tensors": first["tensors"],
            "reps": reps,
            "survivors": sum(first["survivors"]),
        }
        for method in methods:
            r = runs[method]
            same = all(x["survivors"] == first["survivors"] for x in r)
            entry[method] = {
                "seconds": h.summary(x["seconds"] for x in r),
                "peak_x_weights": h.summary(x["peak_bytes"] / wb for x in r),
                "retained_x_weights": h.summary(x["retained_bytes"] / wb for x in r),
                "working_x_weights": h.summary((x["peak_bytes"] - x["retained_bytes"]) / wb for x in r),
                "same_survivors_per_tensor_as_stock": same,
                "runs": r,
            }
            if method != "stock_l1":
                entry[method]["speedup_vs_stock"] = h.summary(
                    a["seconds"] / b["seconds"] for a, b in zip(runs["stock_l1"], r, strict=True)
                )
        results["models"][model_name] = entry
        for method in methods:
            e = entry[method]
            t = e["seconds"]
            rows.append(
                [
                    model_name,
                    f"{entry['weights'] / 1e6:.1f} M",
                    method,
                    f"{t['median']:.3f} ({t['min']:.3f}-{t['max']:.3f})",
                    h.ratio_text(e["speedup_vs_stock"]) if "speedup_vs_stock" in e else "1 (reference)",
                    f"{e['peak_x_weights']['median']:.2f}x",
                    f"{e['retained_x_weights']['median']:.2f}x",
                    f"{e['working_x_weights']['median']:.2f}x",
                    "n/a (prunes nothing)"
                    if method == "stock_floor"
                    else "yes"
                    if e["same_survivors_per_tensor_as_stock"]
                    else "NO",
                ]
            )
        if "stock_floor" in entry:
            entry["stock_lottery_over_floor"] = h.summary(
                a["seconds"] / b["seconds"] for a, b in zip(runs["stock_lottery"], runs["stock_floor"], strict=True)
            )
            entry["best_possible_speedup_in_global_unstructured"] = h.summary(
                a["seconds"] / b["seconds"] for a, b in zip(runs["stock_l1"], runs["stock_floor"], strict=True)
            )
        if model_name == "resnet50":
            gm, lm = entry["global_magnitude"], entry["stock_lottery"]
            goal_rows += [
                [
                    "global_magnitude >= 10x faster than stock L1 (ResNet-50)",
                    h.ratio_text(gm["speedup_vs_stock"]),
                    "met" if gm["speedup_vs_stock"]["median"] >= 10 else "missed",
                ],
                [
                    "global_magnitude peak extra memory <= 2x the weights (ResNet-50)",
                    f"{gm['peak_x_weights']['median']:.2f}x (range {gm['peak_x_weights']['min']:.2f}-"
                    f"{gm['peak_x_weights']['max']:.2f}; of which retained {gm['retained_x_weights']['median']:.2f}x)",
                    "met" if gm["peak_x_weights"]["median"] <= 2.0 else "missed",
                ],
                [
                    "LotteryMagnitude in stock global_unstructured >= 2x faster than L1Unstructured (ResNet-50)",
                    h.ratio_text(lm["speedup_vs_stock"])
                    + "; stock's own floor (a method that prunes nothing): "
                    + h.ratio_text(entry["best_possible_speedup_in_global_unstructured"])
                    + ", LotteryMagnitude / floor time "
                    + h.ratio_text(entry["stock_lottery_over_floor"], 2),
                    "met" if lm["speedup_vs_stock"]["median"] >= 2 else "missed",
                ],
            ]
    if "resnet50" in models and args.threads == 1 and not args.quick:
        # the same goal with torch's default threads (all cores): the elementwise passes of
        # global_magnitude use them, stock's topk and boolean gathers much less
        threaded = {m: [] for m in ("stock_l1", "global_magnitude")}
        for rep in range(3):
            for method in threaded if rep % 2 == 0 else list(threaded)[::-1]:
                threaded[method].append(h.forked(measure, "resnet50", method, 0))
        speedup = h.summary(
            a["seconds"] / b["seconds"] for a, b in zip(threaded["stock_l1"], threaded["global_magnitude"], strict=True)
        )
        threads = threaded["stock_l1"][0]["threads"]
        results["resnet50_default_threads"] = {"threads": threads, "speedup_vs_stock": speedup, "runs": threaded}
        goal_rows.insert(
            1,
            [
                f"global_magnitude >= 10x faster than stock L1 (ResNet-50), torch's default threads ({threads})",
                h.ratio_text(speedup),
                "met" if speedup["median"] >= 10 else "missed",
            ],
        )
    results["goals"] = goal_rows
    md = [
        f"Machine: {h.machine_line(machine)}",
        f"Command: `{h.command()}`",
        "",
        h.table(
            [
                "model",
                "weights",
                "method",
                "time s, median (min-max)",
                "speedup vs stock, median (min-max)",
                "peak / weights",
                "retained / weights",
                "working / weights",
                "same survivors as stock",
            ],
            rows,
        ),
    ]
    if goal_rows:
        md += ["", h.table(["goal", "measured", "status"], goal_rows)]
    markdown = "\n".join(md)
    print(markdown)
    h.write_result("global", results, markdown)
    return results


if __name__ == "__main__":
    main()
