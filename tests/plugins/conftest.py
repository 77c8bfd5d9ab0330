"""Shared fixtures of the plugin tests: a fresh process-wide plugin manager for every test, pip installs."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from torch_lottery.plugins.manager import get_plugin_manager, reset_plugin_manager


@pytest.fixture(autouse=True)
def fresh_plugin_manager():
    """Forget the plugin manager before and after each test, so registrations never leak."""
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture
def register_plugin():
    """``register_plugin(obj, name=None)`` registers with the global manager; unregistered after the test."""
    registered = []

    def register(plugin, name=None):
        manager = get_plugin_manager()
        manager.register(plugin, name=name)
        registered.append((manager, plugin))
        return plugin

    yield register
    for manager, plugin in registered:
        if manager.is_registered(plugin):
            manager.unregister(plugin)


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))


@pytest.fixture
def train_fn():
    """A few SGD steps on fixed data, counting iterations through ``context.step()``."""
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 4, generator=generator), torch.randn(32, 1, generator=generator)

    def train(model, context):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(3):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            context.step()
        return {"loss": loss.item()}

    return train


@pytest.fixture(scope="session")
def pip_install(tmp_path_factory):
    """``pip_install(source) -> site``: ``pip install --target site`` of the project folder ``source``, offline.

    Built from a copy, so that the in-tree build (build/, *.egg-info) never writes into the
    repository; put ``site`` on ``PYTHONPATH`` of a child interpreter to use the plugin. One
    install per source for the whole session: the tests that use a plugin share it (and must
    not write into ``site``).
    """
    if importlib.util.find_spec("pip") is None:
        pytest.skip("pip is not available in this Python environment")
    installed: dict[Path, Path] = {}

    def install(source: Path) -> Path:
        source = Path(source).resolve()
        if source in installed:
            return installed[source]
        root = tmp_path_factory.mktemp(f"pip-{source.name}")
        copy = root / "src" / source.name
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        site = root / "site"
        command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check"]
        if importlib.util.find_spec("setuptools") is not None:
            command.append("--no-build-isolation")
        command += ["--target", str(site), str(copy)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"
        installed[source] = site
        return site

    return install


@pytest.fixture(scope="session")
def plugin_env():
    """``plugin_env(site) -> env``: the environment of a child interpreter that sees the plugin in ``site``.

    ``site`` goes first on ``PYTHONPATH``, before what is there (the checkout under test, which
    the child must import too), plugins autoload, and the child gets one thread, like this process.
    """

    def env(site: Path) -> dict[str, str]:
        out = dict(os.environ)
        out["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [out.get("PYTHONPATH")])])
        out.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        out.pop("TORCH_LOTTERY_DISABLE_PLUGIN_AUTOLOAD", None)
        return out

    return env
