"""torch_lottery/_files.py: the one atomic writer, digests, and the integrity check of every file format."""

from __future__ import annotations

import ast
import json
import os
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

import torch_lottery as tl
from torch_lottery import RewindPoint, Ticket, _files
from torch_lottery.driver import checkpoints
from torch_lottery.export import SparseState, export

PACKAGE = Path(tl.__file__).resolve().parent


# --------------------------------------------------------------------------- helpers
def tensor_records(path) -> list[tuple[int, int]]:
    """Return ``(data offset, size)`` of every tensor record of a torch zip file."""
    out = []
    raw = Path(path).read_bytes()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if re.search(r"/data/\d+$", info.filename) and info.file_size:
                name_length, extra_length = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
                out.append((info.header_offset + 30 + name_length + extra_length, info.file_size))
    return out


def flip(path, position: int, bit: int = 0x01) -> None:
    data = bytearray(Path(path).read_bytes())
    data[position] ^= bit
    Path(path).write_bytes(bytes(data))


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def pruned_net() -> nn.Sequential:
    model = net()
    tl.lottery_magnitude(model[0], "weight", amount=0.5)
    return model


def train(model, context):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 6)).pow(2).mean().backward()
        optimizer.step()
        context.step()


def write_ticket(path):
    Ticket({"0.weight": torch.ones(5, 6)}, RewindPoint.capture(net())).save(path)


def write_point(path):
    RewindPoint.capture(net(), iteration=3).save(path)


def write_export(path):
    export(pruned_net(), path)


def write_checkpoint(path):
    folder = Path(path).parent / "run"
    tl.find_ticket(net(), train, rounds=1, checkpoint_dir=folder)
    os.replace(folder / "round-0001.pt", path)


def load_checkpoint(path):
    return checkpoints.load_checkpoint(str(path), [])


# (name, writer, loader, file name): every file format the library writes
FORMATS = [
    ("ticket", write_ticket, Ticket.load, "ticket.pt"),
    ("rewind point", write_point, RewindPoint.load, "point.pt"),
    ("sparse export", write_export, SparseState.load, "sparse.pt"),
    ("round checkpoint", write_checkpoint, load_checkpoint, "round-0001.pt"),
]
FORMAT_IDS = [f[0] for f in FORMATS]


# --------------------------------------------------------------------------- atomic_write
def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    _files.atomic_write(target, lambda handle: handle.write(b"new content"))
    assert target.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def write(handle):
        handle.write(b"half of it")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _files.atomic_write(target, write)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_the_temporary_is_in_the_same_folder_and_synced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else None))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(
            ("replace", os.path.dirname(src) == os.path.dirname(dst), os.path.basename(src).startswith(".out.bin."))
        )
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    _files.atomic_write(tmp_path / "out.bin", lambda handle: handle.write(b"x"))
    kinds = [e[0] for e in events]
    assert kinds == ["fsync", "replace", "fsync"]  # the file, the rename, the directory
    assert events[1][1:] == (True, True)
    if events[0][1] is not None:
        assert events[0][1] is False and events[2][1] is True


def test_new_files_get_the_umask_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        _files.atomic_write(tmp_path / "out.bin", lambda handle: handle.write(b"x"))
    finally:
        os.umask(previous)
    assert (tmp_path / "out.bin").stat().st_mode & 0o777 == 0o644


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.bin.{dead.pid}.0123abcd.tmp"
    live = tmp_path / f".out.bin.{os.getppid()}.0123abcd.tmp"  # our parent is running
    other = tmp_path / f".other.bin.{dead.pid}.0123abcd.tmp"  # another target's: not ours to judge now
    for path in (stale, live, other):
        path.write_bytes(b"torn")
    _files.atomic_write(tmp_path / "out.bin", lambda handle: handle.write(b"x"))
    assert sorted(os.listdir(tmp_path)) == sorted(["out.bin", live.name, other.name])


# --------------------------------------------------------------------------- atomic_write_set
def _writes(text: bytes):
    return lambda handle: handle.write(text)


SET = {"a.csv": _writes(b"new a"), "b.png": _writes(b"new b"), "c.json": _writes(b"new c")}


def _old(folder: Path) -> None:
    _files.atomic_write_set(
        folder, {"a.csv": _writes(b"old a"), "b.png": _writes(b"old b"), "c.json": _writes(b"old c")}
    )


def _contents(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def test_a_set_replaces_its_files_in_order_and_removes_those_it_drops(tmp_path, monkeypatch):
    _old(tmp_path)
    renamed, real = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renamed.append(os.path.basename(dst)), real(src, dst)))
    _files.atomic_write_set(tmp_path, {"a.csv": _writes(b"new a"), "b.png": None, "c.json": _writes(b"new c")})
    assert _contents(tmp_path) == {"a.csv": b"new a", "c.json": b"new c"}  # no journal, no temporary
    assert renamed == [_files.SET_JOURNAL, "a.csv", "c.json"]  # the commit point first, the reader's file last


def test_a_failure_before_the_commit_point_leaves_the_old_set(tmp_path):
    _old(tmp_path)
    before = _contents(tmp_path)

    def failing(handle):
        handle.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _files.atomic_write_set(tmp_path, {**SET, "b.png": failing})
    assert _contents(tmp_path) == before


@pytest.mark.parametrize("renamed", [0, 1, 2])
def test_a_writer_stopped_after_the_commit_point_leaves_the_new_set_to_readers_and_the_next_write(
    renamed, tmp_path, monkeypatch
):
    _old(tmp_path)
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2 + renamed:  # the journal, then `renamed` files of the set
            raise KeyboardInterrupt  # (a SIGKILL leaves the same files: nothing is undone after the commit)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        _files.atomic_write_set(tmp_path, SET)
    monkeypatch.setattr(os, "replace", real)
    assert (tmp_path / _files.SET_JOURNAL).is_file()
    for name in SET:  # readers get the new set, renamed or not
        assert Path(_files.committed_path(tmp_path / name)).read_bytes() == b"new " + name[0].encode()
    _files.finish_set(tmp_path)
    assert _contents(tmp_path) == {"a.csv": b"new a", "b.png": b"new b", "c.json": b"new c"}
    _files.finish_set(tmp_path)  # nothing left to do
    assert _contents(tmp_path) == {"a.csv": b"new a", "b.png": b"new b", "c.json": b"new c"}


def test_the_next_set_completes_a_committed_one_and_removes_dead_writers_temporaries(tmp_path):
    _old(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".a.csv.{dead.pid}.0123abcd.tmp").write_bytes(b"torn, never committed")
    (tmp_path / f".b.png.{dead.pid}.0123abcd.tmp").write_bytes(b"committed b")
    journal = {"format": _files.SET_FORMAT, "version": 1, "files": [["b.png", f".b.png.{dead.pid}.0123abcd.tmp"]]}
    (tmp_path / _files.SET_JOURNAL).write_text(json.dumps(journal))
    assert _files.committed_path(str(tmp_path / "b.png")).endswith(".0123abcd.tmp")
    _files.atomic_write_set(tmp_path, {"a.csv": _writes(b"new a"), "c.json": _writes(b"new c")})
    assert _contents(tmp_path) == {"a.csv": b"new a", "b.png": b"committed b", "c.json": b"new c"}


def test_a_damaged_journal_is_named(tmp_path):
    (tmp_path / _files.SET_JOURNAL).write_text('{"format": "torch_lottery.file_set", "version": 1, "files": [[')
    with pytest.raises(ValueError, match=rf"path='.*{re.escape(_files.SET_JOURNAL)}' is a damaged journal"):
        _files.finish_set(tmp_path)
    (tmp_path / _files.SET_JOURNAL).write_text(
        json.dumps({"format": _files.SET_FORMAT, "version": 1, "files": [["../x", None]]})
    )
    with pytest.raises(ValueError, match="names files outside its folder"):
        _files.committed_path(tmp_path / "x")


def test_bad_set_names_and_folders_are_refused_writing_nothing(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(ValueError, match=r"writers has the name 'sub/a'"):
        _files.atomic_write_set(tmp_path, {"sub/a": _writes(b"x")})
    with pytest.raises(ValueError, match=r"holds a directory named 'd'"):
        _files.atomic_write_set(tmp_path, {"a": _writes(b"x"), "d": _writes(b"x")})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _files.atomic_write_set(tmp_path / "missing", SET)
    assert os.listdir(tmp_path) == ["d"]


def test_atomic_save_round_trips(tmp_path):
    _files.atomic_save({"a": torch.arange(3)}, tmp_path / "x.pt")
    assert torch.equal(torch.load(tmp_path / "x.pt", weights_only=True)["a"], torch.arange(3))


# --------------------------------------------------------------------------- digests
BASE = {
    "format": "f",
    "version": 2,
    "t": torch.arange(6, dtype=torch.float32).view(2, 3),
    "nested": {"b": [1, 2.5, "s", None, True], 3: (torch.zeros(2, dtype=torch.bool),)},
}


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s["t"].view(-1).__setitem__(4, 4.0000005),  # one bit of one float
        lambda s: s.__setitem__("t", s["t"].view(3, 2)),  # shape
        lambda s: s.__setitem__("t", s["t"].double()),  # dtype
        lambda s: s["nested"]["b"].__setitem__(0, 1.0),  # int vs float
        lambda s: s["nested"]["b"].__setitem__(4, 1),  # bool vs int
        lambda s: s["nested"]["b"].append(None),
        lambda s: s["nested"].__setitem__(3, [s["nested"][3][0]]),  # tuple vs list
        lambda s: s.__setitem__("nested", dict(reversed(list(s["nested"].items())))),  # key order
        lambda s: s.__setitem__("version", 1),
        lambda s: s.__setitem__("extra", None),
    ],
    ids=[
        "float-bit",
        "shape",
        "dtype",
        "int-float",
        "bool-int",
        "list-length",
        "tuple-list",
        "key-order",
        "version",
        "extra-key",
    ],
)
def test_any_change_changes_the_digest(change):
    def copy(value):
        if isinstance(value, torch.Tensor):
            return value.clone()
        if isinstance(value, dict):
            return {k: copy(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(copy(v) for v in value)
        return value

    changed = copy(BASE)
    assert _files.digest(changed) == _files.digest(BASE)
    change(changed)
    assert _files.digest(changed) != _files.digest(BASE)


def test_digest_ignores_its_own_field_and_views_hash_their_own_bytes():
    assert _files.digest({**BASE, _files.DIGEST_FIELD: "anything"}) == _files.digest(BASE)
    big = torch.arange(10.0)
    assert _files.digest({"v": big[2:5]}) == _files.digest({"v": torch.tensor([2.0, 3.0, 4.0])})
    assert _files.digest({"v": big.view(2, 5).t()}) == _files.digest({"v": big.view(2, 5).t().contiguous()})


def test_saved_state_carries_a_digest_that_load_checks(tmp_path):
    path = tmp_path / "s.pt"
    _files.save_state(dict(BASE), path)
    raw = torch.load(path, weights_only=True)
    assert raw[_files.DIGEST_FIELD] == _files.digest(BASE)
    loaded = _files.load_state(path, "thing", "f", (2,))
    assert _files.DIGEST_FIELD not in loaded and torch.equal(loaded["t"], BASE["t"])


# --------------------------------------------------------------------------- every format
@pytest.mark.parametrize("name, write, load, filename", FORMATS, ids=FORMAT_IDS)
def test_a_flipped_bit_in_tensor_data_is_detected(tmp_path, name, write, load, filename):
    path = tmp_path / filename
    write(path)
    load(path)  # intact: loads
    for offset, size in tensor_records(path):
        for position in (offset, offset + size - 1):
            original = path.read_bytes()
            flip(path, position)
            torch.load(path, weights_only=True)  # torch itself does not notice
            with pytest.raises(ValueError, match=rf"{re.escape(filename)}.*SHA-256 digest"):
                load(path)
            path.write_bytes(original)


@pytest.mark.parametrize("name, write, load, filename", FORMATS, ids=FORMAT_IDS)
@pytest.mark.parametrize("keep", [0, 0.01, 0.5, 0.99])
def test_a_truncated_file_is_refused(tmp_path, name, write, load, filename, keep):
    path = tmp_path / filename
    write(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match=re.escape(filename)):
        load(path)


@pytest.mark.parametrize("name, write, load, filename", FORMATS, ids=FORMAT_IDS)
def test_a_file_without_its_digest_is_refused(tmp_path, name, write, load, filename):
    path = tmp_path / filename
    write(path)
    state = torch.load(path, weights_only=True)
    del state[_files.DIGEST_FIELD]
    torch.save(state, path)
    with pytest.raises(ValueError, match=rf"{re.escape(filename)}.*has no sha256 digest"):
        load(path)


@pytest.mark.parametrize("name, write, load, filename", FORMATS, ids=FORMAT_IDS)
def test_an_edited_value_is_refused(tmp_path, name, write, load, filename):
    """Valid pickles with a changed value (here: a field added) do not match the digest either."""
    path = tmp_path / filename
    write(path)
    state = torch.load(path, weights_only=True)
    state["edited"] = True
    torch.save(state, path)
    with pytest.raises(ValueError, match="SHA-256 digest"):
        load(path)


@pytest.mark.parametrize("name, write, load, filename", FORMATS, ids=FORMAT_IDS)
def test_an_edited_downgraded_unsigned_file_is_refused(tmp_path, name, write, load, filename):
    """A file edited, set to an older version and stripped of its digest does not load: no version is unsigned."""
    path = tmp_path / filename
    write(path)
    state = torch.load(path, weights_only=True)
    del state[_files.DIGEST_FIELD]
    state["version"] = 1
    torch.save(state, path)
    with pytest.raises(ValueError, match=rf"{re.escape(filename)}.*version 1; this release reads 2"):
        load(path)
    state["version"] = 2  # the current version, unsigned: refused too
    torch.save(state, path)
    with pytest.raises(ValueError, match=rf"{re.escape(filename)}.*has no sha256 digest"):
        load(path)


@pytest.mark.filterwarnings("ignore:Validating sparse tensor invariants")
@pytest.mark.parametrize("name, write, load, filename", FORMATS, ids=FORMAT_IDS)
def test_a_sparse_tensor_in_a_file_is_refused(tmp_path, name, write, load, filename):
    """A signed file that holds a sparse-layout tensor (written by hand) is refused naming where it sits."""
    path = tmp_path / filename
    write(path)
    state = torch.load(path, weights_only=True)
    del state[_files.DIGEST_FIELD]
    state["extra"] = {"values": torch.eye(3).to_sparse()}
    _files.save_state(state, path)
    with pytest.raises(ValueError, match=rf"{re.escape(filename)}.*\['extra'\]\['values'\] is a sparse tensor"):
        load(path)


@pytest.mark.parametrize("name, write, load, filename", FORMATS, ids=FORMAT_IDS)
def test_a_directory_is_refused_clearly(tmp_path, name, write, load, filename):
    (tmp_path / filename).mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        load(tmp_path / filename)


def test_loaded_files_equal_what_was_saved(tmp_path):
    ticket = Ticket(
        {"0.weight": torch.rand(5, 6) > 0.5},
        RewindPoint.capture(net(), iteration=2),
        [{"round": 0, "remaining": 1.0}],
        {"seed": 3},
    )
    ticket.save(tmp_path / "t.pt")
    again = Ticket.load(tmp_path / "t.pt")
    assert torch.equal(again.masks["0.weight"], ticket.masks["0.weight"])
    assert all(torch.equal(again.rewind[k], ticket.rewind[k]) for k in ticket.rewind)
    assert again.history == ticket.history and again.config == ticket.config


# --------------------------------------------------------------------------- one writer
def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_no_module_writes_files_around_the_atomic_writer():
    """Only torch_lottery/_files.py calls torch.save, os.replace, mkstemp or open() for writing."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_files.py":
            continue
        for node, name in _calls(ast.parse(path.read_text())):
            mode = None
            if (
                name in ("open", "io.open", "gzip.open")
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
            ):
                mode = node.args[1].value
            for keyword in node.keywords:
                if keyword.arg == "mode" and isinstance(keyword.value, ast.Constant):
                    mode = keyword.value.value
            writes = isinstance(mode, str) and any(c in mode for c in "wax+")
            if (
                name in ("torch.save", "os.replace", "os.rename", "tempfile.mkstemp", "shutil.move")
                or writes
                or name.endswith((".write_text", ".write_bytes"))
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
            if name.endswith("savefig") and not (
                node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "handle"
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []


def test_every_writer_goes_through_a_temporary_in_the_same_folder(tmp_path, monkeypatch):
    renamed = []
    real_replace = os.replace

    def replace(src, dst):
        renamed.append((os.path.basename(src), os.path.basename(dst), os.path.dirname(src) == os.path.dirname(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    write_ticket(tmp_path / "ticket.pt")
    write_point(tmp_path / "point.pt")
    write_export(tmp_path / "sparse.pt")
    tl.find_ticket(net(), train, rounds=1, checkpoint_dir=tmp_path / "run")
    from torch_lottery.experiments.report import write_outputs

    summary = [
        {
            "kind": "ticket",
            "round": 0,
            "n": 1,
            "remaining": 1.0,
            "test_accuracy_mean": 0.5,
            "test_accuracy_std": 0.0,
            "test_accuracy_min": 0.5,
            "test_accuracy_max": 0.5,
        }
    ]
    written = write_outputs({"summary": summary, "config": {}}, str(tmp_path / "out"))
    targets = [dst for _, dst, _ in renamed]
    expected = ["ticket.pt", "point.pt", "sparse.pt", "round-0000.pt", "round-0001.pt", "ticket.pt"]
    # the output set: its journal (the commit point), then results.csv, accuracy.png and results.json last
    expected += [_files.SET_JOURNAL, *(os.path.basename(written[k]) for k in ("csv", "plot", "json"))]
    assert targets == expected
    assert all(same for _, _, same in renamed)
    assert all(re.fullmatch(rf"\.{re.escape(dst)}\.\d+\.[0-9a-f]+\.tmp", src) for src, dst, _ in renamed)
