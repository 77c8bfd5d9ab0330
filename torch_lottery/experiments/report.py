"""Tables, CSV, JSON and plots of experiment results (``torch-lottery run`` and ``report``)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import statistics
from collections.abc import Iterator, Mapping
from typing import Any

from .._files import atomic_write, atomic_write_set, committed_path
from .._validation import check_choice, check_fraction, check_nonneg_int, check_number, describe
from .runner import METRICS

#: File names of a run's output directory, defined in one place.
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
PLOT_PNG = "accuracy.png"
#: The output set, in the order it is renamed into place: results.json, which readers start from, last.
OUTPUTS = (RESULTS_CSV, PLOT_PNG, RESULTS_JSON)

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


def _csv_text(result: dict[str, Any]) -> str:
    summary = result["summary"]
    fields = list(summary[0]) if summary else ["kind", "round"]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(summary)
    return text.getvalue()


def write_csv(result: dict[str, Any], path: str) -> None:
    """Write the summary rows as CSV."""
    write_text(path, _csv_text(result))


def plot(result: dict[str, Any], path: str, metric: str = "test_accuracy") -> bool:
    """Draw ``metric`` against percent of weights remaining (log x axis); return False without matplotlib."""
    return save_plot(_figure(result, metric), path)


def pyplot() -> Any:
    """Return ``matplotlib.pyplot`` on the file-only Agg backend, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_plot(figure: Any, path: str) -> bool:
    """Write ``figure`` (see :func:`save_figure`) unless it is None (no matplotlib); return whether it was written."""
    if figure is None:
        return False
    save_figure(figure, path)
    return True


def _figure(result: dict[str, Any], metric: str = "test_accuracy") -> Any:
    """Return the figure :func:`plot` saves, or None without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
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
    if ax.get_legend_handles_labels()[0]:  # (an empty summary draws nothing)
        ax.legend()
    return fig


def save_figure(fig: Any, path: str) -> None:
    """Lay out a matplotlib figure, write it to ``path`` as PNG atomically, and close it."""
    with _laid_out(fig) as write:
        atomic_write(path, write)


@contextlib.contextmanager
def _laid_out(fig: Any) -> Iterator[Any]:
    """Lay out a matplotlib figure; yield the writer of its PNG; close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        yield lambda handle: fig.savefig(handle, format="png")
    finally:
        plt.close(fig)


def write_outputs(result: dict[str, Any], directory: str) -> dict[str, str]:
    """Write results.json, results.csv and accuracy.png into ``directory`` as one set; return the paths written.

    The three files replace the old ones together (:func:`torch_lottery._files.atomic_write_set`):
    a kill at any instant leaves the old set or the new one, never a mix, and
    :func:`load_results` reads the new set even before its last rename. Without
    matplotlib no plot is drawn and an old ``accuracy.png`` is removed with the set.

    Args:
        result: what :func:`~torch_lottery.experiments.runner.run_experiment` returns.
        directory: the output folder (created if missing).

    Returns:
        dict: ``{"json": path, "csv": path, "plot": path}`` (no ``"plot"`` without matplotlib).

    Examples:
        >>> import json, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> result = {"summary": [], "config": {}}
        >>> sorted(write_outputs(result, folder))
        ['csv', 'json', 'plot']
        >>> json.load(open(f"{folder}/results.json")) == result
        True
    """
    texts = {RESULTS_CSV: _csv_text(result), RESULTS_JSON: json.dumps(result, indent=1)}
    return write_output_set(directory, texts, _figure(result), PLOT_PNG)


def write_output_set(directory: str, texts: Mapping[str, str], figure: Any, plot_name: str) -> dict[str, str]:
    """Replace text files and a plot of ``directory`` as one set; return the paths written.

    The files are replaced with :func:`torch_lottery._files.atomic_write_set`:
    the texts in order with the plot before the last text (the JSON file readers
    start from goes last). Without a figure (no matplotlib) an old plot is
    removed with the set.

    Args:
        directory: the output folder (created if missing).
        texts: file name -> its text, the file readers start from last.
        figure: a matplotlib figure (closed afterwards), or None.
        plot_name: the PNG's file name.

    Returns:
        dict: ``{"json": path, "csv": path, "plot": path}`` for the names ending so (no ``"plot"`` without a figure).

    Examples:
        >>> import os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> sorted(write_output_set(folder, {"a.csv": "x\\n", "a.json": "{}"}, None, "a.png"))
        ['csv', 'json']
        >>> sorted(os.listdir(folder))
        ['a.csv', 'a.json']
    """
    os.makedirs(directory, exist_ok=True)
    *first, last = texts
    with _laid_out(figure) if figure is not None else contextlib.nullcontext() as png:
        outputs = {name: _encoded(texts[name]) for name in first}
        outputs[plot_name] = png
        outputs[last] = _encoded(texts[last])
        atomic_write_set(directory, outputs)
    # the file readers start from first, as the run reports them
    paths = {os.path.splitext(name)[1].lstrip("."): os.path.join(directory, name) for name in reversed(list(texts))}
    if figure is not None:
        paths["plot"] = os.path.join(directory, plot_name)
    return paths


def remove_outputs(directory: str) -> None:
    """Remove results.json, results.csv and accuracy.png from ``directory``, as one set (nothing else).

    Args:
        directory: an output folder; a missing one is left alone.

    Examples:
        >>> import os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> paths = write_outputs({"summary": [], "config": {}}, folder)
        >>> remove_outputs(folder)
        >>> os.listdir(folder)
        []
    """
    if os.path.isdir(directory):
        atomic_write_set(directory, dict.fromkeys(OUTPUTS))


def _encoded(text: str) -> Any:
    return lambda handle: handle.write(text.encode("utf-8"))


def load_results(directory: str) -> dict[str, Any]:
    """Read and check ``results.json`` of a finished run (``torch-lottery report DIR``).

    Args:
        directory (str): the output directory of a run.

    Returns:
        dict: the result, checked by :func:`check_results`.

    Raises:
        FileNotFoundError: if ``directory`` has no results.json.
        ValueError: if the file is not valid JSON or not a results file, naming the file
            and the field at fault (e.g. ``runs/x/results.json: records[3].test_accuracy
            must be a number, got 'abc'``).

    Examples:
        >>> import json, os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> row = {"kind": "ticket", "round": 0, "n": 1, "remaining": 1.0}
        >>> with open(os.path.join(folder, RESULTS_JSON), "w") as handle:
        ...     json.dump({"summary": [row], "records": [{**row, "round": "0"}]}, handle)
        >>> load_results(folder)
        Traceback (most recent call last):
        ...
        ValueError: .../results.json: records[0].round must be an int, got '0'
    """
    path = os.path.join(directory, RESULTS_JSON)
    # the new set's results.json while a killed write of the set is not completed yet
    source = committed_path(path) if os.path.isdir(directory) else path
    if not os.path.isfile(source):
        raise FileNotFoundError(f"{directory!r} has no {RESULTS_JSON}: is it the output directory of a run?")
    try:
        with open(source, encoding="utf-8") as handle:
            result = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: is not valid JSON: {error}") from None
    return check_results(result, path)


#: What each summary row and each record must hold: the kind, the round and the fraction of weights remaining.
_ROW_FIELDS = ("kind", "round", "remaining")
#: The optional top-level sections of a result that are objects.
_SECTIONS = ("config", "setup", "data", "strategy", "versions")


@contextlib.contextmanager
def _in_file(source: str) -> Iterator[None]:
    """Turn the errors of the checks inside into ``ValueError``: the file is damaged, named first."""
    try:
        yield
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: {error}") from None


def _check_row(row: Any, where: str, summary: bool) -> tuple[str, int]:
    """Check one summary row (``summary``) or record; return its (kind, round)."""
    if not isinstance(row, dict):
        raise ValueError(f"{where} must be an object, got {describe(row)}")
    for field in _ROW_FIELDS + (("n",) if summary else ()):
        if field not in row:
            raise ValueError(f"{where}.{field} is missing")
    check_choice(row["kind"], LABELS, f"{where}.kind")
    check_nonneg_int(row["round"], f"{where}.round")
    if summary:
        check_number(row["n"], f"{where}.n", integer=True, low=1)
    check_fraction(row["remaining"], f"{where}.remaining")
    for metric in METRICS:
        if summary:  # null where nothing was measured; never NaN (summarize leaves it out)
            columns = [f"{metric}_{suffix}" for suffix in _SUFFIXES]
            for column in columns:
                if row.get(column) is not None:
                    check_number(row[column], f"{where}.{column}")
            for column in columns[1:]:
                if row.get(columns[0]) is not None and column in row and row[column] is None:
                    raise ValueError(f"{where}.{column} must be a number where {columns[0]} is one, got None")
        elif row.get(metric) is not None and not (isinstance(row[metric], float) and math.isnan(row[metric])):
            check_number(row[metric], f"{where}.{metric}")  # NaN: not measured (e.g. no validation set)
    layers = row.get("layers")
    if layers is not None:
        if not isinstance(layers, dict) or not layers:
            raise ValueError(f"{where}.layers must be an object of tensor name: fraction, got {describe(layers)}")
        for name, fraction in layers.items():
            check_fraction(fraction, f"{where}.layers[{name!r}]")
    return row["kind"], row["round"]


def check_results(result: Any, source: str = RESULTS_JSON) -> dict[str, Any]:
    """Check the structure of a result once, for everything that reads it (table, CSV, plot, layers).

    Needs ``summary``, a non-empty list of rows with a known ``kind``, an int
    ``round``, ``n`` and ``remaining`` in [0, 1], and metric columns that are
    numbers or null; checks ``records`` (``layers`` where present) and the optional
    sections (``config``, ``setup``, ``data``, ``strategy``, ``versions``: objects)
    where there are. Results written before a field existed (no ``strategy``,
    ``versions`` or ``layers``) pass.

    Args:
        result: the parsed results.json.
        source (str): the file it came from, named in errors.

    Returns:
        dict: ``result``.

    Raises:
        ValueError: naming ``source`` and the field (``summary[2].kind``,
            ``records[3].test_accuracy``, ...) and the value found.

    Examples:
        >>> row = {"kind": "ticket", "round": 0, "n": 1, "remaining": 1.0, "test_accuracy_mean": "abc"}
        >>> check_results({"summary": [row]}, "runs/x/results.json")
        Traceback (most recent call last):
        ...
        ValueError: runs/x/results.json: summary[0].test_accuracy_mean must be a number, got 'abc'
    """
    with _in_file(source):
        if not isinstance(result, dict) or "summary" not in result:
            keys = f"an object with keys {', '.join(map(str, result)) or 'none'}" if isinstance(result, dict) else None
            raise ValueError(f"is not a torch-lottery results file (no summary): found {keys or describe(result)}")
        for section in _SECTIONS:
            if result.get(section) is not None and not isinstance(result[section], dict):
                raise ValueError(f"{section} must be an object, got {describe(result[section])}")
        if "seconds" in result:
            check_number(result["seconds"], "seconds", low=0)
        for part in ("summary", "records"):
            rows = result.get(part, [])
            if not isinstance(rows, list):
                raise ValueError(f"{part} must be a list of objects, got {describe(rows)}")
            if part == "summary" and not rows:
                raise ValueError("summary is empty: there is nothing to show")
            seen: dict[tuple[str, int], int] = {}
            for index, row in enumerate(rows):
                key = _check_row(row, f"{part}[{index}]", summary=part == "summary")
                if part == "summary" and key in seen:
                    raise ValueError(f"summary[{index}] repeats kind {key[0]!r} round {key[1]} (summary[{seen[key]}])")
                seen[key] = index
    return result


_SUFFIXES = ("mean", "std", "min", "max")


def check_metric(result: dict[str, Any], metric: str, source: str = RESULTS_JSON) -> None:
    """Check that every summary row has the columns ``table`` and ``plot`` read for ``metric``.

    Args:
        result (dict): a result (its types are :func:`check_results`'s business).
        metric (str): one of :data:`~torch_lottery.experiments.runner.METRICS`.
        source (str): the file it came from, named in errors.

    Raises:
        ValueError: naming ``source``, the row and the missing column.

    Examples:
        >>> check_metric({"summary": [{"kind": "ticket", "round": 0}]}, "test_loss", "old/results.json")
        Traceback (most recent call last):
        ...
        ValueError: old/results.json: summary[0].test_loss_mean is missing (written by a version without test_loss?)
    """
    for index, row in enumerate(result["summary"]):
        for suffix in _SUFFIXES:
            if f"{metric}_{suffix}" not in row:
                raise ValueError(
                    f"{source}: summary[{index}].{metric}_{suffix} is missing (written by a version without {metric}?)"
                )


def layer_table(result: dict[str, Any]) -> str:
    """Return the ticket's density per layer and round: % of each tensor's weights remaining, mean over seeds.

    One row per round, one column per prunable tensor (qualified name) and the
    whole network's figure; results written before layer densities were recorded
    give a line that says so.

    Args:
        result (dict): a result with ``records`` (see :func:`check_results`).

    Returns:
        str: the table.

    Examples:
        >>> records = [
        ...     {"kind": "ticket", "round": r, "remaining": f, "layers": {"fc1.weight": f, "fc2.weight": 1.0}}
        ...     for r, f in ((0, 1.0), (1, 0.8))
        ... ]
        >>> print(layer_table({"records": records}))
        ticket weights remaining per layer % (mean over 1 seeds)
        round    all  fc1.weight  fc2.weight
        -----  -----  ----------  ----------
            0  100.0       100.0       100.0
            1   80.0        80.0       100.0
        >>> layer_table({"records": [{"kind": "ticket", "round": 0, "remaining": 1.0}]})
        'layer densities: not recorded (results written before torch-lottery recorded them)'
    """
    rows: dict[int, list[dict[str, Any]]] = {}
    for record in result.get("records") or []:
        if record["kind"] == "ticket" and record.get("layers"):
            rows.setdefault(record["round"], []).append(record)
    if not rows:
        return "layer densities: not recorded (results written before torch-lottery recorded them)"
    names = list(dict.fromkeys(name for group in rows.values() for r in group for name in r["layers"]))
    header = ["round", "all"] + names
    body = []
    for round_index, group in sorted(rows.items()):
        cells = [str(round_index), f"{100 * statistics.fmean(r['remaining'] for r in group):.1f}"]
        for name in names:
            values = [r["layers"][name] for r in group if name in r["layers"]]
            cells.append(f"{100 * statistics.fmean(values):.1f}" if values else "-")
        body.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    line = lambda cells_: "  ".join(c.rjust(w) for c, w in zip(cells_, widths, strict=True))  # noqa: E731
    seeds = max(len(group) for group in rows.values())
    title = f"ticket weights remaining per layer % (mean over {seeds} seeds)"
    return "\n".join([title, line(header), line(["-" * w for w in widths])] + [line(r) for r in body])
