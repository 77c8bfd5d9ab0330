"""Time to a ticket: every strategy to 10% of the weights on MNIST-1D, against IMP, 3 seeds.

    python benchmarks/bench_time_to_ticket.py [--quick] [--threads N] [--seeds N] [--epochs N]

One :func:`torch_lottery.experiments.compare.run_compare` call (one process, one data
set, the same seeds for all): IMP (the reference), early-bird (``scope=local``, its masks
compared once per epoch: ``every`` = the steps of one epoch, as docs/results.md explains),
SNIP, GraSP, SynFlow and the dynamic strategies (sparse momentum, RigL, SET), each to a
ticket at 10% of the weights, on MNIST-1D (the ``mnist1d`` package, generated offline)
with the runner's default model (LeNet-300-100) and training (the LTH paper's: Adam lr
1.2e-3, batch 60; the runner's default 30 epochs per training). IMP's ticket is its
round nearest 10% (the rule of ``compare``'s table: 9.1% of the weights, round 11); the
others land on 10%.

Per strategy, over the seeds: the ticket's test accuracy (mean ± std), the training steps
that obtained it (every optimizer step of every training that led to it: IMP's dense run
and rounds 1 to 11; early-bird's dense run up to the draw and the ticket's training; one
training for the others; at-initialization scoring batches are not training steps and are
shown apart), its wall time (``compare``'s ``seconds``: the rounds that led to it, scoring
and evaluation included) and its process CPU time over the same rounds (``time.process_time``
at the driver's round start and end hooks). Ratios against IMP: steps, wall time and CPU
time, and the accuracy gap in points (IMP's mean minus the method's).

The goal (issue "Performance", item 3): the best early method (every strategy but IMP)
within 1 point of IMP's accuracy at one fifth of IMP's compute or less. **Training steps
decide the compute** (they do not depend on the machine or its load); wall and CPU time
are shown beside them. The best early method is the most accurate of those within the
compute budget (if none is, the most accurate of all); the table says how far each method
is from the goal (points beyond the 1-point allowance, compute ratio against 0.2).

Runtime: about 3 minutes on one thread of a quiet 2-core machine (IMP's 14 trainings, two
past the ticket as ``compare`` runs them, are two thirds of it). ``--quick``: one seed, 6 epochs
per training, under a minute; its accuracies are not the benchmark's figures. Writes
benchmarks/results/time_to_ticket.json (every point of every seed, the summary and the goal)
and prints Markdown tables. No time is asserted.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import _harness as h  # noqa: E402

#: The reference, then the early methods, in the order they run.
REFERENCE = "imp"
EARLY = ("early_bird", "snip", "grasp", "synflow", "sparse_momentum", "rigl", "set")
STRATEGIES = (REFERENCE, *EARLY)
DATASET, MODEL, DENSITY = "mnist1d", "lenet300100", 0.1
#: The goal: within MAX_GAP points of IMP's accuracy at MAX_COMPUTE of its training steps or less.
MAX_GAP, MAX_COMPUTE = 1.0, 0.2
#: The compute measure that decides the goal (a key of a summary row).
DECIDING = "steps"


# -- CPU time per round --------------------------------------------------------------
class CpuClock:
    """Observer plugin: the process CPU time of every round of every run, in the order they run.

    The driver's round start hook comes right after it starts its wall clock and its round
    end hook right after it stops it, so a round's CPU time spans what its ``seconds`` do.
    A new run starts with round 0.
    """

    def __init__(self) -> None:
        self.runs: list[list[tuple[int, float, float]]] = []  # per run: (round, cpu s, wall s)
        self._started = 0.0

    def torch_lottery_round_start(self, round_index: int) -> None:
        if round_index == 0:
            self.runs.append([])
        self._started = time.process_time()

    def torch_lottery_round_end(self, round_index: int, record: dict[str, Any]) -> None:
        self.runs[-1].append((round_index, time.process_time() - self._started, float(record["seconds"])))


def attach_cpu(result: dict[str, Any], runs: Sequence[Sequence[tuple[int, float, float]]]) -> bool:
    """Add ``cpu_seconds`` to every point of ``result`` (one density); False if the runs do not match the points.

    ``run_compare`` runs, for each seed, one run per strategy in the order of its list; a
    point at round ``r`` took rounds 0 to ``r`` of its run. A run matches when the wall
    seconds the observer saw add up to the point's ``seconds``.
    """
    strategies = result["settings"]["strategies"]
    seeds = result["settings"]["seeds"]
    if len(runs) != len(strategies) * len(seeds):
        return False
    ok = True
    for point in result["points"]:
        run = runs[seeds.index(point["seed"]) * len(strategies) + strategies.index(point["strategy"])]
        spent = [r for r in run if r[0] <= point["round"]]
        wall = sum(r[2] for r in spent)
        ok &= len(spent) == point["round"] + 1 and abs(wall - point["seconds"]) < 0.01
        point["cpu_seconds"] = round(sum(r[1] for r in spent), 3)
    return ok


# -- the summary and the goal -----------------------------------------------------
def _mean(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def summarize(result: Mapping[str, Any], target: float = DENSITY) -> list[dict[str, Any]]:
    """One row per strategy at ``target``: accuracy over the seeds and mean compute.

    IMP's ticket is its round nearest ``target`` (in log density, as ``compare``'s table
    chooses it); the others have one point per seed at ``target``.
    """
    rows = []
    for name in result["settings"]["strategies"]:
        mine = [p for p in result["points"] if p["strategy"] == name]
        if p_target := [p for p in mine if p["target"] == target]:
            chosen = p_target
        else:  # a rounds strategy: the round nearest the target
            rounds = sorted({p["round"] for p in mine})
            density = {r: _mean([p["density"] for p in mine if p["round"] == r]) for r in rounds}
            best = min(rounds, key=lambda r: abs(math.log(density[r] / target)))
            chosen = [p for p in mine if p["round"] == best]
        values = [float(p["test_accuracy"]) for p in chosen]
        rows.append(
            {
                "strategy": name,
                "round": chosen[0]["round"],
                "n": len(chosen),
                "density": _mean([p["density"] for p in chosen]),
                "values": values,
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                **{
                    k: _mean([p.get(k) for p in chosen])
                    for k in ("steps", "search_steps", "scoring_batches", "seconds", "cpu_seconds")
                },
            }
        )
    return rows


def goal(
    rows: Sequence[Mapping[str, Any]],
    reference: str = REFERENCE,
    max_gap: float = MAX_GAP,
    max_compute: float = MAX_COMPUTE,
    measure: str = DECIDING,
) -> dict[str, Any]:
    """The goal row: the best early method within ``max_gap`` points of the reference at ``max_compute`` of its compute?

    Args:
        rows: summary rows (``strategy``, ``mean`` accuracy as a fraction, and the compute
            ``measure``; ``seconds`` and ``cpu_seconds`` are compared too where present).
        reference: the reference strategy (IMP); every other row is an early method.
        max_gap: the accuracy allowance, in points (percent).
        max_compute: the compute allowance, as a fraction of the reference's.
        measure: the compute that decides (``steps``: training steps).

    Returns:
        dict: ``met``, ``best`` (the early method the goal is judged on: the most accurate
        within the compute budget, or the most accurate of all if none is), ``measure``,
        and ``methods``: per early method its ``gap`` (reference accuracy minus its own, in
        points), ``compute`` (its ``measure`` over the reference's), ``seconds`` and
        ``cpu_seconds`` ratios, ``within_gap``, ``within_compute``, ``met``, ``points_short``
        (points beyond the allowance, 0 if within) and ``compute_over`` (compute ratio over
        the allowance: <= 1 is within).

    Examples:
        >>> rows = [{"strategy": "imp", "mean": 0.60, "steps": 1000},
        ...         {"strategy": "a", "mean": 0.595, "steps": 150},
        ...         {"strategy": "b", "mean": 0.61, "steps": 500}]
        >>> g = goal(rows)
        >>> g["met"], g["best"], round(g["methods"]["b"]["compute"], 2)
        (True, 'a', 0.5)
    """
    ref = next(r for r in rows if r["strategy"] == reference)
    methods: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["strategy"] == reference:
            continue
        gap = 100.0 * (ref["mean"] - row["mean"])
        compute = row[measure] / ref[measure]
        entry = {
            "gap": gap,
            "compute": compute,
            "within_gap": gap <= max_gap + 1e-9,
            "within_compute": compute <= max_compute + 1e-9,
            "points_short": max(0.0, gap - max_gap),
            "compute_over": compute / max_compute,
        }
        for key in ("seconds", "cpu_seconds"):
            if row.get(key) is not None and ref.get(key):
                entry[key] = row[key] / ref[key]
        entry["met"] = entry["within_gap"] and entry["within_compute"]
        methods[row["strategy"]] = entry
    if not methods:
        raise ValueError(f"no early method beside {reference!r} to judge")
    budget = [m for m in methods if methods[m]["within_compute"]] or list(methods)
    best = min(budget, key=lambda m: (methods[m]["gap"], methods[m]["compute"]))
    return {
        "met": methods[best]["met"],
        "best": best,
        "measure": measure,
        "max_gap": max_gap,
        "max_compute": max_compute,
        "methods": methods,
    }


# -- the run -------------------------------------------------------------------------
def steps_per_epoch(batch_size: int | None = None) -> int:
    """The optimizer steps of one epoch of the runner's MNIST-1D training (early-bird's check interval)."""
    from torch_lottery.experiments.data import load_dataset
    from torch_lottery.experiments.models import build_model
    from torch_lottery.experiments.runner import DATASET_VALIDATION, RunConfig, resolve_setup

    config = RunConfig(dataset=DATASET, model=MODEL, batch_size=batch_size)
    data = load_dataset(DATASET, validation=DATASET_VALIDATION[DATASET], seed=0)
    setup = resolve_setup(config, build_model(MODEL, data.input_shape, data.num_classes))
    return math.ceil(len(data.train_x) / setup.batch_size)


def measure(seeds: int, epochs: int | None, log=None) -> dict[str, Any]:
    from torch_lottery.driver.run import registered
    from torch_lottery.experiments.compare import run_compare
    from torch_lottery.plugins.hookspecs import hookimpl

    class Clock(CpuClock):  # the same methods, marked as hook implementations
        @hookimpl
        def torch_lottery_round_start(self, round_index: int) -> None:
            super().torch_lottery_round_start(round_index)

        @hookimpl
        def torch_lottery_round_end(self, round_index: int, record: dict[str, Any]) -> None:
            super().torch_lottery_round_end(round_index, record)

    every = steps_per_epoch()
    clock = Clock()
    started, cpu_started = time.perf_counter(), time.process_time()
    settings: dict[str, Any] = {"dataset": DATASET, "model": MODEL}
    if epochs is not None:
        settings["epochs"] = epochs
    with registered((clock,)):
        result = run_compare(
            list(STRATEGIES),
            [DENSITY],
            seeds,
            strategy_options={"early_bird": {"scope": "local", "every": every}},
            log=log,
            **settings,
        )
    result["benchmark_seconds"] = round(time.perf_counter() - started, 1)
    result["benchmark_cpu_seconds"] = round(time.process_time() - cpu_started, 1)
    result["cpu_matched"] = attach_cpu(result, clock.runs)
    result["early_bird_every"] = every
    return result


# -- the report ------------------------------------------------------------------------
def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def report(data: Mapping[str, Any]) -> str:
    rows, g, result = data["summary"], data["goal"], data["result"]
    ref = next(r for r in rows if r["strategy"] == REFERENCE)
    best, b = g["best"], g["methods"][g["best"]]
    seeds = result["settings"]["seeds"]
    config = result["settings"]
    dense = result["dense"]
    dense_acc = [100 * p["test_accuracy"] for p in dense]
    verdict = "met" if g["met"] else "**missed**"
    measured = (
        f"best: {best}, {b['gap']:+.2f} points from IMP ({100 * ref['mean']:.2f}% against "
        f"{100 * next(r for r in rows if r['strategy'] == best)['mean']:.2f}%) at {b['compute']:.3f}x "
        f"IMP's training steps ({b.get('seconds', float('nan')):.3f}x its wall time)"
    )
    reason = []
    if not b["within_gap"]:
        reason.append(f"{b['points_short']:.2f} points beyond the {g['max_gap']:g}-point allowance")
    if not b["within_compute"]:
        reason.append(f"compute {b['compute_over']:.2f}x the 1/5 allowance")
    lines = [
        f"Machine: {h.machine_line(data['machine'])}; load average after: {data['machine_after']['loadavg']}.",
        "",
        f"MNIST-1D, {config['config']['model']} ({config['steps_per_training']} steps per training, "
        f"{config['setup']['epochs']} epochs x {data['result']['early_bird_every']} steps), seeds "
        f"{', '.join(map(str, seeds))}, tickets at {DENSITY:.0%} of the weights; early-bird scope=local, "
        f"masks compared every {data['result']['early_bird_every']} steps (one epoch). Dense network: "
        f"{statistics.fmean(dense_acc):.2f}% test accuracy. Compute that decides: training steps "
        "(every optimizer step that led to the ticket); wall and CPU time beside them. "
        f"The run took {result['benchmark_seconds']:.0f} s ({result['benchmark_cpu_seconds']:.0f} s CPU)"
        + ("" if data["full"] else "; **not the benchmark's setup** (fewer seeds or epochs)")
        + ".",
        "",
        h.table(
            ["goal", "measured", ""],
            [
                [
                    f"best early method within {g['max_gap']:g} point of IMP at <= 1/5 of IMP's training steps",
                    measured + (f": {'; '.join(reason)}" if reason else ""),
                    verdict,
                ]
            ],
        ),
        "",
    ]
    table_rows = []
    for row in rows:
        m = g["methods"].get(row["strategy"])
        name = row["strategy"] + (" (reference)" if m is None else "")
        far = "-" if m is None else ("met" if m["met"] else _how_far(m, g))
        table_rows.append(
            [
                name,
                f"{100 * row['density']:.1f}",
                f"{100 * row['mean']:.2f} ± {100 * row['std']:.2f}",
                ", ".join(f"{100 * v:.1f}" for v in row["values"]),
                f"{row['steps']:.0f}",
                f"{row['search_steps']:.0f}",
                f"{row['scoring_batches']:.0f}",
                f"{row['seconds']:.1f}",
                "-" if row["cpu_seconds"] is None else f"{row['cpu_seconds']:.1f}",
                "0.00" if m is None else f"{m['gap']:+.2f}",
                "1.000" if m is None else _ratio(m["compute"]),
                "1.000" if m is None else _ratio(m.get("seconds")),
                "1.000" if m is None else _ratio(m.get("cpu_seconds")),
                far,
            ]
        )
    lines += [
        h.table(
            [
                "strategy",
                "weights %",
                "test accuracy %",
                "seeds",
                "steps",
                "search steps",
                "scoring batches",
                "wall s",
                "CPU s",
                "gap to IMP (points)",
                "steps / IMP",
                "wall / IMP",
                "CPU / IMP",
                "how far from the goal",
            ],
            table_rows,
        ),
        "",
        "Gap: IMP's mean accuracy minus the method's (positive: below IMP). Steps, wall and CPU "
        "seconds: means over the seeds per ticket. How far: points beyond the 1-point allowance, "
        "and the steps ratio against the 1/5 allowance.",
    ]
    return "\n".join(lines)


def _how_far(m: Mapping[str, Any], g: Mapping[str, Any]) -> str:
    parts = []
    if not m["within_gap"]:
        parts.append(f"{m['points_short']:.2f} points too low")
    if not m["within_compute"]:
        parts.append(f"{m['compute_over']:.2f}x the compute allowance")
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, 6 epochs per training")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0: torch's default)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default: 3; quick 1)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per training (default: the runner's; quick 6)")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = args.seeds or (1 if args.quick else 3)
    epochs = args.epochs or (6 if args.quick else None)
    machine = h.machine()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = measure(seeds, epochs, log)
    rows = summarize(result)
    data = {
        "machine": machine,
        "machine_after": {"loadavg": h.machine()["loadavg"]},
        "quick": args.quick,
        "full": seeds >= 3 and epochs is None,
        "summary": rows,
        "goal": goal(rows),
        "result": result,
    }
    markdown = report(data)
    print(markdown)
    h.write_result("time_to_ticket", data, markdown)


if __name__ == "__main__":
    main()
