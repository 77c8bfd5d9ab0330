"""Benchmark of torch_lottery.export: file size and sparse (CSR) inference speed.

    python benchmarks/bench_export.py [--quick] [--threads N]

LeNet-300-100 (784-300-100-10), every Linear weight pruned layer-wise with
stock L1 unstructured pruning to the given sparsity. Timings alternate the dense
pruned model (A, plain nn.Linear after prune.remove) and the sparse one (B,
to_sparse_inference) and report the median and the min-max of the per-repetition
ratios A/B (> 1: sparse is faster). Writes benchmarks/results/export.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torch_lottery.export import DEFAULT_MIN_BATCH, export, permanent_copy, to_sparse_inference  # noqa: E402

warnings.filterwarnings("ignore", message=".*[Ss]parse.*")

BATCHES = (1, 16, 64, 256, 1024)
SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99)


def lenet(sparsity: float, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                        nn.Linear(100, 10))
    for module in net:
        if isinstance(module, nn.Linear):
            prune.l1_unstructured(module, "weight", amount=sparsity)
    return net.eval()


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads()}


def sizes(sparsity: float) -> dict:
    net = lenet(sparsity)
    with tempfile.TemporaryDirectory() as tmp:
        sparse_path, dense_path = os.path.join(tmp, "sparse.pt"), os.path.join(tmp, "dense.pt")
        export(net, sparse_path)
        torch.save(permanent_copy(net).state_dict(), dense_path)
        s, d = os.path.getsize(sparse_path), os.path.getsize(dense_path)
    return {"sparsity": sparsity, "export_bytes": s, "dense_bytes": d, "ratio": s / d}


def _time(model: nn.Module, x: torch.Tensor, loops: int) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        model(x)
    return (time.perf_counter() - start) / loops


def compare(dense: nn.Module, sparse: nn.Module, batch: int, reps: int) -> dict:
    x = torch.randn(batch, 1, 28, 28)
    loops = max(3, 2048 // batch)
    a_times, b_times, ratios = [], [], []
    with torch.inference_mode():
        for _ in range(3):  # warm-up
            dense(x), sparse(x)
        for _ in range(reps):  # alternate A and B
            a = _time(dense, x, loops)
            b = _time(sparse, x, loops)
            a_times.append(a), b_times.append(b), ratios.append(a / b)
    return {"batch": batch, "dense_us": statistics.median(a_times) * 1e6,
            "sparse_us": statistics.median(b_times) * 1e6, "speedup_median": statistics.median(ratios),
            "speedup_min": min(ratios), "speedup_max": max(ratios), "reps": reps}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="7 repetitions, fewer sweep cells")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "export.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    reps = 7 if args.quick else 9
    result = {"command": "python benchmarks/bench_export.py" + (" --quick" if args.quick else "")
              + (f" --threads {args.threads}" if args.threads != 1 else ""),
              "machine": machine(), "default_min_batch": DEFAULT_MIN_BATCH}

    result["sizes"] = [sizes(s) for s in SPARSITIES]
    print("## File size (export vs torch.save of the dense state_dict)\n")
    print("| sparsity | export bytes | dense bytes | ratio |\n|---|---|---|---|")
    for row in result["sizes"]:
        print(f"| {row['sparsity']:.0%} | {row['export_bytes']} | {row['dense_bytes']} | {row['ratio']:.3f} |")

    print(f"\n## Inference, to_sparse_inference defaults (min_batch={DEFAULT_MIN_BATCH}), dense/sparse time\n")
    print("| sparsity | batch | dense us | sparse us | speedup median | min-max |\n|---|---|---|---|---|---|")
    result["headline"] = []
    for sparsity in (0.98, 0.9):
        net = lenet(sparsity)
        dense, sparse = permanent_copy(net).eval(), to_sparse_inference(net, min_sparsity=0.0)
        for batch in (1, 64, 1024):
            row = {"sparsity": sparsity, **compare(dense, sparse, batch, reps)}
            result["headline"].append(row)
            print(f"| {sparsity:.0%} | {batch} | {row['dense_us']:.1f} | {row['sparse_us']:.1f} | "
                  f"{row['speedup_median']:.2f}x | {row['speedup_min']:.2f}-{row['speedup_max']:.2f} |")

    print("\n## Sweep, sparse kernel forced (min_batch=1): dense/sparse speedup, median (min-max)\n")
    print("| sparsity | " + " | ".join(f"batch {b}" for b in BATCHES) + " |")
    print("|---|" + "---|" * len(BATCHES))
    result["sweep"] = []
    for sparsity in SPARSITIES:
        net = lenet(sparsity)
        dense, sparse = permanent_copy(net).eval(), to_sparse_inference(net, min_sparsity=0.0, min_batch=1)
        cells = []
        for batch in BATCHES:
            row = {"sparsity": sparsity, **compare(dense, sparse, batch, reps)}
            result["sweep"].append(row)
            cells.append(f"{row['speedup_median']:.2f} ({row['speedup_min']:.2f}-{row['speedup_max']:.2f})")
        print(f"| {sparsity:.0%} | " + " | ".join(cells) + " |")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")
    return result


if __name__ == "__main__":
    main()
