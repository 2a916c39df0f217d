"""The HTTP app: KServe v2 REST, ``/predict`` for files and text, a web page, Prometheus metrics.

    app = create_app(load_predictor(Path("runs/cnn-…")), ServeConfig(name="digits"))
    # run it with uvicorn: see dlhpc.serve.server.run_server, or `dlhpc serve RUN`

    GET  /v2/health/live | /v2/health/ready          open even with a token
    GET  /v2 | /v2/models/NAME | /v2/models/NAME/ready
    POST /v2/models/NAME/infer                        JSON, see dlhpc.serve.protocol
    POST /predict                                     image models: a multipart file upload, or
                                                      raw image bytes; text models: text/plain
                                                      (one text per line) or JSON {"text": …} /
                                                      {"texts": […]}
    GET  /                                            the web page (open even with a token)
    GET  /metrics                                     Prometheus text format

Every error is JSON ``{"error": "…"}`` with its status code: 400 bad input, 401 no or wrong
token, 404 unknown model, 408 slow body, 413 body or texts too large, 503 queue full or shutting
down (with Retry-After), 504 no answer in time. (Under ``dlhpc serve`` the HTTP protocol also
answers 408 to a request that does not arrive in time and 431 to oversized headers: see
``dlhpc.serve.deadline``.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from dlhpc import __version__
from dlhpc.serve.batcher import Batcher, Draining, Overloaded, TimedOut
from dlhpc.serve.config import ServeConfig
from dlhpc.serve.inputs import input_codec
from dlhpc.serve.metrics import ServeMetrics
from dlhpc.serve.middleware import BearerAuth, FastPath, Observe, send_json
from dlhpc.serve.page import HEADERS as PAGE_HEADERS
from dlhpc.serve.page import render_page
from dlhpc.serve.predictor import Predictor
from dlhpc.serve.protocol import (
    BadRequest,
    InputCodec,
    infer_response,
    model_metadata,
    parse_infer_request,
)

log = logging.getLogger("dlhpc.serve")


class Problem(Exception):
    """An HTTP error answer: status, one-line message, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def json_response(
    obj: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return Response(body, status, headers, media_type="application/json")


@dataclass
class ServeState:
    """What the routes share; ``app.state.serve``. ``draining`` turns readiness off."""

    predictor: Predictor
    codec: InputCodec
    cfg: ServeConfig
    metrics: ServeMetrics
    batcher: Batcher
    draining: bool = False

    @property
    def ready(self) -> bool:
        return not self.draining and not self.batcher.closing

    def begin_drain(self) -> None:
        self.draining = True  # only a flag: safe to call from a signal handler

    def check_model(self, name: str) -> None:
        if name != self.cfg.name:
            raise Problem(404, f"unknown model {name!r}; this server has {self.cfg.name!r}")

    async def predict(self, item: Any) -> Any:
        try:
            return await self.batcher.predict(item, self.cfg.request_timeout_s)
        except Overloaded as e:
            raise Problem(503, str(e), {"Retry-After": str(e.retry_after_s)}) from None
        except Draining as e:
            raise Problem(503, str(e), {"Retry-After": "1"}) from None
        except TimedOut as e:
            raise Problem(504, str(e)) from None


async def read_body(scope: Scope, receive: Receive, limit: int, timeout: float) -> bytes:
    """The whole body, refusing more than ``limit`` bytes (413) or a slow sender (408).

    Plain ASGI ``receive`` (no Starlette Request): this is on every inference's path. The server's
    protocol has its own read deadline (``dlhpc.serve.deadline``); this one holds under any server.
    """
    declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
    if declared is not None:
        if not declared.isdigit():
            raise Problem(400, "bad Content-Length")
        if int(declared) > limit:
            raise Problem(413, f"body of {declared.decode()} bytes is over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] != "http.request":  # http.disconnect
                    raise Problem(400, "the client disconnected")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise Problem(413, f"body is over the limit of {limit} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise Problem(408, f"the body did not arrive within {timeout:g} s") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def uploaded_file(request: Request, body: bytes, limit: int) -> bytes:
    """The first file of a multipart form whose bytes are ``body``."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    form_request = Request(request.scope, replay)
    try:
        async with form_request.form(max_files=1, max_fields=16, max_part_size=limit) as form:
            for value in form.values():
                if isinstance(value, UploadFile):
                    return await value.read()
    except HTTPException as e:  # Starlette's multipart errors
        raise Problem(400, f"bad multipart form: {e.detail}") from None
    raise Problem(400, "the form has no file: upload it as a file field")


def predict_answer(name: str, labels: tuple[str, ...], probs_NK: np.ndarray) -> dict[str, Any]:
    """``/predict``'s answer: the first sample's label and probabilities, and every sample's."""
    predictions = []
    for row in probs_NK.tolist():
        best = max(range(len(row)), key=row.__getitem__)
        predictions.append({
            "label": labels[best],
            "probability": row[best],
            "probabilities": dict(zip(labels, row, strict=True)),
        })  # fmt: skip
    return {"model_name": name, **predictions[0], "predictions": predictions}


def add_info_routes(app: FastAPI, s: ServeState) -> None:
    """The page, health, metadata and metrics: everything but inference."""
    p = s.predictor
    meta = model_metadata(s.cfg.name, p.backend, p.labels, s.codec, s.cfg.max_batch_size)
    if s.cfg.variant is not None:
        meta["parameters"]["variant"] = s.cfg.variant  # which of RUN/optimized/ is served
    page = render_page(s.cfg.name, s.codec.kind, s.codec.tensor_metadata())

    @app.get("/")
    async def index() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @app.get("/v2")
    async def server_metadata() -> Response:
        return json_response(
            {"name": "dlhpc", "version": __version__, "extensions": [], "models": [s.cfg.name]}
        )

    @app.get("/v2/health/live")
    async def live() -> Response:
        return json_response({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return json_response({"ready": s.ready}, 200 if s.ready else 503)

    @app.get("/v2/models/{model}")
    async def metadata(model: str) -> Response:
        s.check_model(model)
        return json_response(meta)

    @app.get("/v2/models/{model}/ready")
    async def model_ready(model: str) -> Response:
        s.check_model(model)
        return json_response({"name": model, "ready": s.ready}, 200 if s.ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(s.metrics.render(), media_type=s.metrics.content_type)


def infer_endpoint(s: ServeState) -> ASGIApp:
    """``POST /v2/models/NAME/infer`` as a plain ASGI app: the hot path, served past FastAPI's
    router and dependency machinery (``FastPath``), which cost more than the JSON per request."""
    labels = s.predictor.labels
    name = s.cfg.name

    async def infer(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await read_body(scope, receive, s.cfg.max_body_bytes, s.cfg.read_timeout_s)
            req = parse_infer_request(body, s.codec)
            probs = await s.predict(req.item)
            status, answer, headers = 200, infer_response(name, req, probs, labels), None
        except Exception as e:  # the same answers as the app's exception handlers
            status, answer, headers = error_answer(e)
        extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await send_json(send, status, answer, extra)

    return infer


def add_inference_routes(app: FastAPI, s: ServeState) -> None:
    @app.post("/v2/models/{model}/infer")
    async def infer(model: str) -> Response:
        # FastPath answers POSTs to this model's URL before the router; the route is here for
        # other names (404) and other methods (405).
        s.check_model(model)
        raise Problem(500, "inference must be served by the FastPath middleware")

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        start = time.perf_counter()
        limit = s.cfg.max_body_bytes
        body = await read_body(request.scope, request.receive, limit, s.cfg.read_timeout_s)
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            body = await uploaded_file(request, body, limit)
            content_type = "application/octet-stream"  # a file: its bytes, as they are
        probs = await s.predict(s.codec.from_upload(body, content_type))
        answer = predict_answer(s.cfg.name, s.predictor.labels, probs)
        answer["latency_ms"] = (time.perf_counter() - start) * 1000.0
        return json_response(answer)


def error_answer(e: Exception) -> tuple[int, dict[str, str], dict[str, str] | None]:
    """An exception → (status, JSON body, headers): one place for every route's errors."""
    if isinstance(e, Problem):
        return e.status, {"error": str(e)}, e.headers
    if isinstance(e, BadRequest):
        return e.status, {"error": str(e)}, None
    if isinstance(e, HTTPException):
        return e.status_code, {"error": str(e.detail)}, dict(e.headers or {})
    log.exception("request failed", exc_info=e)
    return 500, {"error": f"internal error ({type(e).__name__})"}, None


def add_error_handlers(app: FastAPI) -> None:
    async def handle(_: Request, e: Exception) -> Response:
        status, answer, headers = error_answer(e)
        return json_response(answer, status, headers)

    for kind in (Problem, BadRequest, HTTPException, Exception):
        app.add_exception_handler(kind, handle)


def create_app(predictor: Predictor, cfg: ServeConfig) -> FastAPI:
    """A FastAPI app serving ``predictor`` as model ``cfg.name``; the batcher starts lazily."""
    metrics = ServeMetrics(cfg.max_batch_size)
    batcher = Batcher(
        predictor,
        max_batch_size=cfg.max_batch_size,
        max_queue_delay_s=cfg.max_queue_delay_s,
        max_queue=cfg.max_queue,
        workers=cfg.workers,
        observer=metrics,
    )
    state = ServeState(predictor, input_codec(predictor.input, cfg), cfg, metrics, batcher)
    metrics.ready.set_function(lambda: float(state.ready))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        state.begin_drain()  # in-flight requests have finished (uvicorn waited for them)
        await batcher.close(cfg.drain_timeout_s)

    app = FastAPI(
        title="dlhpc serve", version=__version__, lifespan=lifespan,
        docs_url=None, redoc_url=None, openapi_url=None,
    )  # fmt: skip
    app.state.serve = state
    add_info_routes(app, state)
    add_inference_routes(app, state)
    add_error_handlers(app)
    path = f"/v2/models/{cfg.name}/infer"
    app.add_middleware(FastPath, method="POST", path=path, endpoint=infer_endpoint(state))
    app.add_middleware(BearerAuth, token=cfg.token)
    app.add_middleware(Observe, metrics=metrics)  # outermost: counts 401s too
    return app
