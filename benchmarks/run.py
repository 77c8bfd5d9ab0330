"""Run every benchmark of benchmarks/ and write one summary (Markdown and JSON).

    python benchmarks/run.py [--quick] [--only NAME ...]

Discovers the ``bench_*.py`` scripts beside this file and runs each in its own
process as ``python benchmarks/bench_<name>.py [--quick]``. Each script measures its
ratios side by side in one run, prints Markdown tables and writes
``benchmarks/results/<name>.json``. This script then writes
``benchmarks/results/summary.md`` and ``summary.json``: every goal of every benchmark in one table (each benchmark's
``| goal | measured | ... |`` rows), every benchmark's tables,
its exit status and wall time, the machine (CPU model, cores, torch, Python,
threads, load average before and after, date) and the exact command.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _harness as h  # noqa: E402


def discover() -> dict[str, Path]:
    """Map benchmark name (``bench_<name>.py``) to its script, in name order."""
    return {p.stem[len("bench_") :]: p for p in sorted(HERE.glob("bench_*.py"))}


def goal_rows(markdown: str) -> list[list[str]]:
    """Return the rows ``[goal, measured, status]`` of every Markdown table whose first header is "goal"."""
    rows, inside = [], False
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            inside = False
        elif cells[0] == "goal":
            inside = True
        elif inside and not set(cells[0]) <= set("-: "):
            rows.append((cells + ["", "", ""])[:3])
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks (e.g. global export)")
    args = parser.parse_args(argv)
    scripts = discover()
    if args.only:
        unknown = sorted(set(args.only) - set(scripts))
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; found {sorted(scripts)}")
        scripts = {name: path for name, path in scripts.items() if name in args.only}

    machine = h.machine(threads="set by each benchmark")
    started = time.perf_counter()
    report = {"command": h.command(), "machine": machine, "quick": args.quick, "benchmarks": {}}
    sections = []
    for name, path in scripts.items():
        cmd = [sys.executable, str(path)] + (["--quick"] if args.quick else [])
        shown = f"python {path.relative_to(h.ROOT)}" + (" --quick" if args.quick else "")
        print(f"== {shown}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=h.ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        print(proc.stdout, end="" if proc.stdout.endswith("\n") else "\n", flush=True)
        if proc.returncode:
            print(proc.stderr, file=sys.stderr, flush=True)
        result_file = h.RESULTS / f"{name}.json"
        data = None
        if proc.returncode == 0 and result_file.exists():
            try:
                data = json.loads(result_file.read_text())
            except ValueError:
                data = None
        report["benchmarks"][name] = {
            "command": shown,
            "returncode": proc.returncode,
            "seconds": round(seconds, 1),
            "result_file": str(result_file.relative_to(h.ROOT)),
            "result": data,
            "stdout": proc.stdout,
            "stderr_tail": proc.stderr[-4000:],
        }
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        body = proc.stdout.strip() if proc.returncode == 0 else f"```\n{proc.stderr.strip()[-4000:]}\n```"
        sections.append(f"## {name}\n\n`{shown}`: {status}, {seconds:.0f} s\n\n{body}\n")

    total = time.perf_counter() - started
    report["machine_after"] = {"loadavg": h.machine()["loadavg"]}
    report["seconds"] = round(total, 1)
    failed = [n for n, b in report["benchmarks"].items() if b["returncode"]]
    goals = [[n, *row] for n, b in report["benchmarks"].items() for row in goal_rows(b["stdout"])]
    report["goals"] = [dict(zip(("benchmark", "goal", "measured", "status"), g, strict=True)) for g in goals]
    goals_table = h.table(["benchmark", "goal", "measured", "status"], goals) if goals else "(no goal tables)"
    print("\n## Every goal of this run\n\n" + goals_table, flush=True)
    header = [
        "# Benchmark summary",
        "",
        f"Command: `{report['command']}` ({total:.0f} s in all)",
        "",
        f"Machine: {h.machine_line(machine)}; load average after: {report['machine_after']['loadavg']}",
        "",
        h.table(
            ["benchmark", "command", "status", "seconds"],
            [
                [
                    n,
                    f"`{b['command']}`",
                    "ok" if not b["returncode"] else f"FAILED ({b['returncode']})",
                    f"{b['seconds']:.0f}",
                ]
                for n, b in report["benchmarks"].items()
            ],
        ),
        "",
        "## Every goal of this run",
        "",
        goals_table,
        "",
    ]
    h.RESULTS.mkdir(parents=True, exist_ok=True)
    (h.RESULTS / "summary.md").write_text("\n".join(header + sections))
    (h.RESULTS / "summary.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {h.RESULTS / 'summary.md'} and summary.json ({total:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
