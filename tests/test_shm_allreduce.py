"""The shared-memory gradient all-reduce (engine/shm_allreduce.py), with real processes: exact
means for every size (pieces larger than a slot, sizes that do not divide by the world size,
alternating buffers), the same bytes on every rank, DDP training equal to gloo's and to one
rank, the time each rank spends in the exchange and waiting for the others, a missing rank
named by the timeout, an exited rank named at once, and nothing left in /dev/shm."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from dlhpc.engine import shm_allreduce
from dlhpc.engine.distributed import Dist, init_distributed
from dlhpc.engine.env import ClusterEnv
from dlhpc.engine.shm_allreduce import SHM_DIR, open_shared
from dlhpc.errors import DlhpcError
from tests.test_distributed import free_port

pytestmark = pytest.mark.skipif(not shm_allreduce.supported(), reason="needs Linux x86-64 /dev/shm")

SIZES = [1, 2, 3, 7, 64, 1000, 4099]  # with a slot of 1000: one piece, several, a short last one


def _join(rank: int, world: int, port: int, timeout_s: float = 60) -> Dist:
    torch.set_num_threads(1)
    env = ClusterEnv(rank=rank, world_size=world, master_port=port, local_world_size=world)
    return init_distributed(env, torch.device("cpu"), timeout_s)


def _values(rank: int, n: int, call: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * call + 10 * rank + n)
    return torch.randn(n, generator=g)


def _mean_worker(rank: int, world: int, port: int, out: str) -> None:
    dist = _join(rank, world, port)
    before = set(os.listdir(SHM_DIR))
    shm_allreduce.MAX_SLOT_NUMEL = 1000  # force buckets through in pieces
    ar = open_shared(5000, rank, world, 60)
    assert ar is not None and ar.slot_numel == 1000
    results = {}
    for call, n in enumerate(SIZES * 2):  # twice round: both buffers reused
        buf = _values(rank, n, call)
        ar.all_reduce_mean(buf)
        results[f"{call}:{n}"] = buf.tolist()
    leftover = sorted(set(os.listdir(SHM_DIR)) - before)
    Path(out, f"{rank}.json").write_text(json.dumps({"results": results, "left": leftover}))
    dist.close()


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_every_rank_gets_the_exact_mean_in_every_size(tmp_path: Path, world: int) -> None:
    mp.spawn(_mean_worker, args=(world, free_port(), str(tmp_path)), nprocs=world, join=True)
    got = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(world)]
    for call, n in enumerate(SIZES * 2):
        key = f"{call}:{n}"
        want = torch.stack([_values(r, n, call) for r in range(world)]).sum(0) / world
        torch.testing.assert_close(torch.tensor(got[0]["results"][key]), want)
        for r in range(1, world):  # the same bytes everywhere: replicas stay identical
            assert got[r]["results"][key] == got[0]["results"][key]
    assert all(g["left"] == [] for g in got)  # the segment is unlinked once mapped


def _ddp_worker(rank: int, world: int, port: int, shared: bool, out: str) -> None:
    dist = _join(rank, world, port)
    dist.shared_memory = shared
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    net = dist.wrap(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    for step in range(5):
        part = dist.part(8)
        idx = torch.arange(step * 8, step * 8 + 8)[part]
        loss = F.cross_entropy(net(x[idx]), y[idx], reduction="sum") * (world / 8)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    votes = [dist.any(rank == 1), dist.any(False), dist.any(True)]  # a stop request, say
    if rank == 0:
        weights = {k: v.tolist() for k, v in model.state_dict().items()}
        Path(out).write_text(json.dumps({"how": dist.gradient_exchange, "w": weights,
                                         "votes": votes}))  # fmt: skip
    del net  # the wrapper holds the group: dropped, close frees it
    dist.close()


@pytest.mark.slow
def test_ddp_through_shared_memory_equals_gloo_and_one_rank(tmp_path: Path) -> None:
    runs = {}
    for shared in (True, False):
        out = tmp_path / f"{shared}.json"
        mp.spawn(_ddp_worker, args=(2, free_port(), shared, str(out)), nprocs=2, join=True)
        runs[shared] = json.loads(out.read_text())
    assert runs[True]["how"] == "shared memory" and runs[False]["how"] == "gloo"
    assert runs[True]["votes"] == runs[False]["votes"] == [True, False, True]
    torch.manual_seed(0)  # one process, whole batches
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    for step in range(5):
        opt.zero_grad()
        F.cross_entropy(model(x[step * 8 : step * 8 + 8]), y[step * 8 : step * 8 + 8]).backward()
        opt.step()
    for k, v in model.state_dict().items():
        for shared in (True, False):
            torch.testing.assert_close(torch.tensor(runs[shared]["w"][k]), v)


def _timing_worker(rank: int, world: int, port: int, out: str) -> None:
    dist = _join(rank, world, port)
    ar = open_shared(1000, rank, world, 60)
    assert ar is not None
    for call in range(3):
        if rank == 1 and call == 1:
            time.sleep(0.5)  # rank 0 waits for this one
        ar.all_reduce_mean(torch.ones(1000))
    Path(out, f"{rank}.json").write_text(json.dumps([ar.seconds, ar.waited_seconds]))
    dist.close()


@pytest.mark.slow
def test_each_rank_counts_its_time_in_the_exchange_and_waiting_for_others(tmp_path: Path) -> None:
    mp.spawn(_timing_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    (seconds0, waited0), (seconds1, waited1) = (
        json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1)
    )
    assert 0.3 < waited0 <= seconds0 < waited0 + 0.25  # rank 0 waited for the late rank 1
    assert waited1 <= seconds1 < 0.25  # rank 1 found rank 0 there


def _late_worker(rank: int, world: int, port: int, mode: str, out: str) -> None:
    dist = _join(rank, world, port)
    ar = open_shared(10, rank, world, timeout_s=2)
    assert ar is not None
    if rank == 0:
        t0 = time.perf_counter()
        try:
            ar.all_reduce_mean(torch.ones(10))  # rank 1 never comes
            message = "returned"
        except DlhpcError as e:
            message = str(e)
        Path(out).write_text(json.dumps({"message": message, "s": time.perf_counter() - t0}))
    elif mode == "exit":
        os._exit(0)  # gone without a word
    else:
        time.sleep(6)
    dist.close()


@pytest.mark.slow
def test_a_missing_rank_is_named_by_the_timeout(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    mp.spawn(_late_worker, args=(2, free_port(), "sleep", str(out)), nprocs=2, join=True)
    got = json.loads(out.read_text())
    message = got["message"]
    assert "timed out after 2 s" in message and "rank(s) [1] did not arrive" in message
    assert 2 <= got["s"] < 5


def test_an_exited_rank_is_named_without_waiting_for_the_timeout(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    ctx = mp.spawn(_late_worker, args=(2, free_port(), "exit", str(out)), nprocs=2, join=False)
    ctx.processes[0].join(60)
    got = json.loads(out.read_text())
    assert "rank(s) [1] exited" in got["message"], got
    assert got["s"] < 1.5  # not the 2 s timeout
