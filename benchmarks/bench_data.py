"""Experiment-throughput benchmark: one training epoch plus a test evaluation, three ways.

    python benchmarks/bench_data.py [--quick] [--threads N] [--reps N] [--data-root DIR]

Same model (LeNet-300-100, same initial weights), same data (Fashion-MNIST,
60000 training and 10000 test images), batch 128, Adam (lr 1.2e-3), one epoch
and an evaluation of the test set, on CPU:

- ``runner``: the experiment runner's path: ``load_dataset`` (the whole set as
  normalized tensors, done once per experiment and timed apart), then
  ``Trainer.train`` (batches drawn by indexing the preloaded tensors) and
  ``Trainer.evaluate``;
- ``tutorial``: torchvision's ``datasets.FashionMNIST`` with
  ``transforms.ToTensor()`` + ``Normalize`` (per-sample PIL conversion) through a
  ``torch.utils.data.DataLoader(shuffle=True, num_workers=0)``, and the test set
  through a second ``DataLoader``;
- ``hand_written``: a plain loop over the same preloaded tensors as the runner
  (``randperm``, index, step), and one forward pass over the test tensor.

The data are the real IDX files of Debian's ``dataset-fashion-mnist`` package
(``/usr/share/datasets/fashion-mnist``), unpacked into a temporary data root; if
that folder is missing, synthetic IDX files of the same size and format are
written instead (the output says which). The three paths alternate within each
repetition (order reversed every other repetition); reported: median and range
of the per-repetition ratios tutorial / runner (speed-up, goal >= 5) and
runner / hand_written (goal <= 1.2), at 1 torch thread and, when the machine is
idle enough (1-minute load average below 3/4 of the cores), at the core count
(the ``DataLoader`` path's per-sample work is single-threaded; the model's
compute is not, so the speed-up grows with threads). ``--quick`` uses the first
12000 training and 2000 test images and one thread. With one thread every time is the
process's CPU time (``time.process_time``), which leaves out the time the
process waits for a core while other jobs share the machine; with more threads,
wall time (so those figures need an otherwise idle machine).
Writes benchmarks/results/data.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _harness import machine, machine_line, summary, table, write_result  # noqa: E402

from torch_lottery.experiments.data import (  # noqa: E402
    DEBIAN_FASHION_MNIST,
    IDX_FILES,
    TensorData,
    load_dataset,
    prepare_fashion_mnist,
)
from torch_lottery.experiments.models import build_model  # noqa: E402
from torch_lottery.experiments.runner import Setup, Trainer  # noqa: E402

PATHS = ("runner", "tutorial", "hand_written")
BATCH = 128
LR = 1.2e-3
#: The clock: the process's CPU time with one thread (it leaves out the time the process waits for
#: a core while other jobs share the machine), wall time with more (set per thread count in bench).
CLOCK = time.perf_counter


def fmt(s: dict, digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


# -- data ------------------------------------------------------------------------------------------
def write_synthetic_idx(folder: Path, seed: int = 0) -> None:
    """Write gzipped IDX files of Fashion-MNIST's size and format (60000+10000 28x28 images)."""
    generator = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for filename in IDX_FILES:
        n = 60000 if filename.startswith("train") else 10000
        if "images" in filename:
            pixels = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=generator)
            content = struct.pack(">iiii", 2051, n, 28, 28) + pixels.numpy().tobytes()
        else:
            labels = torch.randint(0, 10, (n,), dtype=torch.uint8, generator=generator)
            content = struct.pack(">ii", 2049, n) + labels.numpy().tobytes()
        with gzip.open(folder / filename, "wb", compresslevel=1) as handle:
            handle.write(content)


def prepare_root(root: Path) -> str:
    """Unpack Fashion-MNIST into ``root`` for torchvision; return where the files came from."""
    if all(os.path.isfile(os.path.join(DEBIAN_FASHION_MNIST, f)) for f in IDX_FILES):
        prepare_fashion_mnist(root, source=DEBIAN_FASHION_MNIST)
        return f"real Fashion-MNIST IDX files from {DEBIAN_FASHION_MNIST} (Debian's dataset-fashion-mnist)"
    source = root / "synthetic-idx"
    write_synthetic_idx(source)
    prepare_fashion_mnist(root, source=source)
    return (
        f"SYNTHETIC IDX files (60000+10000 random 28x28 images; {DEBIAN_FASHION_MNIST} is missing: "
        "apt-get install dataset-fashion-mnist for the real ones)"
    )


def subset(data: TensorData, n_train: int | None, n_test: int | None) -> TensorData:
    if n_train is None:
        return data
    import dataclasses

    return dataclasses.replace(
        data,
        train_x=data.train_x[:n_train],
        train_y=data.train_y[:n_train],
        test_x=data.test_x[:n_test],
        test_y=data.test_y[:n_test],
    )


def lenet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("lenet300100", (1, 28, 28), 10)


# -- the three paths -------------------------------------------------------------------------------
def run_runner(data: TensorData, seed: int) -> tuple[float, float]:
    model = lenet()
    setup = Setup(
        epochs=1, batch_size=BATCH, optimizer="adam", lr=LR, momentum=0.9, weight_decay=0.0, strategy_options={}
    )
    trainer = Trainer(data, setup, evals_per_epoch=1, progress=False)
    torch.manual_seed(seed)
    start = CLOCK()
    trainer.train(model)
    accuracy = trainer.evaluate(model)["test_accuracy"]
    return CLOCK() - start, accuracy


def tutorial_sets(root: Path, mean: float, std: float, n_train: int | None, n_test: int | None):
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    train = datasets.FashionMNIST(str(root), train=True, download=False, transform=transform)
    test = datasets.FashionMNIST(str(root), train=False, download=False, transform=transform)
    if n_train is not None:
        train = torch.utils.data.Subset(train, range(n_train))
        test = torch.utils.data.Subset(test, range(n_test))
    return train, test


def run_tutorial(train_set, test_set, seed: int) -> tuple[float, float]:
    model = lenet()
    torch.manual_seed(seed)
    start = CLOCK()
    loader = torch.utils.data.DataLoader(train_set, batch_size=BATCH, shuffle=True, num_workers=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    model.train()
    for xb, yb in loader:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(xb), yb).backward()
        optimizer.step()
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for xb, yb in torch.utils.data.DataLoader(test_set, batch_size=1000, num_workers=0):
            correct += int((model(xb).argmax(1) == yb).sum())
            total += len(yb)
    return CLOCK() - start, correct / total


def run_hand_written(data: TensorData, seed: int) -> tuple[float, float]:
    model = lenet()
    torch.manual_seed(seed)
    start = CLOCK()
    x, y = data.train_x, data.train_y
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    model.train()
    order = torch.randperm(len(x))
    for i in range(0, len(x), BATCH):
        idx = order[i : i + BATCH]
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(data.test_x).argmax(1) == data.test_y).float().mean())
    return CLOCK() - start, accuracy


def bench(threads: int, reps: int, runners: dict) -> dict:
    global CLOCK
    torch.set_num_threads(threads)
    CLOCK = time.process_time if threads == 1 else time.perf_counter
    runs: dict[str, list[float]] = {p: [] for p in PATHS}
    accuracy: dict[str, list[float]] = {p: [] for p in PATHS}
    for rep in range(reps):
        for path in PATHS if rep % 2 == 0 else PATHS[::-1]:
            seconds, acc = runners[path](rep)
            runs[path].append(seconds)
            accuracy[path].append(acc)
    speedup = [t / r for t, r in zip(runs["tutorial"], runs["runner"], strict=True)]
    overhead = [r / h for r, h in zip(runs["runner"], runs["hand_written"], strict=True)]
    return {
        "threads": threads,
        "reps": reps,
        "clock": CLOCK.__name__,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": {p: summary(v) for p, v in runs.items()},
        "test_accuracy": {p: summary(v) for p, v in accuracy.items()},
        "ratio_tutorial/runner": summary(speedup),
        "ratio_runner/hand_written": summary(overhead),
        "goals_met": {
            "tutorial/runner >= 5": statistics.median(speedup) >= 5,
            "runner/hand_written <= 1.2": statistics.median(overhead) <= 1.2,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="12000 training / 2000 test images, 2 repetitions, 1 thread only"
    )
    parser.add_argument(
        "--threads",
        default=None,
        help="comma-separated torch thread counts to measure (default: 1, and the core count "
        "on an idle machine; --quick: 1)",
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default: 2 quick, 3 full)")
    parser.add_argument("--data-root", default=None, help="data root to unpack into (default: a temporary folder)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    skipped = None
    if args.threads:
        threads = [int(t) for t in args.threads.split(",")]
    else:
        threads = [1]
        all_cores = min(cores, torch.get_num_threads())
        if not args.quick and all_cores > 1:
            load = os.getloadavg()[0]
            if load < 0.75 * cores:
                threads.append(all_cores)
            else:  # wall time with every core is meaningless while other jobs hold them
                skipped = (
                    f"{all_cores} threads not measured: load average {load:.1f} on {cores} cores "
                    f"(other jobs running); rerun with --threads 1,{all_cores} on an idle machine"
                )
    reps = args.reps or (2 if args.quick else 3)
    n_train, n_test = (12000, 2000) if args.quick else (None, None)

    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        root = Path(args.data_root) if args.data_root else Path(tmp)
        source = prepare_root(root)
        start = time.perf_counter()
        data = load_dataset("fashion-mnist", root=root, validation=0)
        load_seconds = time.perf_counter() - start
        data = subset(data, n_train, n_test)
        start = time.perf_counter()
        train_set, test_set = tutorial_sets(root, data.mean[0], data.std[0], n_train, n_test)
        tutorial_setup_seconds = time.perf_counter() - start
        runners = {
            "runner": lambda s: run_runner(data, s),
            "tutorial": lambda s: run_tutorial(train_set, test_set, s),
            "hand_written": lambda s: run_hand_written(data, s),
        }
        results = {
            "machine": {**machine(), "threads": "/".join(map(str, threads))},
            "quick": args.quick,
            "data": source,
            "train_examples": len(data.train_x),
            "test_examples": len(data.test_x),
            "batch": BATCH,
            "optimizer": f"Adam lr={LR}",
            "setup_seconds": {"runner_load_dataset": load_seconds, "tutorial_datasets": tutorial_setup_seconds},
            "by_threads": [bench(t, reps, runners) for t in threads],
            "skipped": skipped,
        }

    markdown = report(results, reps)
    print(markdown)
    write_result("data", results, markdown)


def report(results: dict, reps: int) -> str:
    """The Markdown tables of a run: the goals per thread count, then the times."""
    goals, rows = [], []
    for r in results["by_threads"]:
        speedup, overhead = r["ratio_tutorial/runner"], r["ratio_runner/hand_written"]
        label = f"{r['threads']} thread{'s' if r['threads'] > 1 else ''} (time.{r['clock']})"
        goals.append(
            [
                f"{label}: tutorial DataLoader epoch / runner epoch >= 5",
                fmt(speedup),
                "met" if speedup["median"] >= 5 else "**missed**",
            ]
        )
        goals.append(
            [
                f"{label}: runner epoch / hand-written tensor loop <= 1.2",
                fmt(overhead, 3),
                "met" if overhead["median"] <= 1.2 else "**missed**",
            ]
        )
        sec = r["seconds"]
        rows.append(
            [
                label,
                fmt(sec["runner"]),
                fmt(sec["tutorial"]),
                fmt(sec["hand_written"]),
                ", ".join(f"{r['test_accuracy'][p]['median']:.3f}" for p in PATHS),
            ]
        )
    setup = results["setup_seconds"]
    return "\n".join(
        [
            f"Machine: {machine_line(results['machine'])}.",
            f"Data: {results['data']}; {results['train_examples']} training + {results['test_examples']} test images, "
            f"LeNet-300-100, batch {BATCH}, {results['optimizer']}, {reps} repetitions. Ratios: median (min-max) of "
            "per-repetition ratios.",
            "",
            table(["goal", "measured", ""], goals),
            "",
            table(
                [
                    "threads",
                    "runner s",
                    "tutorial s",
                    "hand-written s",
                    "test accuracy (runner, tutorial, hand-written)",
                ],
                rows,
            ),
            "",
            f"Seconds: one epoch plus the test evaluation, median (min-max). One-time set-up, not in the ratios: "
            f"runner load_dataset {setup['runner_load_dataset']:.2f} s (wall), tutorial data set objects "
            f"{setup['tutorial_datasets']:.2f} s (wall)."
            + (f" {results['skipped']}." if results.get("skipped") else ""),
        ]
    )


if __name__ == "__main__":
    main()
