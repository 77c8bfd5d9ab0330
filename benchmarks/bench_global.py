"""Global pooling benchmark: stock L1Unstructured vs global_magnitude vs LotteryMagnitude.

    python benchmarks/bench_global.py [--quick] [--threads N]

Every measurement runs in a fresh subprocess that builds the torchvision model
(weights=None) and prunes its conv/linear weights once (amount=0.2); methods
alternate within each repetition. Time: wall clock of the pruning call.
Memory: peak RSS growth = ru_maxrss after the call minus the RSS just before it
(torch CPU tensors are invisible to tracemalloc); "working" memory = peak growth
minus the RSS still held after the call (the masks and recomputed weights that
every method installs). Writes benchmarks/results/global.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("stock_l1", "global_magnitude", "stock_lottery")


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def worker(model_name: str, method: str, threads: int) -> None:
    import torch
    import torchvision
    from torch import nn
    from torch.nn.utils import prune

    from torch_lottery import LotteryMagnitude, global_magnitude

    if threads:
        torch.set_num_threads(threads)
    model = getattr(torchvision.models, model_name)(weights=None)
    params = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    weight_bytes = sum(m.weight.numel() * m.weight.element_size() for m, _ in params)
    before = rss_kib()
    start = time.perf_counter()
    if method == "stock_l1":
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.2)
    elif method == "global_magnitude":
        global_magnitude(params, amount=0.2, min_remaining=0)
    else:
        prune.global_unstructured(params, pruning_method=LotteryMagnitude, amount=0.2)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    after = rss_kib()
    print(json.dumps({"seconds": seconds, "peak_bytes": (peak - before) * 1024,
                      "retained_bytes": (after - before) * 1024, "weight_bytes": weight_bytes,
                      "survivors": int(sum(m.weight_mask.sum() for m, _ in params))}))


def measure(model_name: str, method: str, threads: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", model_name, method, str(threads)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> dict:
    import torch
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {"nproc": os.cpu_count(), "cpu": cpu, "torch": torch.__version__, "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="resnet18 only, 3 repetitions")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the workers (0: torch's default)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return
    models = ["resnet18"] if args.quick else ["resnet18", "resnet50", "vgg19"]
    reps = args.reps or (3 if args.quick else 5)
    if "vgg19" in models:
        try:
            avail = int(next(l for l in open("/proc/meminfo") if l.startswith("MemAvailable")).split()[1])
        except (OSError, StopIteration):
            avail = 0
        if avail < 8 * 1024 * 1024:  # vgg19: 143 M weights, stock needs several copies
            models.remove("vgg19")
    results = {"machine": machine(), "threads": args.threads or "default", "reps": reps, "models": {}}
    rows = []
    for model_name in models:
        runs = {m: [] for m in METHODS}
        for rep in range(reps):
            order = METHODS if rep % 2 == 0 else METHODS[::-1]  # alternate
            for method in order:
                runs[method].append(measure(model_name, method, args.threads))
        survivors = {m: {r["survivors"] for r in runs[m]} for m in METHODS}
        summary = {"weight_bytes": runs[METHODS[0]][0]["weight_bytes"], "survivors": survivors["stock_l1"].pop()}
        for m in METHODS:
            t = [r["seconds"] for r in runs[m]]
            p = [r["peak_bytes"] for r in runs[m]]
            w = [r["peak_bytes"] - r["retained_bytes"] for r in runs[m]]
            summary[m] = {"seconds": t, "median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
                          "peak_bytes_median": statistics.median(p), "working_bytes_median": statistics.median(w),
                          "survivors_equal_stock": survivors[m] == {summary["survivors"]}}
        # ratios per repetition (side by side), then median and range
        for m in ("global_magnitude", "stock_lottery"):
            ratios = [a["seconds"] / b["seconds"] for a, b in zip(runs["stock_l1"], runs[m])]
            summary[m]["speedup_vs_stock"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        results["models"][model_name] = summary
        wb = summary["weight_bytes"]
        for m in METHODS:
            s = summary[m]
            sp = s.get("speedup_vs_stock")
            rows.append(f"| {model_name} | {m} | {s['median_s']:.3f} ({s['min_s']:.3f}-{s['max_s']:.3f}) | "
                        + (f"{sp['median']:.1f}x ({sp['min']:.1f}-{sp['max']:.1f})" if sp else "1.0x")
                        + f" | {s['peak_bytes_median'] / wb:.2f}x | {s['working_bytes_median'] / wb:.2f}x |")
    print(f"threads: {results['threads']}, repetitions: {reps}, machine: {results['machine']}")
    print("| model | method | time s, median (min-max) | speedup vs stock, median (range) "
          "| peak RSS growth / weight bytes | working (peak - retained) / weight bytes |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    out = Path(__file__).parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = "global.json" if not args.threads else f"global_threads{args.threads}.json"
    (out / name).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
