"""Fixtures of the experiment tests: a small MNIST written as real IDX files.

The files follow test_data.py's approach: uncompressed IDX files where
torchvision's ``MNIST`` class reads them (``<root>/MNIST/raw/...``), so the
whole torchvision loading path runs without a network.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

FAKE_MNIST_TRAIN, FAKE_MNIST_TEST = 60, 20


def _idx_images(images: np.ndarray) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">iiii", 2051, n, rows, cols) + images.tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">ii", 2049, len(labels)) + np.asarray(labels, dtype=np.uint8).tobytes()


def write_fake_mnist(root, folder: str = "MNIST", seed: int = 0) -> None:
    """Write a 60/20-image MNIST-format data set under ``root/folder/raw``."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    train = rng.integers(0, 256, size=(FAKE_MNIST_TRAIN, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, size=(FAKE_MNIST_TEST, 28, 28), dtype=np.uint8)
    files = {
        "train-images-idx3-ubyte": _idx_images(train),
        "train-labels-idx1-ubyte": _idx_labels(np.arange(FAKE_MNIST_TRAIN) % 10),
        "t10k-images-idx3-ubyte": _idx_images(test),
        "t10k-labels-idx1-ubyte": _idx_labels((np.arange(FAKE_MNIST_TEST) * 3) % 10),
    }
    for name, content in files.items():
        (raw / name).write_bytes(content)


@pytest.fixture
def fake_mnist_root(tmp_path):
    """A data root holding a small fake MNIST (60 training, 20 test images)."""
    root = tmp_path / "data"
    write_fake_mnist(root)
    return root
