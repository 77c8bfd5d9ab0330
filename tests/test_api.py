"""The public surface: the root namespace, the names that moved, the version, the typing marker."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
from pathlib import Path

import pytest
import torch

import torch_lottery as tl

ROOT_NAMES = {
    # training a ticket through its survivors
    "sparse_training",
    "SparseTraining",
    # pruning methods and their functional twins
    "LotteryMagnitude",
    "GlobalMagnitude",
    "SignPreservingSupermask",
    "RandomPermutation",
    "FixedMask",
    "lottery_magnitude",
    "global_magnitude",
    "sign_preserving_supermask",
    "random_permutation",
    "fixed_mask",
    "targeted_dropout",
    "remove_targeted_dropout",
    # rewinding and baselines
    "RewindPoint",
    "random_reinit",
    "sign_preserving_reinit",
    "signed_constant",
    # the driver
    "find_ticket",
    "Ticket",
    "instability_analysis",
    "AutoRewind",
    "mask_overlap",
    # strategies and plugins
    "Strategy",
    "PruneContext",
    "hookimpl",
    "get_strategy",
    "list_strategies",
    "PluginError",
    "StrategyError",
    # model helpers
    "prunable_parameters",
    "named_prunable_parameters",
    "get_mask",
    "remaining",
    "sparsity_report",
    "compact_hooks",
    "__version__",
}


def test_the_root_namespace_is_the_documented_core():
    assert set(tl.__all__) == ROOT_NAMES
    assert all(hasattr(tl, name) for name in tl.__all__)


@pytest.mark.parametrize("name, home", sorted(tl._MOVED.items()))
def test_a_moved_name_still_works_for_one_release_with_a_warning(name, home):
    with pytest.warns(DeprecationWarning, match=rf"torch_lottery.{name} moved to {home}.{name}"):
        old = getattr(tl, name)
    assert old is getattr(importlib.import_module(home), name)


def test_masked_tensor_is_private_and_no_longer_clashes_with_torch():
    with pytest.warns(DeprecationWarning, match="private"):
        old = tl.MaskedTensor
    assert old is not torch.masked.MaskedTensor
    assert "MaskedTensor" not in dir(tl)
    with pytest.raises(AttributeError, match="no_such_name"):
        tl.no_such_name  # noqa: B018


def test_subpackages_are_reached_the_same_way():
    assert tl.export.export is importlib.import_module("torch_lottery.export").export
    assert tl.distributed.is_active() is False
    assert {"export", "distributed", "plugins", "pruning"} <= set(dir(tl))


def test_one_version_everywhere():
    assert tl.__version__ == importlib.metadata.version("torch-lottery")
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text and "torch_lottery._version.__version__" in text


def test_the_package_ships_its_typing_marker():
    spec = importlib.util.find_spec("torch_lottery")
    assert (Path(spec.origin).parent / "py.typed").is_file()


def test_internals_are_private():
    for name in tl.__all__:
        obj = getattr(tl, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert not obj.__module__.rsplit(".", 1)[-1].startswith("_") or obj.__module__.endswith("_version"), (
                name,
                obj.__module__,
            )
