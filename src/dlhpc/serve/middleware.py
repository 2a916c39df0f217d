"""Plain ASGI middlewares: a bearer token check, per-request metrics, and a fast path.

app.add_middleware(FastPath, method="POST", path="/v2/models/m/infer", endpoint=infer)
app.add_middleware(BearerAuth, token="s3cret")   # all but /v2/health/* and / need the token
app.add_middleware(Observe, metrics=metrics)      # status codes, latency, in-flight
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dlhpc.serve.metrics import ServeMetrics

OPEN_PREFIX = "/v2/health/"
OPEN_PATHS = frozenset({"/"})  # the web page: it asks for the token and sends it itself

# Metric label per route, so unknown paths (scanners, fuzzers) cannot grow the label set.
_ROUTES = (
    ("/v2/health/", "/v2/health"),
    ("/metrics", "/metrics"),
    ("/predict", "/predict"),
)

_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"})


def route_label(path: str) -> str:
    if path in OPEN_PATHS:
        return path
    if path.startswith("/v2/models/"):
        tail = path.rsplit("/", 1)[-1]
        return f"/v2/models/{{name}}/{tail}" if tail in ("infer", "ready") else "/v2/models/{name}"
    for prefix, label in _ROUTES:
        if path == prefix or path.startswith(prefix):
            return label
    return "/v2" if path == "/v2" else "other"


async def send_json(
    send: Send, status: int, obj: Any, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """A whole JSON answer in two ASGI messages (no Response object: this is the hot path)."""
    body = json.dumps(obj, separators=(",", ":")).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(body)), *headers],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class BearerAuth:
    """``Authorization: Bearer TOKEN`` on every path but health and the page; constant time."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.token is None
            or scope["type"] != "http"
            or str(scope["path"]).startswith(OPEN_PREFIX)
            or scope["path"] in OPEN_PATHS
        ):
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        # compare_digest takes time independent of where the strings differ
        ok = hmac.compare_digest(given.strip(), self.token) and scheme.lower() == b"bearer"
        if ok:
            await self.app(scope, receive, send)
            return
        await send_json(send, 401, {"error": "missing or wrong bearer token"},
                         [(b"www-authenticate", b'Bearer realm="dlhpc"')])  # fmt: skip


class FastPath:
    """One (method, path) goes straight to ``endpoint``, a plain ASGI app; the rest to the app.

    FastAPI's route matching, dependency solving and Request/Response objects cost ~0.2–0.3 ms
    per request on a slow core, more than parsing the tensor: worth skipping on the one route
    that takes the load. Added first, so it runs inside BearerAuth and Observe.
    """

    def __init__(self, app: ASGIApp, method: str, path: str, endpoint: ASGIApp) -> None:
        self.app = app
        self.method = method
        self.path = path
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == self.path
            and scope["method"] == self.method
        ):
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class Observe:
    """Counts every answer by status code, times it, and tracks requests in flight."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app dies before answering

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_observed)
        finally:
            self.metrics.in_flight.dec()
            label = route_label(str(scope["path"]))
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.on_response(method, label, status, time.perf_counter() - start)
