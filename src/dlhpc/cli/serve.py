"""``dlhpc serve`` and ``dlhpc loadgen``: real-time inference over HTTP, and its load test.

dlhpc serve runs/cnn-… --port 8000 --max-batch-size 32      # KServe v2 REST, until Ctrl+C
dlhpc serve runs/cnn-… --backend onnx --variant int8-static  # what dlhpc optimize wrote
dlhpc loadgen http://127.0.0.1:8000 --scenario server --qps 200 --duration 10 --json
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from dlhpc.cli.common import add_output_flags, emit, positive_float


def _default_name(run: Path) -> str:
    name = run.resolve().name
    return name if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) else "model"


def add_serve(sub: Any) -> None:
    from dlhpc.serve.config import BACKENDS, ServeConfig

    d = ServeConfig()
    p = sub.add_parser(
        "serve",
        help="serve a run over HTTP (KServe v2 / Open Inference REST)",
        description="Serve RUN with dynamic batching until SIGTERM or Ctrl+C, "
        "then drain: finish what is in flight and exit.",
    )
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=d.backend,
        help="eager PyTorch, or RUN/optimized/onnx/model.onnx on ONNX Runtime",
    )
    p.add_argument(
        "--variant",
        metavar="NAME",
        help="serve RUN/optimized/NAME/ from dlhpc optimize: int8-static, int8-dynamic "
        "(--backend onnx), pruned-50 (eager)",
    )
    p.add_argument("--host", default=d.host, help=f"address to listen on ({d.host})")
    p.add_argument("--port", type=int, default=d.port, help=f"({d.port}; 0 = any free port)")
    p.add_argument("--name", help="model name in the URLs (the run directory's name)")
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=d.max_batch_size,
        metavar="N",
        help=f"samples per forward pass ({d.max_batch_size}; 1 = no batching)",
    )
    p.add_argument(
        "--max-queue-delay-ms",
        type=float,
        default=d.max_queue_delay_ms,
        metavar="MS",
        help="wait this long to fill a batch (0: only batch what is queued)",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=d.max_queue,
        metavar="N",
        help=f"requests waiting; beyond it 503 ({d.max_queue})",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        metavar="N",
        help="forward passes at once, one thread each (1)",
    )
    p.add_argument(
        "--read-timeout-s",
        type=float,
        default=d.read_timeout_s,
        metavar="S",
        help=f"a request (headers and body) must arrive within S seconds, else 408 and the "
        f"connection closes ({d.read_timeout_s:g})",
    )
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (all but health)")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(a: argparse.Namespace) -> int:
    from dlhpc.serve.config import ServeConfig
    from dlhpc.serve.server import run_server

    cfg = ServeConfig(
        host=a.host,
        port=a.port,
        name=a.name or _default_name(a.run),
        backend=a.backend,
        variant=a.variant,
        max_batch_size=a.max_batch_size,
        max_queue_delay_ms=a.max_queue_delay_ms,
        max_queue=a.max_queue,
        workers=a.workers,
        read_timeout_s=a.read_timeout_s,
        token=a.token,
    )
    what = cfg.backend if cfg.variant is None else f"{cfg.variant} on {cfg.backend}"

    def announce(url: str) -> None:
        print(
            f"dlhpc serve: {cfg.name} ({what}, batch ≤ {cfg.max_batch_size}) at "
            f"{url}/v2/models/{cfg.name}  (Ctrl+C or SIGTERM drains and stops)",
            flush=True,
        )

    run_server(a.run, cfg, announce)
    print("dlhpc serve: drained, stopped", flush=True)
    return 0


def add_loadgen(sub: Any) -> None:
    from dlhpc.serve.loadgen import SCENARIOS, LoadConfig

    d = LoadConfig("http://localhost")
    p = sub.add_parser(
        "loadgen",
        help="load-test a KServe v2 server (MLPerf-style scenarios)",
        description="Send requests to URL and report latency percentiles, "
        "throughput and errors by status code.",
    )
    p.add_argument("url", help="http://HOST:PORT, or http://HOST:PORT/v2/models/NAME")
    p.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default=d.scenario,
        help="single-stream | server (Poisson, open loop) | offline (max throughput)",
    )
    p.add_argument("--qps", type=float, default=d.qps, help=f"server: arrivals/s ({d.qps:g})")
    p.add_argument(
        "--duration",
        type=float,
        default=d.duration_s,
        help=f"seconds of sending ({d.duration_s:g})",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=d.concurrency,
        metavar="N",
        help=f"outstanding requests: offline always, server at most ({d.concurrency})",
    )
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=d.timeout_s,
        metavar="S",
        help="seconds each request may take (server scenario: from its scheduled send); "
        "slower ones count as 'timeout' errors. A server that leaves the first requests (its "
        f"model's metadata) unanswered that long stops loadgen before any load ({d.timeout_s:g})",
    )
    p.add_argument(
        "--data",
        default=d.data,
        metavar="SRC",
        help="random images of the model's shape, or an .npz with x_test",
    )
    p.add_argument(
        "--out", type=Path, metavar="PNG", help="latency histogram (loadgen-SCENARIO.png)"
    )
    p.add_argument("--token", help="send 'Authorization: Bearer TOKEN'")
    add_output_flags(p)
    p.set_defaults(func=_cmd_loadgen)


def _cmd_loadgen(a: argparse.Namespace) -> int:
    from dlhpc.serve.loadgen import LoadConfig, run_loadgen

    cfg = LoadConfig(
        a.url,
        scenario=a.scenario,
        qps=a.qps,
        duration_s=a.duration,
        concurrency=a.concurrency,
        data=a.data,
        token=a.token,
        timeout_s=a.timeout,
    )
    report = run_loadgen(cfg, a.out or Path(f"loadgen-{cfg.scenario}.png"))
    emit(a, report, f"{cfg.scenario} on {report['url']}")
    if not a.quiet and report["errors"]:
        print(
            "  errors               " + ", ".join(f"{k}: {v}" for k, v in report["errors"].items())
        )
    return 0


COMMANDS = (add_serve, add_loadgen)
