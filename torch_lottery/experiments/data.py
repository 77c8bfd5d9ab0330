"""Data sets preloaded as normalized tensors, a validation split, and minibatches by indexing.

MNIST, Fashion-MNIST and CIFAR-10 are read through torchvision's own data set
classes (their ``.data``/``.targets`` arrays, no per-sample transforms);
MNIST-1D is generated locally by the ``mnist1d`` package. Everything is held in
memory, so a training loop draws batches by indexing tensors (:func:`batches`),
on the GPU too after :meth:`TensorData.to`.

Offline, Fashion-MNIST can come from Debian's ``dataset-fashion-mnist`` package:
:func:`prepare_fashion_mnist` unpacks it where torchvision looks.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import numbers
import os
import random
import shutil
import struct
from collections.abc import Iterator

import torch

from .._files import atomic_write
from .._validation import check_nonneg_int, describe

#: The data sets :func:`load_dataset` knows.
DATASETS = ("mnist", "fashion-mnist", "cifar10", "mnist1d")

#: Where Debian's ``dataset-fashion-mnist`` package puts the IDX files.
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

#: The four IDX files of MNIST and Fashion-MNIST (gzipped names; torchvision reads them unpacked).
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

_IDX_MAGIC = {"images": 2051, "labels": 2049}

# name -> (torchvision class name, folder it reads under root)
_TORCHVISION_SETS = {
    "mnist": ("MNIST", "MNIST/raw"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
}


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class TensorData:
    """A data set held as tensors: training, validation and test splits.

    Inputs are float32 (normalized with the training split's per-channel mean
    and standard deviation), labels int64.

    Attributes:
        train_x, train_y, val_x, val_y, test_x, test_y (Tensor): the splits
            (the validation split may be empty).
        num_classes (int): the number of classes.
        input_shape (tuple of int): the shape of one input (``(40,)``, ``(1, 28, 28)``, ...).
        name (str): the data set's name.
        mean, std (tuple of float): the per-channel statistics the inputs were normalized with.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    name: str
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
                raise TypeError(f"{split}_x and {split}_y must be tensors, got {describe(x)} and {describe(y)}")
            if len(x) != len(y):
                raise ValueError(f"{split}_x has {len(x)} examples but {split}_y has {len(y)}")
            if tuple(x.shape[1:]) != tuple(self.input_shape):
                raise ValueError(
                    f"{split}_x has inputs of shape {tuple(x.shape[1:])}, not input_shape={tuple(self.input_shape)}"
                )

    def to(self, device: torch.device | str) -> TensorData:
        """Return a copy with every tensor on ``device``.

        Like ``Tensor.to``, tensors already on ``device`` are shared, not copied.

        Args:
            device (torch.device or str): e.g. ``"cuda"``.

        Returns:
            TensorData: the data on ``device``.
        """
        device = torch.device(device)
        moved = {f: getattr(self, f).to(device) for f in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}
        return dataclasses.replace(self, **moved)

    @property
    def device(self) -> torch.device:
        """The device the tensors are on."""
        return self.train_x.device

    def __repr__(self) -> str:
        return (
            f"TensorData(name={self.name!r}, train={len(self.train_x)}, validation={len(self.val_x)}, "
            f"test={len(self.test_x)}, input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"device={self.device})"
        )


# -- helpers -----------------------------------------------------------------------
def default_root() -> str:
    """Return the default data folder: ``$TORCH_LOTTERY_DATA`` or ``~/.cache/torch_lottery/data``."""
    return os.environ.get("TORCH_LOTTERY_DATA") or os.path.join(
        os.path.expanduser("~"), ".cache", "torch_lottery", "data"
    )


def _import_torchvision():
    try:
        import torchvision
    except ImportError as error:
        raise ImportError(
            "MNIST, Fashion-MNIST and CIFAR-10 are read with torchvision: install the vision extra, "
            "pip install 'torch-lottery[vision]'"
        ) from error
    return torchvision


def _import_mnist1d():
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as error:
        raise ImportError(
            "MNIST-1D needs the mnist1d package: install the experiments extra, "
            "pip install 'torch-lottery[experiments]'"
        ) from error
    return make_dataset, get_dataset_args


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of ``x`` (N, C, ...), or one pair for (N, features); float64."""
    dims = tuple(d for d in range(x.dim()) if d != 1) if x.dim() > 2 else tuple(range(x.dim()))
    count = x.numel() // (x.shape[1] if x.dim() > 2 else 1)
    mean = x.sum(dim=dims, dtype=torch.float64) / count
    centred = x - _view(mean, x).to(x.dtype)
    std = ((centred * centred).sum(dim=dims, dtype=torch.float64) / count).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant channel is only centred
    return mean, std


def _view(stat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Shape per-channel statistics to broadcast against ``x``."""
    if x.dim() <= 2:
        return stat.reshape(())
    return stat.view((1, -1) + (1,) * (x.dim() - 2))


def _normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x - _view(mean, x).float()) / _view(std, x).float()


def _load_torchvision(name: str, root: str, download: bool) -> tuple:
    torchvision = _import_torchvision()
    class_name, folder = _TORCHVISION_SETS[name]
    cls = getattr(torchvision.datasets, class_name)
    raw = os.path.join(root, "FashionMNIST", "raw")
    if (
        name == "fashion-mnist"
        and not download
        and os.path.isdir(DEBIAN_FASHION_MNIST)
        and not all(os.path.exists(os.path.join(raw, f[:-3])) for f in IDX_FILES)
    ):
        # Offline on Debian: unpack the real IDX files of the dataset-fashion-mnist package
        # where torchvision reads them (only when they are not there yet).
        prepare_fashion_mnist(root, source=DEBIAN_FASHION_MNIST)
    splits = []
    for train in (True, False):
        try:
            dataset = cls(root, train=train, download=download)
        except RuntimeError as error:
            if download:
                raise RuntimeError(f"could not download {name} into root={root!r}: {error}") from error
            hint = "pass download=True (torch-lottery run --download) to fetch it"
            if name == "fashion-mnist":
                hint += (
                    ", or, offline, install Debian's package dataset-fashion-mnist and run "
                    "torch_lottery.experiments.data.prepare_fashion_mnist(root) to unpack it there"
                )
            raise FileNotFoundError(
                f"data set {name} not found under root={root!r} (torchvision's {class_name} reads "
                f"{os.path.join(root, folder)}): {hint}"
            ) from error
        data, targets = dataset.data, dataset.targets
        x = torch.as_tensor(data)
        if x.dim() == 3:  # MNIST-like (N, H, W)
            x = x.unsqueeze(1)
        else:  # CIFAR (N, H, W, C)
            x = x.permute(0, 3, 1, 2)
        x = x.contiguous().float().div_(255.0)
        y = torch.as_tensor(targets, dtype=torch.int64)
        splits += [x, y]
    return (*splits, len(dataset.classes))


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple:
    """Generate MNIST-1D once per process (about 2 s; the result is deterministic)."""
    make_dataset, get_dataset_args = _import_mnist1d()
    import numpy as np

    # make_dataset seeds numpy's and Python's global generators: keep the caller's streams.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        raw = make_dataset(get_dataset_args())  # never get_dataset: it downloads
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return raw["x"], raw["y"], raw["x_test"], raw["y_test"], len(raw["templates"]["y"])


def _load_mnist1d() -> tuple:
    x, y, x_test, y_test, num_classes = _mnist1d_arrays()
    return (
        torch.tensor(x, dtype=torch.float32),
        torch.tensor(y, dtype=torch.int64),
        torch.tensor(x_test, dtype=torch.float32),
        torch.tensor(y_test, dtype=torch.int64),
        num_classes,
    )


# -- loading -----------------------------------------------------------------------
def load_dataset(
    name: str, root: str | os.PathLike | None = None, download: bool = False, validation: int = 5000, seed: int = 0
) -> TensorData:
    """Load a whole data set into memory as normalized tensors, with a validation split.

    Images become float tensors ``(N, C, H, W)`` scaled to [0, 1], then
    normalized per channel with the mean and standard deviation of the training
    split (what remains after the validation examples are taken out); MNIST-1D's
    ``(N, 40)`` signals are standardized likewise. ``validation`` examples of the
    training set, drawn at random with ``seed``, form the validation split.

    Args:
        name (str): one of :data:`DATASETS`.
        root (str or PathLike, optional): where torchvision's data set classes
            look for (or download) MNIST, Fashion-MNIST and CIFAR-10; default
            :func:`default_root`. Unused for MNIST-1D, which is generated.
        download (bool): let torchvision download a missing data set. Without it,
            Fashion-MNIST is taken from Debian's package ``dataset-fashion-mnist``
            when that is installed (see :func:`prepare_fashion_mnist`).
        validation (int): training examples held out for validation (0 for none);
            MNIST-1D has only 4000 training examples.
        seed (int): seed of the validation split.

    Returns:
        TensorData: the splits on the CPU.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: for an unknown name, or ``validation`` not smaller than the training set.
        FileNotFoundError: if a torchvision data set is missing and ``download`` is False.
        ImportError: if torchvision (or mnist1d, for MNIST-1D) is not installed.

    Examples:
        >>> from torch_lottery.experiments.data import load_dataset
        >>> data = load_dataset("mnist1d", validation=500)  # doctest: +SKIP
        >>> data  # doctest: +SKIP
        TensorData(name='mnist1d', train=3500, validation=500, test=1000, input_shape=(40,), num_classes=10, device=cpu)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {describe(name)}")
    if name not in DATASETS:
        raise ValueError(f"name={name!r} is not a known data set; known: {', '.join(DATASETS)}")
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or PathLike) or None, got {describe(root)}")
    if not isinstance(download, bool):
        raise TypeError(f"download must be a bool, got {describe(download)}")
    check_nonneg_int(validation, "validation")
    check_nonneg_int(seed, "seed")

    if name == "mnist1d":
        train_x, train_y, test_x, test_y, num_classes = _load_mnist1d()
    else:
        root = os.fspath(root) if root is not None else default_root()
        train_x, train_y, test_x, test_y, num_classes = _load_torchvision(name, os.path.expanduser(root), download)

    n = len(train_x)
    if validation >= n:
        raise ValueError(
            f"validation={validation} must be smaller than the {n} training examples of {name} "
            f"(e.g. validation={n // 10})"
        )
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(n, generator=generator)
    val_idx, train_idx = order[:validation].sort().values, order[validation:].sort().values
    val_x, val_y = train_x[val_idx], train_y[val_idx]
    train_x, train_y = train_x[train_idx], train_y[train_idx]

    mean, std = _channel_stats(train_x)
    train_x, val_x, test_x = (_normalize(x, mean, std) for x in (train_x, val_x, test_x))
    return TensorData(
        train_x=train_x,
        train_y=train_y,
        val_x=val_x,
        val_y=val_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=num_classes,
        input_shape=tuple(train_x.shape[1:]),
        name=name,
        mean=tuple(mean.reshape(-1).tolist()),
        std=tuple(std.reshape(-1).tolist()),
    )


# -- Fashion-MNIST from Debian -----------------------------------------------------
def _gzip_size(path: str) -> int:
    """The uncompressed size a gzip file records in its trailer (modulo 2**32)."""
    with open(path, "rb") as handle:
        handle.seek(-4, os.SEEK_END)
        return struct.unpack("<I", handle.read(4))[0]


def prepare_fashion_mnist(root: str | os.PathLike, source: str | os.PathLike = DEBIAN_FASHION_MNIST) -> str:
    """Unpack Fashion-MNIST's four gzipped IDX files into ``<root>/FashionMNIST/raw`` for torchvision.

    Debian's ``dataset-fashion-mnist`` package (``apt-get install
    dataset-fashion-mnist``) installs the files in :data:`DEBIAN_FASHION_MNIST`;
    after this, ``load_dataset("fashion-mnist", root=root)`` works offline. Files
    already unpacked (same size) are left alone, so calling it again is cheap.

    Args:
        root (str or PathLike): the data root later given to :func:`load_dataset`.
        source (str or PathLike): the folder holding the ``.gz`` files.

    Returns:
        str: the folder the files were unpacked into.

    Raises:
        TypeError: if a path is not a str or PathLike.
        FileNotFoundError: if a source file is missing.
        ValueError: if a source file is not a gzipped IDX file.
    """
    for label, value in (("root", root), ("source", source)):
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{label} must be a path (str or PathLike), got {describe(value)}")
    source = os.fspath(source)
    raw = os.path.join(os.path.expanduser(os.fspath(root)), "FashionMNIST", "raw")
    missing = [f for f in IDX_FILES if not os.path.isfile(os.path.join(source, f))]
    if missing:
        raise FileNotFoundError(
            f"source={source!r} lacks {', '.join(missing)}: install Debian's package dataset-fashion-mnist "
            f"(apt-get install dataset-fashion-mnist) or pass the folder holding the four Fashion-MNIST .gz files"
        )
    os.makedirs(raw, exist_ok=True)
    for filename in IDX_FILES:
        src = os.path.join(source, filename)
        dst = os.path.join(raw, filename[:-3])
        if os.path.isfile(dst) and os.path.getsize(dst) % 2**32 == _gzip_size(src):
            continue
        atomic_write(dst, functools.partial(_gunzip_idx, src, filename))
    return raw


def _gunzip_idx(src: str, filename: str, out) -> None:
    with gzip.open(src, "rb") as packed:
        try:
            head = packed.read(4)
        except (OSError, EOFError) as error:
            raise ValueError(f"{src} is not a gzip file: {error}") from None
        expected = _IDX_MAGIC["images" if "images" in filename else "labels"]
        if len(head) < 4 or struct.unpack(">i", head)[0] != expected:
            raise ValueError(f"{src} is not an IDX file (magic number {expected} expected)")
        out.write(head)
        shutil.copyfileobj(packed, out)


# -- minibatches -------------------------------------------------------------------
def batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield one epoch of shuffled minibatches ``(x[idx], y[idx])`` by indexing preloaded tensors.

    One ``torch.randperm`` per call (on ``generator``'s device, so a seeded CPU
    generator gives the same order whatever the data's device), moved to ``x``'s
    device; every example comes once, the last batch may be smaller.

    Args:
        x (Tensor): inputs, examples along the first dimension.
        y (Tensor): labels, as many as ``x``.
        batch_size (int): examples per batch (>= 1).
        generator (torch.Generator, optional): the source of the order.

    Returns:
        iterator of (Tensor, Tensor): the batches.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if ``x`` and ``y`` differ in length or ``batch_size`` < 1.

    Examples:
        >>> import torch
        >>> from torch_lottery.experiments.data import batches
        >>> x, y = torch.arange(5.0), torch.arange(5)
        >>> [len(xb) for xb, yb in batches(x, y, 2, torch.Generator().manual_seed(0))]
        [2, 2, 1]
    """
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"x and y must be tensors, got {describe(x)} and {describe(y)}")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"batch_size must be an int, got {describe(batch_size)}")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {describe(generator)}")
    return _batches(x, y, int(batch_size), generator)


def _batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    n = len(x)
    if generator is None:
        order = torch.randperm(n, device=x.device)
    else:
        order = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
    if y.device != x.device:
        y_order = order.to(y.device)
    else:
        y_order = order
    for start in range(0, n, batch_size):
        # index_select gathers the same rows as x[idx], in a third of the time on CPU
        yield (
            x.index_select(0, order[start : start + batch_size]),
            y.index_select(0, y_order[start : start + batch_size]),
        )
