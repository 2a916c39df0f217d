"""torch.distributed for the loop: process group, DDP wrapping, sharding and reductions.

Every rank computes the same epoch order; rank r trains on its contiguous part of each global
batch (``part``), so shards are disjoint and cover the data with no sampler state to save. The
loss of a rank is its *sum* over the global batch size ÷ world, which makes DDP's gradient
average exactly the gradient of the global batch mean, even for an uneven last batch.

Gradients: CPU ranks that share one machine average them through shared memory
(``engine/shm_allreduce.py``, 1.2× gloo's training speed with every core busy); across
machines gloo does it, on CUDA NCCL. The loop's stop-request vote uses the same segment;
everything else (the logged loss, the epoch's sums, evaluation) goes through the process group.

Launch: ``dlhpc train … --nproc 2`` (torch's elastic launcher), ``torchrun … -m dlhpc train …``
or ``srun dlhpc train …``. gloo on CPU, NCCL on CUDA.
"""

from __future__ import annotations

import datetime
import gc
import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as tdist

# torch.distributed.nn.functional binds ``group=group.WORLD`` as default arguments when it is
# first imported (DDP's constructor imports it, through torch._dynamo). Imported while a group
# exists, those defaults hold the group for the life of the process, so destroy_process_group
# cannot free it and gloo's threads still run as the interpreter exits (where a rank once died:
# "terminate called without an active exception", SIGABRT). Imported here, before any group
# exists, the defaults are None.
import torch.distributed.nn.functional
from torch import nn

from dlhpc.engine.env import ClusterEnv
from dlhpc.engine.shm_allreduce import ShmAllReduce, open_shared, shared_memory_hook
from dlhpc.errors import ConfigError, DlhpcError

DEFAULT_TIMEOUT_S = 300


@dataclass
class Dist:
    env: ClusterEnv
    device: torch.device
    timeout_s: float = DEFAULT_TIMEOUT_S
    # CPU ranks all on one machine: gradients meet in shared memory instead of gloo's sockets
    # (engine/shm_allreduce.py); where that is unavailable, or False, gloo does it.
    shared_memory: bool = True
    _shm: ShmAllReduce | None = field(default=None, repr=False)  # set by wrap, if used

    @property
    def active(self) -> bool:
        return self.env.distributed and tdist.is_available() and tdist.is_initialized()

    @property
    def gradient_exchange(self) -> str | None:
        """How DDP averages gradients: "shared memory", "gloo" or "nccl"; None for one process."""
        if self._shm is not None:
            return "shared memory"
        return str(tdist.get_backend()) if self.active else None

    def exchange_shares(self, step_seconds: float) -> dict[str, float | None]:
        """Of the ranks' training-step time (``step_seconds`` on this rank, in this process), the
        share spent averaging gradients in shared memory (``exchange_share``: copying and
        summing) and the share spent waiting there for the other ranks (``waiting_share``: to
        arrive, and to finish their part of the sum; the cost of stepping together), each the
        ranks' seconds summed over their step seconds summed; None where not measured (one
        process, gloo, NCCL). A collective when the segment is in use."""
        if self._shm is None:
            return {"exchange_share": None, "waiting_share": None}
        shm = self._shm
        t = torch.tensor([shm.seconds - shm.waited_seconds, shm.waited_seconds, step_seconds],
                         dtype=torch.float64)  # fmt: skip
        work, waited, steps = self.all_sum(t).tolist()
        return {"exchange_share": work / steps if steps > 0 else None,
                "waiting_share": waited / steps if steps > 0 else None}  # fmt: skip

    @property
    def is_main(self) -> bool:
        return self.env.is_main

    def part(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` items (as ``torch.tensor_split`` splits)."""
        w, r = self.env.world_size, self.env.rank
        q, extra = divmod(n, w)
        start = r * q + min(r, extra)
        return slice(start, start + q + (1 if r < extra else 0))

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.active:
            tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return t

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on any rank (a stop request, say). Through the
        shared segment once ``wrap`` has one, without gloo's thread wake-ups: the loop asks every
        few steps (two CPU ranks trained at 3,642 samples/s asking every 8 steps through gloo
        and 3,942 never asking, medians of three interleaved runs; the segment's vote was not
        measured apart from run-to-run noise)."""
        if not self.active:
            return flag
        if self._shm is not None:  # the mean of 0s and 1s is positive iff any is 1
            return bool(self._shm.all_reduce_mean(torch.tensor([float(flag)])).item() > 0)
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return bool(t.item())

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (a run directory name, say)."""
        if not self.active:
            return obj
        box = [obj]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait for every rank; on gloo, a timeout names the ranks that did not arrive."""
        if not self.active:
            return
        if tdist.get_backend() != "gloo":
            tdist.barrier()
            return
        timeout = datetime.timedelta(seconds=self.timeout_s)
        try:
            tdist.monitored_barrier(timeout=timeout, wait_all_ranks=True)
        except RuntimeError as e:  # gloo names the ranks that did not arrive
            first = str(e).strip().splitlines()[0]
            raise DlhpcError(f"rank {self.env.rank}: a collective timed out: {first}") from None

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP around ``model``; on one machine's CPUs with its gradients all-reduced through
        shared memory in one bucket per step (a collective: every rank calls it)."""
        if not self.active:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        shm = self._open_shared(model)
        # Buffers that training does not change (InputNorm's constants) need no broadcast
        # before every forward, a collective per step; running statistics (BatchNorm) do.
        # Gradients live in DDP's buckets: no copy between them and ``.grad``.
        running = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        ddp = nn.parallel.DistributedDataParallel(
            model,
            device_ids=ids,
            gradient_as_bucket_view=True,
            # the shared-memory exchange has no latency to hide: one bucket, one wait per step
            bucket_cap_mb=DDP_BUCKET_MB if shm is not None else bucket_cap_mb(model),
            **{_SYNC_BUFFERS: running},  # type: ignore[arg-type]
        )
        if shm is not None:
            ddp.register_comm_hook(shm, shared_memory_hook)
        self._shm = shm
        return ddp

    def _open_shared(self, model: nn.Module) -> ShmAllReduce | None:
        env = self.env
        one_machine = env.nodes == 1 and env.local_world_size == env.world_size
        if not (self.shared_memory and one_machine and self.device.type == "cpu"):
            return None
        numel = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return open_shared(numel, env.rank, env.world_size, self.timeout_s)

    def close(self) -> None:
        """Leave the process group and free it: its threads (gloo's) end here, before the
        interpreter exits. A DDP wrapper sits in a reference cycle and holds the group, so one
        its caller has dropped is collected first; one still referenced keeps the group alive."""
        if self.active:
            gc.collect()
            tdist.destroy_process_group()


# DDP's flag for the per-forward buffer broadcast: ``broadcast_buffers`` until PyTorch renamed it
# ``forward_sync_buffers`` (the old name now warns on every rank).
_SYNC_BUFFERS = (
    "forward_sync_buffers"
    if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
    else "broadcast_buffers"
)
DDP_BUCKET_MB = 25.0  # PyTorch's default bucket size
MIN_BUCKET_MB = 0.05


def bucket_cap_mb(model: nn.Module) -> float:
    """DDP's gradient bucket size for ``model`` when gloo carries the gradients: a quarter of
    them, between ``MIN_BUCKET_MB`` and PyTorch's 25 MB.

    DDP all-reduces a bucket as soon as backward has filled it. With the default 25 MB, a model
    smaller than that (the tutorial's CNN has 373 kB of gradients) is one bucket, reduced only
    after the whole backward pass, while both ranks wait. In four buckets the later layers'
    gradients travel while the earlier layers' are computed: two gloo ranks × 1 thread trained
    the CNN at 1.12-1.15× the samples/s of one bucket (2,990 vs 2,662 and 2,831 vs 2,452,
    interleaved; 0.1 and 0.05 MB alike, 0.02 MB no better than one bucket;
    benchmarks/core_ceiling_cpu_20261128.md). Re-measured once the host allocator stopped
    paying for page faults every step, the two were even (1.59× one process each,
    benchmarks/core_ceiling_cpu_20261129.md): the overlap matters where the network is slow
    (across machines, the only place gloo still carries gradients on CPU). Large models keep
    PyTorch's default.
    """
    grad_mb = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return min(DDP_BUCKET_MB, max(MIN_BUCKET_MB, grad_mb / 2**20 / 4))


def init_distributed(env: ClusterEnv, device: torch.device, timeout_s: float) -> Dist:
    """Join the process group of ``env`` (nothing to do for one process)."""
    d = Dist(env, device, timeout_s)
    if not env.distributed:
        return d
    if not tdist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # One store per attempt: after an elastic restart, the agent's store still holds the last
    # attempt's addresses, so every attempt gets its own key prefix. Under torchrun the agent
    # hosts the store; otherwise (Slurm, tests) rank 0 does, at the master address.
    timeout = datetime.timedelta(seconds=timeout_s)
    hosts = env.rank == 0 and not env.agent_store
    store = tdist.TCPStore(  # type: ignore[attr-defined]  # public, not re-exported in stubs
        env.master_addr, env.master_port, env.world_size, is_master=hosts, timeout=timeout
    )
    prefixed = tdist.PrefixStore(f"dlhpc/attempt{env.restart_count}", store)  # type: ignore[attr-defined]
    tdist.init_process_group(
        backend, store=prefixed, rank=env.rank, world_size=env.world_size, timeout=timeout
    )
    return d
