"""Tables, CSV, JSON and plots of experiment results (``torch-lottery run`` and ``report``)."""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

from .._files import atomic_write

#: File names of a run's output directory, defined in one place.
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
PLOT_PNG = "accuracy.png"

LABELS = {
    "ticket": "winning ticket",
    "reinit": "random reinit",
    "permute": "random permutation",
    "random_pruning": "random pruning",
    "sign_reinit": "sign-preserving reinit",
    "supermask": "supermask (no training)",
}


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically, as UTF-8."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def table(result: dict[str, Any], metric: str = "test_accuracy") -> str:
    """Return a plain-text table: one row per round, columns per kind (mean ± std in %)."""
    summary = result["summary"]
    kinds = [k for k in LABELS if any(r["kind"] == k for r in summary)]
    rounds = sorted({r["round"] for r in summary})
    cells = {(r["kind"], r["round"]): r for r in summary}
    header = ["round", "weights %"] + [LABELS[k] for k in kinds] + ["early stop (ticket)"]
    rows = []
    for round_index in rounds:
        ticket = cells.get(("ticket", round_index))
        remaining = (
            ticket["remaining"]
            if ticket
            else next(cells[(k, round_index)]["remaining"] for k in kinds if (k, round_index) in cells)
        )
        row = [str(round_index), f"{100 * remaining:.1f}"]
        for kind in kinds:
            cell = cells.get((kind, round_index))
            if cell is None or cell[f"{metric}_mean"] is None:
                row.append("-")
            elif metric.startswith("test_accuracy"):
                row.append(f"{_pct(cell[f'{metric}_mean'])} ± {_pct(cell[f'{metric}_std'])}")
            else:
                row.append(f"{cell[f'{metric}_mean']:.4g} ± {cell[f'{metric}_std']:.2g}")
        es = ticket and ticket.get("early_stop_iteration_mean")
        row.append("-" if es is None else f"{es:.0f}")
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells_: "  ".join(c.rjust(w) for c, w in zip(cells_, widths, strict=True))  # noqa: E731
    unit = " %" if metric.startswith("test_accuracy") else ""
    title = f"{metric.replace('_', ' ')}{unit} (mean ± std over {max((r['n'] for r in summary), default=0)} seeds)"
    return "\n".join([title, line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def write_csv(result: dict[str, Any], path: str) -> None:
    """Write the summary rows as CSV."""
    summary = result["summary"]
    fields = list(summary[0]) if summary else ["kind", "round"]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(summary)
    write_text(path, text.getvalue())


def plot(result: dict[str, Any], path: str, metric: str = "test_accuracy") -> bool:
    """Draw ``metric`` against percent of weights remaining (log x axis); return False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    summary = result["summary"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for kind, label in LABELS.items():
        rows = sorted(
            (r for r in summary if r["kind"] == kind and r[f"{metric}_mean"] is not None), key=lambda r: -r["remaining"]
        )
        if not rows:
            continue
        x = [100 * r["remaining"] for r in rows]
        mean = [100 * r[f"{metric}_mean"] for r in rows]
        low = [100 * r[f"{metric}_min"] for r in rows]
        high = [100 * r[f"{metric}_max"] for r in rows]
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=label)
        if any(r["n"] > 1 for r in rows):
            ax.fill_between(x, low, high, alpha=0.15, color=line.get_color())
    dense = [r for r in summary if r["kind"] == "ticket" and r["round"] == 0 and r[f"{metric}_mean"] is not None]
    if dense:
        ax.axhline(100 * dense[0][f"{metric}_mean"], color="gray", linestyle="--", linewidth=1, label="dense network")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("percent of weights remaining")
    ax.set_ylabel(metric.replace("_", " ") + " (%)")
    config = result.get("config", {})
    ax.set_title(
        f"{config.get('model', '')} on {config.get('dataset', '')} "
        f"({max((r['n'] for r in summary), default=0)} seeds; band: min-max)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    return True


def save_figure(fig: Any, path: str) -> None:
    """Lay out a matplotlib figure, write it to ``path`` as PNG atomically, and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        atomic_write(path, lambda handle: fig.savefig(handle, format="png"))
    finally:
        plt.close(fig)


def write_outputs(result: dict[str, Any], directory: str) -> dict[str, str]:
    """Write results.json, results.csv and accuracy.png into ``directory``; return the paths written."""
    os.makedirs(directory, exist_ok=True)
    paths = {"json": os.path.join(directory, RESULTS_JSON), "csv": os.path.join(directory, RESULTS_CSV)}
    write_text(paths["json"], json.dumps(result, indent=1))
    write_csv(result, paths["csv"])
    png = os.path.join(directory, PLOT_PNG)
    if plot(result, png):
        paths["plot"] = png
    return paths


def load_results(directory: str) -> dict[str, Any]:
    """Read ``results.json`` of a finished run (``torch-lottery report DIR``)."""
    path = os.path.join(directory, RESULTS_JSON)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory!r} has no {RESULTS_JSON}: is it the output directory of a run?")
    try:
        with open(path, encoding="utf-8") as handle:
            result = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path!r} is not valid JSON: {error}") from None
    if not isinstance(result, dict) or "summary" not in result:
        raise ValueError(f"{path!r} is not a torch-lottery results file (no summary)")
    summary = result["summary"]
    if not isinstance(summary, list):
        raise ValueError(f"{path!r} is not a torch-lottery results file (summary is not a list of rows)")
    for index, row in enumerate(summary):
        if not isinstance(row, dict):
            raise ValueError(f"{path!r} is damaged: summary row {index} is {row!r}, not a dict")
        bad = [
            key
            for key, kind in _ROW_FIELDS.items()
            if not isinstance(row.get(key), kind) or isinstance(row.get(key), bool)
        ]
        if bad:
            raise ValueError(f"{path!r} is damaged: summary row {index} has no valid {', '.join(bad)}")
    return result


#: Fields every summary row needs, with their types.
_ROW_FIELDS: dict[str, type | tuple[type, ...]] = {"kind": str, "round": int, "n": int, "remaining": (int, float)}


def check_metric(result: dict[str, Any], metric: str, source: str = "results.json") -> None:
    """Check that every summary row has the columns ``table`` and ``plot`` read for ``metric``.

    Raises:
        ValueError: naming ``source``, the row and the missing column.
    """
    for index, row in enumerate(result["summary"]):
        for suffix in ("mean", "std", "min", "max"):
            value = row.get(f"{metric}_{suffix}", "missing")
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(
                    f"{source!r} has no valid {metric}_{suffix} in summary row {index} "
                    f"(found {value!r}); was it written by this version?"
                )
