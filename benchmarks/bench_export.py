"""Sparse export: file size and sparse (CSR) inference speed of torch_lottery.export.

    python benchmarks/bench_export.py [--quick] [--threads N]

LeNet-300-100 (784-300-100-10), every Linear weight pruned layer-wise with stock
L1 unstructured pruning to the given sparsity. File size: ``export(model, path)``
against ``torch.save`` of the dense state_dict (pruning made permanent). Speed:
A = the dense pruned model (plain nn.Linear after prune.remove), B =
``to_sparse_inference(model, ...)``; each repetition times A then B (alternating,
``torch.inference_mode``), and the tables give the median and min-max of the
per-repetition ratios A/B (> 1: sparse is faster). Also: where the sparse kernel
stops winning, by sparsity and batch (LeNet) and by layer size (one square Linear).
Writes benchmarks/results/export.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import _harness as h  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils import prune  # noqa: E402

from torch_lottery.export import DEFAULT_MIN_BATCH, export, permanent_copy, to_sparse_inference  # noqa: E402

warnings.filterwarnings("ignore", message=".*[Ss]parse.*")

BATCHES = (1, 16, 64, 256, 1024)
SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99)
LAYER_SIZES = (128, 512, 2048)
HEADLINE = 0.98  # at most 2% of the weights left


def lenet(sparsity: float, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10)
    )
    for module in net:
        if isinstance(module, nn.Linear):
            prune.l1_unstructured(module, "weight", amount=sparsity)
    return net.eval()


def square(size: int, sparsity: float) -> nn.Module:
    torch.manual_seed(0)
    layer = nn.Linear(size, size)
    prune.l1_unstructured(layer, "weight", amount=sparsity)
    return nn.Sequential(layer).eval()


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


def compare(dense: nn.Module, sparse: nn.Module, x: torch.Tensor, reps: int) -> dict:
    """Alternate A (dense) and B (sparse) ``reps`` times, each timing about 20 ms of dense calls."""
    a_times, b_times, ratios = [], [], []
    with torch.inference_mode():
        for _ in range(2):  # warm-up
            dense(x), sparse(x)
        loops = int(min(5000, max(3, 0.02 / max(_time(dense, x, 3), 1e-7))))
        for _ in range(reps):
            a = _time(dense, x, loops)
            b = _time(sparse, x, loops)
            a_times.append(a), b_times.append(b), ratios.append(a / b)
        diff = float((sparse(x) - dense(x)).abs().max())
    return {
        "batch": x.shape[0],
        "dense_us": statistics.median(a_times) * 1e6,
        "sparse_us": statistics.median(b_times) * 1e6,
        "speedup": h.summary(ratios),
        "reps": reps,
        "max_abs_diff": diff,
        "loops": loops,
    }


def cell(row: dict) -> str:
    s = row["speedup"]
    return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 repetitions, fewer sweep cells")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: the cores are shared; 0: torch's default)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    reps = 5 if args.quick else 9
    batches = (1, 64, 1024) if args.quick else BATCHES
    sparsities = (0.8, 0.9, 0.98) if args.quick else SPARSITIES
    layer_sizes = (128, 2048) if args.quick else LAYER_SIZES
    machine = h.machine()
    result = {"machine": machine, "default_min_batch": DEFAULT_MIN_BATCH, "reps": reps}
    md = [f"Machine: {h.machine_line(machine)}", f"Command: `{h.command()}`", ""]

    result["sizes"] = [sizes(s) for s in SPARSITIES]
    md += [
        "File size, `export(model, path)` vs `torch.save` of the dense state_dict (LeNet-300-100):",
        "",
        h.table(
            ["sparsity", "export bytes", "dense bytes", "ratio"],
            [
                [f"{r['sparsity']:.0%}", r["export_bytes"], r["dense_bytes"], f"{r['ratio']:.3f}"]
                for r in result["sizes"]
            ],
        ),
        "",
    ]

    result["headline"] = []
    net = lenet(HEADLINE)
    dense, sparse = permanent_copy(net).eval(), to_sparse_inference(net)
    for batch in (1, 64, 1024):
        x = torch.randn(batch, 1, 28, 28)
        result["headline"].append({"sparsity": HEADLINE, **compare(dense, sparse, x, reps)})
    md += [
        f"Inference, LeNet-300-100 at {HEADLINE:.0%} sparsity, `to_sparse_inference` defaults "
        f"(min_sparsity=0.9, min_batch={DEFAULT_MIN_BATCH}), dense time / sparse time:",
        "",
        h.table(
            ["batch", "dense us", "sparse us", "speedup, median (min-max)", "max abs diff"],
            [
                [r["batch"], f"{r['dense_us']:.1f}", f"{r['sparse_us']:.1f}", cell(r), f"{r['max_abs_diff']:.1e}"]
                for r in result["headline"]
            ],
        ),
        "",
    ]

    result["sweep"] = []
    rows = []
    for sparsity in sparsities:
        net = lenet(sparsity)
        dense, sparse = permanent_copy(net).eval(), to_sparse_inference(net, min_sparsity=0.0, min_batch=1)
        cells = []
        for batch in batches:
            row = {"sparsity": sparsity, **compare(dense, sparse, torch.randn(batch, 1, 28, 28), reps)}
            result["sweep"].append(row)
            cells.append(cell(row))
        rows.append([f"{sparsity:.0%}"] + cells)
    md += [
        "Sparse kernel forced at every batch size (`min_batch=1`), LeNet-300-100, speedup median (min-max):",
        "",
        h.table(["sparsity"] + [f"batch {b}" for b in batches], rows),
        "",
    ]

    result["layers"] = []
    rows = []
    for size in layer_sizes:
        for sparsity in (0.9, 0.98):
            net = square(size, sparsity)
            dense, sparse = permanent_copy(net).eval(), to_sparse_inference(net, min_sparsity=0.0, min_batch=1)
            cells = []
            for batch in (1, 64, 1024):
                row = {"size": size, "sparsity": sparsity, **compare(dense, sparse, torch.randn(batch, size), reps)}
                result["layers"].append(row)
                cells.append(cell(row))
            rows.append([f"{size}x{size}", f"{sparsity:.0%}"] + cells)
    md += [
        "Sparse kernel forced (`min_batch=1`), one square Linear, speedup median (min-max):",
        "",
        h.table(["layer", "sparsity", "batch 1", "batch 64", "batch 1024"], rows),
        "",
    ]

    size98 = next(r for r in result["sizes"] if r["sparsity"] == HEADLINE)
    head = {r["batch"]: r for r in result["headline"]}
    exact = all(r["max_abs_diff"] <= 1e-4 for r in result["headline"] + result["sweep"] + result["layers"])
    goals = [
        [
            "file <= 15% of the dense state_dict file (98% sparse)",
            f"{size98['ratio']:.1%}",
            "met" if size98["ratio"] <= 0.15 else "missed",
        ],
        [
            "inference >= 1.5x dense at batch 64",
            cell(head[64]) + "x",
            "met" if head[64]["speedup"]["median"] >= 1.5 else "missed",
        ],
        [
            "inference >= 2.5x dense at batch 1024",
            cell(head[1024]) + "x",
            "met" if head[1024]["speedup"]["median"] >= 2.5 else "missed",
        ],
        [
            "never slower than dense at batch 1 (dense fallback below min_batch)",
            cell(head[1]) + "x",
            "met" if head[1]["speedup"]["median"] >= 1.0 else "missed (median below 1)",
        ],
        [
            "outputs identical to float tolerance",
            "max abs diff "
            f"{max(r['max_abs_diff'] for r in result['headline'] + result['sweep'] + result['layers']):.1e}",
            "met" if exact else "missed",
        ],
    ]
    result["goals"] = goals
    md += [h.table(["goal (LeNet-300-100, 2% of weights left)", "measured", "status"], goals)]
    markdown = "\n".join(md)
    print(markdown)
    h.write_result("export", result, markdown)
    return result


if __name__ == "__main__":
    main()
