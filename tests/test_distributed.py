"""DistributedDataParallel for real: 2 processes, gloo, CPU (distributed_worker.py is one rank).

Covers IMP through find_ticket on a DDP-wrapped model with a real DDP loop (masks, rewind
values, final weights and history identical on both ranks; DDP still syncs gradients after
pruning; the forward uses the masked weight), the ``random`` strategy with a different seed
and RNG state per rank, checkpoints written by rank 0 only, a run killed on every rank and
resumed under DDP, the helpers for users pruning without the driver, and the torchrun example
of docs/distributed.md. Plus the helpers' argument checks in this process (no process group).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import torch_lottery as tl
from torch_lottery.distributed import (
    RankDisagreementError,
    assert_masks_agree,
    broadcast_masks,
    broadcast_weights,
    is_active,
    masks_agree,
    unwrap,
)

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")
EXAMPLE = ROOT / "docs" / "examples" / "ddp_imp.py"
WORLD = 2
TIMEOUT = 180  # seconds for a whole launch: a hang fails the test instead of blocking CI


# --------------------------------------------------------------------------- launching ranks
def _free_ports(n: int) -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra})
    return env


def _launch(mode: str, out: Path, ckpt: Path, port: int) -> list[tuple[subprocess.Popen, Path]]:
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for rank in range(WORLD):
        log = out / f"rank{rank}.log"
        env = _env(
            RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
        )
        with open(log, "w") as handle:
            procs.append(
                (
                    subprocess.Popen(
                        [sys.executable, str(WORKER), mode, str(out), str(ckpt)],
                        env=env,
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                    ),
                    log,
                )
            )
    return procs


def _wait(procs: list[tuple[subprocess.Popen, Path]]) -> list[int]:
    codes = []
    try:
        for proc, _ in procs:
            codes.append(proc.wait(timeout=TIMEOUT))
    except subprocess.TimeoutExpired:
        for proc, _ in procs:
            proc.kill()
            proc.wait()
        logs = "\n".join(log.read_text()[-2000:] for _, log in procs)
        pytest.fail(f"a DDP launch hung for more than {TIMEOUT} s:\n{logs}")
    return codes


def _results(out: Path, procs, codes) -> list[dict]:
    if any(codes):
        logs = "\n".join(
            f"--- rank {r} (exit {c})\n{log.read_text()[-3000:]}"
            for r, ((_, log), c) in enumerate(zip(procs, codes, strict=True))
        )
        pytest.fail(f"a rank failed:\n{logs}")
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    """Run the main and the killed launches side by side; resume the killed one while main still runs."""
    root = tmp_path_factory.mktemp("ddp")
    main_port, killed_port, resume_port = _free_ports(3)
    main = _launch("main", root / "main", root / "main-ckpt", main_port)
    killed = _launch("killed", root / "killed", root / "killed-ckpt", killed_port)
    killed_codes = _wait(killed)
    killed_files = sorted(os.listdir(root / "killed-ckpt"))
    resumed = _launch("resume", root / "resumed", root / "killed-ckpt", resume_port)
    main_results = _results(root / "main", main, _wait(main))
    resumed_results = _results(root / "resumed", resumed, _wait(resumed))
    return {
        "main": main_results,
        "resumed": resumed_results,
        "killed_codes": killed_codes,
        "killed_files": killed_files,
        "main_files": sorted(os.listdir(root / "main-ckpt")),
    }


def assert_same(a, b, where: str = "") -> None:
    """Bit-identical nested dicts/lists of tensors, numbers and strings."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _strip(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


# --------------------------------------------------------------------------- IMP under DDP
@pytest.mark.slow
def test_imp_under_ddp_gives_identical_masks_rewind_values_weights_and_history(ddp):
    r0, r1 = ddp["main"]
    assert_same(r0["ticket"]["masks"], r1["ticket"]["masks"], "masks")
    assert_same(r0["ticket"]["rewind"], r1["ticket"]["rewind"], "rewind")
    assert_same(r0["installed"], r1["installed"], "masks installed each round")
    assert_same(r0["final"], r1["final"], "final weights and buffers")  # trained after the last prune
    assert r0["ticket"]["history"] == r1["ticket"]["history"]  # rank 0's records, seconds included
    assert r0["ticket"]["config"] == r1["ticket"]["config"]
    remaining = [h["remaining"] for h in r0["ticket"]["history"]]
    assert len(remaining) == 4 and remaining[0] == 1.0 and remaining[-1] == pytest.approx(0.7**3, abs=0.01)
    assert r0["ticket"]["rewind"]["iteration"] == 2
    # Each rank trains on its own shard, so its own metrics differ: the history is rank 0's.
    assert r0["grad_local"].shape == r1["grad_local"].shape
    assert not torch.equal(r0["grad_local"], r1["grad_local"])


@pytest.mark.slow
def test_ddp_keeps_syncing_gradients_after_pruning_and_the_forward_uses_the_mask(ddp):
    for r in ddp["main"]:
        assert r["same_parameters"]  # pruning moved the very Parameter objects DDP registered
        assert r["grad_pruned_zero"]
        assert r["forward_uses_mask"]
        torch.testing.assert_close(r["grad_synced"], r["grad_expected"])  # the mean of the ranks' gradients
    r0, r1 = ddp["main"]
    assert torch.equal(r0["grad_synced"], r1["grad_synced"])


@pytest.mark.slow
def test_only_rank_0_writes_checkpoints_and_the_ticket(ddp):
    r0, r1 = ddp["main"]
    assert r1["writes"] == []
    written = "\n".join(r0["writes"])
    for name in ("round-0000.pt", "round-0003.pt", "ticket.pt"):
        assert name in written
    assert ddp["main_files"] == ["round-0000.pt", "round-0001.pt", "round-0002.pt", "round-0003.pt", "ticket.pt"]
    # The ticket file is complete when find_ticket returns, on every rank (a barrier follows the write).
    assert r0["ticket_file_equal"] and r1["ticket_file_equal"]


@pytest.mark.slow
def test_ticket_applies_to_a_fresh_ddp_wrapped_model_on_every_rank(ddp):
    r0, r1 = ddp["main"]
    assert r0["apply_masked"] == r1["apply_masked"] == ["0.weight", "3.weight"]
    assert torch.equal(r0["apply_mask"], r1["apply_mask"])
    assert torch.equal(r0["apply_mask"].bool(), r0["ticket"]["masks"]["0.weight"])


@pytest.mark.slow
def test_random_strategy_masks_agree_although_the_ranks_rng_states_differ(ddp):
    r0, r1 = ddp["main"]
    # What the strategy proposed on each rank differs (different seed and RNG state) ...
    assert len(r0["random_proposed"]) == len(r1["random_proposed"]) == 2
    for p0, p1 in zip(r0["random_proposed"], r1["random_proposed"], strict=True):
        assert any(not torch.equal(p0[k], p1[k]) for k in p0)
    # ... yet every rank installed rank 0's masks, rewound and trained to the same weights.
    assert_same(r0["random_installed"], r1["random_installed"], "installed")
    assert_same(r0["random_installed"], r0["random_proposed"], "rank 0 decides")
    assert_same(r0["random_ticket"]["masks"], r1["random_ticket"]["masks"], "masks")
    assert_same(r0["random_ticket"]["rewind"], r1["random_ticket"]["rewind"], "rewind")
    assert_same(r0["random_final"], r1["random_final"], "final")
    assert r0["random_ticket"]["history"] == r1["random_ticket"]["history"]


@pytest.mark.slow
def test_rank_0_decides_even_without_ddp_keeping_the_ranks_equal(ddp):
    """Different initializations and unsynchronized training: masks, rewind point and rewound model agree."""
    r0, r1 = ddp["main"]
    assert not torch.equal(r0["alone_init"]["0.weight"], r1["alone_init"]["0.weight"])
    assert not torch.equal(r0["alone_final"]["0.weight_orig"], r1["alone_final"]["0.weight_orig"])  # trained apart
    assert_same(r0["alone_ticket"]["masks"], r1["alone_ticket"]["masks"], "masks")
    assert_same(r0["alone_installed"], r1["alone_installed"], "installed")
    assert_same(r0["alone_ticket"]["rewind"], r1["alone_ticket"]["rewind"], "rewind")
    assert torch.equal(r1["alone_ticket"]["rewind"]["tensors"]["0.weight"], r0["alone_init"]["0.weight"])
    assert len(r0["alone_rewound"]) == 2
    assert_same(r0["alone_rewound"], r1["alone_rewound"], "model right after each rewind")


# --------------------------------------------------------------------------- kill and resume
@pytest.mark.slow
def test_run_killed_on_every_rank_resumes_under_ddp_to_the_uninterrupted_ticket(ddp):
    assert ddp["killed_codes"] == [-9, -9]  # SIGKILL in the middle of round 2
    assert [f for f in ddp["killed_files"] if not f.startswith(".")] == ["round-0000.pt", "round-0001.pt"]
    base = ddp["main"][0]
    for resumed in ddp["resumed"]:
        assert_same(resumed["ticket"]["masks"], base["ticket"]["masks"], "masks")
        assert_same(resumed["ticket"]["rewind"], base["ticket"]["rewind"], "rewind")
        assert _strip(resumed["ticket"]["history"]) == _strip(base["ticket"]["history"])
        assert resumed["ticket"]["config"] == base["ticket"]["config"]
        assert_same(resumed["final"], base["final"], "final weights")
    assert ddp["resumed"][1]["writes"] == []


# --------------------------------------------------------------------------- helpers without the driver
@pytest.mark.slow
def test_helpers_detect_and_repair_rank_divergence(ddp):
    r0, r1 = ddp["main"]
    for r in (r0, r1):
        assert r["magnitude_agree"]  # magnitude pruning of identical weights agrees by itself
        assert r["permuted_agree"] is False  # random_permutation from the global RNG does not ...
        assert "'2.weight'" in r["permuted_error"] and "rank 1 differs from rank 0" in r["permuted_error"]
        assert r["broadcast_agree"] and r["broadcast_refreshed"]  # ... until broadcast_masks
        assert r["seeded_permutation_agree"]  # a shared seed is enough
        assert r["reinit_agree"] is False
        assert "values of '0.weight'" in r["reinit_error"]
        assert r["reinit_broadcast_agree"]  # broadcast_weights repairs random_reinit without a seed
        assert r["seeded_reinit_agree"]  # random_reinit and sign_preserving_reinit with shared seeds
        assert "hold different masks" in r["layout_error"] and "'0.bias'" in r["layout_error"]
        assert r["layout_untouched"]
        assert r["still_in_step"]
    assert r0["layout_error"] == r1["layout_error"]  # raised on every rank
    assert torch.equal(r0["mask_after_broadcast"], r1["mask_after_broadcast"])
    assert r1["together_error"] == "ValueError: rank 1 cannot read its file"
    assert r0["together_error"].startswith("RankDisagreementError: rank 1 failed (ValueError: rank 1 cannot")


# --------------------------------------------------------------------------- the torchrun example
def _torchrun() -> list[str]:
    beside = Path(sys.executable).with_name("torchrun")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("torchrun")
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.slow
def test_torchrun_example_runs_on_two_cpu_processes(tmp_path):
    ckpt = tmp_path / "run"
    command = _torchrun() + [
        "--standalone",
        f"--nproc_per_node={WORLD}",
        str(EXAMPLE),
        "--checkpoint-dir",
        str(ckpt),
        "--rounds",
        "2",
        "--epochs",
        "1",
    ]
    try:
        done = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"torchrun hung for more than {TIMEOUT} s: {error.stderr}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "masks and weights agree on 2 ranks" in done.stdout
    ticket = tl.Ticket.load(ckpt / "ticket.pt")
    assert len(ticket.history) == 3 and ticket.remaining < 0.7
    assert sorted(f for f in os.listdir(ckpt) if not f.startswith(".")) == [
        "round-0000.pt",
        "round-0001.pt",
        "round-0002.pt",
        "ticket.pt",
    ]


def test_the_docs_page_shows_the_example_script_verbatim():
    page = (ROOT / "docs" / "distributed.md").read_text()
    assert EXAMPLE.read_text().strip() in page


# --------------------------------------------------------------------------- in this process (no group)
def _pruned() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))
    tl.lottery_magnitude(net[0], "weight", amount=0.5)
    return net


def test_without_a_process_group_the_helpers_change_nothing():
    assert not is_active()
    net = _pruned()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert broadcast_masks(net) is net
    assert broadcast_weights(net, buffers=True) is net
    assert masks_agree(net, weights=True)
    assert_masks_agree([(net[0], "weight"), (net[2], "weight")], weights=True)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda net: broadcast_masks("0.weight"), TypeError, "model_or_params"),
        (lambda net: broadcast_masks([net[0]]), TypeError, "pairs"),
        (lambda net: broadcast_masks([(net[0], "nope")]), ValueError, "nope"),
        (lambda net: broadcast_masks(net, src="0"), TypeError, "src"),
        (lambda net: broadcast_weights(net, src=1.0), TypeError, "src"),
        (lambda net: broadcast_weights(net, buffers="yes"), TypeError, "buffers"),
        (lambda net: broadcast_weights([(net[0], "weight")], buffers=True), ValueError, "buffers=True"),
        (lambda net: masks_agree(net, weights=1), TypeError, "weights"),
        (lambda net: assert_masks_agree(42), TypeError, "model_or_params"),
    ],
)
def test_helpers_refuse_bad_arguments(call, exc, match):
    net = _pruned()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(exc, match=match):
        call(net)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_unwrap_looks_through_wrappers_only():
    net = nn.Linear(2, 2)
    assert unwrap(nn.DataParallel(net)) is net
    assert unwrap(net) is net
    assert unwrap("x") == "x"


def test_ticket_apply_uses_the_names_of_a_wrapped_module():
    ticket = tl.Ticket({"0.weight": _pruned()[0].weight_mask}, tl.RewindPoint.capture(_pruned()))
    fresh = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))
    report = ticket.apply(nn.DataParallel(fresh), strict=False)
    assert report.masked == ["0.weight"] and not report.missing
    assert torch.equal(fresh[0].weight_mask, ticket.masks["0.weight"].float())


def _train(model, context):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 6)).pow(2).mean().backward()
        optimizer.step()
        context.step()


def test_find_ticket_distributed_argument_is_checked_before_anything_runs():
    net = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(TypeError, match="distributed"):
        tl.find_ticket(net, _train, rounds=1, distributed="yes")
    with pytest.raises(ValueError, match="distributed=True"):
        tl.find_ticket(net, _train, rounds=1, distributed=True)
    assert list(net.state_dict()) == list(before)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    ticket = tl.find_ticket(net, _train, rounds=1, distributed=False)
    assert ticket.remaining == pytest.approx(0.8, abs=0.02)


def test_find_ticket_hands_the_wrapper_to_train_and_prunes_its_module():
    seen = []

    def train(model, context):
        seen.append(type(model).__name__)
        _train(model, context)

    net = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))
    ticket = tl.find_ticket(nn.DataParallel(net), train, rounds=1)
    assert seen == ["DataParallel", "DataParallel"]
    assert list(ticket.masks) == ["0.weight", "2.weight"]
    assert torch.equal(net[0].weight_mask.bool(), ticket.masks["0.weight"])


def test_rank_disagreement_error_is_a_runtime_error():
    assert issubclass(RankDisagreementError, RuntimeError)
