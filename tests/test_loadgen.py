"""The load generator: its pieces on their own, and every scenario against a live server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import queue
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from dlhpc.cli import main
from dlhpc.errors import ConfigError, DataError
from dlhpc.serve.app import create_app
from dlhpc.serve.config import ServeConfig
from dlhpc.serve.loadgen import (
    LoadConfig,
    Record,
    check_output_path,
    load_samples,
    run_loadgen,
    summarize,
)
from dlhpc.serve.predictor import load_predictor
from tests.test_serve_support import EchoPredictor, live_server

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def digits_url(trained_run: Path) -> Iterator[str]:
    app = create_app(load_predictor(trained_run, "eager", threads=1), ServeConfig(name="digits"))
    with live_server(app) as url:
        yield url


def test_summary_percentiles_and_errors() -> None:
    rec = Record()
    for ms in range(1, 101):
        rec.add("200", ms / 1000)
    rec.add("503", 0.0)
    rec.add("timeout", 0.0)
    cfg = LoadConfig("http://127.0.0.1:1", scenario="server", qps=50)
    s = summarize(cfg, "u", rec, wall_s=2.0)
    assert s["requests"] == 102 and s["ok"] == 100
    assert s["errors"] == {"503": 1, "timeout": 1}
    assert s["throughput_rps"] == 50.0 and s["target_qps"] == 50
    assert s["p50_ms"] == pytest.approx(50.5) and s["p99_ms"] == pytest.approx(99.01)
    empty = summarize(cfg, "u", Record(), wall_s=1.0)
    assert empty["p50_ms"] is None and empty["throughput_rps"] == 0


def test_samples_come_random_or_from_an_npz(tmp_path: Path) -> None:
    x = load_samples("random", [-1, 28, 28, 1], 5, seed=0)
    assert x.shape == (5, 28, 28, 1) and x.dtype == np.uint8
    npz = tmp_path / "d.npz"
    x_test = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    np.savez(npz, x_test=x_test.astype(np.uint8), y_test=np.zeros(3))
    got = load_samples(str(npz), [-1, 28, 28, 1], 64, seed=0)
    assert got.shape == (3, 28, 28, 1) and (got[..., 0] == x_test).all()
    with pytest.raises(ConfigError, match="x_test is"):
        load_samples(str(npz), [-1, 8, 8, 1], 4, seed=0)
    with pytest.raises(ConfigError, match="npz"):
        load_samples(str(tmp_path / "nope.npz"), [-1, 28, 28, 1], 4, seed=0)


def test_bad_settings_are_config_errors() -> None:
    for bad in ({"url": "ftp://x"}, {"scenario": "burst"}, {"qps": 0}, {"duration_s": -1},
                {"concurrency": 0}):  # fmt: skip
        kw = {"url": "http://127.0.0.1:1", **bad}
        with pytest.raises(ConfigError):
            LoadConfig(**kw)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cannot reach"):
        run_loadgen(LoadConfig("http://127.0.0.1:9", duration_s=0.1, timeout_s=2))


@pytest.mark.parametrize("scenario", ["single-stream", "server", "offline"])
def test_every_scenario_reports_sane_numbers(
    digits_url: str, scenario: str, tmp_path: Path
) -> None:
    cfg = LoadConfig(digits_url, scenario=scenario, qps=40, duration_s=1.0, concurrency=4)
    png = tmp_path / "lat.png"
    r = run_loadgen(cfg, png)
    assert r["url"] == f"{digits_url}/v2/models/digits"
    assert r["errors"] == {} and r["ok"] == r["requests"] >= 10
    assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"] < 5000
    assert r["throughput_rps"] > 5
    assert png.read_bytes()[:8] == PNG_MAGIC and r["histogram"] == str(png)
    if scenario == "server":  # open loop: about qps × duration arrivals
        assert 15 <= r["requests"] <= 80


def test_loadgen_counts_errors_by_status_code(tmp_path: Path) -> None:
    cfg = ServeConfig(name="m", max_batch_size=1, max_queue=1)
    with live_server(create_app(EchoPredictor(delay=0.05), cfg)) as url:
        r = run_loadgen(LoadConfig(url, scenario="offline", duration_s=0.6, concurrency=8))
    assert r["errors"].get("503", 0) > 0 and r["ok"] > 0
    assert r["requests"] == r["ok"] + sum(r["errors"].values())


def test_loadgen_cli_prints_json_and_writes_the_png(
    digits_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "h.png"
    url = f"{digits_url}/v2/models/digits"
    argv = ["loadgen", url, "--scenario", "offline", "--duration", "0.5", "--concurrency", "2",
            "--out", str(png), "--json"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["ok"] > 0 and report["p99_ms"] > 0
    assert "p50_ms" in out and "throughput_rps" in out
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert main(["loadgen", "http://127.0.0.1:9", "--duration", "0.1"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_http1_client_reads_chunked_answers_and_survives_closed_connections() -> None:
    """A hand-written server: chunked body, then a kept-alive connection it drops."""
    import asyncio

    from dlhpc.serve.http1 import Http1Pool

    seen = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        seen += 1
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6; x=y\r\n world\r\n0\r\n\r\n")  # fmt: skip
        await writer.drain()
        writer.close()  # the client still thinks the connection is kept alive

    async def go() -> list[tuple[int, bytes]]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = Http1Pool(f"http://127.0.0.1:{port}", size=1, timeout=5)
        out = [await pool.post("/x", b"{}"), await pool.post("/x", b"[]")]
        await pool.close()
        server.close()
        await server.wait_closed()
        return out

    assert asyncio.run(go()) == [(200, b"hello world")] * 2
    assert seen == 2


@contextmanager
def stalling_server() -> Iterator[tuple[str, dict[str, int]]]:
    """A v2 server of one 28×28 image model ("m") that answers where the model is and what it
    takes, and never answers an inference: each one is read, counted and left hanging.
    Yields the base URL and the requests seen by method."""
    seen = {"GET": 0, "POST": 0}
    meta = {"name": "m", "inputs": [{"name": "x", "datatype": "UINT8", "shape": [-1, 28, 28, 1]}]}
    answers = {
        b"/v2": json.dumps({"models": ["m"]}).encode(),
        b"/v2/models/m": json.dumps(meta).encode(),
    }
    ready: queue.SimpleQueue[tuple[int, asyncio.AbstractEventLoop, asyncio.Event]] = (
        queue.SimpleQueue()
    )

    async def serve() -> None:
        stop = asyncio.Event()
        handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}  # held till they end

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers[task] = writer
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    method, path = head.split()[:2]
                    seen[method.decode()] += 1
                    if method == b"POST":
                        await stop.wait()
                        return
                    body = answers.get(path, b"{}")
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
                    await writer.drain()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        ready.put((server.sockets[0].getsockname()[1], asyncio.get_running_loop(), stop))
        async with server:
            await stop.wait()
            for writer in handlers.values():
                writer.close()  # a handler still reading sees the end of its stream
            await asyncio.gather(*handlers)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    port, loop, stop = ready.get(timeout=10)
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


@contextmanager
def silent_socket() -> Iterator[str]:
    """A port that takes connections (the kernel's backlog does) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_server_that_never_answers_is_one_line_before_any_load(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with silent_socket() as url:
        for target in (url, f"{url}/v2/models/m"):  # the model's name asked, or given
            t0 = time.perf_counter()
            with pytest.raises(ConfigError, match=r"no response from http://.* within 0\.2 s"):
                run_loadgen(LoadConfig(target, duration_s=0.1, timeout_s=0.2))
            assert time.perf_counter() - t0 < 3
        assert main(["loadgen", url, "--duration", "1", "--timeout", "0.2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dlhpc loadgen: error: no response from")


@pytest.mark.parametrize("scenario", ["single-stream", "server", "offline"])
def test_requests_that_time_out_count_as_errors_and_the_run_still_ends(scenario: str) -> None:
    """The server answers its metadata, then no inference: every request is a "timeout", and
    the run ends about one timeout after the sending stops (the server scenario's queued
    requests time out from their scheduled send, not one timeout per batch of `concurrency`)."""
    cfg = LoadConfig("http://x", scenario=scenario, qps=100, duration_s=0.3, concurrency=2,
                     timeout_s=0.3)  # fmt: skip
    with stalling_server() as (url, seen):
        t0 = time.perf_counter()
        r = run_loadgen(dataclasses.replace(cfg, url=url))
        elapsed = time.perf_counter() - t0
    assert r["ok"] == 0 and r["errors"] == {"timeout": r["requests"]} and r["requests"] >= 1
    assert r["p50_ms"] is None and seen["POST"] >= 1
    assert elapsed < 2.5  # duration + timeout, with room; 30 server requests 2 at a time: 4.5 s


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 cut short", "truncated"])
def test_an_unreadable_npz_is_one_line_before_any_load(
    tmp_path: Path, content: bytes | str, capsys: pytest.CaptureFixture[str]
) -> None:
    npz = tmp_path / "x.npz"
    if isinstance(content, str):  # a real archive, cut short (a copy that did not finish)
        np.savez_compressed(npz, x_test=np.random.default_rng(0).integers(0, 255, (64, 28, 28)))
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    else:
        npz.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(f"{npz}: not a readable .npz file")):
        load_samples(str(npz), [-1, 28, 28, 1], 4, seed=0)
    with stalling_server() as (url, seen):
        argv = ["loadgen", url, "--data", str(npz), "--duration", "0.2",
                "--out", str(tmp_path / "h.png")]  # fmt: skip
        assert main(argv) == 2
    assert seen["POST"] == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{npz}: not a readable .npz file" in err[0]


def test_an_npz_without_pixel_values_in_x_test_is_a_data_error(tmp_path: Path) -> None:
    cases = {"scalar": {"x_test": np.uint8(3)}, "text": {"x_test": np.array(["a", "b"])},
             "nokey": {"x_train": np.zeros((2, 28, 28), np.uint8)}}  # fmt: skip
    for name, arrays in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)  # type: ignore[arg-type]
        with pytest.raises(DataError, match=f"{name}.npz: .*x_test"):
            load_samples(str(tmp_path / f"{name}.npz"), [-1, 28, 28, 1], 4, seed=0)
    np.save(tmp_path / "one.npy", np.zeros((2, 28, 28), np.uint8))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    with pytest.raises(DataError, match="single array"):
        load_samples(str(tmp_path / "one.npz"), [-1, 28, 28, 1], 4, seed=0)


def test_an_unwritable_histogram_path_is_one_line_before_any_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    bad = {tmp_path: "is a directory", a_file / "h.png": "is not a directory"}
    if Path("/proc/self").is_dir():  # no new file in /proc, for root too
        bad[Path("/proc/h.png")] = "/proc/h.png: cannot be written"
    with stalling_server() as (url, seen):
        for path, why in bad.items():
            with pytest.raises(ConfigError, match=why):
                check_output_path(path)
            assert main(["loadgen", url, "--duration", "0.2", "--out", str(path)]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and str(path) in err[0] and why in err[0]
    assert seen == {"GET": 0, "POST": 0}  # failed before even asking the server
    check_output_path(tmp_path / "new" / "sub" / "h.png")  # folders to make at the write: fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]  # and nothing left behind


def test_a_port_out_of_range_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for url in ("http://127.0.0.1:99999", "http://127.0.0.1:0", "http://127.0.0.1:http"):
        with pytest.raises(ConfigError, match="port must be a number from 1 to 65535"):
            LoadConfig(url)
    assert main(["loadgen", "http://127.0.0.1:99999", "--duration", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dlhpc loadgen: error: http://127.0.0.1:99999: the port must be a number "
                   "from 1 to 65535"]  # fmt: skip
    for bad in ({"qps": float("inf")}, {"duration_s": float("nan")}, {"timeout_s": 0}):
        with pytest.raises(ConfigError, match="positive finite"):
            LoadConfig("http://127.0.0.1:1", **bad)
