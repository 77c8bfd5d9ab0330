"""Data loading on small files written in the real formats, MNIST-1D, and minibatches.

MNIST and Fashion-MNIST are written as IDX files where torchvision's classes read
them (``<root>/MNIST/raw/train-images-idx3-ubyte``, ...); CIFAR-10 as the python
pickle batches of ``cifar-10-batches-py``. torchvision checks the md5 sums of the
real CIFAR-10 files, which small fakes cannot match, so the CIFAR tests replace
``torchvision.datasets.cifar.check_integrity`` (the one function both of its
checks call) with a check that the file exists.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import random
import struct
import sys

import numpy as np
import pytest
import torch

from torch_lottery.experiments import data as data_module
from torch_lottery.experiments.data import (
    DATASETS,
    IDX_FILES,
    TensorData,
    batches,
    load_dataset,
    prepare_fashion_mnist,
)

N_TRAIN, N_TEST = 60, 20


def _images(n, shape, offset, seed):
    """uint8 images; image i holds offset + i in its first pixel so it can be told apart."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    images.reshape(n, -1)[:, 0] = offset + np.arange(n)
    return images


def _idx_images(images):
    n, rows, cols = images.shape
    return struct.pack(">iiii", 2051, n, rows, cols) + images.tobytes()


def _idx_labels(labels):
    return struct.pack(">ii", 2049, len(labels)) + np.asarray(labels, dtype=np.uint8).tobytes()


def _idx_contents(seed=0):
    """{file name without .gz: bytes} of a small MNIST-format data set, and its raw arrays."""
    train, test = _images(N_TRAIN, (28, 28), 0, seed), _images(N_TEST, (28, 28), 100, seed + 1)
    train_y, test_y = np.arange(N_TRAIN) % 10, (np.arange(N_TEST) * 3) % 10
    files = {
        "train-images-idx3-ubyte": _idx_images(train),
        "train-labels-idx1-ubyte": _idx_labels(train_y),
        "t10k-images-idx3-ubyte": _idx_images(test),
        "t10k-labels-idx1-ubyte": _idx_labels(test_y),
    }
    return files, (train, train_y, test, test_y)


def _write_idx(root, folder, seed=0):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    files, arrays = _idx_contents(seed)
    for name, content in files.items():
        (raw / name).write_bytes(content)
    return arrays


def _write_cifar(root):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    per_batch = 12
    arrays = []
    for index, name in enumerate(
        ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    ):
        images = _images(per_batch, (3, 32, 32), index * per_batch, seed=index)  # CHW, as CIFAR stores it
        labels = [(index + i) % 10 for i in range(per_batch)]
        entry = {
            "batch_label": name,
            "labels": labels,
            "data": images.reshape(per_batch, 3072),
            "filenames": [f"{name}_{i}.png" for i in range(per_batch)],
        }
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle, protocol=2)
        arrays.append((images, labels))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, handle, protocol=2)
    return arrays


@pytest.fixture
def no_md5(monkeypatch):
    """Let torchvision's CIFAR10 accept small fake files (it checks md5 sums of the real ones)."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def _first_pixels(x, data, scale=255.0):
    """Recover the identifying first pixel (channel 0) of normalized images."""
    raw = x.reshape(len(x), x.shape[1], -1)[:, 0, 0].double() * data.std[0] + data.mean[0]
    return torch.round(raw * scale).long()


def _check_normalized(x):
    channels = x.transpose(0, 1).reshape(x.shape[1], -1).double()
    assert torch.allclose(channels.mean(dim=1), torch.zeros(x.shape[1], dtype=torch.float64), atol=1e-5)
    assert torch.allclose(channels.std(dim=1, unbiased=False), torch.ones(x.shape[1], dtype=torch.float64), atol=1e-4)


# -- MNIST and Fashion-MNIST ----------------------------------------------------------
@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_idx_data_sets_load(tmp_path, name, folder):
    train, train_y, test, test_y = _write_idx(tmp_path, folder)
    data = load_dataset(name, root=tmp_path, validation=10, seed=0)
    assert data.name == name and data.num_classes == 10 and data.input_shape == (1, 28, 28)
    assert (len(data.train_x), len(data.val_x), len(data.test_x)) == (50, 10, N_TEST)
    for x in (data.train_x, data.val_x, data.test_x):
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
    for y in (data.train_y, data.val_y, data.test_y):
        assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) <= 9
    _check_normalized(data.train_x)
    # Validation and training split the training set: every example once, labels kept with images.
    ids = torch.cat([_first_pixels(data.train_x, data), _first_pixels(data.val_x, data)])
    assert sorted(ids.tolist()) == list(range(N_TRAIN))
    assert torch.equal(torch.cat([data.train_y, data.val_y]), torch.as_tensor(train_y)[ids])
    # The test set keeps its order and is normalized with the training statistics.
    expected = (torch.as_tensor(test, dtype=torch.float32) / 255 - data.mean[0]) / data.std[0]
    assert torch.allclose(data.test_x[:, 0], expected, atol=1e-5)
    assert torch.equal(data.test_y, torch.as_tensor(test_y))


def test_validation_split_is_deterministic(tmp_path):
    _write_idx(tmp_path, "MNIST")
    a = load_dataset("mnist", root=tmp_path, validation=15, seed=3)
    b = load_dataset("mnist", root=str(tmp_path), validation=15, seed=3)
    c = load_dataset("mnist", root=tmp_path, validation=15, seed=4)
    assert torch.equal(a.val_y, b.val_y) and torch.equal(a.val_x, b.val_x) and torch.equal(a.train_x, b.train_x)
    assert not torch.equal(_first_pixels(a.val_x, a), _first_pixels(c.val_x, c))


def test_validation_zero_and_too_large(tmp_path):
    _write_idx(tmp_path, "MNIST")
    data = load_dataset("mnist", root=tmp_path, validation=0)
    assert (len(data.train_x), len(data.val_x), len(data.val_y)) == (N_TRAIN, 0, 0)
    assert data.val_x.shape == (0, 1, 28, 28)
    with pytest.raises(ValueError, match="validation=60 must be smaller than the 60 training examples of mnist"):
        load_dataset("mnist", root=tmp_path, validation=N_TRAIN)


# -- CIFAR-10 -------------------------------------------------------------------------
def test_cifar10_loads(tmp_path, no_md5):
    arrays = _write_cifar(tmp_path)
    data = load_dataset("cifar10", root=tmp_path, validation=12, seed=1)
    assert data.num_classes == 10 and data.input_shape == (3, 32, 32)
    assert (len(data.train_x), len(data.val_x), len(data.test_x)) == (48, 12, 12)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert len(data.mean) == len(data.std) == 3
    _check_normalized(data.train_x)
    ids = torch.cat([_first_pixels(data.train_x, data), _first_pixels(data.val_x, data)])
    assert sorted(ids.tolist()) == list(range(60))
    all_labels = torch.tensor([label for _, labels in arrays[:5] for label in labels])
    assert torch.equal(torch.cat([data.train_y, data.val_y]), all_labels[ids])
    # Channels come out as stored (CHW), each normalized with its own statistics.
    test_images, test_labels = arrays[5]
    for channel in range(3):
        expected = (
            torch.as_tensor(test_images[:, channel], dtype=torch.float32) / 255 - data.mean[channel]
        ) / data.std[channel]
        assert torch.allclose(data.test_x[:, channel], expected, atol=1e-5)
    assert data.test_y.tolist() == test_labels


# -- missing data -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, folder", [("mnist", "MNIST/raw"), ("fashion-mnist", "FashionMNIST/raw"), ("cifar10", "cifar-10-batches-py")]
)
def test_missing_data_without_download_is_a_clear_error(tmp_path, name, folder, monkeypatch):
    monkeypatch.setattr(data_module, "DEBIAN_FASHION_MNIST", str(tmp_path / "no-debian-package"))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, root=tmp_path, download=False)
    message = str(info.value)
    assert f"data set {name} not found" in message
    assert str(tmp_path) in message and folder in message
    assert "download=True" in message and "--download" in message
    if name == "fashion-mnist":
        assert "dataset-fashion-mnist" in message and "prepare_fashion_mnist" in message
    assert not os.listdir(tmp_path)  # nothing written, nothing fetched


def test_fashion_mnist_comes_from_debians_package_when_installed(tmp_path, monkeypatch):
    files, (_, _, _, test_y) = _fake_debian(tmp_path / "debian")
    monkeypatch.setattr(data_module, "DEBIAN_FASHION_MNIST", str(tmp_path / "debian"))
    data = load_dataset("fashion-mnist", root=tmp_path / "data", validation=6)  # no download, no prepare call
    assert (len(data.train_x), len(data.test_x)) == (N_TRAIN - 6, N_TEST)
    assert data.test_y.tolist() == test_y.tolist()
    assert sorted(os.listdir(tmp_path / "data" / "FashionMNIST" / "raw")) == sorted(files)


def test_default_root_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_LOTTERY_DATA", str(tmp_path))
    assert data_module.default_root() == str(tmp_path)
    _write_idx(tmp_path, "MNIST")
    assert len(load_dataset("mnist", validation=5).train_x) == N_TRAIN - 5


# -- Fashion-MNIST from Debian's package ------------------------------------------------
def _fake_debian(folder):
    folder.mkdir()
    files, arrays = _idx_contents(seed=7)
    for name, content in files.items():
        with gzip.open(folder / (name + ".gz"), "wb") as handle:
            handle.write(content)
    return files, arrays


def test_prepare_fashion_mnist(tmp_path):
    files, (train, _, _, test_y) = _fake_debian(tmp_path / "debian")
    root = tmp_path / "data"
    raw = prepare_fashion_mnist(root, source=tmp_path / "debian")
    assert raw == os.path.join(str(root), "FashionMNIST", "raw")
    assert sorted(os.listdir(raw)) == sorted(files)
    for name, content in files.items():
        with open(os.path.join(raw, name), "rb") as handle:
            assert handle.read() == content
    # Idempotent: a second call leaves the unpacked files alone.
    stamps = {name: os.stat(os.path.join(raw, name)).st_mtime_ns for name in files}
    assert prepare_fashion_mnist(str(root), source=str(tmp_path / "debian")) == raw
    assert stamps == {name: os.stat(os.path.join(raw, name)).st_mtime_ns for name in files}
    # A damaged (truncated) file is unpacked again.
    with open(os.path.join(raw, "t10k-labels-idx1-ubyte"), "r+b") as handle:
        handle.truncate(10)
    prepare_fashion_mnist(root, source=tmp_path / "debian")
    with open(os.path.join(raw, "t10k-labels-idx1-ubyte"), "rb") as handle:
        assert handle.read() == files["t10k-labels-idx1-ubyte"]
    data = load_dataset("fashion-mnist", root=root, validation=6)
    assert (len(data.train_x), len(data.val_x), len(data.test_x)) == (N_TRAIN - 6, 6, N_TEST)
    assert data.test_y.tolist() == test_y.tolist()


def test_prepare_fashion_mnist_errors(tmp_path):
    source = tmp_path / "debian"
    source.mkdir()
    with pytest.raises(FileNotFoundError, match="lacks train-images-idx3-ubyte.gz.*dataset-fashion-mnist"):
        prepare_fashion_mnist(tmp_path / "data", source=source)
    for name in IDX_FILES:
        with gzip.open(source / name, "wb") as handle:
            handle.write(b"\x00\x00\x08\x01not an image file")
    with pytest.raises(ValueError, match="is not an IDX file"):
        prepare_fashion_mnist(tmp_path / "data", source=source)
    assert os.listdir(tmp_path / "data" / "FashionMNIST" / "raw") == []  # no partial file left
    with pytest.raises(TypeError, match="root must be a path"):
        prepare_fashion_mnist(None, source=source)


# -- MNIST-1D -----------------------------------------------------------------------------
def test_mnist1d_loads_offline_and_keeps_the_global_generators():
    data_module._mnist1d_arrays.cache_clear()
    np.random.seed(11)
    random.seed(11)
    data = load_dataset("mnist1d", root="/nonexistent", validation=400, seed=0)
    after_np, after_py = np.random.rand(), random.random()
    np.random.seed(11)
    random.seed(11)
    assert (after_np, after_py) == (np.random.rand(), random.random())
    assert data.input_shape == (40,) and data.num_classes == 10
    assert (len(data.train_x), len(data.val_x), len(data.test_x)) == (3600, 400, 1000)
    assert data.train_x.shape == (3600, 40) and data.train_x.dtype == torch.float32
    assert data.train_y.dtype == torch.int64 and set(data.train_y.tolist()) == set(range(10))
    assert len(data.mean) == len(data.std) == 1
    assert abs(float(data.train_x.mean())) < 1e-5 and abs(float(data.train_x.std(unbiased=False)) - 1) < 1e-4
    again = load_dataset("mnist1d", validation=400, seed=0)
    assert torch.equal(again.train_x, data.train_x) and torch.equal(again.val_y, data.val_y)
    whole = load_dataset("mnist1d", validation=0)
    assert (len(whole.train_x), len(whole.val_x), len(whole.test_x)) == (4000, 0, 1000)
    with pytest.raises(ValueError, match="validation=5000 must be smaller than the 4000 training examples"):
        load_dataset("mnist1d")


def test_mnist1d_missing_names_the_extra(monkeypatch):
    data_module._mnist1d_arrays.cache_clear()
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    try:
        with pytest.raises(ImportError, match=r"torch-lottery\[experiments\]"):
            load_dataset("mnist1d", validation=100)
    finally:
        data_module._mnist1d_arrays.cache_clear()


def test_torchvision_missing_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ImportError, match=r"torch-lottery\[vision\]"):
        load_dataset("mnist", root=tmp_path)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"name": "imagenet"}, ValueError, "not a known data set; known: mnist, fashion-mnist, cifar10, mnist1d"),
        ({"name": None}, TypeError, "name must be a str"),
        ({"root": 3}, TypeError, "root must be a path"),
        ({"download": "yes"}, TypeError, "download must be a bool"),
        ({"validation": -1}, ValueError, "validation=-1 must be >= 0"),
        ({"validation": 0.1}, TypeError, "validation must be an int"),
        ({"seed": "0"}, TypeError, "seed must be an int"),
    ],
)
def test_load_dataset_validation(tmp_path, kwargs, error, match):
    args = {"name": "mnist", "root": tmp_path, **kwargs}
    with pytest.raises(error, match=match):
        load_dataset(**args)


def test_datasets_constant():
    assert DATASETS == ("mnist", "fashion-mnist", "cifar10", "mnist1d")


# -- TensorData -----------------------------------------------------------------------------
def _tiny(n=5):
    x, y = torch.randn(n, 3), torch.arange(n)
    return TensorData(
        train_x=x,
        train_y=y,
        val_x=x[:0],
        val_y=y[:0],
        test_x=x[:2],
        test_y=y[:2],
        num_classes=5,
        input_shape=(3,),
        name="tiny",
    )


def test_tensor_data_to_is_a_copy_and_frozen():
    data = _tiny()
    moved = data.to("cpu")
    assert moved is not data and moved.device == torch.device("cpu")
    assert torch.equal(moved.train_x, data.train_x) and moved.name == "tiny" and moved.input_shape == (3,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.name = "other"
    assert "train=5, validation=0, test=2" in repr(data)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tensor_data_to_cuda():
    moved = _tiny().to("cuda")
    assert moved.train_x.is_cuda and moved.test_y.is_cuda
    xb, yb = next(iter(batches(moved.train_x, moved.train_y, 2, torch.Generator().manual_seed(0))))
    assert xb.is_cuda and yb.is_cuda


def test_tensor_data_checks_its_splits():
    data = _tiny()
    with pytest.raises(ValueError, match="train_x has 5 examples but train_y has 4"):
        dataclasses.replace(data, train_y=data.train_y[:4])
    with pytest.raises(ValueError, match="input_shape"):
        dataclasses.replace(data, input_shape=(4,))
    with pytest.raises(TypeError, match="must be tensors"):
        dataclasses.replace(data, test_x=[1, 2])


# -- batches ---------------------------------------------------------------------------------
def test_batches_cover_every_index_once_per_epoch():
    x = torch.arange(23.0).unsqueeze(1) * 10
    y = torch.arange(23)
    generator = torch.Generator().manual_seed(0)
    epochs = []
    for _ in range(3):
        got = list(batches(x, y, 5, generator))
        assert [len(yb) for _, yb in got] == [5, 5, 5, 5, 3]
        order = torch.cat([yb for _, yb in got])
        assert sorted(order.tolist()) == list(range(23))
        assert torch.equal(torch.cat([xb for xb, _ in got]).squeeze(1), order.float() * 10)  # x stays with y
        epochs.append(order)
    assert not torch.equal(epochs[0], epochs[1])  # each epoch draws a new order


def test_batches_are_reproducible():
    x, y = torch.randn(17, 2), torch.arange(17)
    first = [yb.tolist() for _, yb in batches(x, y, 4, torch.Generator().manual_seed(5))]
    second = [yb.tolist() for _, yb in batches(x, y, 4, torch.Generator().manual_seed(5))]
    assert first == second
    assert [len(b) for b in first] == [4, 4, 4, 4, 1]
    assert [len(yb) for _, yb in batches(x, y, 100)] == [17]  # no generator, one batch
    assert list(batches(x[:0], y[:0], 4)) == []


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((torch.zeros(3), torch.zeros(4), 2), ValueError, "x has 3 examples but y has 4"),
        (([1, 2], torch.zeros(2), 2), TypeError, "x and y must be tensors"),
        ((torch.zeros(3), torch.zeros(3), 0), ValueError, "batch_size=0 must be >= 1"),
        ((torch.zeros(3), torch.zeros(3), 2.0), TypeError, "batch_size must be an int"),
        ((torch.zeros(3), torch.zeros(3), 2, 7), TypeError, "generator must be a torch.Generator"),
    ],
)
def test_batches_validation(args, error, match):
    with pytest.raises(error, match=match):
        batches(*args)  # raised at the call, not at the first batch
