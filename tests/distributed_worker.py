"""One rank of the DDP tests in test_distributed.py (run as a script, one process per rank).

    python distributed_worker.py MODE OUT_DIR CKPT_DIR

with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT in the environment (gloo, CPU).
Each rank writes what it saw to OUT_DIR/rank<r>.pt (plain tensors and strings); the
tests compare the ranks' files. MODE:

* ``main``: IMP through find_ticket on a DDP-wrapped model with a real DDP training
  loop (each rank its own shard of every batch) and checkpoints; then the DDP checks
  after pruning; then the ``random`` strategy with a different seed and RNG state per
  rank; then the helpers for users pruning without the driver.
* ``killed``: the same IMP run, killed (SIGKILL, every rank) in the middle of round 2.
* ``resume``: the same IMP run started again in the killed run's checkpoint directory.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import torch_lottery as tl
from torch_lottery.distributed import (
    RankDisagreementError,
    assert_masks_agree,
    broadcast_masks,
    broadcast_weights,
    masks_agree,
)
from torch_lottery.driver._sync import RunSync

MODE, OUT, CKPT = sys.argv[1], sys.argv[2], sys.argv[3]
RANK, WORLD = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
KILL_ROUND, KILL_STEP = 2, 3
STEPS, BATCH = 8, 16
torch.set_num_threads(1)

writes: list[str] = []  # files this rank opened for writing (or renamed, or torch.saved) in CKPT


def _inside(path) -> bool:
    try:
        return os.path.abspath(os.fsdecode(path)).startswith(os.path.abspath(CKPT))
    except TypeError:
        return False  # a file descriptor


def _audit(event, args):
    if event == "open" and _inside(args[0]):
        mode, flags = args[1], args[2]
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        ):
            writes.append(f"open {args[0]}")
    elif event in ("os.rename", "os.remove", "os.truncate") and any(_inside(a) for a in args[:2] if a is not None):
        writes.append(f"{event} {args[0]} -> {args[1]}")


_torch_save = torch.save


def _recording_save(obj, f, *args, **kwargs):
    if isinstance(f, (str, os.PathLike)) and _inside(f):
        writes.append(f"torch.save {f}")
    return _torch_save(obj, f, *args, **kwargs)


sys.addaudithook(_audit)
torch.save = _recording_save


# --------------------------------------------------------------------------- a real DDP loop
teacher = torch.randn(8, 4, generator=torch.Generator().manual_seed(123))


def shard(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's share of a global batch drawn from the (driver-seeded) global RNG."""
    x = torch.randn(n * WORLD, 8)
    y = (x @ teacher).argmax(1)
    return x[RANK * n : (RANK + 1) * n], y[RANK * n : (RANK + 1) * n]


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))


def train(model, context):
    assert isinstance(model, DDP), type(model)  # the driver hands the wrapper to the loop
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for step in range(STEPS):
        if MODE == "killed" and context.round_index == KILL_ROUND and step == KILL_STEP:
            os.kill(os.getpid(), signal.SIGKILL)
        x, y = shard(BATCH)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        context.step()
    return {"loss": loss.item()}  # this rank's loss: differs between ranks


@torch.no_grad()
def evaluate(model):
    model.eval()
    x, y = shard(64)
    return {"accuracy": (model(x).argmax(1) == y).float().mean().item()}


class MaskLog:
    """Observer: the masks installed each round on this rank."""

    def __init__(self):
        self.masks = []

    @tl.hookimpl
    def torch_lottery_after_prune(self, round_index, masks, remaining):
        self.masks.append({k: v.clone() for k, v in masks.items()})


def plain(state: dict) -> dict:
    return {k: v.detach().clone() for k, v in state.items()}


def imp_run(out: dict) -> None:
    model = make_model()
    ddp = DDP(model)
    before = {id(p) for p in model.parameters()}
    first = model[0].weight
    log = MaskLog()
    ticket = tl.find_ticket(
        ddp,
        train,
        evaluate,
        strategy="imp",
        strategy_options={"rate": 0.3, "rewind_iteration": 2},
        rounds=3,
        checkpoint_dir=CKPT,
        seed=0,
        plugins=[log],
    )
    out["ticket"] = ticket.state_dict()
    out["final"] = plain(model.state_dict())
    out["installed"] = log.masks
    out["writes"] = list(writes)
    # The ticket file is complete the moment find_ticket returns, on every rank.
    out["ticket_file_equal"] = all(
        torch.equal(tl.Ticket.load(os.path.join(CKPT, "ticket.pt")).masks[k], ticket.masks[k]) for k in ticket.masks
    )
    out["same_parameters"] = {id(p) for p in model.parameters()} == before and model[0].weight_orig is first

    # DDP still syncs gradients after pruning, and the forward uses the masked weight.
    x, y = shard(BATCH)
    model.train()
    ddp.zero_grad()
    with ddp.no_sync():
        nn.functional.cross_entropy(ddp(x), y).backward()
    local = model[0].weight_orig.grad.clone()
    ddp.zero_grad()
    nn.functional.cross_entropy(ddp(x), y).backward()
    synced = model[0].weight_orig.grad.clone()
    expected = local.clone()
    dist.all_reduce(expected)
    expected /= WORLD
    out["grad_local"], out["grad_synced"], out["grad_expected"] = local, synced, expected
    out["grad_pruned_zero"] = bool((synced[model[0].weight_mask == 0] == 0).all())
    model.eval()
    with torch.no_grad():
        masked = model[0].weight_orig * model[0].weight_mask
        out["forward_uses_mask"] = torch.equal(model[0](x), nn.functional.linear(x, masked, model[0].bias))

    # The ticket applies to a fresh DDP-wrapped model on every rank (names of its module).
    fresh = DDP(make_model())
    out["apply_masked"] = tl.Ticket.load(os.path.join(CKPT, "ticket.pt")).apply(fresh).masked
    out["apply_mask"] = fresh.module[0].weight_mask.clone()


class RecordingRandom(tl.strategies.RandomPruning):
    """The ``random`` strategy, remembering what it proposed on this rank (before the broadcast)."""

    def __init__(self, **options):
        super().__init__(**options)
        self.proposed = []

    def prune(self, context):
        masks = super().prune(context)
        self.proposed.append({k: v.clone() for k, v in masks.items()})
        return masks


def random_run(out: dict) -> None:
    torch.manual_seed(1000 + 17 * RANK)  # a deliberately different RNG state on each rank
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
    ddp = DDP(model)  # copies rank 0's initialization to every rank
    strategy = RecordingRandom(rate=0.4, scope="global")
    log = MaskLog()
    ticket = tl.find_ticket(ddp, train, strategy=strategy, rounds=2, seed=RANK, plugins=[log])
    out["random_ticket"] = ticket.state_dict()
    out["random_proposed"] = strategy.proposed
    out["random_installed"] = log.masks
    out["random_final"] = plain(model.state_dict())


class RewoundLog:
    """Observer: the model's parameters and buffers right after each rewind on this rank."""

    def __init__(self):
        self.states = []

    @tl.hookimpl
    def torch_lottery_after_rewind(self, round_index, model, rewind_point):
        self.states.append(plain(model.state_dict()))


def train_alone(model, context):
    """No DDP: each rank trains its own copy on its own shard (nothing keeps the ranks equal)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(STEPS):
        x, y = shard(BATCH)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        context.step()


def unwrapped_run(out: dict) -> None:
    torch.manual_seed(300 + RANK)  # a different initialization on each rank, and no DDP to copy rank 0's
    model = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))
    out["alone_init"] = plain(model.state_dict())
    log, rewound = MaskLog(), RewoundLog()
    ticket = tl.find_ticket(
        model,
        train_alone,
        strategy="imp",
        strategy_options={"rate": 0.5},
        rounds=2,
        optimizer=None,
        plugins=[log, rewound],
    )
    out["alone_ticket"] = ticket.state_dict()
    out["alone_installed"] = log.masks
    out["alone_rewound"] = rewound.states
    out["alone_final"] = plain(model.state_dict())


def helpers(out: dict) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    init = tl.RewindPoint.capture(net)
    for module, name in tl.prunable_parameters(net):
        tl.lottery_magnitude(module, name, amount=0.5, rewind_point=init)
    out["magnitude_agree"] = masks_agree(net, weights=True)

    torch.manual_seed(50 + RANK)
    tl.random_permutation(net[2], "weight")  # global RNG: differs between ranks
    out["permuted_agree"] = masks_agree(net)
    try:
        assert_masks_agree(net)
        out["permuted_error"] = ""
    except RankDisagreementError as error:
        out["permuted_error"] = str(error)
    broadcast_masks(net)
    out["broadcast_agree"] = masks_agree(net)
    out["broadcast_refreshed"] = torch.equal(net[2].weight, net[2].weight_orig * net[2].weight_mask)
    out["mask_after_broadcast"] = net[2].weight_mask.clone()

    tl.random_permutation(net[0], "weight", seed=7)  # a seed shared by every rank
    out["seeded_permutation_agree"] = masks_agree([(net[0], "weight")])

    tl.random_reinit(net)  # no seed: differs between ranks
    out["reinit_agree"] = masks_agree(net, weights=True)
    try:
        assert_masks_agree(net, weights=True)
        out["reinit_error"] = ""
    except RankDisagreementError as error:
        out["reinit_error"] = str(error)
    broadcast_weights(net)
    out["reinit_broadcast_agree"] = masks_agree(net, weights=True)
    tl.random_reinit(net, seed=3)
    tl.sign_preserving_reinit(net, init, seed=4)
    out["seeded_reinit_agree"] = masks_agree(net, weights=True)

    # Different pruned tensors on the ranks: refused on every rank, nothing written.
    torch.manual_seed(80 + RANK)
    tl.random_permutation(net[2], "weight")
    mine = net[2].weight_mask.clone()
    if RANK == 1:
        tl.lottery_magnitude(net[0], "bias", amount=0.5)
    try:
        broadcast_masks(net)
        out["layout_error"] = ""
    except RankDisagreementError as error:
        out["layout_error"] = str(error)
    out["layout_untouched"] = torch.equal(net[2].weight_mask, mine)
    if RANK == 1:
        torch.nn.utils.prune.remove(net[0], "bias")

    # A failure on one rank is raised on every rank (no rank left waiting).
    sync = RunSync()

    def fails_on_rank_1():
        if RANK == 1:
            raise ValueError("rank 1 cannot read its file")
        return "ok"

    try:
        sync.together(fails_on_rank_1)
        out["together_error"] = ""
    except (ValueError, RankDisagreementError) as error:
        out["together_error"] = f"{type(error).__name__}: {error}"
    broadcast_masks(net)  # the ranks still run their collectives in step
    out["still_in_step"] = masks_agree(net)


def main() -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    out: dict = {"rank": RANK}
    try:
        imp_run(out)
        if MODE == "main":
            writes.clear()
            random_run(out)
            unwrapped_run(out)
            helpers(out)
        torch.save = _torch_save
        torch.save(out, os.path.join(OUT, f"rank{RANK}.pt"))
    finally:
        gc.collect()  # DDP wrappers go before the group (gloo may abort at exit otherwise)
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
