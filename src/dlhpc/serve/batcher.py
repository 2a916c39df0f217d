"""Dynamic batching: requests queue up, a worker takes as many as fit in one forward pass.

    batcher = Batcher(predictor, max_batch_size=32, max_queue_delay_s=0.0, max_queue=256)
    probs_NK = await batcher.predict(item, timeout=10.0)     # inside a running event loop
    await batcher.close(timeout=30.0)                        # drain: finish what is queued

An item is one request's samples, as the predictor takes them (uint8 pixels (N, C, H, W), or a
list of N texts); ``predictor.join`` makes one batch of several. Each worker owns one thread, so
a forward pass (and a text batch's tokenization) never blocks the event loop, and takes whole
requests only: a request is never split, and each gets back exactly its own rows. With
``max_queue_delay_s == 0`` a worker batches what is already queued and never waits on an idle
server; a busy worker lets the queue grow, and that queue becomes the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from dlhpc.serve.predictor import Predictor


class Overloaded(Exception):
    """The queue is full (→ 503 with Retry-After)."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"the server is overloaded; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class Draining(Exception):
    """The server is shutting down and takes no new work (→ 503)."""


class TimedOut(Exception):
    """The request waited in the queue and ran for longer than its timeout (→ 504)."""


class BatchObserver(Protocol):
    def on_batch(self, size: int, queue_s: Sequence[float], compute_s: float) -> None: ...


@dataclass(eq=False)
class _Job:
    item: Any  # len(item) samples
    future: asyncio.Future[np.ndarray]
    enqueued: float

    @property
    def n(self) -> int:
        return len(self.item)


class Batcher:
    """A bounded queue of requests and ``workers`` batching loops, one thread each."""

    def __init__(
        self,
        predictor: Predictor,
        *,
        max_batch_size: int = 32,
        max_queue_delay_s: float = 0.0,
        max_queue: int = 256,
        workers: int = 1,
        observer: BatchObserver | None = None,
    ) -> None:
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.observer = observer
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max_queue)
        self._pools = [
            ThreadPoolExecutor(1, thread_name_prefix=f"dlhpc-predict-{i}") for i in range(workers)
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self._unfinished = 0  # submitted, not yet answered (queued, gathered or computing)
        self.closing = False

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def _start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._work(pool)) for pool in self._pools]

    async def predict(self, item: Any, timeout: float) -> np.ndarray:
        """Probabilities (N, classes) for ``item``; raises Overloaded, Draining or TimedOut."""
        if self.closing:
            raise Draining("the server is shutting down")
        self._start()
        loop = asyncio.get_running_loop()
        job = _Job(item, loop.create_future(), loop.time())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise Overloaded(retry_after_s=1) from None
        self._unfinished += 1
        job.future.add_done_callback(self._finished)
        try:
            # On timeout (or a client that left) the await cancels the future: workers skip it.
            # (asyncio.timeout, not wait_for: no extra task or future per request.)
            async with asyncio.timeout(timeout):
                return await job.future
        except TimeoutError:
            raise TimedOut(f"no answer within {timeout:g} s") from None

    def _finished(self, _: asyncio.Future[np.ndarray]) -> None:
        self._unfinished -= 1

    async def _work(self, pool: ThreadPoolExecutor) -> None:
        carry: _Job | None = None
        while True:
            first = carry if carry is not None else await self._queue.get()
            if first.future.done():  # timed out or cancelled while queued
                carry = None
                continue
            jobs, carry = await self._gather(first)
            await self._run_batch(jobs, pool)

    async def _gather(self, first: _Job) -> tuple[list[_Job], _Job | None]:
        """``first`` plus what is queued, up to the batch size; the one that did not fit."""
        loop = asyncio.get_running_loop()
        jobs, n = [first], first.n
        deadline = loop.time() + self.max_queue_delay_s
        while n < self.max_batch_size:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if job.future.done():
                continue
            if n + job.n > self.max_batch_size:
                return jobs, job
            jobs.append(job)
            n += job.n
        return jobs, None

    async def _run_batch(self, jobs: list[_Job], pool: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = sum(j.n for j in jobs)
        try:
            batch = self.predictor.join([j.item for j in jobs])
            probs = await loop.run_in_executor(pool, self.predictor.predict, batch)
        except Exception as e:  # the model failed: every request of the batch gets the error
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(e)
            return
        compute_s = loop.time() - start
        offset = 0
        for j in jobs:
            if not j.future.done():
                j.future.set_result(probs[offset : offset + j.n])
            offset += j.n
        if self.observer is not None:
            self.observer.on_batch(n, [start - j.enqueued for j in jobs], compute_s)

    async def close(self, timeout: float) -> None:
        """Take no new work, let queued and running requests finish (up to ``timeout``), stop."""
        self.closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._unfinished > 0 and loop.time() < deadline:
            await asyncio.sleep(0.005)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():  # only after a timeout: fail what is left
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(Draining("the server shut down"))
        for pool in self._pools:
            pool.shutdown(wait=False)
