"""``ServeConfig``: every setting of ``dlhpc serve``, validated on construction.

cfg = ServeConfig(port=8000, max_batch_size=32, max_queue_delay_ms=2)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from dlhpc.errors import ConfigError

BACKENDS = ("eager", "onnx")


def _cores() -> int:
    return max(1, len(os.sched_getaffinity(0)))


@dataclass(frozen=True)
class ServeConfig:
    """How a model is served. Sizes are counts of samples (batch) or requests (queue)."""

    host: str = "127.0.0.1"
    port: int = 8000
    name: str = "model"  # the model's name in the URLs: /v2/models/{name}
    backend: str = "eager"
    variant: str | None = None  # RUN/optimized/<variant>/ (int8-static, …); None: the run's own
    max_batch_size: int = 32  # samples run together in one forward pass
    max_queue_delay_ms: float = 0.0  # 0: batch what is queued, never wait on an idle server
    max_queue: int = 256  # requests waiting for a batch; beyond it → 503 + Retry-After
    workers: int = 1  # forward passes at once, one thread each; they share queue and weights
    threads: int | None = None  # intra-op threads per instance ((cores - 1) // workers)
    token: str | None = None  # bearer token that protects all but health
    request_timeout_s: float = 10.0  # queue + compute; beyond it → 504
    read_timeout_s: float = 10.0  # a request (headers + body) must arrive within it, else 408
    max_head_bytes: int = 64 * 1024  # request line + headers; more → 431
    max_body_bytes: int = 4 * 1024 * 1024  # → 413
    max_image_pixels: int = 4096 * 4096  # uploaded files to /predict; larger → 400
    max_texts: int = 1024  # text models: strings per request; more → 400
    max_text_bytes: int = 1024 * 1024  # text models: UTF-8 bytes of a request's texts → 413
    max_connections: int = 256  # open connections + tasks; beyond it uvicorn answers 503
    drain_timeout_s: float = 30.0  # SIGTERM: how long in-flight requests may take to finish

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("host must not be empty")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0..65535, got {self.port}")
        if not self.name or "/" in self.name or self.name.strip() != self.name:
            raise ConfigError(f"model name must be a non-empty word without '/', got {self.name!r}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; choose from {BACKENDS}")
        positive = {
            "max batch size": self.max_batch_size,
            "max queue": self.max_queue,
            "workers": self.workers,
            "request timeout": self.request_timeout_s,
            "read timeout": self.read_timeout_s,
            "max head bytes": self.max_head_bytes,
            "max body bytes": self.max_body_bytes,
            "max image pixels": self.max_image_pixels,
            "max texts": self.max_texts,
            "max text bytes": self.max_text_bytes,
            "max connections": self.max_connections,
            "drain timeout": self.drain_timeout_s,
        }
        for what, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{what} must be positive, got {value}")
        if self.variant is not None and not re.fullmatch(
            r"[A-Za-z0-9][A-Za-z0-9._-]*", self.variant
        ):
            raise ConfigError(f"a variant is a folder name in RUN/optimized/, got {self.variant!r}")
        if self.max_queue_delay_ms < 0:
            raise ConfigError(f"max queue delay must be ≥ 0 ms, got {self.max_queue_delay_ms}")
        if self.threads is not None and self.threads <= 0:
            raise ConfigError(f"threads must be positive, got {self.threads}")
        if self.token is not None and not self.token.strip():
            raise ConfigError("the token must not be empty (leave it out for no token)")

    @property
    def threads_per_worker(self) -> int:
        # One core stays with the event loop (HTTP, JSON); more threads per small batch only
        # spin against it.
        return self.threads or max(1, (_cores() - 1) // self.workers)

    @property
    def max_queue_delay_s(self) -> float:
        return self.max_queue_delay_ms / 1000.0
