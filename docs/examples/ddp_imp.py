"""Iterative magnitude pruning under DistributedDataParallel, with your own training loop.

Launch one process per CPU core or GPU:

    torchrun --standalone --nproc_per_node=2 docs/examples/ddp_imp.py --checkpoint-dir runs/ddp-imp

Kill it at any point and run the same command again: it resumes after the last finished round.
"""

import argparse
import gc
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

import torch_lottery as tl


def run(args, device):
    rank, world = dist.get_rank(), dist.get_world_size()

    # The same toy data set on every rank (a fixed generator); the sampler splits it between ranks.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 20, generator=generator)
    y = (x @ torch.randn(20, 4, generator=generator)).argmax(1)
    train_set = TensorDataset(x[:3584], y[:3584])
    test_x, test_y = x[3584:].to(device), y[3584:].to(device)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 4))
    ddp = DDP(model.to(device), device_ids=[device.index] if device.type == "cuda" else None)

    def train(ddp_model, context):
        """One round of ordinary DDP training; find_ticket hands over the DDP wrapper."""
        sampler = DistributedSampler(train_set, shuffle=True, seed=context.seed)  # same seed on every rank
        loader = DataLoader(train_set, batch_size=64, sampler=sampler)
        optimizer = torch.optim.Adam(ddp_model.parameters(), lr=3e-3)  # the pruned model's parameters
        ddp_model.train()
        for epoch in range(args.epochs):
            sampler.set_epoch(epoch)
            for inputs, targets in loader:
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(ddp_model(inputs.to(device)), targets.to(device))
                loss.backward()  # DDP averages the gradients of the ranks
                optimizer.step()
                context.step()  # counts iterations for late resetting
        return {"train_loss": loss.item()}  # rank 0's value goes to the history

    @torch.no_grad()
    def evaluate(ddp_model):
        """Accuracy over the whole test set: each rank scores its share, all_reduce adds them up."""
        ddp_model.eval()
        inputs, targets = test_x[rank::world], test_y[rank::world]
        counts = torch.tensor(
            [(ddp_model.module(inputs).argmax(1) == targets).sum().item(), len(targets)], device=device
        )
        dist.all_reduce(counts)
        return {"accuracy": counts[0].item() / counts[1].item()}

    ticket = tl.find_ticket(
        ddp,
        train,
        evaluate,
        strategy="imp",
        strategy_options={"rate": 0.2, "scope": "global", "rewind_iteration": 20},
        rounds=args.rounds,
        checkpoint_dir=args.checkpoint_dir,  # rank 0 writes; every rank resumes from it
        seed=0,
    )
    tl.distributed.assert_masks_agree(ddp, weights=True)  # raises on every rank if any rank differs
    if rank == 0:
        for record in ticket.history:
            print(
                f"round {record['round']}: {record['remaining']:.3f} of the weights, "
                f"accuracy {record['metrics']['accuracy']:.3f}"
            )
        print(f"masks and weights agree on {world} ranks; ticket in {args.checkpoint_dir}/ticket.pt")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint-dir", default="runs/ddp-imp")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    # One GPU per process with NCCL if there are enough of them, else gloo on the CPU.
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = torch.cuda.is_available() and torch.cuda.device_count() > local_rank
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        run(args, device)
    finally:
        gc.collect()  # free the DDP wrapper first: gloo may abort at exit if it outlives the group
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
