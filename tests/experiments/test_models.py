"""The experiment models: shapes, prunable tensors, output layers and the paper's pruning setups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torch_lottery import get_strategy, named_prunable_parameters, prunable_parameters
from torch_lottery.experiments.models import (
    MODELS,
    PAPER_SETUPS,
    RepeatChannels,
    build_model,
    output_layer_name,
    paper_strategy_options,
)

IMAGE_MODELS = ("conv2", "conv4", "conv6", "resnet18", "vgg19")
SHAPES = [(1, 28, 28), (3, 32, 32), (40,)]


def _applicable(name, shape):
    return name == "lenet300100" or len(shape) == 3


CASES = [
    pytest.param(name, shape, id=f"{name}-{'x'.join(map(str, shape))}")
    for name in MODELS
    for shape in SHAPES
    if _applicable(name, shape)
]


def _effective_rates(options, model):
    """{qualified name: per-round rate} that the imp strategy applies with ``options``."""
    return {
        q: options["rate"] * options["rate_multipliers"].get(q, 1.0) for q, _, _ in named_prunable_parameters(model)
    }


@pytest.mark.parametrize("name, shape", CASES)
def test_builds_and_runs(name, shape):
    torch.manual_seed(0)
    model = build_model(name, shape, 10)
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 10)
    assert prunable_parameters(model)
    last = named_prunable_parameters(model)[-1]
    assert output_layer_name(model) == last[0]
    assert isinstance(last[1], nn.Linear) and last[1].out_features == 10


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_image_models_refuse_flat_inputs(name):
    with pytest.raises(ValueError, match="needs images"):
        build_model(name, (40,), 10)


def test_lenet_is_the_paper_mlp():
    model = build_model("lenet300100", (40,), 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(40, 300), (300, 100), (100, 10)]
    assert output_layer_name(model) == "fc3.weight"
    mnist = build_model("lenet300100", (1, 28, 28), 10)
    assert sum(p.numel() for p in mnist.parameters()) == 266_610  # the paper's 266K


@pytest.mark.parametrize(
    "name, convs, flat", [("conv2", 2, 64 * 16 * 16), ("conv4", 4, 128 * 8 * 8), ("conv6", 6, 256 * 4 * 4)]
)
def test_conv_nets_layout(name, convs, flat):
    model = build_model(name, (3, 32, 32), 10)
    conv = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(conv) == convs and all(m.kernel_size == (3, 3) and m.padding == (1, 1) for m in conv)
    assert (model.fc1.in_features, model.fc1.out_features) == (flat, 256)
    assert (model.fc2.in_features, model.fc2.out_features, model.fc3.out_features) == (256, 256, 10)
    # The linear input follows the image size: MNIST's 28x28 pools to 14, 7, 3.
    small = build_model(name, (1, 28, 28), 10)
    side = 28 >> (convs // 2)
    assert small.fc1.in_features == flat // (32 >> (convs // 2)) ** 2 * side * side


def test_resnet_is_the_20_layer_cifar_resnet():
    model = build_model("resnet18", (3, 32, 32), 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    shortcuts = [m for m in convs if m.kernel_size == (1, 1)]
    assert len(convs) - len(shortcuts) + 1 == 20  # 19 3x3 convolutions + the linear layer
    assert len(shortcuts) == 2
    assert {m.out_channels for m in convs} == {16, 32, 64}
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert (model.fc.in_features, model.fc.out_features) == (64, 10)


def test_vgg19_layout():
    model = build_model("vgg19", (3, 32, 32), 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [64, 64, 128, 128] + [256] * 4 + [512] * 8
    assert (model.fc.in_features, model.fc.out_features) == (512, 10)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(20.0e6, rel=0.01)  # the paper's 20.0M


@pytest.mark.parametrize("name", MODELS)
def test_paper_options_name_real_tensors_and_match_the_paper(name):
    shape = (40,) if name == "lenet300100" else (3, 32, 32)
    model = build_model(name, shape, 10)
    options = paper_strategy_options(name, model)
    setup = PAPER_SETUPS[name]
    assert set(options) == {"rate", "scope", "rate_multipliers", "rewind_iteration"}
    assert options["scope"] == setup["scope"]
    assert options["rewind_iteration"] == setup["rewind_iteration"]
    names = [q for q, _, _ in named_prunable_parameters(model)]
    assert set(options["rate_multipliers"]) <= set(names)
    output = output_layer_name(model)
    for qualified, rate in _effective_rates(options, model).items():
        module = model.get_submodule(qualified.rpartition(".")[0])
        kind = "output_rate" if qualified == output else "conv_rate" if isinstance(module, nn.Conv2d) else "fc_rate"
        assert rate == pytest.approx(setup[kind]), qualified
    # The imp strategy takes the options and knows every name.
    strategy = get_strategy("imp")(**options)
    strategy.validate(tuple(names))


def test_paper_rates_spelled_out():
    lenet = build_model("lenet300100", (1, 28, 28), 10)
    assert paper_strategy_options("lenet300100", lenet) == {
        "rate": 0.2,
        "scope": "local",
        "rate_multipliers": {"fc3.weight": 0.5},
        "rewind_iteration": 0,
    }
    conv2 = paper_strategy_options("conv2", build_model("conv2", (3, 32, 32), 10))
    assert conv2["rate"] == 0.2 and conv2["rate_multipliers"] == {
        "features.0.weight": 0.5,
        "features.2.weight": 0.5,
        "fc3.weight": 0.5,
    }
    conv6_model = build_model("conv6", (3, 32, 32), 10)
    rates = _effective_rates(paper_strategy_options("conv6", conv6_model), conv6_model)
    conv_rates = [r for q, r in rates.items() if q.startswith("features.")]
    assert len(conv_rates) == 6 and all(r == pytest.approx(0.15) for r in conv_rates)
    assert rates["fc1.weight"] == rates["fc2.weight"] == pytest.approx(0.2)
    assert rates["fc3.weight"] == pytest.approx(0.1)
    resnet = paper_strategy_options("resnet18", build_model("resnet18", (3, 32, 32), 10))
    assert resnet == {"rate": 0.2, "scope": "global", "rate_multipliers": {"fc.weight": 0.0}, "rewind_iteration": 500}
    vgg = paper_strategy_options("vgg19", build_model("vgg19", (3, 32, 32), 10))
    assert vgg["scope"] == "global" and vgg["rewind_iteration"] == 100


def test_paper_training_setups():
    assert {k: (v["optimizer"], v["lr"], v["batch_size"]) for k, v in PAPER_SETUPS.items()} == {
        "lenet300100": ("adam", 1.2e-3, 60),
        "conv2": ("adam", 2e-4, 60),
        "conv4": ("adam", 3e-4, 60),
        "conv6": ("adam", 3e-4, 60),
        "resnet18": ("sgd", 0.1, 128),
        "vgg19": ("sgd", 0.1, 64),
    }
    for name in ("resnet18", "vgg19"):
        assert PAPER_SETUPS[name]["momentum"] == 0.9 and PAPER_SETUPS[name]["weight_decay"] == 1e-4


def test_options_without_a_paper_setup_are_global_and_fresh():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    first = paper_strategy_options("custom", model)
    assert first == {"rate": 0.2, "scope": "global", "rate_multipliers": {}, "rewind_iteration": 0}
    first["rate_multipliers"]["1.weight"] = 0.5
    assert paper_strategy_options("custom", model)["rate_multipliers"] == {}


def test_options_and_output_name_of_a_pruned_model():
    from torch_lottery import lottery_magnitude

    model = build_model("lenet300100", (40,), 10)
    lottery_magnitude(model.fc3, "weight", amount=0.5)
    assert output_layer_name(model) == "fc3.weight"
    assert paper_strategy_options("lenet300100", model)["rate_multipliers"] == {"fc3.weight": 0.5}


def test_torchvision_resnet18_takes_grayscale_and_rgb():
    torch.manual_seed(0)
    gray = build_model("torchvision:resnet18", (1, 28, 28), 10)
    assert isinstance(gray, RepeatChannels)
    assert gray(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert output_layer_name(gray) == "model.fc.weight"
    rgb = build_model("torchvision:resnet18", (3, 32, 32), 10)
    assert not isinstance(rgb, RepeatChannels)
    assert rgb(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert output_layer_name(rgb) == "fc.weight"
    options = paper_strategy_options("torchvision:resnet18", rgb)
    assert options == {"rate": 0.2, "scope": "global", "rate_multipliers": {}, "rewind_iteration": 0}


def test_torchvision_errors():
    with pytest.raises(ValueError, match="not a torchvision classification model; known: .*resnet18"):
        build_model("torchvision:no_such_net", (3, 32, 32), 10)
    with pytest.raises(ValueError, match="needs images with 1 or 3 channels"):
        build_model("torchvision:resnet18", (40,), 10)
    with pytest.raises(ValueError, match="does not accept inputs of shape"):
        build_model("torchvision:vit_b_16", (3, 32, 32), 10)


def test_torchvision_missing_gives_a_clear_import_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` fail
    with pytest.raises(ImportError, match=r"torch-lottery\[vision\]"):
        build_model("torchvision:resnet18", (3, 32, 32), 10)


@pytest.mark.parametrize("name", ["lenet", "resnet-18", "", "torchvision"])
def test_unknown_names(name):
    with pytest.raises(ValueError, match="not a known model; known: lenet300100, conv2"):
        build_model(name, (1, 28, 28), 10)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"name": 3}, TypeError, "name must be a str"),
        ({"input_shape": 784}, TypeError, "input_shape must be a non-empty tuple"),
        ({"input_shape": ()}, TypeError, "input_shape must be a non-empty tuple"),
        ({"input_shape": (1, 28.0, 28)}, TypeError, "input_shape must hold ints"),
        ({"input_shape": (1, 0, 28)}, ValueError, r"input_shape=\(1, 0, 28\) must hold sizes >= 1"),
        ({"num_classes": 10.0}, TypeError, "num_classes must be an int"),
        ({"num_classes": True}, TypeError, "num_classes must be an int"),
        ({"num_classes": 0}, ValueError, "num_classes=0 must be >= 1"),
    ],
)
def test_build_model_validation(kwargs, error, match):
    args = {"name": "lenet300100", "input_shape": (1, 28, 28), "num_classes": 10, **kwargs}
    with pytest.raises(error, match=match):
        build_model(**args)


def test_images_too_small_for_the_pooling():
    with pytest.raises(ValueError, match="needs images of at least 8x8"):
        build_model("conv6", (1, 4, 4), 10)
    with pytest.raises(ValueError, match="needs images of at least 16x16"):
        build_model("vgg19", (3, 8, 8), 10)
    assert build_model("vgg19", (3, 16, 16), 10)(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_helper_validation():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        output_layer_name("net")
    with pytest.raises(ValueError, match="no prunable weight"):
        output_layer_name(nn.ReLU())
    with pytest.raises(TypeError, match="name must be a str"):
        paper_strategy_options(None, nn.Linear(2, 2))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        paper_strategy_options("conv2", "net")
    with pytest.raises(ValueError, match="no prunable weight"):
        paper_strategy_options("conv2", nn.ReLU())
