"""Every file torch-lottery writes: one atomic writer, and SHA-256 digests checked on load.

* :func:`atomic_write` writes through a temporary file in the target's directory
  (flush, ``fsync`` of the file, ``os.replace``, ``fsync`` of the directory where
  the platform allows it): a reader, or a process killed at any instant, sees
  either the old file or the new one, never a torn one. A temporary file left
  by a writer that was killed is removed the next time the same target is written.
* :func:`atomic_write_set` replaces several files of one folder as one set (a
  run's ``results.json``, ``results.csv`` and ``accuracy.png``): every new file is
  written in full to a temporary beside its target, then a journal (the commit
  point) lists the renames, which follow; a kill before the journal leaves the old
  set, one after it a journal that :func:`finish_set` completes, and
  :func:`committed_path` reads the new set before it is complete.
* :func:`save_state` adds a SHA-256 digest of a state dict's whole content
  (tensors' bytes, dtypes and shapes, and every other value) under
  :data:`DIGEST_FIELD`; :func:`load_state`, the one gate every file format goes
  through, reads with ``torch.load(weights_only=True)`` and checks the format,
  the version, the digest (every file carries one: an unsigned file is refused)
  and that every tensor is dense, so a flipped byte inside tensor data, which
  ``torch.load`` itself does not notice, is reported instead of being loaded
  silently.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any, BinaryIO

import torch

#: The key under which a saved state stores the SHA-256 digest of the rest of its content.
DIGEST_FIELD = "sha256"


# -- atomic writes ---------------------------------------------------------------
def _temporary_name(path: str) -> str:
    folder, base = os.path.split(path)
    return os.path.join(folder, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # exists but not ours, or the platform cannot tell
        return True
    return True


def _remove_stale_temporaries(path: str) -> None:
    """Remove temporaries of ``path`` left by writers that no longer run (killed mid-write)."""
    folder, base = os.path.split(path)
    pattern = re.compile(rf"^\.{re.escape(base)}\.(\d+)\.[0-9a-f]+\.tmp$")
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return
    for name in names:
        match = pattern.match(name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))


def _fsync_directory(folder: str) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where directories cannot be opened."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _write_temporary(path: str, write: Callable[[BinaryIO], Any]) -> str:
    """Write a complete, ``fsync``-ed temporary file of ``path`` with ``write``; return its name."""
    tmp = _temporary_name(path)
    try:
        with open(tmp, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` to ``path`` (UTF-8, created with its folder if missing) and flush it to the OS.

    For logs that grow line by line (a killed run keeps every line written); a
    file that is replaced as a whole goes through :func:`atomic_write`.

    Args:
        path: the file to append to.
        text: what to append, e.g. one line with its newline.

    Examples:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "logs", "log.txt")
        >>> for line in ("one", "two"):
        ...     append_text(path, line + os.linesep)
        >>> open(path).read().splitlines()
        ['one', 'two']
    """
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Write ``path`` atomically: ``write(handle)`` fills a temporary file that then replaces it.

    The temporary file sits in the same directory (so ``os.replace`` is atomic),
    is flushed and ``fsync``-ed before the rename, and the directory is
    ``fsync``-ed after it. If ``write`` raises, the temporary file is removed and
    ``path`` is left as it was. The new file gets the usual permissions (umask).

    Args:
        path: the file to write.
        write: called once with a binary file handle open for writing.

    Raises:
        ValueError: if ``path`` is a directory.
        FileNotFoundError: if its folder does not exist.
    """
    given = os.fspath(path)
    path = os.path.abspath(given)
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise ValueError(f"path={given!r} is a directory; give a file name to write")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"path={given!r} cannot be written: its folder {folder!r} does not exist")
    _remove_stale_temporaries(path)
    tmp = _write_temporary(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(folder)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` ``obj`` to ``path`` through :func:`atomic_write`."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


# -- sets of files replaced together ---------------------------------------------
#: The journal of a set of files replaced together, in their folder: written once every new file is
#: complete (the commit point), removed once every rename is done.
SET_JOURNAL = ".torch-lottery-set.json"
SET_FORMAT = "torch_lottery.file_set"
SET_VERSION = 1


def _journal(folder: str) -> list[tuple[str, str | None]] | None:
    """Return the renames of the committed set of ``folder`` (name, temporary or None: removed), or None."""
    path = os.path.join(folder, SET_JOURNAL)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    try:
        journal = json.loads(text)
        if journal.get("format") != SET_FORMAT or journal.get("version") != SET_VERSION:
            raise ValueError("not a journal of this release")
        files = [(str(name), None if tmp is None else str(tmp)) for name, tmp in journal["files"]]
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ValueError(
            f"path={path!r} is a damaged journal of a set of files ({_first_line(error)}); it is written "
            "atomically, so it was changed afterwards: remove it and write the files again"
        ) from None
    if any(os.path.basename(name) != name or (tmp is not None and os.path.basename(tmp) != tmp) for name, tmp in files):
        raise ValueError(f"path={path!r} is a damaged journal of a set of files: it names files outside its folder")
    return files


def finish_set(folder: str | os.PathLike) -> None:
    """Complete the replacement of a set of files that a writer killed after its commit point left in ``folder``.

    Renames every temporary the journal (:data:`SET_JOURNAL`) lists that is
    still there over its target, removes the targets the set drops, then the
    journal. A no-op without a journal; safe to repeat after a kill inside it.

    Args:
        folder: the folder of the set.

    Raises:
        ValueError: naming the journal, if it is damaged.

    Examples:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> finish_set(folder)  # nothing pending: nothing happens
    """
    folder = os.fspath(folder)
    files = _journal(folder)
    if files is None:
        return
    for name, tmp in files:
        target = os.path.join(folder, name)
        if tmp is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)
        elif os.path.exists(os.path.join(folder, tmp)):  # (gone: renamed before the kill)
            os.replace(os.path.join(folder, tmp), target)
    _fsync_directory(folder)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(folder, SET_JOURNAL))
    _fsync_directory(folder)


def committed_path(path: str | os.PathLike) -> str:
    """Return the file that holds the committed content of ``path`` (for readers, who write nothing).

    That is ``path`` itself, unless a set that replaces it was committed and not
    yet renamed (a writer killed after its commit point, see :func:`atomic_write_set`):
    then the new file, which still has its temporary name.

    Args:
        path: a file of a set.

    Returns:
        str: the path to read.

    Raises:
        ValueError: naming the journal, if it is damaged.

    Examples:
        >>> committed_path("out/results.json")
        'out/results.json'
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    for listed, tmp in _journal(folder or ".") or ():
        if listed == name and tmp is not None and os.path.exists(os.path.join(folder, tmp)):
            return os.path.join(folder, tmp)
    return path


def atomic_write_set(folder: str | os.PathLike, writers: Mapping[str, Callable[[BinaryIO], Any] | None]) -> None:
    """Replace files of ``folder`` as one set: a kill at any instant leaves the old set or the new one.

    First a set left half-renamed by a killed writer is completed
    (:func:`finish_set`). Then every new file is written in full to a temporary
    beside its target (flushed and ``fsync``-ed); the journal
    :data:`SET_JOURNAL`, written by :func:`atomic_write`, lists the renames: that
    is the commit point. The temporaries then replace their targets in the order
    of ``writers`` (put the file readers start from last), a target whose writer
    is ``None`` is removed, and the journal is removed. Before the commit point a
    failure (or a kill) leaves the old set: the temporaries are removed (or, left
    by a killed process, by the next write); after it the new set is the
    committed one: the next write, or :func:`finish_set`, completes it, and
    :func:`committed_path` tells readers where its files are meanwhile.

    Args:
        folder: an existing folder.
        writers: file name (no folder) -> ``write(handle)`` that fills it, or None to remove it.

    Raises:
        ValueError: if a name is not a plain file name, or names a directory.
        FileNotFoundError: if ``folder`` does not exist.

    Examples:
        >>> import os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> atomic_write_set(folder, {"a.txt": lambda h: h.write(b"a"), "b.txt": lambda h: h.write(b"b")})
        >>> sorted(os.listdir(folder))
        ['a.txt', 'b.txt']
        >>> atomic_write_set(folder, {"a.txt": None, "b.txt": lambda h: h.write(b"B")})
        >>> sorted(os.listdir(folder))
        ['b.txt']
    """
    given = os.fspath(folder)
    folder = os.path.abspath(given)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder={given!r} does not exist")
    for name in writers:
        if not isinstance(name, str) or not name or os.path.basename(name) != name or name in (".", ".."):
            raise ValueError(f"writers has the name {name!r}; give plain file names inside folder={given!r}")
        if os.path.isdir(os.path.join(folder, name)):
            raise ValueError(f"folder={given!r} holds a directory named {name!r}, where a file is written")
    finish_set(folder)
    for name in writers:
        _remove_stale_temporaries(os.path.join(folder, name))
    staged: dict[str, str] = {}
    try:
        for name, write in writers.items():
            if write is not None:
                staged[name] = os.path.basename(_write_temporary(os.path.join(folder, name), write))
        _fsync_directory(folder)
        files = [(name, staged.get(name)) for name in writers]
        journal = json.dumps({"format": SET_FORMAT, "version": SET_VERSION, "files": files})
        atomic_write(os.path.join(folder, SET_JOURNAL), lambda handle: handle.write(journal.encode()))
    except BaseException:
        if _journal(folder) == [(name, staged.get(name)) for name in writers]:
            raise  # interrupted right after the commit point: the new set stands, the next write completes it
        for tmp in staged.values():  # not committed: the old set stays
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, tmp))
        raise
    finish_set(folder)


# -- digests ---------------------------------------------------------------------
def _feed_tensor(h: hashlib._Hash, t: torch.Tensor) -> None:
    t = t.detach()
    if t.layout != torch.strided:
        t = t.to_dense()
    h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
    if t.device.type == "meta":
        return
    t = t.cpu().contiguous()
    nbytes = t.numel() * t.element_size()
    if nbytes:  # the bytes as this (little-endian: every platform PyTorch ships for) machine holds them
        h.update((ctypes.c_char * nbytes).from_address(t.data_ptr()))


def _feed(h: hashlib._Hash, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        _feed_tensor(h, value)
    elif isinstance(value, dict):
        h.update(f"D{len(value)};".encode())
        for key, item in value.items():
            _feed(h, key)
            _feed(h, item)
    elif isinstance(value, (list, tuple)):
        h.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)};".encode())
        for item in value:
            _feed(h, item)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(f"S{len(data)};".encode())
        h.update(data)
    elif value is None or isinstance(value, (bool, int, float)):
        text = repr(value)
        h.update(f"{type(value).__name__[0]}{len(text)};{text}".encode())
    else:  # torch.Size, dtypes, devices and other values weights_only accepts
        text = f"{type(value).__module__}.{type(value).__qualname__}:{value!r}"
        h.update(f"O{len(text)};{text}".encode())


def digest(state: dict) -> str:
    """Return the SHA-256 (hex) of everything in ``state`` except its :data:`DIGEST_FIELD`.

    Covers keys and their order, tensor dtypes, shapes and bytes, and every
    other value, so any change to the content changes the digest.
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != DIGEST_FIELD})
    return h.hexdigest()


def save_state(state: dict, path: str | os.PathLike) -> None:
    """Save ``state`` (a dict with ``format`` and ``version``) with its digest, atomically."""
    sealed = {k: v for k, v in state.items() if k != DIGEST_FIELD}
    sealed[DIGEST_FIELD] = digest(sealed)
    atomic_save(sealed, path)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_state(
    path: str | os.PathLike, what: str, format: str, versions: Iterable[int], map_location: Any = "cpu"
) -> dict:
    """Read a file written by :func:`save_state`, checking format, version, digest and tensor layouts.

    Loads with ``torch.load(weights_only=True)`` (pickled code is refused without
    running it). Returns the state without its digest field.

    Args:
        path: the file.
        what: what the file should be, for messages (``"ticket"``).
        format: the expected ``format`` field.
        versions: the layout versions this release reads.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming ``path``, if it cannot be read (truncated, damaged,
            not a torch file, pickled objects), is not a ``format`` file, has a
            version this release does not read, has no digest or one its content
            does not match, or holds a sparse tensor.
    """
    source = f"path={os.fspath(path)!r}"
    if os.path.isdir(path):
        raise ValueError(f"{source} is a directory, not a {what} file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # unpickling refused, or the file is truncated or damaged
        raise ValueError(
            f"{source} is not a readable {what} (damaged, truncated or not written by "
            f"torch-lottery): {_first_line(error)}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != format:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{source} is not a {what}: it is not a torch-lottery {what} file (format {found!r}, expected {format!r})"
        )
    versions = tuple(versions)
    version = state.get("version")
    if type(version) is not int or version not in versions:
        raise ValueError(f"{source} has {what} version {version!r}; this release reads {', '.join(map(str, versions))}")
    check_digest(state, source, what)
    sparse = _sparse_tensor(state)
    if sparse is not None:
        raise ValueError(
            f"{source} is a damaged {what}: {sparse} is a sparse tensor; torch-lottery files hold dense tensors only"
        )
    return {k: v for k, v in state.items() if k != DIGEST_FIELD}


def _sparse_tensor(value: Any, where: str = "") -> str | None:
    """Return where the first non-strided tensor in ``value`` sits, or None."""
    if isinstance(value, torch.Tensor):
        return (where or "a tensor") if value.layout != torch.strided else None
    if isinstance(value, dict):
        items: Iterable = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _sparse_tensor(item, f"{where}[{key!r}]")
        if found is not None:
            return found
    return None


def check_digest(state: dict, source: str, what: str) -> None:
    """Check the :data:`DIGEST_FIELD` of a loaded ``state``: present, and equal to its content's digest.

    Raises:
        ValueError: naming ``source``, if the digest is missing or does not match.
    """
    stored = state.get(DIGEST_FIELD)
    if stored is None:
        raise ValueError(
            f"{source} is a damaged {what}: it has no {DIGEST_FIELD} digest, which every "
            "file saved by torch-lottery carries; save it with the library's save method"
        )
    computed = digest(state)
    if not isinstance(stored, str) or stored != computed:
        raise ValueError(
            f"{source} is a damaged {what}: its content does not match its SHA-256 digest "
            f"(stored {str(stored)[:16]}..., computed {computed[:16]}...); "
            "the file was changed or corrupted after it was written"
        )
