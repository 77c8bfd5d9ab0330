"""torch_lottery_cli: the console script's entry point, which catches Ctrl-C while torch is still importing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import torch_lottery_cli


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = str(Path(torch_lottery_cli.__file__).resolve().parents[1])  # this checkout, before any installed copy
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _loading_torch(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="watches /proc/<pid>/maps for torch loading")
def test_ctrl_c_while_torch_imports_is_one_line_and_status_130(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "torch_lottery_cli", "run", "--no-progress", "--out", str(tmp_path / "out")],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not _loading_torch(process.pid) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)  # torch is loading: torch_lottery.cli is not imported yet
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stdout == ""
    assert stderr.splitlines() in (
        [torch_lottery_cli.INTERRUPTED_LINE],
        # (torch finished loading between the check and the signal: the command line itself caught it)
        ["torch-lottery run: interrupted; run the same command again to resume after the last finished training"],
    )
    assert not (tmp_path / "out" / ".state").exists()


def test_main_runs_the_command_line(capsys):
    assert torch_lottery_cli.main(["strategies"]) == 0
    assert capsys.readouterr().out.startswith("name ")


def test_a_ctrl_c_while_importing_is_caught(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "torch_lottery.cli")

    class Interrupting:
        def find_spec(self, name, path=None, target=None):
            if name == "torch_lottery.cli":
                raise KeyboardInterrupt

    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    assert torch_lottery_cli.main(["strategies"]) == 130
    assert capsys.readouterr().err == torch_lottery_cli.INTERRUPTED_LINE + "\n"


def test_the_console_script_ignores_a_late_ctrl_c_once_the_command_ended(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["torch-lottery", "strategies"])
    handler = signal.getsignal(signal.SIGINT)
    try:
        assert torch_lottery_cli.console_script() == 0
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, handler)
