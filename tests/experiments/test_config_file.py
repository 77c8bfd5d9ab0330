"""Run settings from a TOML file: what is read, and every way a file is refused, naming it and the key."""

from __future__ import annotations

import builtins
import os
import sys
from pathlib import Path

import pytest

from torch_lottery.experiments import config_file
from torch_lottery.experiments.config_file import KEYS, load_config
from torch_lottery.experiments.runner import RunConfig

GOOD = """
dataset = "mnist1d"
rounds = 2
lr = 1e-3
controls = ["reinit", "permute"]
strategy = "snip"
download = false

[strategy_options]
remaining = 0.2
scope = "local"
"""


def _write(tmp_path, text: str | bytes, name: str = "run.toml") -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def test_load_config_reads_runconfig_fields_and_the_options_table(tmp_path):
    settings = load_config(_write(tmp_path, GOOD))
    assert settings == {
        "dataset": "mnist1d",
        "rounds": 2,
        "lr": 1e-3,
        "controls": ("reinit", "permute"),
        "strategy": "snip",
        "download": False,
        "strategy_options": {"remaining": 0.2, "scope": "local"},
    }
    RunConfig(**settings).check()  # what it reads is settings RunConfig takes


def test_the_keys_are_runconfigs_fields():
    import dataclasses

    assert tuple(f.name for f in dataclasses.fields(RunConfig)) == KEYS


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("round = 2\n", r"run\.toml: unknown key 'round' \(the keys are RunConfig's fields: dataset, model, rounds,"),
        ("[training]\nepochs = 1\n", r"run\.toml: unknown key 'training'"),
        ("rounds = \n", r"run\.toml: is not valid TOML: .*line 1"),
        ("rounds = 2\nrounds = 3\n", r"run\.toml: is not valid TOML"),
        ("strategy_options = 3\n", r"run\.toml: strategy_options must be a table .*got 3"),
        (b"rounds = 2 # \xff\xfe\n", r"run\.toml: is not (UTF-8 text|valid TOML)"),
    ],
    ids=["unknown key", "unknown table", "malformed", "repeated key", "options not a table", "not utf-8"],
)
def test_load_config_refuses_what_is_not_settings_naming_the_file_and_key(tmp_path, text, match):
    path = _write(tmp_path, text)
    before = Path(path).read_bytes()
    with pytest.raises(ValueError, match=match):
        load_config(path)
    assert Path(path).read_bytes() == before and os.listdir(tmp_path) == ["run.toml"]


def test_load_config_refuses_a_missing_file_a_directory_and_a_non_path(tmp_path):
    with pytest.raises(ValueError, match=r"--config='.*nowhere\.toml' does not exist: expected a TOML file"):
        load_config(str(tmp_path / "nowhere.toml"), "--config")
    with pytest.raises(ValueError, match=r"config='.*' is a directory"):
        load_config(str(tmp_path))
    with pytest.raises(TypeError, match=r"config must be a str or os.PathLike, got 3"):
        load_config(3)


def test_load_config_refuses_an_unreadable_file(tmp_path, monkeypatch):
    path = _write(tmp_path, GOOD)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(config_file, "open", refuse, raising=False)  # file modes do not stop root
    with pytest.raises(ValueError, match=r"run\.toml: cannot be read \(Permission denied\)"):
        load_config(path)


def test_without_tomllib_or_tomli_the_error_says_to_install_tomli(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_toml(name, *args, **kwargs):
        if name in ("tomllib", "tomli"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "tomllib", raising=False)
    monkeypatch.delitem(sys.modules, "tomli", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_toml)
    with pytest.raises(ImportError, match=r"needs tomli: pip install 'tomli>=2'"):
        load_config(_write(tmp_path, GOOD))
    assert config_file.TOMLI == "tomli>=2"
