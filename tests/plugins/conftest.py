"""Shared fixtures of the plugin tests: a fresh process-wide plugin manager for every test."""

from __future__ import annotations

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
