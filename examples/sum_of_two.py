"""Find the lottery ticket of "sum of two inputs" with torch-lottery's pruning API.

The reference experiment of the docs: a 2-200-1 linear network without bias
learns y = x0 + x1 on [-1, 1] and is tested on [1, 2] (outside the training
range). Iterative magnitude pruning with late resetting (Frankle et al. 2019)
prunes 25% of the surviving weights of each layer per round (local pruning, so
the output layer is never emptied), trains 10 epochs per round and rewinds the
survivors to their values after the first training iteration, until 2 weights
per layer remain. The ticket is then compared with the random-reinit ticket
(same mask, fresh init), the randomly permuted ticket (Morcos et al. 2019:
same per-layer sparsity, shuffled mask, fresh init) and the full model.

Run:  python examples/sum_of_two.py [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

import torch_lottery as tl

HIDDEN = 200
EPOCHS = 10
RATE = 0.25
KEEP = 2  # weights left per layer at the end
SAMPLES = 1000
BATCH = 50
LR = 1e-2


def make_model() -> nn.Sequential:
    """Return the 2-200-1 linear network without bias."""
    return nn.Sequential(nn.Linear(2, HIDDEN, bias=False), nn.Linear(HIDDEN, 1, bias=False))


def data(low: float, high: float, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``n`` input pairs drawn uniformly from [low, high] and their sums."""
    x = torch.rand(n, 2, generator=generator) * (high - low) + low
    return x, x.sum(dim=1, keepdim=True)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
          on_step=None) -> None:
    """Train ``model`` for EPOCHS epochs of minibatch Adam on (x, y)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    step = 0
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), BATCH):
            idx = order[start:start + BATCH]
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            step += 1
            if on_step is not None:
                on_step(step)


@torch.no_grad()
def rmse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Return the root mean squared error of ``model`` on (x, y)."""
    return float(nn.functional.mse_loss(model(x), y).sqrt())


def surviving(model: nn.Module) -> list[list[tuple[list[int], float]]]:
    """Return, per layer, the indices and values of the non-zero effective weights."""
    layers = []
    for layer in model:
        weight = layer.weight.detach()
        layers.append([(idx.tolist(), float(weight[tuple(idx)])) for idx in torch.nonzero(weight)])
    return layers


def find_ticket(seed: int) -> dict:
    """Run IMP with late resetting and the three controls; return the figures."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x_train, y_train = data(-1.0, 1.0, SAMPLES, gen)
    x_test, y_test = data(1.0, 2.0, SAMPLES, gen)

    model = make_model()
    full = make_model()
    full.load_state_dict(model.state_dict())
    params = tl.prunable_parameters(model)

    # Round 0 trains the dense model; the rewind point is taken after its first iteration.
    rewind = {}

    def capture(step: int) -> None:
        if step == 1:
            rewind["point"] = tl.RewindPoint.capture(model, iteration=1)

    train(model, x_train, y_train, gen, on_step=capture)
    point = rewind["point"]
    rounds = 0
    while any(int(tl.get_mask(m, n).sum()) > KEEP for m, n in params):
        for module, name in params:
            alive = int(tl.get_mask(module, name).sum())
            count = min(round(RATE * alive), alive - KEEP)
            # Prune the smallest trained weights of this layer and rewind the survivors.
            tl.lottery_magnitude(module, name, amount=count, rewind_point=point)
        rounds += 1
        train(model, x_train, y_train, gen)
    ticket_rmse = rmse(model, x_test, y_test)

    def control(make) -> float:
        other = make_model()
        for (m, n), (src, _) in zip(tl.prunable_parameters(other), params):
            torch.nn.utils.prune.custom_from_mask(m, n, tl.get_mask(src, n))
        make(other)
        train(other, x_train, y_train, gen)
        return rmse(other, x_test, y_test), other

    reinit_rmse, reinit = control(lambda net: tl.random_reinit(net, generator=gen))

    def permuted(net: nn.Module) -> None:
        for m, n in tl.prunable_parameters(net):
            tl.random_permutation(m, n, generator=gen)
        tl.random_reinit(net, generator=gen)

    permuted_rmse, permuted_net = control(permuted)
    train(full, x_train, y_train, gen)
    return {
        "seed": seed,
        "rounds": rounds,
        "weights_remaining": sum(int(tl.get_mask(m, n).sum()) for m, n in params),
        "weights_total": sum(tl.get_mask(m, n).numel() for m, n in params),
        "ticket": surviving(model),
        "random_reinit_ticket": surviving(reinit),
        "permuted_ticket": surviving(permuted_net),
        "rmse": {
            "winning_ticket": ticket_rmse,
            "random_reinit": reinit_rmse,
            "random_permutation": permuted_rmse,
            "full_model": rmse(full, x_test, y_test),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    start = time.perf_counter()
    result = find_ticket(args.seed)
    result["seconds"] = round(time.perf_counter() - start, 2)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['rounds']} rounds of 25% pruning: {result['weights_remaining']} of "
          f"{result['weights_total']} weights remain")
    for title, key in (("winning ticket", "ticket"), ("random-reinit ticket", "random_reinit_ticket"),
                       ("permuted ticket", "permuted_ticket")):
        print(f"\n{title}:")
        for number, layer in enumerate(result[key]):
            print(f"  layer {number}")
            for index, value in layer:
                print(f"    {index}: {value:+.6f}")
    print("\ntest RMSE on [1, 2]:")
    for name, value in result["rmse"].items():
        print(f"  {name:<20} {value:.3e}")
    print(f"\n({result['seconds']} s)")


if __name__ == "__main__":
    main()
