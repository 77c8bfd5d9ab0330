"""``torch-lottery strategies`` in-process, with plugins registered at runtime: conflicts and broken plugins."""

from __future__ import annotations

from torch_lottery import hookimpl
from torch_lottery.cli import main
from torch_lottery.strategies import RandomPruning


class Shadow:
    @hookimpl
    def torch_lottery_register_strategies(self, register):
        register("imp", RandomPruning)
        register("extra", RandomPruning)


class Broken:
    @hookimpl
    def torch_lottery_register_strategies(self, register):
        raise RuntimeError("cannot register today")


def _table(stdout):
    rows = [line.split() for line in stdout.split("\n\n")[0].splitlines()]
    return rows[0], {row[0]: row[1:] for row in rows[1:]}


def test_strategies_shows_runtime_plugins_conflicts_and_failures(register_plugin, capsys, recwarn):
    register_plugin(Shadow(), name="shadow")
    register_plugin(Broken(), name="broken")
    assert main(["strategies"]) == 0
    out, err = capsys.readouterr()

    header, rows = _table(out)
    assert header == ["name", "plugin", "distribution", "version"]
    assert rows["imp"][:2] == ["torch_lottery.strategies.imp", "torch-lottery"]
    assert rows["shadow:imp"] == ["shadow", "-", "-"]  # registered at runtime: no distribution
    assert rows["extra"] == ["shadow", "-", "-"]
    assert list(rows) == sorted(rows)
    conflicts = out.split("\nconflicts:\n", 1)[1].splitlines()
    assert len(conflicts) == 1
    assert "'shadow'" in conflicts[0] and "'imp'" in conflicts[0] and "'shadow:imp'" in conflicts[0]
    (error,) = err.splitlines()
    assert error.startswith("error: plugin 'broken'") and "cannot register today" in error
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]  # printed, not warned about too


def test_strategies_without_problems_prints_only_the_table(capsys):
    assert main(["strategies"]) == 0
    out, err = capsys.readouterr()
    header, rows = _table(out)
    assert {"imp", "one_shot", "random"} <= set(rows)
    assert "conflicts:" not in out and err == ""
