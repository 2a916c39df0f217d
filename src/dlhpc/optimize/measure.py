"""Latency at batch 1 and throughput at a large batch, for several runners, interleaved.

    runners = {"fp32/eager": eager_runner(model, test), "fp32/onnxruntime": session_runner(s, test)}
    timings = measure_interleaved(runners, MeasureSettings(rounds=20))
    timings["fp32/eager"].p50_ms

Method: every round runs each runner in turn (the order rotates by one each round), first
``per_round`` single-record calls, each timed alone, then one call on a ``batch``-record
batch. So a neighbour's load or a clock change hits every runner alike, and the comparison
is a ratio measured in the same minute. p50/p99 are over all single-record calls; throughput
is ``batch`` / the median time of the batch calls. A few untimed calls warm each runner first.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from dlhpc.errors import ConfigError
from dlhpc.optimize.samples import Samples, feeds


@dataclass(frozen=True)
class MeasureSettings:
    rounds: int = 20
    per_round: int = 10  # single-record calls per runner per round
    batch: int = 256
    warmup: int = 3

    def __post_init__(self) -> None:
        if min(self.rounds, self.per_round, self.batch) < 1 or self.warmup < 0:
            raise ConfigError("measurement rounds, calls and batch must be at least 1")


@dataclass(frozen=True)
class Timing:
    p50_ms: float  # batch 1
    p99_ms: float  # batch 1
    throughput: float  # records/s at ``batch``
    batch: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Runner:
    one: Callable[[int], object]  # run single record i (prepared in advance)
    many: Callable[[], object]  # run the large batch


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def eager_runner(model: nn.Module, samples: Samples, settings: MeasureSettings) -> Runner:
    singles = [samples.inputs(i, i + 1) for i in range(min(len(samples), settings.per_round))]
    big = samples.tiled(settings.batch).inputs(0, settings.batch)

    def one(i: int) -> object:
        with torch.inference_mode():
            return model(*singles[i % len(singles)])

    def many() -> object:
        with torch.inference_mode():
            return model(*big)

    return Runner(one, many)


def session_runner(session: Any, samples: Samples, settings: MeasureSettings) -> Runner:
    singles = [feeds(samples, i, i + 1) for i in range(min(len(samples), settings.per_round))]
    big = feeds(samples.tiled(settings.batch), 0, settings.batch)
    return Runner(
        lambda i: session.run(None, singles[i % len(singles)]), lambda: session.run(None, big)
    )


def measure_interleaved(runners: dict[str, Runner], settings: MeasureSettings) -> dict[str, Timing]:
    names = list(runners)
    for name in names:
        for i in range(settings.warmup):
            runners[name].one(i)
            runners[name].many()
    single: dict[str, list[float]] = {n: [] for n in names}
    batched: dict[str, list[float]] = {n: [] for n in names}
    clock = time.perf_counter
    for r in range(settings.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            run = runners[name]
            for i in range(settings.per_round):
                t0 = clock()
                run.one(i)
                single[name].append(clock() - t0)
            t0 = clock()
            run.many()
            batched[name].append(clock() - t0)
    return {
        n: Timing(
            p50_ms=float(np.percentile(single[n], 50)) * 1e3,
            p99_ms=float(np.percentile(single[n], 99)) * 1e3,
            throughput=settings.batch / statistics.median(batched[n]),
            batch=settings.batch,
        )
        for n in names
    }
