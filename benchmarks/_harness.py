"""Shared helpers of the benchmark scripts: the machine, side-by-side statistics, tables, result files.

Not a benchmark itself (``run.py`` runs the ``bench_*.py`` scripts only).
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import json
import os
import platform
import resource
import shlex
import statistics
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def set_threads(threads: int) -> Callable[[], float]:
    """Set torch's threads (0: torch's default) and return the clock to time with.

    With one thread, the process's CPU time (it leaves out the time the process waits
    for a core on a shared machine); with more, wall time.
    """
    import time

    import torch

    if threads:
        torch.set_num_threads(threads)
    return time.process_time if torch.get_num_threads() == 1 else time.perf_counter


def command() -> str:
    """The command line that started this process, relative to the repository root when possible."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(ROOT)
    except ValueError:
        pass
    return " ".join(["python", shlex.quote(str(script))] + [shlex.quote(a) for a in sys.argv[1:]])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(threads: int | str | None = None) -> dict[str, Any]:
    """Describe the machine: CPU model, cores, torch, Python, torch threads, load average, date."""
    import torch

    return {
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"{m['cpu']}, {m['nproc']} cores, {m.get('memory_gib', '?')} GiB, torch {m['torch']}, "
        f"Python {m['python']}, torch threads {m['threads']}, load average {m['loadavg']}, {m['date']}"
    )


def summary(values: Iterable[float]) -> dict[str, float]:
    """Median, min and max (and count) of repeated measurements."""
    values = list(values)
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def ratio_text(s: dict[str, float], digits: int = 1) -> str:
    return f"{s['median']:.{digits}f}x ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, data: dict[str, Any], markdown: str) -> Path:
    """Write ``results/<name>.json`` (the data, its Markdown tables, the command and machine)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "command": command(), **data, "markdown": markdown}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


# -- isolated measurements ----------------------------------------------------------
def rss_bytes() -> int:
    """Resident set size of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """High-water mark of the resident set size of this process (VmHWM; since :func:`reset_peak`)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def reset_peak() -> bool:
    """Reset the high-water mark to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def trim() -> None:
    """Give freed heap memory back to the OS, so RSS growth counts only new memory."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def forked(fn: Callable[..., dict], *args: Any) -> dict:
    """Run ``fn(*args)`` in a forked child process and return its JSON-able result.

    Each measurement gets a fresh process (its own peak RSS), without paying the
    import of torch again. The parent must not have run torch operations before
    (a forked child cannot use an OpenMP pool its parent started).
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        code = 0
        try:
            out = {"ok": True, "result": fn(*args)}
        except BaseException:  # report any failure to the parent
            out = {"ok": False, "error": traceback.format_exc()}
            code = 1
        with os.fdopen(write, "w") as f:
            f.write(json.dumps(out, default=str))
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()
    os.waitpid(pid, 0)
    if not text:
        raise RuntimeError(f"benchmark child {fn.__name__}{args} died without a result")
    out = json.loads(text)
    if not out["ok"]:
        raise RuntimeError(f"benchmark child {fn.__name__}{args} failed:\n{out['error']}")
    return out["result"]
