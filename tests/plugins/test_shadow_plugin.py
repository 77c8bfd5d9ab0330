"""The name-conflict rule with a really pip-installed plugin that registers a built-in's name ("imp").

tests/plugins/shadow_plugin is installed with pip into a temporary target, then a fresh
interpreter (the plugin on its PYTHONPATH) looks the names up and runs ``find_ticket``, while
``python -m torch_lottery strategies`` lists them in another, at the same time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SHADOW = Path(__file__).resolve().parent / "shadow_plugin"

CHILD = r"""
import json, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import torch
    from torch import nn
    import torch_lottery as tl
    import torch_lottery_shadow as shadow
    from torch_lottery.strategies import IterativeMagnitude

    out = {
        "imp_is_builtin": tl.get_strategy("imp") is IterativeMagnitude,
        "qualified_is_plugin": tl.get_strategy("shadow:imp") is shadow.ShadowIMP,
        "shadow_only_is_plugin": tl.get_strategy("shadow_only") is shadow.ShadowOnly,
        "builtin_qualified": tl.get_strategy("torch_lottery.strategies.imp:imp") is IterativeMagnitude,
        "strategies": tl.list_strategies(),
        "errors": [str(e) for e in tl.plugins.plugin_errors()],
        "conflicts": [
            [c.name, c.winner.plugin, [e.name for e in c.shadowed]] for c in tl.plugins.strategy_conflicts()
        ],
        "entries": {
            e.name: [e.plugin, e.registered_name, e.distribution, e.version, e.builtin]
            for e in tl.plugins.strategy_entries()
        },
    }
    out["warnings"] = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    x, y = torch.randn(16, 4), torch.randn(16, 1)

    def train(model, context):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(2):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
            context.step()

    ticket = tl.find_ticket(model, train, strategy="shadow:imp", rounds=2)
    out["calls"] = shadow.CALLS
    out["config_strategy"] = ticket.config["strategy"]
    out["pruned"] = ticket.total_weights - ticket.remaining_weights
print("JSON:" + json.dumps(out))
"""


def test_pip_installed_plugin_registering_imp_never_disables_the_builtin(pip_install, plugin_env):
    site = pip_install(SHADOW)
    (dist_info,) = site.glob("torch_lottery_shadow-*.dist-info")
    assert "shadow = torch_lottery_shadow" in (dist_info / "entry_points.txt").read_text()

    # the lookups and the run in one interpreter, the command line in another, both at once
    options = {"env": plugin_env(site), "cwd": str(site.parent), "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    child = subprocess.Popen([sys.executable, "-c", CHILD], text=True, **options)
    cli = subprocess.Popen([sys.executable, "-m", "torch_lottery", "strategies"], text=True, **options)
    child_out, child_err = child.communicate(timeout=300)
    cli_out, cli_err = cli.communicate(timeout=300)
    assert child.returncode == 0, child_err
    assert cli.returncode == 0, cli_err
    (line,) = [text for text in child_out.splitlines() if text.startswith("JSON:")]
    out = json.loads(line[len("JSON:") :])

    # "imp" is still the built-in; the plugin's strategy is reachable qualified, its other name plainly
    assert out["imp_is_builtin"]
    assert out["qualified_is_plugin"]
    assert out["shadow_only_is_plugin"]
    assert out["builtin_qualified"]
    assert {"imp", "shadow:imp", "shadow_only", "one_shot", "random"} <= set(out["strategies"])
    assert "shadow_only" in out["strategies"] and "shadow:shadow_only" not in out["strategies"]

    # the conflict is reported: one warning, one plugin error, one conflict (as data), each naming plugin and name
    conflict_warnings = [w for w in out["warnings"] if "'shadow'" in w and "'imp'" in w]
    assert len(conflict_warnings) == 1, out["warnings"]
    assert "'shadow:imp'" in conflict_warnings[0]
    assert out["errors"] == conflict_warnings
    assert out["conflicts"] == [["imp", "torch_lottery.strategies.imp", ["shadow:imp"]]]

    # each listed name with its plugin and distribution
    entries = out["entries"]
    assert entries["shadow:imp"] == ["shadow", "imp", "torch-lottery-shadow", "0.3.1", False]
    assert entries["shadow_only"] == ["shadow", "shadow_only", "torch-lottery-shadow", "0.3.1", False]
    assert entries["imp"][:3] == ["torch_lottery.strategies.imp", "imp", "torch-lottery"]
    assert entries["imp"][4] is True

    # find_ticket(strategy="shadow:imp") runs the plugin's strategy: one entry per tensor per round
    assert out["config_strategy"] == "shadow:imp"
    assert out["calls"] == [["ShadowIMP", 1], ["ShadowIMP", 2]]
    assert out["pruned"] == 2 * 2  # two tensors, two rounds

    # the command line shows the same, with distribution and version, and the conflict
    rows = {row.split()[0]: row.split() for row in cli_out.split("\n\n")[0].splitlines()}
    assert rows["name"] == ["name", "plugin", "distribution", "version"]
    assert rows["shadow:imp"] == ["shadow:imp", "shadow", "torch-lottery-shadow", "0.3.1"]
    assert rows["shadow_only"] == ["shadow_only", "shadow", "torch-lottery-shadow", "0.3.1"]
    assert rows["imp"][:3] == ["imp", "torch_lottery.strategies.imp", "torch-lottery"]
    conflicts = cli_out.split("\nconflicts:\n", 1)[1].splitlines()
    assert [c.strip() for c in conflicts] == conflict_warnings
    assert "error:" not in cli_err and "Warning" not in cli_err  # printed once, not warned about too
