"""The dynamic batcher on its own: batching, bounds, timeouts, errors, draining."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import numpy as np
import pytest

from dlhpc.serve.batcher import Batcher, Draining, Overloaded, TimedOut
from tests.test_serve_support import EchoPredictor

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def img(value: int, n: int = 1) -> np.ndarray:
    return np.full((n, 1, 2, 2), value, np.uint8)


def test_concurrent_requests_are_batched_and_never_mixed() -> None:
    pred = EchoPredictor(delay=0.02)

    async def go() -> list[np.ndarray]:
        b = Batcher(pred, max_batch_size=8, max_queue=64)
        # 1 + 2 + … samples per request, distinct first pixels: every answer must be its own.
        outs = await asyncio.gather(*(b.predict(img(v, 1 + v % 3), 5.0) for v in range(40)))
        await b.close(5.0)
        return outs

    outs = run(go())
    for v, probs in enumerate(outs):
        assert probs.shape == (1 + v % 3, 256)
        assert (probs.argmax(axis=1) == v).all()
    assert max(pred.batches) <= 8 and max(pred.batches) > 1
    assert sum(pred.batches) == sum(1 + v % 3 for v in range(40))


def test_zero_delay_never_waits_on_an_idle_server() -> None:
    pred = EchoPredictor()

    async def go() -> float:
        b = Batcher(pred, max_batch_size=32, max_queue_delay_s=0.0)
        await b.predict(img(1), 5.0)  # warm: the worker task exists
        t0 = time.perf_counter()
        for v in range(20):
            await b.predict(img(v), 5.0)
        elapsed = time.perf_counter() - t0
        await b.close(1.0)
        return elapsed

    assert run(go()) < 0.5  # 20 lone requests; a waiting batcher would show here
    assert pred.batches == [1] * 21


def test_queue_delay_gathers_a_fuller_batch() -> None:
    pred = EchoPredictor()

    async def go() -> None:
        b = Batcher(pred, max_batch_size=16, max_queue_delay_s=0.2)

        async def later(v: int) -> np.ndarray:
            await asyncio.sleep(0.01 * v)
            return await b.predict(img(v), 5.0)

        outs = await asyncio.gather(*(later(v) for v in range(5)))
        assert [int(o.argmax()) for o in outs] == list(range(5))
        await b.close(1.0)

    run(go())
    assert pred.batches == [5]  # arrivals 0–40 ms apart, all within the 200 ms window


def test_a_request_larger_than_the_batch_runs_alone_and_whole() -> None:
    pred = EchoPredictor()

    async def go() -> np.ndarray:
        b = Batcher(pred, max_batch_size=4)
        out = await b.predict(img(9, 10), 5.0)
        await b.close(1.0)
        return out

    assert run(go()).shape == (10, 256)
    assert pred.batches == [10]


def test_full_queue_is_overloaded_and_memory_stays_bounded() -> None:
    pred = EchoPredictor(delay=0.05)

    async def go() -> tuple[int, int, int]:
        b = Batcher(pred, max_batch_size=1, max_queue=3)
        peak = 0

        async def one(v: int) -> str:
            nonlocal peak
            try:
                out = await b.predict(img(v), 5.0)
            except Overloaded as e:
                assert e.retry_after_s >= 1
                return "503"
            finally:
                peak = max(peak, b.queued)
            assert int(out.argmax()) == v
            return "200"

        codes = await asyncio.gather(*(one(v) for v in range(50)))
        await b.close(5.0)
        return codes.count("200"), codes.count("503"), peak

    ok, rejected, peak = run(go())
    assert ok + rejected == 50 and rejected >= 40 and ok >= 3
    assert peak <= 3


def test_a_request_that_waits_too_long_times_out_and_is_skipped() -> None:
    pred = EchoPredictor(delay=0.3)

    async def go() -> None:
        b = Batcher(pred, max_batch_size=1)
        first = asyncio.ensure_future(b.predict(img(1), 5.0))
        await asyncio.sleep(0.05)  # the worker is busy with `first`
        with pytest.raises(TimedOut):
            await b.predict(img(2), 0.1)
        assert int((await first).argmax()) == 1
        await b.close(1.0)

    run(go())
    assert pred.batches == [1]  # the timed-out request never ran


def test_model_errors_reach_every_request_of_the_batch() -> None:
    class Broken(EchoPredictor):
        def predict(self, x_NCHW: np.ndarray) -> np.ndarray:
            raise RuntimeError("boom")

    async def go() -> None:
        b = Batcher(Broken(), max_batch_size=4)
        results = await asyncio.gather(
            *(b.predict(img(v), 5.0) for v in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        # and the worker lives on
        b.predictor = EchoPredictor()
        assert int((await b.predict(img(7), 5.0)).argmax()) == 7
        await b.close(1.0)

    run(go())


def test_close_finishes_queued_work_then_refuses_new() -> None:
    pred = EchoPredictor(delay=0.05)

    async def go() -> None:
        b = Batcher(pred, max_batch_size=1, workers=2)
        pending = [asyncio.ensure_future(b.predict(img(v), 5.0)) for v in range(6)]
        await asyncio.sleep(0)
        await b.close(5.0)
        assert [int((await p).argmax()) for p in pending] == list(range(6))
        with pytest.raises(Draining):
            await b.predict(img(1), 1.0)

    run(go())
    assert len(pred.threads) == 2  # two workers, one thread each
