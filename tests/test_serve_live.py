"""The server on real loopback sockets: concurrent clients, slow and oversized bodies, the CLI,
and SIGTERM draining a real `dlhpc serve` process. All traffic stays on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from dlhpc.cli import main
from dlhpc.serve.app import create_app
from dlhpc.serve.config import ServeConfig
from dlhpc.serve.predictor import load_predictor
from dlhpc.serve.server import DrainingServer, uvicorn_config
from tests.test_serve_support import EchoPredictor, echo_body, infer_body, labels_of, live_server


def test_concurrent_clients_get_their_own_answers(trained_run: Path) -> None:
    predictor = load_predictor(trained_run, "eager", threads=1)
    cfg = ServeConfig(name="d", max_batch_size=16, max_queue_delay_ms=20)
    app = create_app(predictor, cfg)
    x = np.random.default_rng(3).integers(0, 256, (24, 28, 28), dtype=np.uint8)
    want = predictor.predict(x[:, None])

    async def go(url: str) -> list[np.ndarray]:
        async with httpx.AsyncClient(base_url=url, timeout=20) as c:
            rs = await asyncio.gather(
                *(c.post("/v2/models/d/infer", json=infer_body(x[i : i + 1])) for i in range(24))
            )
        assert all(r.status_code == 200 for r in rs)
        return [np.asarray(r.json()["outputs"][0]["data"], np.float32) for r in rs]

    with live_server(app) as url:
        got = asyncio.run(go(url))
        metrics = httpx.get(f"{url}/metrics").text
    np.testing.assert_allclose(np.stack(got), want, atol=1e-6)
    count = next(ln for ln in metrics.splitlines() if ln.startswith("dlhpc_batch_size_count"))
    assert float(count.split()[-1]) < 24  # some requests shared a forward pass


def raw_exchange(url: str, head: bytes, body: bytes = b"", wait: float = 5.0) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as s:
        s.sendall(head + body)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b"}" in chunk:
                break
    return b"".join(chunks)


def test_slow_and_oversized_bodies_are_refused() -> None:
    cfg = ServeConfig(name="m", body_timeout_s=0.3, max_body_bytes=2000)
    with live_server(create_app(EchoPredictor(), cfg)) as url:
        post = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        # declares 500 bytes, sends 10, then stalls: 408 after the body timeout
        t0 = time.monotonic()
        answer = raw_exchange(url, post + b"Content-Length: 500\r\n\r\n", b'{"inputs":')
        assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < 3
        # declares too much: 413 before a byte of the body is read
        answer = raw_exchange(url, post + b"Content-Length: 10000000\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 413")
        r = httpx.post(f"{url}/v2/models/m/infer", json=echo_body(9))
        assert r.status_code == 200 and labels_of(r.json()) == ["9"]


def test_a_signal_turns_readiness_off_before_stopping() -> None:
    app = create_app(EchoPredictor(), ServeConfig(name="m"))
    server = DrainingServer(uvicorn_config(app, ServeConfig()), app.state.serve.begin_drain)
    assert app.state.serve.ready
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit and not app.state.serve.ready and not server.force_exit
    server.handle_exit(signal.SIGINT, None)  # a second Ctrl+C: quit now
    assert server.force_exit


def test_serve_cli_errors_are_one_line(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        ["serve", str(tmp_path / "norun")],
        ["serve", str(trained_run), "--backend", "onnx"],
        ["serve", str(trained_run), "--max-batch-size", "0"],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "error" in err, (argv, err)
    assert "dlhpc optimize" in (main(cases[1]) == 2 and capsys.readouterr().err)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = str(busy.getsockname()[1])
    assert main(["serve", str(trained_run), "--port", port]) == 2
    assert "cannot listen" in capsys.readouterr().err
    busy.close()


def in_flight(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    line = next(ln for ln in text.splitlines() if ln.startswith("dlhpc_in_flight_requests "))
    return float(line.split()[-1])


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests_then_exits(trained_run: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlhpc", "serve", str(trained_run), "--port", "0", "--name", "d",
         "--max-batch-size", "64", "--max-queue-delay-ms", "2000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split(" at ")[1].split("/v2/")[0]
        assert httpx.get(f"{url}/v2/health/ready", timeout=10).status_code == 200
        body = json.dumps(infer_body(np.zeros((1, 28, 28), np.uint8))).encode()
        results: list[int] = []

        def send() -> None:  # waits ~2 s in the batcher for company: in flight at SIGTERM
            r = httpx.post(f"{url}/v2/models/d/infer", content=body, timeout=20)
            results.append(r.status_code)

        threads = [threading.Thread(target=send) for _ in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 15
        while in_flight(url) < 6 + 1 and time.monotonic() < deadline:  # + 1: the scrape
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(20)
        assert results == [200] * 6  # none lost
        assert proc.wait(20) == 0
        assert "drained" in proc.stdout.read()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/v2/health/live", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read()
