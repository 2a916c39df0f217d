"""Run a model behind uvicorn until SIGTERM/SIGINT, then drain and exit.

    run_server(Path("runs/cnn-…"), ServeConfig(port=8000))      # what `dlhpc serve RUN` does

Draining: on the first SIGTERM or SIGINT readiness turns false, the listening socket closes,
requests in flight finish (up to ``drain_timeout_s``), the batcher stops, and the call returns.
A second SIGINT quits at once.
"""

from __future__ import annotations

import math
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import uvicorn
from fastapi import FastAPI

from dlhpc.errors import ConfigError
from dlhpc.serve.app import create_app
from dlhpc.serve.config import ServeConfig
from dlhpc.serve.deadline import deadline_protocol
from dlhpc.serve.predictor import load_predictor


class DrainingServer(uvicorn.Server):
    """uvicorn's server, but a signal first turns readiness off, and exits cleanly (code 0)."""

    def __init__(self, config: uvicorn.Config, on_drain: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_drain = on_drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not super(): uvicorn would re-raise the signal after shutdown and die by it.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.on_drain()
            self.should_exit = True


def uvicorn_config(app: FastAPI, cfg: ServeConfig) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=cfg.host,
        port=cfg.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # httptools, plus a read deadline per request (408) and a header size limit (431): slow
        # clients cannot hold a connection (see dlhpc.serve.deadline)
        http=deadline_protocol(cfg.read_timeout_s, cfg.max_head_bytes),
        ws="none",  # no WebSocket routes: upgrade requests are plain requests
        proxy_headers=False,  # nothing reads the client's address: one layer less per request
        timeout_keep_alive=5,  # idle keep-alive connections close after 5 s
        limit_concurrency=cfg.max_connections,  # beyond it: 503, memory stays bounded
        timeout_graceful_shutdown=math.ceil(cfg.drain_timeout_s),
    )


def build_server(run_dir: Path, cfg: ServeConfig) -> DrainingServer:
    predictor = load_predictor(run_dir, cfg.backend, cfg.threads_per_worker, cfg.variant)
    app = create_app(predictor, cfg)
    return DrainingServer(uvicorn_config(app, cfg), app.state.serve.begin_drain)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before serving, so a busy port is one clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only then (else Nagle
    # and delayed ACKs add 40 ms to every answer on a kept-alive connection).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_server(
    run_dir: Path, cfg: ServeConfig, announce: Callable[[str], None] | None = None
) -> None:
    server = build_server(run_dir, cfg)
    sock = bind(cfg.host, cfg.port)
    host, port = sock.getsockname()[:2]
    if announce is not None:
        shown = f"[{host}]" if ":" in host else host
        announce(f"http://{shown}:{port}")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
