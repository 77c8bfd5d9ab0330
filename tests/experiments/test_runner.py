"""The experiment runner: settings, the paper's setups, and tiny end-to-end runs."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import statistics
import sys

import pytest
import torch

from torch_lottery import Strategy, hookimpl
from torch_lottery.experiments.models import build_model
from torch_lottery.experiments.runner import (
    CONTROLS,
    KINDS,
    METRICS,
    RunConfig,
    default_controls,
    resolve_setup,
    run_experiment,
    versions,
)
from torch_lottery.plugins.manager import (
    StrategyError,
    get_plugin_manager,
    get_strategy,
    list_strategies,
    reset_plugin_manager,
)

MASK_CONTROLS = ("reinit", "permute", "sign_reinit")
TINY = dict(dataset="mnist1d", rounds=2, epochs=1, replicates=2, controls=CONTROLS, progress=False)


# -- RunConfig.check ---------------------------------------------------------------
def test_default_config_is_valid_and_serializable():
    config = RunConfig()
    config.check()
    data = config.to_dict()
    assert data["controls"] == ["reinit", "random_pruning"]
    assert json.loads(json.dumps(data)) == data
    RunConfig(controls=CONTROLS, rate=0.5, output_rate=0.0, scope="global", optimizer="sgd").check()


BAD_FIELDS = [
    ({"dataset": "imagenet"}, ValueError, r"dataset='imagenet' is not one of mnist, fashion-mnist, cifar10, mnist1d"),
    ({"dataset": 3}, ValueError, r"dataset=3 is not one of"),
    ({"model": ""}, TypeError, r"model must be a model name, got ''"),
    ({"model": None}, TypeError, r"model must be a model name, got None"),
    ({"rounds": -1}, ValueError, r"rounds=-1 must be >= 0"),
    ({"rounds": 1.5}, TypeError, r"rounds must be an int"),
    ({"rounds": True}, TypeError, r"rounds must be an int"),
    ({"epochs": 0}, ValueError, r"epochs=0 must be at least 1"),
    ({"batch_size": 0}, ValueError, r"batch_size=0 must be at least 1"),
    ({"rewind_iteration": -2}, ValueError, r"rewind_iteration=-2"),
    ({"controls": ("reinit", "bogus")}, ValueError, r"controls='bogus' is not one of reinit, permute"),
    ({"controls": "reinit"}, TypeError, r"controls must be a list of names"),
    ({"controls": None}, TypeError, r"controls"),
    ({"replicates": 0}, ValueError, r"replicates=0 must be at least 1"),
    ({"rate": 1.0}, ValueError, r"rate=1.0 must be below 1"),
    ({"rate": 1.5}, ValueError, r"rate=1.5 must be below 1"),
    ({"rate": -0.1}, ValueError, r"rate=-0.1 must be a finite number >= 0"),
    ({"rate": float("nan")}, ValueError, r"rate=nan must be a finite number"),
    ({"output_rate": 1.0}, ValueError, r"output_rate=1.0 must be below 1"),
    ({"lr": "fast"}, ValueError, r"lr='fast' must be a finite number"),
    ({"scope": "layer"}, ValueError, r"scope='layer' is not one of local, global"),
    ({"optimizer": "rmsprop"}, ValueError, r"optimizer='rmsprop' is not one of adam, sgd"),
    ({"device": "tpu"}, ValueError, r"device='tpu' is not cpu or cuda"),
    ({"device": None}, (TypeError, ValueError), r"device"),
    ({"seed": -1}, ValueError, r"seed=-1 must be >= 0"),
    ({"log": ("jsonl", "xml")}, ValueError, r"log='xml' is not one of jsonl, csv, tensorboard"),
    ({"log": "csv"}, TypeError, r"log must be a list of names, got 'csv'"),
    ({"download": "yes"}, TypeError, r"download must be a bool, got 'yes'"),
    ({"progress": 1}, TypeError, r"progress must be a bool, got 1"),
    ({"data_root": 3}, TypeError, r"data_root must be a str or os.PathLike, got 3"),
]


@pytest.mark.parametrize(
    "changes, error, match", BAD_FIELDS, ids=[",".join(f"{k}={v!r}" for k, v in c.items()) for c, _, _ in BAD_FIELDS]
)
def test_check_rejects_bad_fields_naming_them(changes, error, match):
    config = RunConfig(**changes)
    with pytest.raises(error, match=match):
        config.check()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_check_rejects_cuda_without_cuda():
    with pytest.raises(ValueError, match="device='cuda'.*CUDA is not available"):
        RunConfig(device="cuda").check()
    with pytest.raises(ValueError, match="CUDA is not available"):
        RunConfig(device="cuda:1").check()


def test_log_needs_a_folder_and_tensorboard_before_anything_runs(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match=r"log=\['csv'\] needs log_dir="):
        run_experiment(RunConfig(log=("csv",), progress=False))
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ImportError, match=r"torch-lottery\[tensorboard\]"):
        RunConfig(log=("tensorboard",)).check()
    with pytest.raises(ValueError, match=r"log_dir=.* is a file"):
        (tmp_path / "file").write_text("")
        run_experiment(RunConfig(log=("jsonl",), progress=False), log_dir=tmp_path / "file")
    assert RunConfig(log=("csv", "jsonl")).to_dict()["log"] == ["csv", "jsonl"]


# -- resolve_setup -------------------------------------------------------------------
def _rates(setup, model):
    """{tensor: per-round rate} that the imp strategy applies with the resolved options."""
    options = setup.strategy_options
    return {
        name: options["rate"] * options["rate_multipliers"].get(name, 1.0)
        for name in ("fc1.weight", "fc2.weight", "fc3.weight")
        if name in dict(model.named_parameters())
    }


@pytest.fixture(scope="module")
def lenet():
    return build_model("lenet300100", (40,), 10)


def test_resolve_setup_takes_the_papers_lenet_setup(lenet):
    setup = resolve_setup(RunConfig(), lenet)
    assert (setup.optimizer, setup.lr, setup.batch_size, setup.weight_decay) == ("adam", 1.2e-3, 60, 0.0)
    assert setup.epochs == 30  # MNIST-1D's default
    assert setup.strategy_options == {
        "rate": 0.2,
        "scope": "local",
        "rate_multipliers": {"fc3.weight": 0.5},
        "rewind_iteration": 0,
    }
    assert _rates(setup, lenet) == pytest.approx({"fc1.weight": 0.2, "fc2.weight": 0.2, "fc3.weight": 0.1})
    assert resolve_setup(RunConfig(dataset="mnist"), lenet).epochs == 5


def test_resolve_setup_applies_training_overrides(lenet):
    config = RunConfig(
        epochs=3,
        batch_size=17,
        optimizer="sgd",
        lr=0.05,
        momentum=0.5,
        weight_decay=1e-4,
        scope="global",
        rewind_iteration=7,
    )
    setup = resolve_setup(config, lenet)
    assert (setup.epochs, setup.batch_size, setup.optimizer) == (3, 17, "sgd")
    assert (setup.lr, setup.momentum, setup.weight_decay) == (0.05, 0.5, 1e-4)
    assert setup.strategy_options["scope"] == "global"
    assert setup.strategy_options["rewind_iteration"] == 7
    assert resolve_setup(RunConfig(lr=0.0), lenet).lr == 0.0  # an explicit 0 is not "the default"


def test_resolve_setup_output_rate_sets_the_output_multiplier(lenet):
    setup = resolve_setup(RunConfig(output_rate=0.3), lenet)
    assert setup.strategy_options["rate"] == 0.2
    assert _rates(setup, lenet) == pytest.approx({"fc1.weight": 0.2, "fc2.weight": 0.2, "fc3.weight": 0.3})
    setup = resolve_setup(RunConfig(rate=0.4, output_rate=0.1), lenet)
    assert _rates(setup, lenet) == pytest.approx({"fc1.weight": 0.4, "fc2.weight": 0.4, "fc3.weight": 0.1})
    setup = resolve_setup(RunConfig(output_rate=0.0), lenet)
    assert _rates(setup, lenet)["fc3.weight"] == 0.0


def test_resolve_setup_rate_keeps_the_relative_per_layer_rates(lenet):
    """--rate scales every layer: the output layer stays at half the rate (the paper's ratio)."""
    paper = resolve_setup(RunConfig(), lenet).strategy_options["rate_multipliers"]
    setup = resolve_setup(RunConfig(rate=0.4), lenet)
    assert setup.strategy_options["rate"] == 0.4
    assert setup.strategy_options["rate_multipliers"] == pytest.approx(paper)
    assert _rates(setup, lenet) == pytest.approx({"fc1.weight": 0.4, "fc2.weight": 0.4, "fc3.weight": 0.2})


def test_resolve_setup_rate_keeps_the_relative_rates_of_conv2():
    model = build_model("conv2", (1, 28, 28), 10)
    paper = resolve_setup(RunConfig(model="conv2"), model).strategy_options
    assert paper["rate_multipliers"] == pytest.approx(
        {"features.0.weight": 0.5, "features.2.weight": 0.5, "fc3.weight": 0.5}
    )
    setup = resolve_setup(RunConfig(model="conv2", rate=0.4), model).strategy_options
    assert setup["rate"] == 0.4
    assert setup["rate_multipliers"] == pytest.approx(paper["rate_multipliers"])


# -- run_experiment on MNIST-1D ---------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run():
    return run_experiment(RunConfig(**TINY))


def _by_key(records):
    return {(r["kind"], r["round"], r["replicate"]): r for r in records}


def _with_replicates(result):
    """Tag each record with its replicate: records come replicate after replicate, each opening with ticket round 0."""
    tagged, replicate = [], -1
    for record in result["records"]:
        if record["kind"] == "ticket" and record["round"] == 0:
            replicate += 1
        tagged.append({**record, "replicate": replicate})
    return tagged


def test_records_one_per_kind_round_and_replicate(tiny_run):
    records = _with_replicates(tiny_run)
    keys = [(r["kind"], r["round"], r["replicate"]) for r in records]
    expected = {("ticket", rnd, rep) for rnd in range(3) for rep in range(2)}
    expected |= {(kind, rnd, rep) for kind in CONTROLS for rnd in (1, 2) for rep in range(2)}
    assert len(keys) == len(set(keys)) == len(expected) == 26
    assert set(keys) == expected
    for record in records:
        layers = {"layers"} if record["kind"] == "ticket" else set()  # the ticket's density per tensor
        assert set(record) == {"kind", "round", "remaining", "replicate", *METRICS, *layers}
        assert 0.0 <= record["test_accuracy"] <= 1.0 and math.isfinite(record["test_loss"])
    assert tiny_run["data"] == {
        "name": "mnist1d",
        "train": 3500,
        "validation": 500,
        "test": 1000,
        "input_shape": [40],
        "classes": 10,
    }
    assert tiny_run["config"] == RunConfig(**TINY).to_dict()
    assert tiny_run["setup"]["epochs"] == 1 and tiny_run["setup"]["optimizer"] == "adam"
    assert json.loads(json.dumps(tiny_run)) == tiny_run


def test_ticket_records_carry_the_density_of_each_tensor(tiny_run):
    ticket = [r for r in tiny_run["records"] if r["kind"] == "ticket"]
    sizes = {"fc1.weight": 40 * 300, "fc2.weight": 300 * 100, "fc3.weight": 100 * 10}
    for record in ticket:
        assert list(record["layers"]) == list(sizes)
        alive = sum(record["layers"][name] * size for name, size in sizes.items())
        assert alive / sum(sizes.values()) == pytest.approx(record["remaining"])  # the tensors make up the total
    round1 = next(r for r in ticket if r["round"] == 1)["layers"]
    assert round1 == pytest.approx({"fc1.weight": 0.8, "fc2.weight": 0.8, "fc3.weight": 0.9})  # output layer: 10%
    assert all(f == 1.0 for r in ticket if r["round"] == 0 for f in r["layers"].values())


def test_result_records_the_strategy_and_the_versions(tiny_run):
    from importlib import metadata

    strategy = tiny_run["strategy"]
    assert strategy["name"] == "imp"
    assert (strategy["plugin"], strategy["distribution"]) == ("torch_lottery.strategies.imp", "torch-lottery")
    assert strategy["version"] == metadata.version("torch-lottery")
    # the strategy's own options, defaults filled in: the paper's setup, then the strategy's defaults
    assert strategy["options"]["rate"] == 0.2 and strategy["options"]["rate_multipliers"] == {"fc3.weight": 0.5}
    assert strategy["options"]["criterion"] == "large_final"
    assert tiny_run["versions"] == versions()
    assert tiny_run["versions"]["torch"] == torch.__version__
    assert set(versions()) >= {"torch-lottery", "torch", "python", "platform"}


def test_remaining_fractions(tiny_run):
    by_key = _by_key(_with_replicates(tiny_run))
    for rep in range(2):
        ticket = [by_key[("ticket", rnd, rep)]["remaining"] for rnd in range(3)]
        assert ticket[0] == 1.0 and ticket[0] > ticket[1] > ticket[2] > 0
        # local pruning: 20% of the hidden layers and 10% of the output layer per round
        assert ticket[1] == pytest.approx(0.8, abs=0.01)
        for rnd in (1, 2):
            for kind in MASK_CONTROLS + ("supermask",):
                assert by_key[(kind, rnd, rep)]["remaining"] == ticket[rnd], (kind, rnd)
            assert by_key[("random_pruning", rnd, rep)]["remaining"] == pytest.approx(ticket[rnd], abs=1e-6)


def test_supermask_is_not_trained(tiny_run):
    records = [r for r in tiny_run["records"] if r["kind"] == "supermask"]
    assert len(records) == 4
    for record in records:
        assert record["early_stop_iteration"] == 0
        assert record["test_accuracy_at_early_stop"] == record["test_accuracy"]
    trained = [r for r in tiny_run["records"] if r["kind"] != "supermask"]
    assert all(r["early_stop_iteration"] > 0 for r in trained)  # one epoch of MNIST-1D is 59 iterations


def test_summary_aggregates_the_replicates(tiny_run):
    summary = tiny_run["summary"]
    assert [(row["kind"], row["round"]) for row in summary] == (
        [("ticket", rnd) for rnd in range(3)] + [(kind, rnd) for kind in CONTROLS for rnd in (1, 2)]
    )
    assert [row["kind"] for row in summary] == sorted((row["kind"] for row in summary), key=KINDS.index)
    records = _with_replicates(tiny_run)
    for row in summary:
        assert row["n"] == 2
        group = [r for r in records if (r["kind"], r["round"]) == (row["kind"], row["round"])]
        for metric in METRICS:
            values = [float(r[metric]) for r in group]
            assert row[f"{metric}_mean"] == pytest.approx(statistics.fmean(values))
            assert row[f"{metric}_std"] == pytest.approx(statistics.stdev(values))
            assert (row[f"{metric}_min"], row[f"{metric}_max"]) == (min(values), max(values))
    # the two seeds train differently
    ticket0 = [r for r in records if (r["kind"], r["round"]) == ("ticket", 0)]
    assert ticket0[0]["test_loss"] != ticket0[1]["test_loss"]


def test_run_is_deterministic(tiny_run):
    again = run_experiment(RunConfig(**TINY))
    strip = lambda result: {k: v for k, v in result.items() if k != "seconds"}  # noqa: E731
    assert strip(again) == strip(tiny_run)


def test_run_does_not_modify_the_config():
    config = RunConfig(rounds=0, epochs=1, controls=(), progress=False, validation=100, replicates=1)
    before = copy.deepcopy(dataclasses.asdict(config))
    result = run_experiment(config)
    assert dataclasses.asdict(config) == before
    assert [(r["kind"], r["round"]) for r in result["records"]] == [("ticket", 0)]
    assert result["data"]["validation"] == 100 and result["summary"][0]["n"] == 1


def test_run_experiment_checks_the_config_first():
    with pytest.raises(ValueError, match="replicates=0"):
        run_experiment(RunConfig(replicates=0))


# -- torchvision loading path, end to end ------------------------------------------------
def test_run_on_fake_mnist_with_conv2(fake_mnist_root):
    config = RunConfig(
        dataset="mnist",
        model="conv2",
        rounds=1,
        epochs=1,
        controls=("reinit",),
        replicates=1,
        data_root=str(fake_mnist_root),
        validation=10,
        progress=False,
    )
    result = run_experiment(config)
    assert result["data"] == {
        "name": "mnist",
        "train": 50,
        "validation": 10,
        "test": 20,
        "input_shape": [1, 28, 28],
        "classes": 10,
    }
    assert [(r["kind"], r["round"]) for r in result["records"]] == [("ticket", 0), ("ticket", 1), ("reinit", 1)]
    assert result["setup"]["lr"] == 2e-4  # conv2's paper setup
    ticket = {r["round"]: r for r in result["records"] if r["kind"] == "ticket"}
    assert 0.8 < ticket[1]["remaining"] < 1.0
    for record in result["records"]:
        assert record["early_stop_iteration"] == 1  # 50 examples in one batch of 60
        assert 0.0 <= record["test_accuracy"] <= 1.0


# -- other strategies than IMP ---------------------------------------------------------
def test_a_run_with_a_strategy_that_prunes_at_initialization():
    config = RunConfig(
        strategy="synflow",
        strategy_options={"remaining": 0.2, "iterations": 2},
        rounds=1,
        epochs=1,
        replicates=1,
        controls=("reinit", "permute"),
        progress=False,
        validation=100,
    )
    result = run_experiment(config)
    ticket = [r for r in result["records"] if r["kind"] == "ticket"]
    assert [r["round"] for r in ticket] == [0, 1]
    assert ticket[1]["remaining"] == pytest.approx(0.2, abs=0.01)
    controls = {(r["kind"], r["round"]) for r in result["records"] if r["kind"] != "ticket"}
    assert controls == {("reinit", 1), ("permute", 1)}
    assert result["config"]["strategy"] == "synflow"


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"strategy": "no-such-strategy"}, "no-such-strategy"),
        ({"strategy": "synflow", "controls": ("random_pruning",)}, "random_pruning"),
        ({"strategy": "synflow", "rate": 0.3, "controls": ()}, "rate set IMP's rates"),
        ({"strategy": "synflow", "strategy_options": {"remaining": 2.0}, "controls": ()}, "remaining=2.0"),
        ({"strategy": "synflow", "strategy_options": [("remaining", 0.1)], "controls": ()}, "strategy_options must"),
    ],
)
def test_check_rejects_strategy_settings_naming_them(changes, match):
    with pytest.raises(Exception, match=match) as raised:
        RunConfig(**changes).check()
    assert isinstance(raised.value, (TypeError, ValueError, LookupError)) or "Strategy" in type(raised.value).__name__


@pytest.mark.parametrize("strategy", list_strategies())
def test_every_strategy_has_default_controls_that_fit_it(strategy):
    controls = default_controls(strategy)
    assert controls == (("reinit", "random_pruning") if strategy == "imp" else ("reinit", "permute"))
    RunConfig(strategy=strategy, controls=controls).check()
    when = getattr(get_strategy(strategy), "when", "between_rounds")
    supermask = RunConfig(strategy=strategy, controls=("supermask", "sign_reinit"))
    if when == "between_rounds":  # a dense run: its trained weights give the supermask
        supermask.check()
    else:
        with pytest.raises(ValueError, match=rf"controls='supermask'.*{strategy!r} \(when='{when}'\) has no dense run"):
            supermask.check()


def test_default_controls_of_an_unknown_strategy_name_the_registered_ones():
    with pytest.raises(StrategyError, match="unknown strategy 'nope'; registered: .*imp"):
        default_controls("nope")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        (
            {"bogus": 1},
            TypeError,
            r"^strategy_options\['bogus'\]=1: strategy 'snip' has no option 'bogus' \(its options: remaining, batches,",
        ),
        ({"remaining": 2.0}, ValueError, r"^strategy_options\['remaining'\]=2.0: remaining=2.0 must be in \(0, 1\]$"),
        (
            {"batches": 1, "remaining": "x"},
            TypeError,
            r"^strategy_options\['remaining'\]='x': remaining must be a number",
        ),
    ],
)
def test_check_strategy_options_names_the_option_at_fault(options, error, match):
    config = RunConfig(strategy="snip", strategy_options=options, controls=())
    with pytest.raises(error, match=match):
        config.check()
    with pytest.raises(error, match=match.replace("strategy_options\\['", "--option ").replace("'\\]=", "=")):
        config.check_strategy_options(label=lambda key: f"--option {key}")


class _Band(Strategy):
    """A strategy whose two options are fine alone and wrong together."""

    def __init__(self, low: float = 0.1, high: float = 0.9) -> None:
        super().__init__()
        if low > high:
            raise ValueError(f"low={low} exceeds high={high}")

    def prune(self, context):
        return dict(context.masks)


class _Pair(_Band):
    """The same with both options required."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__(low, high)


class _TestStrategies:
    @hookimpl
    def torch_lottery_register_strategies(self, register):
        register("band", _Band)
        register("pair", _Pair)


@pytest.fixture
def band_and_pair():
    """``band`` and ``pair`` registered for one test."""
    reset_plugin_manager()
    get_plugin_manager().register(_TestStrategies(), name="test_strategies")
    yield
    reset_plugin_manager()


@pytest.mark.parametrize("strategy", ["band", "pair"])
def test_check_strategy_options_of_a_combination_gives_the_strategys_message(band_and_pair, strategy):
    # each option is fine alone (or, for pair, cannot be tried alone): no one option to blame
    config = RunConfig(strategy=strategy, strategy_options={"low": 0.8, "high": 0.2}, controls=())
    with pytest.raises(ValueError, match=r"^low=0.8 exceeds high=0.2$"):
        config.check_strategy_options()
    RunConfig(strategy=strategy, strategy_options={"low": 0.2, "high": 0.3}, controls=()).check()


@pytest.mark.parametrize("strategy", ["rigl", "edge_popup"])
def test_a_run_with_a_strategy_that_trains_once_fills_in_the_run_length_and_its_optimizer(strategy):
    options = {"density": 0.1, "every": 10} if strategy == "rigl" else {"remaining": 0.5}
    config = RunConfig(
        strategy=strategy,
        strategy_options=options,
        rounds=3,  # a training-time strategy trains once whatever rounds says
        epochs=1,
        replicates=1,
        controls=("reinit",),
        progress=False,
        validation=100,
    )
    result = run_experiment(config)
    ticket = [r for r in result["records"] if r["kind"] == "ticket"]
    assert [r["round"] for r in ticket] == [0, 1]
    expected = 0.1 if strategy == "rigl" else 0.5
    assert ticket[1]["remaining"] == pytest.approx(expected, abs=0.01)
    assert ticket[1]["test_accuracy"] > 0.15  # far above chance (0.1) after one epoch
    assert {(r["kind"], r["round"]) for r in result["records"] if r["kind"] != "ticket"} == {("reinit", 1)}


def _pruned_lenet(density):
    from torch.nn.utils import prune

    from torch_lottery.experiments.models import build_model
    from torch_lottery.pruning.utils import named_prunable_parameters

    torch.manual_seed(0)
    model = build_model("lenet300100", (1, 28, 28), 10)
    for _, module, name in named_prunable_parameters(model):
        prune.l1_unstructured(module, name, amount=1.0 - density)
    return model


def _random_data(n=120):
    from torch_lottery.experiments.data import TensorData

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
    return TensorData(x[:80], y[:80], x[80:100], y[80:100], x[100:], y[100:], 10, (1, 28, 28), "random")


def test_the_runner_trains_fixed_masks_through_sparse_training(monkeypatch):
    """A pruned model's training runs inside sparse_training and ends where the masked path ends."""
    import contextlib

    from torch_lottery.experiments import runner as runner_module
    from torch_lottery.experiments.runner import Setup, Trainer

    setup = Setup(
        epochs=2, batch_size=20, optimizer="adam", lr=1e-3, momentum=0.9, weight_decay=0.0, strategy_options={}
    )
    seen = []

    def record(module, inputs, output):  # a forward (not pre-) hook: pre-hooks keep a tensor masked
        seen.append(type(module).__name__)

    fast = _pruned_lenet(0.05)
    fast.fc1.register_forward_hook(record)
    torch.manual_seed(1)
    Trainer(_random_data(), setup, evals_per_epoch=1, progress=False).train(fast)
    assert "SparseTrainingLinear" in seen and type(fast.fc1).__name__ == "Linear"

    monkeypatch.setattr(runner_module, "sparse_training", lambda model: contextlib.nullcontext())
    masked = _pruned_lenet(0.05)
    torch.manual_seed(1)
    Trainer(_random_data(), setup, evals_per_epoch=1, progress=False).train(masked)
    for name in ("fc1", "fc2", "fc3"):
        a, b = getattr(fast, name), getattr(masked, name)
        torch.testing.assert_close(a.weight_orig * a.weight_mask, b.weight_orig * b.weight_mask, rtol=1e-4, atol=1e-5)
