"""The runner's data stay on the target device: checked on PyTorch's ``meta`` device.

There is no GPU here, so the runner's training path (``TensorData``,
``batches``, ``Trainer``) runs with model and data on ``meta`` (shapes only, no
storage) under a dispatch mode that answers every read of a tensor's value on
the host (``.item()``, ``float(t)``) and logs it, and logs every copy between
devices. On a GPU the same code does the same operations, so the log shows what
crosses the bus in an epoch: the shuffled index once per epoch (host to
device), a fixed number of one-element read-backs per epoch (the loss for the
progress bar and the results, the evaluation sums), and never a data tensor.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from torch_lottery.experiments.data import TensorData, batches
from torch_lottery.experiments.models import build_model
from torch_lottery.experiments.runner import Setup, Trainer


class DeviceLog(TorchDispatchMode):
    """Log host read-backs and cross-device copies; answer read-backs with 1 (meta holds no values)."""

    def __init__(self):
        super().__init__()
        self.readbacks = []  # (device type, numel)
        self.copies = []  # (from device type, to device type, numel)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default:
            self.readbacks.append((args[0].device.type, args[0].numel()))
            return 1
        out = func(*args, **kwargs)
        if func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            source = args[1] if func is torch.ops.aten.copy_.default else args[0]
            if isinstance(source, torch.Tensor) and source.device != out.device:
                self.copies.append((source.device.type, out.device.type, source.numel()))
        return out


def meta_data(n_train=96, n_val=16, n_test=24):
    with torch.device("meta"):
        x = torch.empty(n_train + n_val + n_test, 1, 28, 28)
        y = torch.zeros(n_train + n_val + n_test, dtype=torch.int64)
    cut = (n_train, n_train + n_val)
    return TensorData(
        train_x=x[: cut[0]],
        train_y=y[: cut[0]],
        val_x=x[cut[0] : cut[1]],
        val_y=y[cut[0] : cut[1]],
        test_x=x[cut[1] :],
        test_y=y[cut[1] :],
        num_classes=10,
        input_shape=(1, 28, 28),
        name="meta",
    )


def run_epochs(batch_size, epochs=2):
    data = meta_data()
    with torch.device("meta"):
        model = build_model("lenet300100", (1, 28, 28), 10)
    setup = Setup(
        epochs=epochs,
        batch_size=batch_size,
        optimizer="adam",
        lr=1e-3,
        momentum=0.9,
        weight_decay=0.0,
        strategy_options={},
    )
    trainer = Trainer(data, setup, evals_per_epoch=1, progress=False)
    log = DeviceLog()
    with log:
        result = trainer.train(model)
        trainer.evaluate(model)
    assert result["iterations"] == epochs * -(-len(data.train_x) // batch_size)
    assert {p.device.type for p in model.parameters()} == {"meta"}
    return data, log


def test_an_epoch_moves_only_the_shuffled_index_to_the_device():
    data, log = run_epochs(batch_size=16, epochs=2)
    # host to device: the epoch's order, once per epoch; device to host: nothing but scalars
    assert Counter(log.copies) == Counter({("cpu", "meta", len(data.train_x)): 2})
    assert all(numel == 1 for _, numel in log.readbacks)


def test_device_read_backs_do_not_grow_with_the_number_of_batches():
    _, few = run_epochs(batch_size=48)  # 2 batches per epoch
    _, many = run_epochs(batch_size=8)  # 12 batches per epoch
    on_device = [sum(1 for device, _ in log.readbacks if device == "meta") for log in (few, many)]
    assert on_device[0] == on_device[1] > 0  # no per-step synchronization with the device


def test_batches_stay_on_the_data_device():
    data = meta_data()
    log = DeviceLog()
    with log:
        got = list(batches(data.train_x, data.train_y, 40, torch.Generator().manual_seed(0)))
    assert [len(xb) for xb, _ in got] == [40, 40, 16]
    assert {(xb.device.type, yb.device.type) for xb, yb in got} == {("meta", "meta")}
    assert log.copies == [("cpu", "meta", len(data.train_x))]
    assert log.readbacks == []
