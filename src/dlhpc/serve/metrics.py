"""Prometheus metrics of one server (its own registry, so several apps can live in one process).

curl -s localhost:8000/metrics | grep dlhpc_
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Latency buckets in seconds: sub-millisecond to the default request timeout.
SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def _size_buckets(max_batch_size: int) -> tuple[float, ...]:
    sizes, b = [], 1
    while b < max_batch_size:
        sizes.append(float(b))
        b *= 2
    return (*sizes, float(max_batch_size))


class ServeMetrics:
    """Requests by status code, queue and compute time, batch sizes, requests in flight."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, max_batch_size: int) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "dlhpc_requests", "HTTP requests answered", ["method", "path", "code"], registry=r
        )
        self.latency = Histogram(
            "dlhpc_request_seconds", "time to answer a request", ["path"], buckets=SECONDS,
            registry=r,
        )  # fmt: skip
        self.queue_time = Histogram(
            "dlhpc_queue_seconds", "time a request waited for its batch", buckets=SECONDS,
            registry=r,
        )  # fmt: skip
        self.compute_time = Histogram(
            "dlhpc_compute_seconds", "time of one forward pass (a batch)", buckets=SECONDS,
            registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "dlhpc_batch_size", "samples per forward pass", buckets=_size_buckets(max_batch_size),
            registry=r,
        )  # fmt: skip
        self.in_flight = Gauge("dlhpc_in_flight_requests", "requests being answered", registry=r)
        self.ready = Gauge("dlhpc_ready", "1 while the model takes requests", registry=r)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def on_batch(self, size: int, queue_s: Sequence[float], compute_s: float) -> None:
        self.batch_size.observe(size)
        self.compute_time.observe(compute_s)
        for q in queue_s:
            self.queue_time.observe(q)

    def on_response(self, method: str, path: str, code: int, seconds: float) -> None:
        # labels() takes a lock and builds a key each call: keep the children. The callers bound
        # the label values (methods, route labels, status codes), so this stays small.
        key = (method, path, code)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(method, path, str(code)),
                self.latency.labels(path),
            )
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
