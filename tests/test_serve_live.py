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
from tests.test_serve_support import (
    EchoPredictor,
    echo_body,
    infer_body,
    labels_of,
    live_server,
    running,
)


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
    cfg = ServeConfig(name="m", read_timeout_s=0.3, max_body_bytes=2000)
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


def until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed it."""
    t0 = time.monotonic()
    sock.settimeout(limit)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except TimeoutError:
        raise AssertionError(f"still open after {limit} s; got {b''.join(chunks)!r}") from None
    except ConnectionResetError:
        pass
    return b"".join(chunks), time.monotonic() - t0


def test_slow_clients_time_out_while_others_are_served() -> None:
    """Slowloris: stalled or trickling requests are cut at the read deadline (the protocol)."""
    cfg = ServeConfig(name="m", read_timeout_s=0.5, max_head_bytes=4096)
    app = create_app(EchoPredictor(), cfg)
    server = DrainingServer(uvicorn_config(app, cfg), app.state.serve.begin_drain)
    head = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\n"
    with running(server) as url:
        addr = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
        start = time.monotonic()
        idle, partial_head, partial_body, trickle, unread_body = (
            socket.create_connection(addr) for _ in range(5)
        )
        partial_head.sendall(head)  # …and the rest of the headers never come
        partial_body.sendall(head + b"Content-Length: 500\r\n\r\n" + b'{"inputs":')
        # a body the route never reads: answered at once, then the connection is cut
        unread_body.sendall(
            b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nContent-Length: 99\r\n\r\n"
        )
        # meanwhile others are served, on fresh and kept-alive connections
        with httpx.Client(base_url=url, timeout=5) as c:
            for v in (1, 2):
                r = c.post("/v2/models/m/infer", json=echo_body(v))
                assert r.status_code == 200 and labels_of(r.json()) == [str(v)]
        t0 = time.monotonic()
        for b in head:  # one byte every 50 ms: each byte comes in time, the request does not
            try:
                trickle.send(bytes([b]))
            except OSError:
                break
            time.sleep(0.05)
        assert time.monotonic() - t0 < 3
        got = {
            "idle": until_closed(idle, 5),
            "partial head": until_closed(partial_head, 5),
            "partial body": until_closed(partial_body, 5),
            "trickle": until_closed(trickle, 5),
            "unread body": until_closed(unread_body, 5),
        }
        assert time.monotonic() - start < 4  # all cut near the 0.5 s deadline, none held
        assert got["idle"][0] == b""  # never sent a byte: closed without an answer
        for name in ("partial head", "partial body", "trickle"):
            assert got[name][0].startswith(b"HTTP/1.1 408"), (name, got[name])
        assert got["unread body"][0].startswith(b"HTTP/1.1 200")
        # headers over max_head_bytes: 431 at once, whatever the pace
        with socket.create_connection(addr) as big:
            big.sendall(head + b"X-Pad: " + b"a" * 5000 + b"\r\n")
            answer, _ = until_closed(big, 5)
        assert answer.startswith(b"HTTP/1.1 431")
        # a kept-alive connection may idle longer than the read deadline between requests
        with socket.create_connection(addr) as keep:
            for _ in range(2):
                keep.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n")
                answer = b""
                while not answer.endswith(b"}"):
                    answer += keep.recv(65536) or b"(closed)"
                assert answer.startswith(b"HTTP/1.1 200"), answer
                time.sleep(0.8)
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200
        for sock in (idle, partial_head, partial_body, trickle, unread_body):
            sock.close()


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
    assert main(cases[1]) == 2
    assert "dlhpc optimize" in capsys.readouterr().err
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
