"""A load generator for any KServe v2 server, in the manner of MLPerf LoadGen.

    dlhpc loadgen http://127.0.0.1:8000 --scenario server --qps 200 --duration 10
    report = run_loadgen(LoadConfig("http://127.0.0.1:8000/v2/models/digits", scenario="offline"))

Scenarios (one sample per request):
- ``single-stream``: one request at a time, the next when the last is answered; latency.
- ``server``: open-loop Poisson arrivals at ``qps``; latency counts from the *scheduled* send
  time, so a client or server that falls behind shows up in the numbers (no coordinated omission).
  At most ``concurrency`` requests are outstanding; the rest wait, and their wait is counted.
- ``offline``: ``concurrency`` requests always outstanding; the highest throughput.

Inputs follow the model's metadata: for image models (UINT8) random images of its shape, or
``x_test`` of an ``.npz`` file; for text models (BYTES) random texts of common words, or the
lines of a ``.txt`` file. Reports p50/p90/p99 latency, throughput and errors by status code.

Every request has ``timeout_s`` to be answered, else it counts as a ``"timeout"`` error; in the
server scenario that time runs from its scheduled send, as its latency does, so a dead or stalled
server ends the run about ``timeout_s`` after the last arrival. The probes before the run (which
model, its inputs) have the same limit, and a server that does not answer them stops the run
before any load is sent, as do unreadable data and a histogram path that cannot be written.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from dlhpc.errors import ConfigError, DataError
from dlhpc.fsio import atomic_write, unwritable
from dlhpc.serve.http1 import Http1Pool, ProtocolError

if TYPE_CHECKING:  # httpx is imported where used: `dlhpc --help` and every parser skip it
    import httpx

SCENARIOS = ("single-stream", "server", "offline")


@dataclass(frozen=True)
class LoadConfig:
    url: str  # http://host:port (a server of one model) or http://host:port/v2/models/NAME
    scenario: str = "server"
    qps: float = 100.0  # server: mean arrival rate
    duration_s: float = 10.0  # how long requests are issued
    concurrency: int = 16  # offline: requests kept outstanding; server: at most outstanding
    data: str = "random"  # random | a .npz with x_test (images) | a .txt, one text a line
    token: str | None = None
    timeout_s: float = 10.0  # per request and per probe: unanswered by then is an error
    samples: int = 64  # distinct request bodies, cycled
    seed: int = 0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"expected an http://HOST[:PORT] URL, got {self.url!r}")
        try:
            port = parts.port  # urllib checks the number, not that one can connect to it
        except ValueError:
            port = 0
        if port == 0:  # out of range, not a number, or 0 ("any port" when listening)
            raise ConfigError(f"{self.url}: the port must be a number from 1 to 65535")
        if self.scenario not in SCENARIOS:
            raise ConfigError(f"unknown scenario {self.scenario!r}; choose from {SCENARIOS}")
        for what, v in {"qps": self.qps, "duration": self.duration_s,
                        "concurrency": self.concurrency, "timeout": self.timeout_s,
                        "samples": self.samples}.items():  # fmt: skip
            if not v > 0 or not math.isfinite(v):  # nan passes `v <= 0`; inf never ends
                raise ConfigError(f"{what} must be a positive finite number, got {v}")


@dataclass
class Record:
    latencies_s: list[float] = field(default_factory=list)  # successful requests
    outcomes: dict[str, int] = field(default_factory=dict)  # "200", "503", "timeout", …
    last_done: float = 0.0

    def add(self, outcome: str, latency_s: float) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if outcome == "200":
            self.latencies_s.append(latency_s)
        self.last_done = time.perf_counter()


def probe(client: httpx.Client, url: str) -> httpx.Response:
    """GET ``url`` under the client's timeout; a server that cannot be reached, or that takes
    the connection and never answers (a hung process, a port that is not HTTP), is one line."""
    import httpx

    try:
        return client.get(url)
    except httpx.ConnectTimeout:
        raise ConfigError(f"{url}: cannot reach the server (connecting timed out)") from None
    except httpx.TimeoutException:  # connected, asked, no answer within the timeout
        raise ConfigError(f"no response from {url} within {client.timeout.read} s") from None
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        raise ConfigError(f"{url}: cannot reach the server ({e})") from None


def model_url(client: httpx.Client, url: str) -> str:
    """``…/v2/models/NAME``: as given, or the one model a dlhpc server lists at ``/v2``."""
    url = url.rstrip("/")
    if "/v2/models/" in url:
        return url
    r = probe(client, f"{url}/v2")
    try:
        models = r.json().get("models") if r.status_code == 200 else None
    except (ValueError, AttributeError):
        models = None
    if not isinstance(models, list) or len(models) != 1:
        raise ConfigError(f"{url}: cannot tell the model; give http://HOST:PORT/v2/models/NAME")
    return f"{url}/v2/models/{models[0]}"


def input_tensor(client: httpx.Client, url: str) -> tuple[str, str, list[int]]:
    """The input tensor's name, datatype and shape (first dim -1) from the model metadata."""
    r = probe(client, url)
    if r.status_code != 200:
        raise ConfigError(f"{url}: model metadata answered {r.status_code}: {r.text[:200]}")
    try:
        (inp,) = r.json()["inputs"]
        name, dtype, shape = inp["name"], inp["datatype"], [int(d) for d in inp["shape"]]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{url}: not KServe v2 model metadata") from None
    if (dtype, len(shape)) not in (("UINT8", 3), ("UINT8", 4), ("BYTES", 1)):
        raise ConfigError(
            f"{url}: loadgen sends images (UINT8) or texts (BYTES); the model takes {dtype} {shape}"
        )
    return str(name), str(dtype), shape


def load_samples(data: str, shape: list[int], n: int, seed: int) -> np.ndarray:
    """uint8 (n, *shape[1:]) images: random, or ``x_test`` of an .npz (numpy, no pickle)."""
    item = tuple(shape[1:])
    if data == "random":
        return np.random.default_rng(seed).integers(0, 256, (n, *item), dtype=np.uint8)
    path = Path(data)
    if path.suffix != ".npz" or not path.is_file():
        raise ConfigError(f"{data}: expected 'random' or an .npz file with x_test")
    x = _read_x_test(path, n)
    if x.ndim == len(item) and item[-1] == 1:  # (N, H, W) for a one-channel model
        x = x[..., None]
    if x.shape[1:] != item or len(x) == 0:
        raise ConfigError(f"{data}: x_test is {list(x.shape)}; the model takes [N, {item}]")
    if x.dtype != np.uint8 and not (x.min() >= 0 and x.max() <= 255):  # nan fails too
        raise ConfigError(f"{data}: x_test must hold raw pixels 0–255")
    return x.astype(np.uint8)


def _read_x_test(path: Path, n: int) -> np.ndarray:
    """The first ``n`` of ``x_test``: numbers in an array of at least one dimension. An empty,
    truncated or corrupt file is one line naming it, as ``dlhpc.data``'s .npz reader says it."""
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array (.npy), not named arrays")
        with z:
            if "x_test" not in z.files:
                keys = ", ".join(sorted(z.files)) or "none"
                raise DataError(f"{path}: expected an array x_test; found {keys}")
            x = z["x_test"]  # the whole member is read (and its CRC checked) here
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    if x.ndim == 0 or x.dtype.kind not in "buif":
        raise DataError(f"{path}: x_test must be an array of pixel values, got {x.dtype} {x.shape}")
    return np.asarray(x[:n])


WORDS = (  # random texts: common English words
    "the", "of", "and", "to", "in", "is", "it", "that", "with", "for", "on", "as", "was", "by",
    "at", "from", "this", "have", "not", "are", "but", "be", "one", "model", "data", "time",
    "year", "people", "way", "day", "man", "thing", "world", "life", "hand", "part", "child",
    "eye", "place", "work", "week", "case", "point", "number", "group", "problem", "fact", "good",
    "new", "first", "last", "long", "great", "little", "own", "other"
)  # fmt: skip


def load_texts(data: str, n: int, seed: int) -> list[str]:
    """``n`` texts: random runs of common words, or the first non-blank lines of a .txt file."""
    if data == "random":
        rng = np.random.default_rng(seed)
        return [" ".join(rng.choice(WORDS, int(rng.integers(3, 40)))) for _ in range(n)]
    path = Path(data)
    if path.suffix != ".txt" or not path.is_file():
        raise ConfigError(f"{data}: expected 'random' or a .txt file, one text per line")
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{data}: cannot read it as UTF-8 text ({e})") from None
    if not lines:
        raise ConfigError(f"{data}: has no text lines")
    return lines[:n]


def image_tensors(name: str, shape: list[int], cfg: LoadConfig) -> list[dict[str, Any]]:
    x = load_samples(cfg.data, shape, cfg.samples, cfg.seed)
    return [{"name": name, "datatype": "UINT8", "shape": [1, *sample.shape],
             "data": sample.ravel().tolist()} for sample in x]  # fmt: skip


def text_tensors(name: str, shape: list[int], cfg: LoadConfig) -> list[dict[str, Any]]:
    texts = load_texts(cfg.data, cfg.samples, cfg.seed)
    return [{"name": name, "datatype": "BYTES", "shape": [1], "data": [t]} for t in texts]


TENSORS = {"UINT8": image_tensors, "BYTES": text_tensors}


def request_bodies(tensors: list[dict[str, Any]]) -> list[bytes]:
    """One JSON body per sample, made once: the client's time goes to sending, not encoding."""
    return [json.dumps({"inputs": [t]}).encode() for t in tensors]


async def _send(client: Http1Pool, path: str, body: bytes, timeout_s: float) -> str:
    """One request's outcome: its status code, "timeout", or the error that ended it. The
    timeout covers the whole request, connecting included (the pool's own covers the exchange:
    a server whose backlog is full takes no connection for minutes)."""
    try:
        async with asyncio.timeout(timeout_s):
            status, _ = await client.post(path, body)
    except TimeoutError:
        return "timeout"
    except (OSError, EOFError, ValueError, ProtocolError) as e:  # refused, reset, garbled
        return type(e).__name__
    return str(status)


async def _single_stream(client: Http1Pool, url: str, bodies: list[bytes],
                         cfg: LoadConfig, rec: Record) -> None:  # fmt: skip
    end = time.perf_counter() + cfg.duration_s
    i = 0
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        outcome = await _send(client, url, bodies[i % len(bodies)], cfg.timeout_s)
        rec.add(outcome, time.perf_counter() - t0)
        i += 1


async def _offline(client: Http1Pool, url: str, bodies: list[bytes],
                   cfg: LoadConfig, rec: Record) -> None:  # fmt: skip
    end = time.perf_counter() + cfg.duration_s

    async def stream(k: int) -> None:
        i = k
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            outcome = await _send(client, url, bodies[i % len(bodies)], cfg.timeout_s)
            rec.add(outcome, time.perf_counter() - t0)
            i += cfg.concurrency

    await asyncio.gather(*(stream(k) for k in range(cfg.concurrency)))


async def _server(client: Http1Pool, url: str, bodies: list[bytes],
                  cfg: LoadConfig, rec: Record) -> None:  # fmt: skip
    rng = np.random.default_rng(cfg.seed)
    gaps = rng.exponential(1.0 / cfg.qps, size=int(cfg.qps * cfg.duration_s * 2) + 16)
    arrivals = np.cumsum(gaps)
    arrivals = arrivals[arrivals < cfg.duration_s]
    gate = asyncio.Semaphore(cfg.concurrency)
    start = time.perf_counter()

    async def one(i: int, scheduled: float) -> None:
        # The timeout runs from the scheduled send, as the latency does: a request that waited
        # its time out for a free slot is a timeout, not a late send (so a stalled server ends
        # the run about timeout_s after the last arrival, not timeout_s per `concurrency` ones).
        async with gate:
            left = scheduled + cfg.timeout_s - time.perf_counter()
            body = bodies[i % len(bodies)]
            outcome = await _send(client, url, body, left) if left > 0 else "timeout"
        rec.add(outcome, time.perf_counter() - scheduled)

    tasks = []
    for i, t in enumerate(arrivals.tolist()):
        delay = start + t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, start + t)))
    await asyncio.gather(*tasks)


RUNNERS = {"single-stream": _single_stream, "server": _server, "offline": _offline}


def _fast_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where installed (~20% less client CPU per request: on a machine the
    client shares with the server, more of it goes to the server); else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def drive(cfg: LoadConfig, url: str, bodies: list[bytes]) -> tuple[Record, float]:
    """Run the scenario; the record and the wall time from the first send to the last answer."""
    n = 1 if cfg.scenario == "single-stream" else cfg.concurrency
    headers = {"authorization": f"Bearer {cfg.token}"} if cfg.token else {}
    rec = Record()
    client = Http1Pool(url, n, headers, cfg.timeout_s)
    try:
        start = time.perf_counter()
        await RUNNERS[cfg.scenario](client, "/infer", bodies, cfg, rec)
    finally:
        await client.close()
    return rec, max(rec.last_done - start, 1e-9)


def summarize(cfg: LoadConfig, url: str, rec: Record, wall_s: float) -> dict[str, Any]:
    lat_ms = np.asarray(rec.latencies_s) * 1000.0
    ok = len(lat_ms)

    def pct(q: float) -> float | None:
        return round(float(np.percentile(lat_ms, q)), 3) if ok else None

    return {
        "url": url,
        "scenario": cfg.scenario,
        "target_qps": cfg.qps if cfg.scenario == "server" else None,
        "concurrency": 1 if cfg.scenario == "single-stream" else cfg.concurrency,
        "duration_s": round(wall_s, 3),
        "requests": sum(rec.outcomes.values()),
        "ok": ok,
        "errors": {k: v for k, v in sorted(rec.outcomes.items()) if k != "200"},
        "throughput_rps": round(ok / wall_s, 2),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "mean_ms": round(float(lat_ms.mean()), 3) if ok else None,
        "max_ms": round(float(lat_ms.max()), 3) if ok else None,
    }


def write_histogram(path: Path, latencies_s: list[float], report: dict[str, Any]) -> Path:
    """Latency histogram with p50/p90/p99 marked, as a PNG (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    lat_ms = np.asarray(latencies_s) * 1000.0
    if len(lat_ms):
        hi = float(min(lat_ms.max(), 3 * report["p99_ms"]))  # a few stragglers: not the x-axis
        bins = min(60, max(5, len(lat_ms) // 5))
        ax.hist(lat_ms, bins=bins, range=(0.0, hi), color="#4878a8")
        if (slower := int((lat_ms > hi).sum())) > 0:
            ax.text(0.98, 0.5, f"{slower} slower than {hi:.0f} ms not shown",
                    transform=ax.transAxes, ha="right")  # fmt: skip
        for q, style in (("p50_ms", "-"), ("p90_ms", "--"), ("p99_ms", ":")):
            ax.axvline(report[q], color="#c44e52", linestyle=style,
                       label=f"{q[:3]} {report[q]:.2f} ms")  # fmt: skip
        ax.legend()
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("requests")
    ax.set_title(f"{report['scenario']}: {report['throughput_rps']:.0f} req/s, "
                 f"{report['ok']} ok, {report['requests'] - report['ok']} errors")  # fmt: skip
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def check_output_path(path: Path) -> None:
    """Fail now, not after the load test, where the histogram could not be written."""
    why = unwritable(path)
    if why is not None:
        raise ConfigError(why)


def run_loadgen(cfg: LoadConfig, png: Path | None = None) -> dict[str, Any]:
    """Drive the server with ``cfg``'s scenario; the report dict (and the PNG when asked).

    What can be checked before the load is: the PNG's path, the server's answers about its
    model, the samples; the load test starts only when all of them are right."""
    import httpx

    if png is not None:
        check_output_path(png)
    headers = {"authorization": f"Bearer {cfg.token}"} if cfg.token else {}
    with httpx.Client(timeout=cfg.timeout_s, headers=headers) as client:
        url = model_url(client, cfg.url)
        name, dtype, shape = input_tensor(client, url)
    bodies = request_bodies(TENSORS[dtype](name, shape, cfg))
    with asyncio.Runner(loop_factory=_fast_loop()) as runner:
        rec, wall_s = runner.run(drive(cfg, url, bodies))
    report = summarize(cfg, url, rec, wall_s)
    if png is not None:
        report["histogram"] = str(write_histogram(png, rec.latencies_s, report))
    return report
