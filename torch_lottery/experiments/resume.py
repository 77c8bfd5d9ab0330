"""A resumable ``torch-lottery run``: what it keeps under ``--out``, and how a rerun continues from it.

Every training of a run (each round of the ticket and of random pruning, each
control) is kept under ``--out/.state`` as soon as it ends, so a rerun of the
same command continues after the last finished one and gives the same records
as an uninterrupted run (every training is seeded on its own). The files, named
here and nowhere else::

    --out/
      results.json, results.csv, accuracy.png   the outputs, replaced as one set (report.write_outputs)
      .torch-lottery.lock                        held by the live run (checkpoints.locked)
      .state/settings.pt                         the settings the state belongs to
      .state/seed-<N>/ticket/                    find_ticket's checkpoint_dir of the ticket
      .state/seed-<N>/random_pruning/            ... of the random-pruning control
      .state/seed-<N>/controls/<kind>-<RRRR>.pt  the record of a finished control training
      .state/seed-<N>/recorded/round-<RRRR>.pt   what the runner recorded at the end of a round of the ticket
      .state/seed-<N>/records.pt                 a finished seed's records (its folders are then removed)

The state files go through :func:`torch_lottery._files.save_state` and
``load_state`` (digest, ``weights_only``), the checkpoint folders through
:func:`torch_lottery.find_ticket`'s own resume.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any

from .._files import load_state, save_state
from .._validation import check_bool, check_writable_dir
from .._version import __version__
from ..driver import checkpoints
from ..driver.run import directory
from .report import OUTPUTS, remove_outputs, write_outputs
from .runner import RunConfig, run_experiment

#: The folder of the resumable state, inside ``--out``.
STATE_DIR = ".state"
SETTINGS_FILE = "settings.pt"
SEED_DIR = "seed-{seed}"
TICKET_DIR = "ticket"
RANDOM_PRUNING_DIR = "random_pruning"
CONTROLS_DIR = "controls"
RECORDED_DIR = "recorded"
RECORDED_FILE = "round-{round:04d}.pt"
CONTROL_FILE = "{kind}-{round:04d}.pt"
RECORDS_FILE = "records.pt"
#: ``format`` fields of the state files, and the layout version this release writes and reads.
SETTINGS_FORMAT = "torch_lottery.run_settings"
CONTROL_FORMAT = "torch_lottery.run_control"
RECORDED_FORMAT = "torch_lottery.run_round"
RECORDS_FORMAT = "torch_lottery.run_records"
STATE_VERSION = 1
#: Settings that do not change the results: a rerun may change them and still resume.
UNCOMPARED = ("progress", "download", "log")
#: How a setting is named in messages, where it is not ``--`` and its name with dashes.
FLAGS = {"strategy_options": "--strategy-option", "torch_lottery": "the torch-lottery version"}


def settings_of(config: RunConfig) -> dict[str, Any]:
    """Return the settings a resumable state belongs to: ``config`` but what does not change results, and the version.

    Args:
        config: the run's settings.

    Returns:
        dict: field name -> value (JSON-like values), plus ``"torch_lottery"``: the version.

    Examples:
        >>> from torch_lottery.experiments.runner import RunConfig
        >>> settings = settings_of(RunConfig(epochs=3))
        >>> settings["epochs"], "progress" in settings
        (3, False)
    """
    settings = {k: v for k, v in config.to_dict().items() if k not in UNCOMPARED}
    settings["torch_lottery"] = __version__
    return settings


def _flag(name: str) -> str:
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def _load(path: str, what: str, format: str) -> dict[str, Any]:
    try:
        return load_state(path, what, format, (STATE_VERSION,))
    except ValueError as error:
        raise ValueError(f"{error}; pass --fresh to start the run over") from None


class ReplicateState:
    """The state of one seed: its checkpoint folders and its finished control trainings.

    Args:
        folder: ``--out/.state/seed-<N>``.
        seed: the seed.
    """

    def __init__(self, folder: str, seed: int) -> None:
        self.folder = folder
        self.seed = seed
        #: find_ticket's ``checkpoint_dir`` of the ticket and of random pruning
        self.ticket_dir = os.path.join(folder, TICKET_DIR)
        self.random_pruning_dir = os.path.join(folder, RANDOM_PRUNING_DIR)
        self.controls_dir = os.path.join(folder, CONTROLS_DIR)
        #: what the runner recorded at the end of each round of the ticket (masks, densities, the dense weights)
        self.recorded_dir = os.path.join(folder, RECORDED_DIR)

    def _control_path(self, kind: str, round_index: int) -> str:
        return os.path.join(self.controls_dir, CONTROL_FILE.format(kind=kind, round=round_index))

    def control(self, kind: str, round_index: int) -> dict[str, Any] | None:
        """Return the record of control ``kind`` at ``round_index`` if a training of it finished, else None."""
        path = self._control_path(kind, round_index)
        if not os.path.isfile(path):
            return None
        record = _load(path, "control record", CONTROL_FORMAT)["record"]
        if not isinstance(record, dict) or (record.get("kind"), record.get("round")) != (kind, round_index):
            raise ValueError(f"path={path!r} is a damaged control record; pass --fresh to start the run over")
        return record

    def save_control(self, record: dict[str, Any]) -> None:
        """Keep the record of a finished control training."""
        os.makedirs(self.controls_dir, exist_ok=True)
        state = {"format": CONTROL_FORMAT, "version": STATE_VERSION, "seed": self.seed, "record": record}
        save_state(state, self._control_path(record["kind"], record["round"]))

    def _recorded_path(self, round_index: int) -> str:
        return os.path.join(self.recorded_dir, RECORDED_FILE.format(round=round_index))

    def keep_round(self, round_index: int, recorded: dict[str, Any]) -> None:
        """Keep what the runner recorded at the end of a round of the ticket (before the round's checkpoint)."""
        os.makedirs(self.recorded_dir, exist_ok=True)
        state = {"format": RECORDED_FORMAT, "version": STATE_VERSION, "round": round_index, **recorded}
        save_state(state, self._recorded_path(round_index))

    def recorded(self) -> dict[int, dict[str, Any]]:
        """Return what :meth:`keep_round` kept, by round: the rounds an earlier process finished."""
        rounds = {}
        for index in checkpoints.finished_rounds(self.ticket_dir):  # (a kept round without its checkpoint reruns)
            path = self._recorded_path(index)
            if not os.path.isfile(path):
                raise ValueError(f"{self.folder!r} lacks {path!r} of a finished round; pass --fresh to start over")
            state = _load(path, "recorded round", RECORDED_FORMAT)
            if (
                state.get("round") != index
                or "layers" not in state
                or ("dense" if index == 0 else "masks") not in state
            ):
                raise ValueError(f"path={path!r} is a damaged recorded round; pass --fresh to start the run over")
            rounds[index] = state
        return rounds


class RunState:
    """The resumable state of a ``torch-lottery run`` under ``--out`` (see the module's docstring); a context manager.

    Args:
        out: the output folder.
        config: the run's settings.
        fresh: start over: the old state and outputs are removed once the run really
            starts (:meth:`begin`), not before, so a run that fails earlier leaves them.
    """

    def __init__(self, out: str, config: RunConfig, fresh: bool = False) -> None:
        self.out = out
        self.folder = os.path.join(out, STATE_DIR)
        self.settings_path = os.path.join(self.folder, SETTINGS_FILE)
        self.settings = settings_of(config)
        self.fresh = fresh
        self._held = contextlib.ExitStack()  # the lock of --out, from begin() on

    def __enter__(self) -> RunState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the lock of ``--out`` (and remove ``--out`` if the run created it and left it empty)."""
        self._held.close()

    def check(self) -> None:
        """Refuse state of a run with other settings (unless ``fresh``), changing nothing.

        Raises:
            ValueError: naming ``--out`` and every setting that differs, and saying to pass ``--fresh``.
        """
        if os.path.exists(self.folder) and not os.path.isdir(self.folder):
            raise ValueError(f"--out={self.out!r} holds a file named {STATE_DIR!r}, where a run keeps its state")
        if self.fresh or not os.path.isfile(self.settings_path):
            return
        saved = _load(self.settings_path, "run state", SETTINGS_FORMAT)["settings"]
        differ = [k for k in dict.fromkeys([*self.settings, *saved]) if saved.get(k) != self.settings.get(k)]
        if differ:
            shown = "; ".join(f"{_flag(k)}: {saved.get(k)!r} there, {self.settings.get(k)!r} here" for k in differ)
            raise ValueError(
                f"--out={self.out!r} holds the state of a run with other settings ({shown}); rerun it with its "
                "settings to resume it, or pass --fresh to start over (its state and results are then removed)"
            )

    def begin(self) -> None:
        """Start keeping state: lock ``--out``, remove the old state and outputs if ``fresh``, record the settings.

        ``--out`` is created if missing. Called once the data are loaded and the model is built, so a run that fails
        before creates nothing; the lock is held until :meth:`close`.

        Raises:
            ValueError: naming ``--out`` and the pid of another live run on it, or
                (as :meth:`check`) if its state is now of other settings.
        """
        self._held.enter_context(directory(self.out, argument="--out"))
        self.check()  # again, under the lock: another run may have ended in between
        if os.path.isfile(self.settings_path) and not self.fresh:
            return  # resuming
        if os.path.isdir(self.folder):  # an old run's (fresh), or what an interrupted removal left
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.settings_path)  # first: a removal interrupted from here on leaves no state
            shutil.rmtree(self.folder)
        if self.fresh:
            remove_outputs(self.out)
            _remove_logs(self.out)
        os.makedirs(self.folder, exist_ok=True)
        save_state({"format": SETTINGS_FORMAT, "version": STATE_VERSION, "settings": self.settings}, self.settings_path)

    def replicate(self, seed: int) -> ReplicateState:
        """Return the state of seed ``seed``."""
        return ReplicateState(os.path.join(self.folder, SEED_DIR.format(seed=seed)), seed)

    def finished(self, seed: int) -> list[dict[str, Any]] | None:
        """Return the records of seed ``seed`` if an earlier process finished it, else None."""
        replicate = self.replicate(seed)
        path = os.path.join(replicate.folder, RECORDS_FILE)
        if not os.path.isfile(path):
            return None
        records = _load(path, "run records", RECORDS_FORMAT)["records"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ValueError(f"path={path!r} is a damaged run records file; pass --fresh to start the run over")
        _remove_folders(replicate)  # (left by a process interrupted while removing them)
        return records

    def finish(self, seed: int, records: list[dict[str, Any]]) -> None:
        """Keep the records of a finished seed, then remove its checkpoint folders and control records."""
        replicate = self.replicate(seed)
        state = {"format": RECORDS_FORMAT, "version": STATE_VERSION, "seed": seed, "records": records}
        save_state(state, os.path.join(replicate.folder, RECORDS_FILE))
        _remove_folders(replicate)


def _remove_logs(out: str) -> None:
    """Remove the old run's ``--log`` files (a rerun that resumes appends to them instead)."""
    from ..loggers import LOG_FILES

    for name in LOG_FILES.values():
        path = os.path.join(out, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _remove_folders(replicate: ReplicateState) -> None:
    for folder in (replicate.ticket_dir, replicate.random_pruning_dir, replicate.controls_dir, replicate.recorded_dir):
        shutil.rmtree(folder, ignore_errors=True)


def run_resumable(config: RunConfig, out: str, fresh: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """Run ``config`` into ``out`` as ``torch-lottery run`` does: resumable, locked, outputs replaced as one set.

    A run started again with the same settings and ``out`` continues after the
    last finished training and returns the same records as an uninterrupted run.
    A second live run on ``out`` is refused; state of other settings is refused
    unless ``fresh``.

    Args:
        config: the settings.
        out: the output folder (``--out``).
        fresh: start over, removing the old state and outputs once the run really starts.

    Returns:
        tuple: the result (as :func:`~torch_lottery.experiments.runner.run_experiment`'s)
        and the paths written (as :func:`~torch_lottery.experiments.report.write_outputs`').

    Raises:
        TypeError, ValueError: on bad settings, an unusable ``out``, state of other
            settings, damaged state, or another live run on ``out`` (naming ``--out`` and its pid).

    Examples:
        >>> import tempfile
        >>> from torch_lottery.experiments.runner import RunConfig
        >>> out = tempfile.mkdtemp()
        >>> config = RunConfig(rounds=1, epochs=1, batch_size=500, replicates=1, controls=(), progress=False)
        >>> result, paths = run_resumable(config, out)
        >>> again, _ = run_resumable(config, out)  # finished: nothing trains again
        >>> again["records"] == result["records"]
        True
    """
    config.check()
    check_bool(fresh, "fresh")
    given = check_writable_dir(out, "--out", outputs=(*OUTPUTS, checkpoints.LOCK_FILE))
    with RunState(given, config, fresh) as state:
        state.check()  # before anything loads (and again once it has, under the lock)
        result = run_experiment(config, log_dir=given, state=state)
        paths = write_outputs(result, given)
    return result, paths
