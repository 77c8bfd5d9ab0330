"""The "sum of two inputs" experiment: IMP with late resetting finds the 4-weight ticket.

A 2-200-1 linear network without bias learns ``y = x0 + x1`` on [-1, 1] and is
tested on [1, 2]. Local IMP prunes 25% of each layer's surviving weights per
round (10 epochs of training per round) until 2 weights per layer remain,
rewinding the survivors to their values after the first training iteration.
The winning ticket is compared with the random-reinit ticket, the randomly
permuted ticket (Morcos et al. 2019) and the full model.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, cast

import torch
from torch import nn

from ..driver.find import find_ticket
from ..pruning.fixed import fixed_mask
from ..pruning.permutation import random_permutation
from ..pruning.utils import prunable_parameters
from ..rewinding.baselines import random_reinit

HIDDEN = 200
EPOCHS = 10
RATE = 0.25
KEEP = 2
SAMPLES = 1000
BATCH = 50
LR = 1e-2


def make_model() -> nn.Sequential:
    """Return the 2-200-1 linear network without bias."""
    return nn.Sequential(nn.Linear(2, HIDDEN, bias=False), nn.Linear(HIDDEN, 1, bias=False))


def make_data(low: float, high: float, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``n`` input pairs drawn uniformly from [low, high] and their sums."""
    x = torch.rand(n, 2, generator=generator) * (high - low) + low
    return x, x.sum(dim=1, keepdim=True)


def _trainer(x: torch.Tensor, y: torch.Tensor):
    def train(model: nn.Module, context=None) -> dict[str, float]:
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        for _ in range(EPOCHS):
            order = torch.randperm(len(x))
            for start in range(0, len(x), BATCH):
                idx = order[start : start + BATCH]
                optimizer.zero_grad()
                loss = nn.functional.mse_loss(model(x[idx]), y[idx])
                loss.backward()
                optimizer.step()
                if context is not None:
                    context.step()
        return {"train_mse": loss.item()}

    return train


@torch.no_grad()
def rmse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Return the root mean squared error of ``model`` on (x, y)."""
    return float(nn.functional.mse_loss(model(x), y).sqrt())


def surviving(model: nn.Module) -> list[list[dict[str, Any]]]:
    """Return, per layer, the index and value of every non-zero effective weight."""
    layers = []
    for layer in cast(Iterable[nn.Linear], model):  # an nn.Sequential of nn.Linear layers
        weight = layer.weight.detach()
        layers.append([{"index": idx.tolist(), "value": float(weight[tuple(idx)])} for idx in torch.nonzero(weight)])
    return layers


def run(seed: int = 0) -> dict[str, Any]:
    """Run the experiment and the three comparisons; return the figures (JSON-serializable).

    Examples:
        >>> result = run(seed=0)
        >>> result["weights_remaining"], result["rmse"]["winning_ticket"] < 1e-2
        (4, True)
    """
    start = time.perf_counter()
    data_gen = torch.Generator().manual_seed(seed)
    x_train, y_train = make_data(-1.0, 1.0, SAMPLES, data_gen)
    x_test, y_test = make_data(1.0, 2.0, SAMPLES, data_gen)
    train = _trainer(x_train, y_train)

    torch.manual_seed(seed)
    model = make_model()
    full = make_model()
    full.load_state_dict(model.state_dict())
    total = sum(p.numel() for p in model.parameters())
    ticket = find_ticket(
        model,
        train,
        lambda m: {"test_rmse": rmse(m, x_test, y_test)},
        strategy="imp",
        strategy_options={"rate": RATE, "scope": "local", "min_remaining": KEEP, "rewind_iteration": 1},
        target_remaining=KEEP * 2 / total,
        seed=seed,
    )

    def control(permute: bool) -> nn.Module:
        other = make_model()
        gen = torch.Generator().manual_seed(seed + (2 if permute else 1))
        for (module, name), qualified in zip(prunable_parameters(other), ticket.masks, strict=True):
            fixed_mask(module, name, ticket.masks[qualified])
            if permute:
                random_permutation(module, name, generator=gen)
        random_reinit(other, generator=gen)
        torch.manual_seed(seed + 10)
        train(other)
        return other

    reinit = control(permute=False)
    permuted = control(permute=True)
    torch.manual_seed(seed + 10)
    train(full)
    return {
        "seed": seed,
        "rounds": len(ticket.history) - 1,
        "weights_remaining": ticket.remaining_weights,
        "weights_total": ticket.total_weights,
        "winning_ticket": surviving(model),
        "random_reinit_ticket": surviving(reinit),
        "permuted_ticket": surviving(permuted),
        "rmse": {
            "winning_ticket": rmse(model, x_test, y_test),
            "random_reinit": rmse(reinit, x_test, y_test),
            "random_permutation": rmse(permuted, x_test, y_test),
            "full_model": rmse(full, x_test, y_test),
        },
        "history": [
            {"round": r["round"], "remaining_weights": r["remaining_weights"], "test_rmse": r["metrics"]["test_rmse"]}
            for r in ticket.history
        ],
        "seconds": round(time.perf_counter() - start, 2),
    }


def format_result(result: dict[str, Any]) -> str:
    """Return the text report of :func:`run`'s result."""
    lines = [
        f"{result['rounds']} rounds of 25% pruning per layer: {result['weights_remaining']} of "
        f"{result['weights_total']} weights remain"
    ]
    for title, key in (
        ("winning ticket", "winning_ticket"),
        ("random-reinit ticket", "random_reinit_ticket"),
        ("permuted ticket", "permuted_ticket"),
    ):
        lines.append(f"\n{title}:")
        for number, layer in enumerate(result[key]):
            lines.append(f"  layer {number}")
            lines.extend(f"    {entry['index']}: {entry['value']:+.6f}" for entry in layer)
    lines.append("\ntest RMSE on [1, 2]:")
    lines.extend(f"  {name:<20} {value:.3e}" for name, value in result["rmse"].items())
    lines.append(f"\n({result['seconds']} s)")
    return "\n".join(lines)
