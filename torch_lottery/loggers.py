"""Built-in loggers: each round of :func:`~torch_lottery.find_ticket` in JSON lines, CSV, TensorBoard or your callback.

Every logger is an observer plugin over the driver's hooks
(``torch_lottery_round_start``, ``torch_lottery_after_prune``,
``torch_lottery_after_rewind``, ``torch_lottery_round_end``): pass it to
``find_ticket(plugins=[...])``, or name it in ``torch-lottery run --log``. Its
arguments are checked when it is made, before anything trains; files are written
from the first event on.

What a logger sees is an *event*: a JSON-safe dict with ``"event"`` (one of
:data:`EVENTS`), the logger's tags (e.g. ``replicate``, ``seed``) and the hook's
figures; the ``round_end`` event holds the round's record as ``Ticket.history``
stores it. JSON-safe: one-entry tensors become numbers, larger tensors a summary
(``shape``, ``dtype``, ``mean``; masks are never logged in full, only their
per-tensor density), NaN and infinities ``None``, other objects a short description.

Under ``torch.distributed`` every rank observes the run: give each rank its own
file, or pass loggers on rank 0 only.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ._files import append_text, atomic_write
from ._validation import (
    check_bool,
    check_callable,
    check_names,
    check_writable_dir,
    check_writable_file,
    describe,
)
from .plugins.hookspecs import hookimpl

__all__ = [
    "EVENTS",
    "LOG_FILES",
    "CSVLogger",
    "CallbackLogger",
    "JSONLinesLogger",
    "TensorBoardLogger",
    "loggers_for",
    "TaggedLogger",
    "scalars",
]

#: The events a logger can see, one per hook, in the order a round sends them.
EVENTS = ("round_start", "after_prune", "after_rewind", "round_end")
#: The loggers ``torch-lottery run --log`` makes, by name, and what each writes into ``--out``.
LOG_FILES = {"jsonl": "log.jsonl", "csv": "log.csv", "tensorboard": "tensorboard"}
#: Keys of events and round records, which a tag may not take.
RESERVED = (
    "event",
    "round",
    "strategy",
    "remaining",
    "remaining_weights",
    "total_weights",
    "per_tensor",
    "masks_sha256",
    "metrics",
    "seconds",
    "stopped",
    "rewind_iteration",
    "instability",
)
TENSORBOARD_MISSING = 'TensorBoardLogger needs the tensorboard package: pip install "torch-lottery[tensorboard]"'


# -- records ------------------------------------------------------------------------------
def _json_safe(value: Any) -> Any:
    """Return ``value`` as JSON-safe data (see the module's docstring)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            mean = float(value.detach().double().mean()) if value.numel() and not value.is_complex() else None
            return {
                "shape": list(value.shape),
                "dtype": str(value.dtype).removeprefix("torch."),
                "mean": _json_safe(mean),
            }
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return describe(value)


def _flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return nested dicts as one level, their keys joined by ``/`` (``metrics/loss``); an empty dict is left out."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, Mapping):
            out.update(_flatten(item, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = item
    return out


def scalars(record: Mapping[str, Any]) -> dict[str, float | int]:
    """Return the numbers of a record or event as one flat dict: ``{"remaining": ..., "metrics/loss": ...}``.

    Nested dicts are flattened with ``/``; strings, flags, lists and missing
    values (NaN, infinities) are left out. What :class:`TensorBoardLogger` writes,
    and what ``wandb.log`` wants.

    Args:
        record (dict): a round record (``Ticket.history``) or a logger's event.

    Returns:
        dict[str, int | float]: the numbers by flat name, in the record's order.

    Examples:
        >>> scalars({"round": 1, "remaining": 0.8, "metrics": {"loss": 0.25, "note": "ok"}, "stopped": "done"})
        {'round': 1, 'remaining': 0.8, 'metrics/loss': 0.25}
    """
    flat = _flatten(_json_safe(record))
    return {k: v for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _check_tags(tags: Any) -> dict[str, Any]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise TypeError(f"tags must be a dict of names to values, got {describe(tags)}")
    for key, value in tags.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"tags must have non-empty str keys, got {describe(key)}")
        if key in RESERVED:
            raise ValueError(f"tags[{key!r}] would hide the record's own {key!r}; choose another name")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise TypeError(f"tags[{key!r}] must be a str, number, bool or None, got {describe(value)}")
    return dict(tags)


# -- the loggers ------------------------------------------------------------------------
class _Hooks:
    """The hook implementations every logger shares: each hook becomes an event for ``_observe``."""

    def _observe(self, event: str, body: Mapping[str, Any]) -> None:  # pragma: no cover - defined below
        raise NotImplementedError

    @hookimpl
    def torch_lottery_round_start(self, round_index: int, strategy: Any, remaining: float) -> None:
        """Log ``round_start``: the round, the strategy's name and the surviving fraction."""
        name = getattr(strategy, "name", type(strategy).__name__)
        self._observe("round_start", {"round": round_index, "strategy": name, "remaining": remaining})

    @hookimpl
    def torch_lottery_after_prune(self, round_index: int, masks: Mapping[str, torch.Tensor], remaining: float) -> None:
        """Log ``after_prune``: the surviving fraction, overall and per tensor (not the masks themselves)."""
        density = {name: int(mask.count_nonzero()) / max(mask.numel(), 1) for name, mask in masks.items()}
        self._observe("after_prune", {"round": round_index, "remaining": remaining, "per_tensor": density})

    @hookimpl
    def torch_lottery_after_rewind(self, round_index: int, rewind_point: Any) -> None:
        """Log ``after_rewind``: the iteration the weights went back to."""
        iteration = getattr(rewind_point, "iteration", None)
        self._observe("after_rewind", {"round": round_index, "rewind_iteration": iteration})

    @hookimpl
    def torch_lottery_round_end(self, round_index: int, record: Mapping[str, Any]) -> None:
        """Log ``round_end``: the round's record."""
        self._observe("round_end", {"round": round_index, **record})


class _Logger(_Hooks):
    """What every logger shares: events, tags, :meth:`with_tags`, :meth:`close` and ``with`` blocks."""

    def __init__(self, events: Any, tags: Any) -> None:
        self.events = check_names(events, "events", EVENTS)
        self.tags = _check_tags(tags)

    def with_tags(self, **tags: Any) -> TaggedLogger:
        """Return this logger with ``tags`` added to every event, as a plugin of its own (for one run).

        The files stay the logger's: one file holds runs told apart by their tags.

        Examples:
            >>> logger = CallbackLogger(print)
            >>> logger.with_tags(seed=3).torch_lottery_round_end(round_index=0, record={"round": 0})
            {'event': 'round_end', 'seed': 3, 'round': 0}
        """
        return TaggedLogger(self, {**self.tags, **_check_tags(tags)})

    def close(self) -> None:
        """Release what the logger holds open (nothing for the file loggers: each event is written and closed)."""

    def __enter__(self) -> _Logger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _observe(self, event: str, body: Mapping[str, Any], tags: Mapping[str, Any] | None = None) -> None:
        if event in self.events:
            tags = self.tags if tags is None else tags
            self._emit(_json_safe({"event": event, **tags, **body}), tags)

    def _emit(self, event: dict[str, Any], tags: Mapping[str, Any]) -> None:  # pragma: no cover - each logger's own
        raise NotImplementedError


class TaggedLogger(_Hooks):
    """A logger with extra tags (what ``with_tags`` returns): a plugin forwarding to it.

    Args:
        logger: the logger that writes.
        tags (dict): the tags of every event (the logger's own included).

    Examples:
        >>> TaggedLogger(CallbackLogger(print), {"seed": 1}).tags
        {'seed': 1}
    """

    def __init__(self, logger: _Logger, tags: Mapping[str, Any]) -> None:
        if not isinstance(logger, _Logger):
            raise TypeError(f"logger must be one of torch_lottery.loggers' loggers, got {describe(logger)}")
        self.logger = logger
        self.tags = _check_tags(tags)

    def _observe(self, event: str, body: Mapping[str, Any]) -> None:
        self.logger._observe(event, body, self.tags)


class JSONLinesLogger(_Logger):
    """Append one JSON object per event to a file (JSON Lines), flushed line by line.

    A killed run keeps every line it wrote. A file that exists is appended to (a
    resumed run continues its log); its folder is created at the first event.

    Args:
        path (str or PathLike): the file.
        events (tuple of str): which of :data:`EVENTS` to log (default: all).
        tags (dict, optional): added to every event (names not in :data:`RESERVED`).

    Raises:
        TypeError, ValueError: on a path that cannot be written (a directory, a
            read-only file or folder), unknown events or bad tags.

    Examples:
        >>> import json, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "log.jsonl")
        >>> logger = JSONLinesLogger(path, events=("round_end",), tags={"seed": 0})
        >>> logger.torch_lottery_round_end(round_index=0, record={"round": 0, "remaining": 1.0})
        >>> [json.loads(line) for line in open(path)]
        [{'event': 'round_end', 'seed': 0, 'round': 0, 'remaining': 1.0}]
    """

    def __init__(
        self, path: str | os.PathLike, *, events: Iterable[str] = EVENTS, tags: Mapping[str, Any] | None = None
    ):
        self.path = check_writable_file(path, "path")
        super().__init__(events, tags)

    def _emit(self, event: dict[str, Any], tags: Mapping[str, Any]) -> None:
        line = json.dumps(event, allow_nan=False, ensure_ascii=False)
        append_text(self.path, line + "\n")


class CSVLogger(_Logger):
    """Write one row per round record to a CSV file; the columns are the union of the records' fields.

    Nested fields are flattened (``metrics/test_accuracy``, ``per_tensor/0.weight``),
    lists are written as JSON, missing values as empty cells. Columns keep the
    order in which they first appear; a row that brings a new column (a metric
    only some rounds report, round 0's ``instability``) rewrites the file
    atomically with the wider header, any other row is appended and flushed, so
    the file is a complete CSV after every round. A file that exists is
    continued (its header and rows are read at the first record).

    Args:
        path (str or PathLike): the file.
        tags (dict, optional): columns added to every row (the first columns).

    Raises:
        TypeError, ValueError: on a path that cannot be written or bad tags.

    Examples:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
        >>> logger = CSVLogger(path)
        >>> logger.torch_lottery_round_end(round_index=0, record={"round": 0, "remaining": 1.0})
        >>> record = {"round": 1, "remaining": 0.8, "metrics": {"loss": 0.5}}
        >>> logger.torch_lottery_round_end(round_index=1, record=record)
        >>> print(open(path).read(), end="")
        round,remaining,metrics/loss
        0,1.0,
        1,0.8,0.5
    """

    def __init__(self, path: str | os.PathLike, *, tags: Mapping[str, Any] | None = None) -> None:
        self.path = check_writable_file(path, "path")
        super().__init__(("round_end",), tags)
        self._columns: list[str] | None = None  # read from the file at the first record
        self._rows: list[dict[str, Any]] = []

    def _load(self) -> list[str]:
        if not os.path.isfile(self.path) or os.path.getsize(self.path) == 0:
            return []
        with open(self.path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            self._rows = [{k: v for k, v in row.items() if k is not None and v is not None} for row in reader]
            return list(reader.fieldnames or [])

    def _emit(self, event: dict[str, Any], tags: Mapping[str, Any]) -> None:
        row = {k: json.dumps(v) if isinstance(v, list) else v for k, v in _flatten(event).items() if k != "event"}
        if self._columns is None:
            self._columns = self._load()
        new = [k for k in row if k not in self._columns]
        self._rows.append(row)
        if new or not os.path.isfile(self.path):
            self._columns += new
            text = io.StringIO(newline="")
            writer = csv.DictWriter(text, self._columns, restval="")
            writer.writeheader()
            writer.writerows(self._rows)
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            atomic_write(self.path, lambda handle: handle.write(text.getvalue().encode("utf-8")))
        else:
            text = io.StringIO(newline="")
            csv.DictWriter(text, self._columns, restval="").writerow(row)
            append_text(self.path, text.getvalue())


def _summary_writer() -> Any:
    """Return ``torch.utils.tensorboard.SummaryWriter``, or raise an ImportError saying what to install."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError(TENSORBOARD_MISSING) from None
    return SummaryWriter


class TensorBoardLogger(_Logger):
    """Write each round's numbers to TensorBoard: global step = the round.

    The scalars are those of :func:`scalars`: ``remaining``,
    ``remaining_weights``, ``seconds``, every numeric metric (``metrics/<name>``)
    and, with ``per_tensor``, each tensor's surviving fraction
    (``per_tensor/<name>``). With tags, each set of tags gets its own run, a
    subfolder ``<tag>=<value>,...`` of ``log_dir`` (TensorBoard then draws the
    replicates side by side). Needs ``pip install "torch-lottery[tensorboard]"``;
    the event files are flushed after every round. Call :meth:`close` (or use
    the logger in a ``with`` block) when done.

    Args:
        log_dir (str or PathLike): the folder (created at the first record).
        per_tensor (bool): also log each tensor's surviving fraction (default True).
        tags (dict, optional): tags of every record (they choose the subfolder).

    Raises:
        ImportError: if tensorboard is not installed (saying what to install).
        TypeError, ValueError: on a folder that cannot be written or bad arguments.

    Examples:
        >>> import tempfile
        >>> with TensorBoardLogger(tempfile.mkdtemp(), per_tensor=False) as logger:
        ...     logger.torch_lottery_round_end(round_index=0, record={"round": 0, "remaining": 1.0})
    """

    def __init__(
        self, log_dir: str | os.PathLike, *, per_tensor: bool = True, tags: Mapping[str, Any] | None = None
    ) -> None:
        self.log_dir = check_writable_dir(log_dir, "log_dir")
        self.per_tensor = check_bool(per_tensor, "per_tensor")
        super().__init__(("round_end",), tags)
        self._writer_class = _summary_writer()
        self._writers: dict[str, Any] = {}

    def _writer(self, tags: Mapping[str, Any]) -> Any:
        run = ",".join(f"{key}={value}".replace(os.sep, "_") for key, value in tags.items())
        if run not in self._writers:
            self._writers[run] = self._writer_class(log_dir=os.path.join(self.log_dir, run) if run else self.log_dir)
        return self._writers[run]

    def _emit(self, event: dict[str, Any], tags: Mapping[str, Any]) -> None:
        writer = self._writer(tags)
        skip = {"round", *tags}
        for name, value in scalars(event).items():
            if name not in skip and (self.per_tensor or not name.startswith("per_tensor/")):
                writer.add_scalar(name, value, global_step=event["round"])
        writer.flush()

    def close(self) -> None:
        """Flush and close the event files."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


class CallbackLogger(_Logger):
    """Call ``fn(event)`` for every event: the bridge to any tracker (Weights & Biases, MLflow, a list).

    Args:
        fn (callable): ``fn(event)``, with the JSON-safe event dict (see the
            module's docstring); :func:`scalars` turns it into flat numbers.
        events (tuple of str): which of :data:`EVENTS` to pass on (default: ``("round_end",)``).
        tags (dict, optional): added to every event.

    Raises:
        TypeError, ValueError: if ``fn`` is not callable, on unknown events or bad tags.

    Examples:
        >>> seen = []
        >>> logger = CallbackLogger(lambda event: seen.append(scalars(event)))
        >>> logger.torch_lottery_round_end(round_index=1, record={"round": 1, "remaining": 0.8})
        >>> seen
        [{'round': 1, 'remaining': 0.8}]
    """

    def __init__(
        self,
        fn: Callable[[dict[str, Any]], Any],
        *,
        events: Iterable[str] = ("round_end",),
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        self.fn = check_callable(fn, "fn", "fn(event)")
        super().__init__(events, tags)

    def _emit(self, event: dict[str, Any], tags: Mapping[str, Any]) -> None:
        self.fn(event)


# -- several loggers ------------------------------------------------------------------------
def loggers_for(names: Iterable[str], directory: str | os.PathLike) -> list[Any]:
    """Make the loggers ``names`` (keys of :data:`LOG_FILES`) writing into ``directory``, as ``--log`` does.

    Args:
        names (list of str): ``"jsonl"`` (``log.jsonl``), ``"csv"`` (``log.csv``),
            ``"tensorboard"`` (``tensorboard/``); a name given twice makes one logger.
        directory (str or PathLike): where they write (created at the first record).

    Returns:
        list: the loggers, in the order of ``names``.

    Raises:
        TypeError, ValueError: on unknown names or a folder that cannot be written.
        ImportError: for ``"tensorboard"`` without tensorboard installed.

    Examples:
        >>> import tempfile
        >>> [type(logger).__name__ for logger in loggers_for(["csv", "jsonl"], tempfile.mkdtemp())]
        ['CSVLogger', 'JSONLinesLogger']
    """
    chosen = check_names(names, "log", LOG_FILES)
    folder = check_writable_dir(directory, "log_dir", outputs=(LOG_FILES["jsonl"], LOG_FILES["csv"]))
    makers: dict[str, Callable[[str], Any]] = {
        "jsonl": JSONLinesLogger,
        "csv": CSVLogger,
        "tensorboard": TensorBoardLogger,
    }
    return [makers[name](os.path.join(folder, LOG_FILES[name])) for name in dict.fromkeys(chosen)]
