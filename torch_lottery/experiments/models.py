"""The networks of the lottery ticket paper, any torchvision classifier, and the paper's pruning setups.

The built-in models follow Frankle & Carbin (2019), "The Lottery Ticket
Hypothesis", Figure 2: LeNet-300-100 (``lenet300100``), the Conv-2/4/6 networks
(``conv2``, ``conv4``, ``conv6``), the CIFAR "Resnet-18" (the 20-layer CIFAR
ResNet of He et al. 2016, ``resnet18``) and the CIFAR VGG-19 (``vgg19``). Their
linear layers are sized from the input shape, so each works on every data set
where it makes sense (the convolutional ones need images). Any torchvision
classification model is available as ``torchvision:<name>``.

:data:`PAPER_SETUPS` holds the paper's pruning and training settings as plain
data and :func:`paper_strategy_options` turns them into options of the ``imp``
strategy for a built model. The models keep PyTorch's default initialization.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import nn

from .._validation import describe
from ..pruning.utils import named_prunable_parameters

#: The built-in model names (any torchvision classifier is also available as ``torchvision:<name>``).
MODELS = ("lenet300100", "conv2", "conv4", "conv6", "resnet18", "vgg19")

#: The prefix of torchvision model names: ``"torchvision:resnet18"``.
TORCHVISION_PREFIX = "torchvision:"

# Conv-2/4/6: 3x3 convolutions (padding 1) with ReLU, "M" = 2x2 max pooling.
_CONV_CFGS: dict[str, list[int | str]] = {
    "conv2": [64, 64, "M"],
    "conv4": [64, 64, "M", 128, 128, "M"],
    "conv6": [64, 64, "M", 128, 128, "M", 256, 256, "M"],
}

# VGG-19 for CIFAR: 3x3 convolutions + BatchNorm + ReLU, "M" = 2x2 max pooling.
_VGG19_CFG: list[int | str] = [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
]

#: The LTH paper's pruning and training setups (Frankle & Carbin 2019, Figure 2 and
#: Appendix), as plain data. Keys: ``scope`` ("local": each tensor on its own;
#: "global": one pool), ``rate`` (the base per-round pruning rate), ``conv_rate``,
#: ``fc_rate`` and ``output_rate`` (per-round rates of the convolutions, the hidden
#: linear layers and the output layer; None where the model has no such layer),
#: ``optimizer`` ("adam" or "sgd"), ``lr``, ``momentum``, ``weight_decay``,
#: ``batch_size``, ``iterations`` (training length), ``lr_milestones`` (iterations
#: where SGD's rate drops tenfold), ``warmup`` (linear warmup iterations the paper
#: needs at rate 0.1) and ``rewind_iteration`` (late resetting, Frankle et al.
#: 2019: ResNet-18 and VGG-19 need it at rate 0.1). As in the paper, the output
#: layer is pruned at half the rate of the hidden linear layers, and ResNet-18 and
#: VGG-19 do not prune it ("fc 0%").
PAPER_SETUPS: dict[str, dict[str, Any]] = {
    "lenet300100": {
        "scope": "local",
        "rate": 0.2,
        "conv_rate": None,
        "fc_rate": 0.2,
        "output_rate": 0.1,
        "optimizer": "adam",
        "lr": 1.2e-3,
        "weight_decay": 0.0,
        "batch_size": 60,
        "iterations": 50_000,
        "lr_milestones": [],
        "warmup": 0,
        "rewind_iteration": 0,
    },
    "conv2": {
        "scope": "local",
        "rate": 0.2,
        "conv_rate": 0.1,
        "fc_rate": 0.2,
        "output_rate": 0.1,
        "optimizer": "adam",
        "lr": 2e-4,
        "weight_decay": 0.0,
        "batch_size": 60,
        "iterations": 20_000,
        "lr_milestones": [],
        "warmup": 0,
        "rewind_iteration": 0,
    },
    "conv4": {
        "scope": "local",
        "rate": 0.2,
        "conv_rate": 0.1,
        "fc_rate": 0.2,
        "output_rate": 0.1,
        "optimizer": "adam",
        "lr": 3e-4,
        "weight_decay": 0.0,
        "batch_size": 60,
        "iterations": 25_000,
        "lr_milestones": [],
        "warmup": 0,
        "rewind_iteration": 0,
    },
    "conv6": {
        "scope": "local",
        "rate": 0.2,
        "conv_rate": 0.15,
        "fc_rate": 0.2,
        "output_rate": 0.1,
        "optimizer": "adam",
        "lr": 3e-4,
        "weight_decay": 0.0,
        "batch_size": 60,
        "iterations": 30_000,
        "lr_milestones": [],
        "warmup": 0,
        "rewind_iteration": 0,
    },
    "resnet18": {
        "scope": "global",
        "rate": 0.2,
        "conv_rate": 0.2,
        "fc_rate": None,
        "output_rate": 0.0,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "batch_size": 128,
        "iterations": 30_000,
        "lr_milestones": [20_000, 25_000],
        "warmup": 20_000,
        "rewind_iteration": 500,
    },
    "vgg19": {
        "scope": "global",
        "rate": 0.2,
        "conv_rate": 0.2,
        "fc_rate": None,
        "output_rate": 0.0,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "batch_size": 64,
        "iterations": 112_000,
        "lr_milestones": [56_000, 84_000],
        "warmup": 10_000,
        "rewind_iteration": 100,
    },
}

#: The ``imp`` options for models without a paper setup (torchvision models, custom names).
DEFAULT_STRATEGY_OPTIONS: dict[str, Any] = {
    "rate": 0.2,
    "scope": "global",
    "rate_multipliers": {},
    "rewind_iteration": 0,
}


# -- the networks ------------------------------------------------------------------
class LeNet300100(nn.Module):
    """LeNet-300-100: a fully connected network with hidden layers of 300 and 100 units.

    Args:
        in_features (int): the number of inputs (the input is flattened first).
        num_classes (int): the number of outputs.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_features, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits of a batch."""
        x = torch.relu(self.fc1(self.flatten(x)))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class ConvNet(nn.Module):
    """The LTH paper's Conv-2/4/6: 3x3 convolutions and max pooling, then 256-256-classes linear layers.

    Args:
        cfg (list): output channels of each convolution, ``"M"`` for 2x2 max pooling.
        input_shape (tuple): ``(channels, height, width)`` of one input.
        num_classes (int): the number of outputs.
    """

    def __init__(self, cfg: list[int | str], input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels, height, width = input_shape
        layers: list[nn.Module] = []
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            else:
                layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(channels * height * width, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits of a batch."""
        x = self.flatten(self.features(x))
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class BasicBlock(nn.Module):
    """A ResNet basic block: two 3x3 convolutions with BatchNorm and a (projection) shortcut.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        stride (int): stride of the first convolution (2 halves the feature map).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the block's output for a batch."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNet of He et al. (2016) with three stages; depth 20 is the LTH paper's "Resnet-18".

    Args:
        in_channels (int): channels of the input images.
        num_classes (int): the number of outputs.
        blocks_per_stage (int): basic blocks per stage (3 gives 20 layers).
        widths (tuple): channels of the three stages.
    """

    def __init__(
        self, in_channels: int, num_classes: int, blocks_per_stage: int = 3, widths: tuple[int, int, int] = (16, 32, 64)
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        channels = widths[0]
        stages = []
        for index, width in enumerate(widths):
            blocks = []
            for block in range(blocks_per_stage):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits of a batch."""
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.pool(x)))


class VGG(nn.Module):
    """A CIFAR VGG: 3x3 convolutions with BatchNorm and ReLU, global average pooling, one linear layer.

    Args:
        cfg (list): output channels of each convolution, ``"M"`` for 2x2 max pooling.
        in_channels (int): channels of the input images.
        num_classes (int): the number of outputs.
    """

    def __init__(self, cfg: list[int | str], in_channels: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [
                    nn.Conv2d(channels, int(item), 3, padding=1, bias=False),
                    nn.BatchNorm2d(int(item)),
                    nn.ReLU(inplace=True),
                ]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits of a batch."""
        return self.fc(self.flatten(self.pool(self.features(x))))


class RepeatChannels(nn.Module):
    """Run ``model`` on images whose single channel is repeated ``channels`` times.

    Lets a torchvision model made for RGB images take grayscale ones (MNIST,
    Fashion-MNIST); its tensors are named ``model.<name>``.

    Args:
        model (nn.Module): the wrapped model.
        channels (int): the number of channels ``model`` expects.
    """

    def __init__(self, model: nn.Module, channels: int = 3) -> None:
        super().__init__()
        self.model = model
        self.channels = int(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``model``'s output for a batch of 1-channel images."""
        return self.model(x.expand(-1, self.channels, -1, -1))

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


# -- building ----------------------------------------------------------------------
def _check_input_shape(input_shape: Any) -> tuple[int, ...]:
    if not isinstance(input_shape, (tuple, list)) or not input_shape:
        raise TypeError(
            f"input_shape must be a non-empty tuple of ints (without the batch dimension), got {describe(input_shape)}"
        )
    for size in input_shape:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral):
            raise TypeError(f"input_shape must hold ints, got {describe(input_shape)}")
        if size < 1:
            raise ValueError(f"input_shape={tuple(input_shape)} must hold sizes >= 1")
    return tuple(int(size) for size in input_shape)


def _image_shape(name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(
            f"model {name!r} needs images: input_shape must be (channels, height, width), got {input_shape}"
        )
    return input_shape


def _check_pool_fits(name: str, cfg: list[int | str], input_shape: tuple[int, int, int]) -> None:
    pools = sum(1 for item in cfg if item == "M")
    _, height, width = input_shape
    if height >> pools == 0 or width >> pools == 0:
        raise ValueError(
            f"model {name!r} pools {pools} times by 2 and needs images of at least "
            f"{2**pools}x{2**pools}, got input_shape={input_shape}"
        )


def _import_torchvision():
    try:
        import torchvision
    except ImportError as error:
        raise ImportError(
            "torchvision models need torchvision: install the vision extra, pip install 'torch-lottery[vision]'"
        ) from error
    return torchvision


def torchvision_models() -> list[str]:
    """Return the names of torchvision's classification models (usable as ``torchvision:<name>``).

    Raises:
        ImportError: if torchvision is not installed.
    """
    torchvision = _import_torchvision()
    return sorted(torchvision.models.list_models(module=torchvision.models))


# Models with auxiliary heads return plain logits without them; init_weights=True keeps
# torchvision's documented initialization (and silences its FutureWarning).
_TORCHVISION_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def _build_torchvision(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    torchvision = _import_torchvision()
    known = torchvision_models()
    if name not in known:
        raise ValueError(
            f"model='{TORCHVISION_PREFIX}{name}' is not a torchvision classification model; known: {', '.join(known)}"
        )
    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise ValueError(
            f"model='{TORCHVISION_PREFIX}{name}' needs images with 1 or 3 channels: input_shape "
            f"must be (1 or 3, height, width), got {input_shape}"
        )
    extra = _TORCHVISION_KWARGS.get(name, {})
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **extra)
    if input_shape[0] == 1:
        model = RepeatChannels(model, 3)
    # One forward pass in eval mode tells at build time whether the model takes this image size.
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, *input_shape))
    except Exception as error:  # torchvision raises RuntimeError, ValueError or AssertionError
        raise ValueError(
            f"model='{TORCHVISION_PREFIX}{name}' does not accept inputs of shape {input_shape}: {error}"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, num_classes):
        raise ValueError(f"model='{TORCHVISION_PREFIX}{name}' does not return (batch, {num_classes}) logits")
    return model


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build a freshly initialized model by name for inputs of ``input_shape``.

    Args:
        name (str): one of :data:`MODELS` or ``"torchvision:<name>"`` for a
            torchvision classifier (built with ``weights=None``; 1-channel images
            are repeated to 3 channels by :class:`RepeatChannels`).
        input_shape (tuple of int): the shape of one input without the batch
            dimension: ``(40,)`` (MNIST-1D), ``(1, 28, 28)``, ``(3, 32, 32)``.
            ``lenet300100`` flattens any shape; the others need images.
        num_classes (int): the number of outputs (>= 1).

    Returns:
        nn.Module: the model (in training mode, on the CPU).

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: for an unknown name, or an input shape the model cannot take.
        ImportError: for a torchvision model without torchvision installed.

    Examples:
        >>> import torch
        >>> from torch_lottery.experiments.models import build_model
        >>> net = build_model("lenet300100", (40,), 10)
        >>> net(torch.zeros(2, 40)).shape
        torch.Size([2, 10])
        >>> build_model("conv2", (3, 32, 32), 10).fc1
        Linear(in_features=16384, out_features=256, bias=True)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {describe(name)}")
    shape = _check_input_shape(input_shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise TypeError(f"num_classes must be an int, got {describe(num_classes)}")
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes} must be >= 1")
    num_classes = int(num_classes)
    if name.startswith(TORCHVISION_PREFIX):
        return _build_torchvision(name[len(TORCHVISION_PREFIX) :], shape, num_classes)
    if name == "lenet300100":
        return LeNet300100(math.prod(shape), num_classes)
    if name in _CONV_CFGS:
        image = _image_shape(name, shape)
        _check_pool_fits(name, _CONV_CFGS[name], image)
        return ConvNet(_CONV_CFGS[name], image, num_classes)
    if name == "resnet18":
        return CifarResNet(_image_shape(name, shape)[0], num_classes)
    if name == "vgg19":
        image = _image_shape(name, shape)
        _check_pool_fits(name, _VGG19_CFG, image)
        return VGG(_VGG19_CFG, image[0], num_classes)
    raise ValueError(
        f"name={name!r} is not a known model; known: {', '.join(MODELS)}, "
        f"or {TORCHVISION_PREFIX}<name> for a torchvision classifier"
    )


# -- pruning setups ----------------------------------------------------------------
def output_layer_name(model: nn.Module) -> str:
    """Return the qualified name of the output layer's weight: the model's last prunable weight.

    Args:
        model (nn.Module): the model (pruned or not).

    Returns:
        str: e.g. ``"fc3.weight"`` (LeNet, Conv-2/4/6) or ``"fc.weight"``.

    Raises:
        TypeError: if ``model`` is not a module.
        ValueError: if it has no prunable weight.

    Examples:
        >>> from torch_lottery.experiments.models import build_model, output_layer_name
        >>> output_layer_name(build_model("vgg19", (3, 32, 32), 10))
        'fc.weight'
    """
    named = named_prunable_parameters(model)
    if not named:
        raise ValueError(f"model ({type(model).__name__}) has no prunable weight")
    return named[-1][0]


def _multiplier(tensor_rate: float, rate: float) -> float:
    return round(tensor_rate / rate, 12) if rate else 0.0


def paper_strategy_options(name: str, model: nn.Module) -> dict[str, Any]:
    """Return the ``imp`` strategy options of the LTH paper's setup for ``model`` built as ``name``.

    Local setups give each tensor kind (convolutions, hidden linear layers, the
    output layer) its paper rate as a multiplier of ``rate``; tensors pruned at
    ``rate`` itself get no entry. Names without a paper setup (torchvision models,
    custom names) get global pruning at 0.2 without multipliers.

    Args:
        name (str): the model's name (a key of :data:`PAPER_SETUPS` or any other).
        model (nn.Module): the built model; its tensor names key ``rate_multipliers``.

    Returns:
        dict: ``{"rate": float, "scope": "local" | "global", "rate_multipliers":
        {qualified name: float}, "rewind_iteration": int}`` (a fresh dict).

    Raises:
        TypeError: if ``name`` is not a str or ``model`` not a module.
        ValueError: if ``model`` has no prunable weight.

    Examples:
        >>> from torch_lottery.experiments.models import build_model, paper_strategy_options
        >>> paper_strategy_options("lenet300100", build_model("lenet300100", (1, 28, 28), 10))
        {'rate': 0.2, 'scope': 'local', 'rate_multipliers': {'fc3.weight': 0.5}, 'rewind_iteration': 0}
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {describe(name)}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
    named = named_prunable_parameters(model)
    if not named:
        raise ValueError(f"model ({type(model).__name__}) has no prunable weight")
    setup = PAPER_SETUPS.get(name)
    if setup is None:
        return {**DEFAULT_STRATEGY_OPTIONS, "rate_multipliers": {}}
    rate = float(setup["rate"])
    output = named[-1][0]
    multipliers: dict[str, float] = {}
    for qualified, module, _ in named:
        if qualified == output:
            kind = "output_rate"
        elif isinstance(module, nn.modules.conv._ConvNd):
            kind = "conv_rate"
        else:
            kind = "fc_rate"
        tensor_rate = setup.get(kind)
        if tensor_rate is None:
            tensor_rate = rate
        multiplier = _multiplier(float(tensor_rate), rate)
        if multiplier != 1.0:
            multipliers[qualified] = multiplier
    return {
        "rate": rate,
        "scope": setup["scope"],
        "rate_multipliers": multipliers,
        "rewind_iteration": int(setup.get("rewind_iteration", 0)),
    }
