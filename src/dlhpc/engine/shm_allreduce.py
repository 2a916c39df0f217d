"""Gradient all-reduce through shared memory, for DDP ranks on one machine's CPUs.

    ar = open_shared(numel, rank, world, timeout_s)   # collective; None where unavailable
    ddp.register_comm_hook(ar, shared_memory_hook)     # what Dist.wrap does

Why: gloo moves every all-reduce through its own threads and a TCP socket, so each one costs a
chain of thread wake-ups. With every core busy training (2 ranks × 1 thread on 2 cores), each
wake-up waits for the scheduler, and the tutorial CNN's backward took 27-29 ms per step instead
of 21-22 ms with no exchange at all; the same cost with a 1-float all-reduce per bucket, so it is
latency, not bytes. Here the rank's own thread copies its gradients into a shared segment and
waits for the others by polling a counter: one shared bucket per step, 33-34 ms steps against
gloo's 39-42 ms, and 1.82× one process's training samples/s against gloo's 1.59×
(``benchmarks/core_ceiling_cpu_20261129.md``).

Protocol, call ``s`` (buffers alternate by ``s % 2``, so call ``s`` waits only for everyone to
have finished call ``s - 2``): each rank writes its slot, raises ``written``; once all have,
rank ``r`` sums chunk ``r`` of every slot (ranks in order) into the result, raises ``reduced``;
once all have, each copies the result out and raises ``done``. Every rank gets the same bytes.

Ordering: a counter is raised by a plain store after the data's stores, and read by plain loads
before the data's loads. x86-64 keeps stores in order and loads in order (TSO), which is all this
needs; other architectures would need fences Python cannot issue, so they keep gloo.

Each rank counts its time in all-reduces (``seconds``) and, of that, the time spent waiting for
the other ranks (``waited_seconds``): ``summary.json``'s ``exchange_share`` and
``waiting_share`` (``Dist.exchange_shares``).

A rank that does not arrive within the timeout is named in the error; a rank whose process has
exited is named at once (checked every 10 ms of waiting), so a killed rank fails its peers
instead of hanging them. The segment is unlinked as soon as every rank has mapped it: nothing is
left in /dev/shm, whatever way the processes end.
"""

from __future__ import annotations

import mmap
import os
import platform
import secrets
import sys
import time
import typing
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from dlhpc.errors import DlhpcError

__all__ = ["ShmAllReduce", "open_shared", "shared_memory_hook", "supported"]

SHM_DIR = Path("/dev/shm")
MAX_SLOT_NUMEL = 2**22  # 16 MB of fp32 per rank slot; larger buckets go through in pieces
_LINE = 8  # int64s per 64-byte cache line: each counter on its own line
_SPIN = 2000  # polls before yielding the core between polls
_LIVENESS_S = 0.01  # while waiting, how often to look for exited peers
_WRITTEN, _REDUCED, _DONE = 0, 1, 2


def supported() -> bool:
    """Linux on x86-64 with a /dev/shm: where the protocol above is correct and possible."""
    return (
        sys.platform == "linux"
        and platform.machine() in ("x86_64", "AMD64")
        and SHM_DIR.is_dir()
        and os.access(SHM_DIR, os.W_OK)
    )


class ShmAllReduce:
    """The mapped segment of one process group: ``world`` slots of ``slot_numel`` fp32 numbers,
    twice, plus a result each and the counters."""

    def __init__(self, mm: mmap.mmap, rank: int, world: int, slot_numel: int, timeout_s: float):
        self.rank, self.world, self.slot_numel, self.timeout_s = rank, world, slot_numel, timeout_s
        self._mm = mm  # kept open while the views below exist
        header = _header_ints(world)
        ints = np.ndarray((header,), dtype=np.int64, buffer=mm)
        self._counters = ints[: 3 * world * _LINE].reshape(3, world, _LINE)[:, :, 0]  # (3, W)
        self._pids = ints[3 * world * _LINE :].reshape(world, _LINE)[:, 0]  # (W,)
        floats = np.ndarray((2, world + 1, slot_numel), dtype=np.float32, buffer=mm,
                            offset=header * 8)  # fmt: skip
        self._data = torch.from_numpy(floats)  # (2, W + 1, slot): W slots, then the result
        self._seq = 0
        # where this rank's time went: in all-reduces, and of that, waiting for other ranks
        self.seconds = 0.0
        self.waited_seconds = 0.0

    @staticmethod
    def nbytes(world: int, slot_numel: int) -> int:
        return _header_ints(world) * 8 + 2 * (world + 1) * slot_numel * 4

    def all_reduce_mean(self, buf: torch.Tensor) -> torch.Tensor:
        """``buf`` ← the mean of every rank's ``buf`` (flat fp32, same size on every rank)."""
        t0 = time.perf_counter()
        flat = buf.view(-1)
        for start in range(0, flat.numel(), self.slot_numel):
            self._one(flat[start : start + self.slot_numel])
        self.seconds += time.perf_counter() - t0
        return buf

    def _one(self, part: torch.Tensor) -> None:
        self._seq += 1
        s, n, w, r = self._seq, part.numel(), self.world, self.rank
        data = self._data[s % 2]
        self._wait(_DONE, s - 2)  # everyone is done with these buffers' last use
        data[r, :n].copy_(part)
        self._counters[_WRITTEN, r] = s
        self._wait(_WRITTEN, s)
        lo, hi = r * n // w, (r + 1) * n // w  # this rank's chunk of the sum
        if hi > lo:
            chunk = data[:w, lo:hi]
            acc = data[w, lo:hi]
            acc.copy_(chunk[0])
            for i in range(1, w):
                acc.add_(chunk[i])
            acc.div_(w)
        self._counters[_REDUCED, r] = s
        self._wait(_REDUCED, s)
        part.copy_(data[w, :n])
        self._counters[_DONE, r] = s

    def _wait(self, kind: int, target: int) -> None:
        counters = self._counters[kind]
        if target <= 0 or (counters >= target).all():
            return
        start = time.perf_counter()
        checked = start
        polls = 0
        while not (counters >= target).all():
            polls += 1
            if polls < _SPIN:
                continue
            os.sched_yield()  # a core this rank does not need yet
            now = time.perf_counter()
            if now - checked >= _LIVENESS_S:
                checked = now
                late = [i for i in range(self.world) if counters[i] < target]
                dead = [i for i in late if not _alive(int(self._pids[i]))]
                if dead:
                    raise DlhpcError(f"rank {self.rank}: rank(s) {dead} exited during a "
                                     "gradient all-reduce (shared memory)")  # fmt: skip
                if now - start > self.timeout_s:
                    raise DlhpcError(
                        f"rank {self.rank}: a collective timed out after {self.timeout_s:g} s: "
                        f"rank(s) {late} did not arrive (shared-memory gradient all-reduce)"
                    )
        self.waited_seconds += time.perf_counter() - start


def _header_ints(world: int) -> int:
    """The segment's int64 header: 3 counters per rank, then each rank's pid, a line each."""
    return 4 * world * _LINE


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (an exited child its parent has not reaped yet counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def open_shared(numel: int, rank: int, world: int, timeout_s: float) -> ShmAllReduce | None:
    """Map one segment for the process group (a collective on the default group: every rank
    calls it). ``None`` on every rank if any rank cannot take part."""
    slot = max(1, min(numel, MAX_SLOT_NUMEL))
    size = ShmAllReduce.nbytes(world, slot)
    path: Path | None = None
    mm: mmap.mmap | None = None
    if rank == 0 and supported():
        path = SHM_DIR / f"dlhpc-allreduce-{os.getpid()}-{secrets.token_hex(6)}"
        try:
            mm = _map(path, size, create=True)
        except OSError:
            path = None
    box: list[Any] = [str(path) if path is not None else None]
    tdist.broadcast_object_list(box, src=0)
    if rank != 0 and box[0] is not None and supported():
        try:
            mm = _map(Path(box[0]), size, create=False)
        except OSError:
            mm = None
    ar = ShmAllReduce(mm, rank, world, slot, timeout_s) if mm is not None else None
    if ar is not None:
        ar._pids[rank] = os.getpid()
    # everyone mapped it: agree, then see each other's processes (for the liveness check)
    ok = _agree(ar is not None)
    if ok and ar is not None:
        ok = _agree(all(_alive(int(p)) for p in ar._pids))
    if rank == 0 and path is not None:
        path.unlink(missing_ok=True)  # the mappings stay; the name goes
    return ar if ok else None


def _agree(flag: bool) -> bool:
    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    tdist.all_reduce(t, op=tdist.ReduceOp.MIN)
    return bool(t.item())


def _map(path: Path, size: int, create: bool) -> mmap.mmap:
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        if create:
            os.ftruncate(fd, size)  # zero-filled: every counter starts at 0
        elif os.fstat(fd).st_size != size:
            raise OSError(f"{path}: size {os.fstat(fd).st_size}, expected {size}")
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def shared_memory_hook(
    state: ShmAllReduce,
    bucket: tdist.GradBucket,  # type: ignore[name-defined]
) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: the bucket's mean over ranks, computed before it returns (the
    backward pass waits here, as it would for gloo on a machine with no spare core)."""
    buf = bucket.buffer()
    if buf.layout != torch.strided or buf.dtype != torch.float32 or buf.device.type != "cpu":
        # not what the segment holds (sparse embedding gradients, say): DDP's own gloo hook
        return default_hooks.allreduce_hook(None, bucket)  # type: ignore[arg-type]
    state.all_reduce_mean(buf)
    fut: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    fut.set_result(buf)
    return fut


# DDP checks a hook's annotations against the real classes; this module's are strings
# (``from __future__ import annotations``) until resolved here.
shared_memory_hook.__annotations__ = typing.get_type_hints(shared_memory_hook)
