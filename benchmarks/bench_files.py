"""Benchmark of the integrity digest of torch-lottery's files: what SHA-256 adds to saving and loading.

    python benchmarks/bench_files.py [--quick]

A checkpoint-like state of ResNet-18's size (11.7 M float32 weights, plus as many
rewind values and bool masks) is saved and loaded alternately (A) the plain way,
``atomic_save`` + ``torch.load(weights_only=True)``, and (B) the library's way,
``save_state`` / ``load_state`` (the same plus the SHA-256 digest of the content).
Reports the median and the min-max of the per-repetition ratios B/A (1.0: no
cost) for saving and loading, and the digest's own throughput. Writes
benchmarks/results/files.json.
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
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torch_lottery._files import atomic_save, digest, load_state, save_state  # noqa: E402

#: Tensor sizes of ResNet-18 (torchvision), 11.7 M weights in total, grouped coarsely.
SIZES = [9408, 36864 * 4, 73728, 147456 * 3, 8192, 294912, 589824 * 3, 32768, 1179648, 2359296 * 3, 131072, 512000]


def state(scale: float) -> dict:
    g = torch.Generator().manual_seed(0)
    sizes = [max(1, int(n * scale)) for n in SIZES]
    return {
        "format": "bench",
        "version": 2,
        "round": 3,
        "model": {f"t{i}": torch.randn(n, generator=g) for i, n in enumerate(sizes)},
        "rewind": {f"t{i}": torch.randn(n, generator=g) for i, n in enumerate(sizes)},
        "masks": {f"t{i}": torch.rand(n, generator=g) > 0.5 for i, n in enumerate(sizes)},
        "history": [{"round": r, "remaining": 0.8**r} for r in range(4)],
    }


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the size, fewer repetitions")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = state(0.1 if args.quick else 1.0)
    repetitions = 3 if args.quick else 7
    nbytes = sum(t.numel() * t.element_size() for part in ("model", "rewind", "masks") for t in data[part].values())
    save_ratios, load_ratios, digest_seconds, seconds = (
        [],
        [],
        [],
        {"save": [], "save_state": [], "load": [], "load_state": []},
    )
    with tempfile.TemporaryDirectory() as folder:
        plain, sealed = os.path.join(folder, "plain.pt"), os.path.join(folder, "sealed.pt")
        for _ in range(repetitions):
            a = timed(lambda: atomic_save(data, plain))
            b = timed(lambda: save_state(data, sealed))
            save_ratios.append(b / a)
            seconds["save"].append(a)
            seconds["save_state"].append(b)
            a = timed(lambda: torch.load(plain, weights_only=True))
            b = timed(lambda: load_state(sealed, "bench", "bench", (2,)))
            load_ratios.append(b / a)
            seconds["load"].append(a)
            seconds["load_state"].append(b)
            digest_seconds.append(timed(lambda: digest(data)))
        file_bytes = os.path.getsize(sealed)
    result = {
        "command": "python benchmarks/bench_files.py" + (" --quick" if args.quick else ""),
        "machine": machine(),
        "content_bytes": nbytes,
        "file_bytes": file_bytes,
        "repetitions": repetitions,
        "save_ratio_digest_vs_plain": {
            "median": statistics.median(save_ratios),
            "min": min(save_ratios),
            "max": max(save_ratios),
        },
        "load_ratio_digest_vs_plain": {
            "median": statistics.median(load_ratios),
            "min": min(load_ratios),
            "max": max(load_ratios),
        },
        "digest_mb_per_s": nbytes / 1e6 / statistics.median(digest_seconds),
        "median_seconds": {k: statistics.median(v) for k, v in seconds.items()},  # context only
    }
    print(json.dumps(result, indent=2))
    if not args.quick:
        out = ROOT / "benchmarks" / "results" / "files.json"
        out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
