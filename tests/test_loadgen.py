"""The load generator: its pieces on their own, and every scenario against a live server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dlhpc.cli import main
from dlhpc.errors import ConfigError
from dlhpc.serve.app import create_app
from dlhpc.serve.config import ServeConfig
from dlhpc.serve.loadgen import LoadConfig, Record, load_samples, run_loadgen, summarize
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
