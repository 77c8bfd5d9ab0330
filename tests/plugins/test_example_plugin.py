"""docs/example-plugin really installs with pip and is found through its entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "docs" / "example-plugin"

CHILD = r"""
import json, sys
import torch
from torch import nn
import torch_lottery as tl

names = tl.list_strategies()
out = {"strategies": names, "errors": [str(e) for e in tl.plugins.plugin_errors()]}
if "neuron_imp" in names:
    entry = {e.name: e for e in tl.plugins.strategy_entries()}["neuron_imp"]
    out["plugin"] = entry.plugin
    out["module_file"] = sys.modules[entry.strategy.__module__].__file__
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1))
    x, y = torch.randn(32, 4), torch.randn(32, 1)

    def train(model, context):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(3):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
            context.step()

    ticket = tl.find_ticket(model, train, strategy="neuron_imp", strategy_options={"rate": 0.5}, rounds=2)
    out["config"] = ticket.config
    out["remaining"] = [h["remaining"] for h in ticket.history]
    out["masks"] = {n: m.int().tolist() for n, m in ticket.masks.items()}
print("JSON:" + json.dumps(out))
"""


def _run_child(site: Path, env: dict[str, str], disable_autoload: bool) -> dict:
    env = dict(env)
    if disable_autoload:
        env["TORCH_LOTTERY_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, cwd=str(site.parent), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    (line,) = [text for text in done.stdout.splitlines() if text.startswith("JSON:")]
    return json.loads(line[len("JSON:") :])


@pytest.mark.slow
def test_example_plugin_installs_with_pip_and_provides_neuron_imp(pip_install, plugin_env):
    site = pip_install(EXAMPLE)
    assert (site / "torch_lottery_neuron_imp.py").is_file()
    (dist_info,) = site.glob("torch_lottery_neuron_imp-*.dist-info")
    assert "neuron_imp = torch_lottery_neuron_imp" in (dist_info / "entry_points.txt").read_text()

    out = _run_child(site, plugin_env(site), disable_autoload=False)
    assert out["errors"] == []
    assert "neuron_imp" in out["strategies"]
    assert {"imp", "one_shot", "random"} <= set(out["strategies"])
    assert out["plugin"] == "neuron_imp"
    assert Path(out["module_file"]).resolve() == (site / "torch_lottery_neuron_imp.py").resolve()
    assert out["config"]["strategy"] == "neuron_imp"
    assert out["config"]["strategy_options"]["rate"] == 0.5

    masks = out["masks"]
    assert set(masks) == {"0.weight", "2.weight", "4.weight"}
    for name, rows in masks.items():
        for row in rows:  # whole output neurons are pruned: every row is all-0 or all-1
            assert set(row) in ({0}, {1}), f"{name} has a partially pruned row {row}"
    alive_rows = {n: sum(1 for row in rows if row[0] == 1) for n, rows in masks.items()}
    assert alive_rows == {"0.weight": 4, "2.weight": 2, "4.weight": 1}  # 16->8->4, 8->4->2, 1 (min_rows)
    remaining = out["remaining"]
    assert len(remaining) == 3
    assert remaining[0] == 1.0 and remaining[0] > remaining[1] > remaining[2] > 0

    disabled = _run_child(site, plugin_env(site), disable_autoload=True)
    assert "neuron_imp" not in disabled["strategies"]
    assert {"imp", "one_shot", "random"} <= set(disabled["strategies"])
    assert disabled["errors"] == []


@pytest.mark.slow
def test_example_plugin_runs_from_the_command_line_with_its_options(pip_install, plugin_env, tmp_path):
    site = pip_install(EXAMPLE)
    tiny = ["--epochs", "1", "--rounds", "1", "--replicates", "1", "--controls", "none", "--no-progress"]
    command = [sys.executable, "-m", "torch_lottery", "run", "--strategy", "neuron_imp", *tiny]
    options = {"env": plugin_env(site), "cwd": str(tmp_path), "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    good = subprocess.Popen([*command, "--strategy-option", "rate=0.5", "--out", "good"], text=True, **options)
    bad = subprocess.Popen([*command, "--strategy-option", "rate=1.5", "--out", "bad"], text=True, **options)
    good_out, good_err = good.communicate(timeout=300)
    bad_out, bad_err = bad.communicate(timeout=300)

    assert good.returncode == 0, good_err
    result = json.loads((tmp_path / "good" / "results.json").read_text())
    assert result["config"]["strategy"] == "neuron_imp"
    assert result["config"]["strategy_options"] == {"rate": 0.5}
    strategy = result["strategy"]
    assert (strategy["name"], strategy["plugin"]) == ("neuron_imp", "neuron_imp")
    assert (strategy["distribution"], strategy["version"]) == ("torch-lottery-neuron-imp", "0.1.0")
    assert strategy["options"] == {"rewind_iteration": 0, "rate": 0.5, "min_rows": 1}  # its defaults filled in
    ticket = {r["round"]: r for r in result["records"] if r["kind"] == "ticket"}
    assert set(ticket) == {0, 1}
    # half the output neurons of the hidden layers go (the output layer keeps min_rows of its 10)
    assert ticket[1]["layers"] == {"fc1.weight": 0.5, "fc2.weight": 0.5, "fc3.weight": 0.5}
    assert "winning ticket" in good_out

    assert bad.returncode == 2 and bad_out == ""
    assert bad_err.splitlines() == [
        "torch-lottery run: error: --strategy-option rate=1.5: rate=1.5 must be in [0, 1)"
    ], bad_err
    assert not (tmp_path / "bad").exists()  # refused before anything trained or was written
