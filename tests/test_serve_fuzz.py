"""Hypothesis fuzzing of the infer endpoint: thousands of malformed requests, never a 5xx,
and the server still healthy and right afterwards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlhpc.serve.app import create_app
from dlhpc.serve.config import ServeConfig
from tests.test_serve_support import EchoPredictor, echo_body, labels_of

INFER = "/v2/models/m/infer"
ALLOWED = {200, 400, 413}
FUZZ = settings(
    max_examples=800,
    deadline=None,
    database=None,  # no .hypothesis/ folder left behind
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Flat strategies on purpose: recursive JSON generation costs ~10 ms an example.
scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=4)
)
values = (
    scalars
    | st.lists(scalars, max_size=4)
    | st.dictionaries(st.text(max_size=3), scalars, max_size=2)
)
pixels = st.integers(-300, 300) | scalars
tensors = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["input", "x", ""]) | values,
        "datatype": st.sampled_from(["UINT8", "FP32", "BYTES", "uint8", ""]) | values,
        "shape": st.lists(st.integers(-3, 2**63) | scalars, max_size=5) | values,
        "data": st.lists(pixels, max_size=12)
        | st.lists(st.lists(pixels, max_size=3), max_size=3)
        | values,
        "parameters": values,
    },
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "inputs": st.lists(tensors, max_size=2) | values,
        "outputs": st.lists(st.fixed_dictionaries({"name": values}), max_size=2) | values,
        "id": values,
    },
)


class Client:
    """The app driven in one long-lived event loop over httpx's ASGI transport: about 1 ms a
    request, so a thousand examples take seconds (no thread hop per request)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://fuzz")

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.http.request(method, path, **kw))

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.run_until_complete(self.app.state.serve.batcher.close(5.0))
        self.loop.close()


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    c = Client(create_app(EchoPredictor(), ServeConfig(name="m", max_body_bytes=64 * 1024)))
    yield c
    c.close()


def still_healthy(c: Client) -> None:
    assert c.request("GET", "/v2/health/ready").status_code == 200
    r = c.request("POST", INFER, json=echo_body(77))
    assert r.status_code == 200 and labels_of(r.json()) == ["77"]


@pytest.mark.slow
@FUZZ
@given(req=requests)
def test_structured_garbage_never_5xx(client: Client, req: dict[str, Any]) -> None:
    body = json.dumps(req, allow_nan=True).encode()
    r = client.request("POST", INFER, content=body, headers={"content-type": "application/json"})
    assert r.status_code in ALLOWED, (r.status_code, r.text, body[:300])
    assert "error" in r.json() or r.status_code == 200


@pytest.mark.slow
@settings(FUZZ, max_examples=1200)
@given(raw=st.binary(max_size=512), valid_prefix=st.booleans())
def test_raw_bytes_never_5xx(client: Client, raw: bytes, valid_prefix: bool) -> None:
    body = (json.dumps(echo_body(1)).encode()[:40] if valid_prefix else b"") + raw
    r = client.request("POST", INFER, content=body)
    assert r.status_code in ALLOWED, (r.status_code, r.text)


def test_the_server_is_healthy_after_fuzzing(client: Client) -> None:
    still_healthy(client)  # runs after the fuzz tests in file order; also stands alone
