"""The HTTP app in process: KServe v2 routes, correctness against the eager model, bad input,
limits, the token, metrics, /predict uploads, and the predictors' seam."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from dlhpc.errors import ConfigError
from dlhpc.models.artifact import load_model
from dlhpc.serve.app import create_app
from dlhpc.serve.config import ServeConfig
from dlhpc.serve.predictor import OnnxPredictor, load_predictor
from tests.test_serve_support import EchoPredictor, echo_body, infer_body, labels_of, probs_of

INFER = "/v2/models/m/infer"


@pytest.fixture
def echo() -> Iterator[TestClient]:
    with TestClient(create_app(EchoPredictor(), ServeConfig(name="m"))) as c:
        yield c


@pytest.fixture(scope="module")
def digits(trained_run: Path) -> Iterator[TestClient]:
    app = create_app(load_predictor(trained_run, "eager", threads=1), ServeConfig(name="m"))
    with TestClient(app) as c:
        yield c


def test_health_metadata_and_readiness(digits: TestClient) -> None:
    assert digits.get("/v2/health/live").json() == {"live": True}
    assert digits.get("/v2/health/ready").status_code == 200
    assert digits.get("/v2/models/m/ready").json() == {"name": "m", "ready": True}
    assert digits.get("/v2").json()["models"] == ["m"]
    meta = digits.get("/v2/models/m").json()
    assert meta["name"] == "m" and meta["platform"] == "pytorch"
    assert meta["inputs"] == [{"name": "input", "datatype": "UINT8", "shape": [-1, 28, 28, 1]}]
    assert meta["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ]
    assert meta["labels"] == [str(i) for i in range(10)]
    r = digits.get("/v2/models/other")
    assert r.status_code == 404 and "other" in r.json()["error"]


def test_infer_equals_the_eager_model_batched_or_not(digits: TestClient, trained_run: Path) -> None:
    x_BHW = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    r = digits.post(INFER, json=infer_body(x_BHW, id="abc"))
    assert r.status_code == 200, r.text
    batched = r.json()
    assert batched["id"] == "abc" and batched["model_name"] == "m"
    p_batched = probs_of(batched)
    singles = [probs_of(digits.post(INFER, json=infer_body(x_BHW[i : i + 1])).json())[0]
               for i in range(6)]  # fmt: skip
    np.testing.assert_allclose(p_batched, np.stack(singles), atol=1e-6)
    # [B, H, W, 1] is the same request as [B, H, W]
    p_4d = probs_of(digits.post(INFER, json=infer_body(x_BHW[..., None])).json())
    np.testing.assert_allclose(p_4d, p_batched, atol=1e-6)

    model, spec = load_model(trained_run)
    with torch.inference_mode():
        want = torch.softmax(model(torch.from_numpy(x_BHW[:, None])), dim=1).numpy()
    np.testing.assert_allclose(p_batched, want, atol=1e-5)
    assert labels_of(batched) == [spec.labels[i] for i in want.argmax(axis=1)]


def test_nested_data_and_requested_outputs(echo: TestClient) -> None:
    body = echo_body(42, batch=2)
    body["inputs"][0]["data"] = np.full((2, 2, 2), 42).tolist()
    body["outputs"] = [{"name": "label"}]
    out = echo.post(INFER, json=body).json()["outputs"]
    assert out == [{"name": "label", "datatype": "BYTES", "shape": [2], "data": ["42", "42"]}]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"datatype": "FP32"}, "datatype"),
        ({"shape": [1, 3, 3]}, "shape"),
        ({"shape": [1, 2, 2, 3]}, "shape"),
        ({"shape": [0, 2, 2]}, "shape"),
        ({"shape": [1, 2, "2"]}, "shape"),
        ({"shape": [2, 2, 2]}, "elements"),
        ({"data": [1, 2, 3, 256]}, "0–255"),
        ({"data": [1, 2, 3, -1]}, "0–255"),
        ({"data": [1, 2, 3, 1.5]}, "0–255"),
        ({"data": [1, 2, 3, "a"]}, "0–255"),
        ({"data": [1, 2, 3, [4]]}, "0–255"),
        ({"data": [1, 2, 3, True]}, "true/false"),  # not 1
        ({"data": [[1, 2], [3, False]]}, "true/false"),
        ({"data": "AAAA"}, "list"),
        ({"name": 3}, "name"),
    ],
)
def test_bad_tensors_are_400_with_a_message(
    echo: TestClient, change: dict[str, object], message: str
) -> None:
    body = echo_body(1)
    body["inputs"][0].update(change)
    r = echo.post(INFER, json=body)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[]", b'{"inputs": 3}', b'{"inputs": []}', b"\xff\xfe", b"[" * 100_000,
     b'{"inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 2, 2], '
     b'"data": [1, 2, 3, 4]}], "outputs": [{"name": "logits"}]}'],
)  # fmt: skip
def test_malformed_requests_are_400(echo: TestClient, raw: bytes) -> None:
    r = echo.post(INFER, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]


def test_body_limit_is_413_declared_or_streamed() -> None:
    app = create_app(EchoPredictor(), ServeConfig(name="m", max_body_bytes=1000))
    with TestClient(app) as c:
        assert c.post(INFER, json=echo_body(3)).status_code == 200
        big = json.dumps(infer_body(np.zeros((200, 2, 2), np.uint8))).encode()
        assert c.post(INFER, content=big).status_code == 413
        chunks = (big[i : i + 100] for i in range(0, len(big), 100))  # no Content-Length
        r = c.post(INFER, content=chunks)
        assert r.status_code == 413 and "limit" in r.json()["error"]


def test_token_protects_all_but_health() -> None:
    app = create_app(EchoPredictor(), ServeConfig(name="m", token="s3cret"))
    with TestClient(app) as c:
        assert c.get("/v2/health/live").status_code == 200
        assert c.get("/v2/health/ready").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            for method, path in (("GET", "/v2/models/m"), ("POST", INFER), ("GET", "/metrics"),
                                 ("POST", "/predict"), ("GET", "/v2")):  # fmt: skip
                r = c.request(method, path, headers=headers)
                assert r.status_code == 401, (method, path, headers)
                assert r.headers["www-authenticate"].startswith("Bearer")
        ok = {"Authorization": "Bearer s3cret"}
        r = c.post(INFER, json=echo_body(5), headers=ok)
        assert r.status_code == 200 and labels_of(r.json()) == ["5"]


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == (f"{name}{{{want}}}" if labels else name):
            return float(value)
    return 0.0


def test_metrics_count_codes_batches_and_times(echo: TestClient) -> None:
    before = echo.get("/metrics").text
    for v in range(3):
        echo.post(INFER, json=echo_body(v, batch=2))
    echo.post(INFER, content=b"nope")
    text = echo.get("/metrics").text
    assert echo.get("/metrics").headers["content-type"].startswith("text/plain")
    path = "/v2/models/{name}/infer"
    ok = metric(text, "dlhpc_requests_total", code="200", method="POST", path=path)
    assert ok - metric(before, "dlhpc_requests_total", code="200", method="POST", path=path) == 3
    assert metric(text, "dlhpc_requests_total", code="400", method="POST", path=path) >= 1
    assert metric(text, "dlhpc_batch_size_sum") - metric(before, "dlhpc_batch_size_sum") == 6
    assert metric(text, "dlhpc_queue_seconds_count") >= 3
    assert metric(text, "dlhpc_compute_seconds_count") >= 3
    assert metric(text, "dlhpc_in_flight_requests") == 1  # this scrape itself
    assert metric(text, "dlhpc_ready") == 1


def png_bytes(a_HW: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a_HW).save(buf, format="PNG")
    return buf.getvalue()


def test_predict_takes_an_uploaded_png_or_raw_bytes(digits: TestClient) -> None:
    x = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    want = probs_of(digits.post(INFER, json=infer_body(x[None])).json())[0]
    files = {"file": ("digit.png", png_bytes(x), "image/png")}
    up = digits.post("/predict", files=files)
    assert up.status_code == 200, up.text
    got = up.json()
    assert got["label"] == str(int(want.argmax())) and got["latency_ms"] > 0
    np.testing.assert_allclose([got["probabilities"][str(i)] for i in range(10)], want, atol=1e-6)
    raw = digits.post("/predict", content=png_bytes(x), headers={"content-type": "image/png"})
    assert raw.json()["label"] == got["label"]
    # a larger RGB image is converted and resized as training did
    big = np.repeat(np.repeat(x, 2, axis=0), 2, axis=1)
    rgb = digits.post("/predict", content=png_bytes(np.stack([big] * 3, axis=-1)))
    assert rgb.status_code == 200


def test_predict_rejects_what_is_not_an_image(digits: TestClient) -> None:
    assert digits.post("/predict", content=b"hello").status_code == 400
    r = digits.post("/predict", files={"notes": (None, "text only")})
    assert r.status_code == 400 and "file" in r.json()["error"]
    app = create_app(EchoPredictor(), ServeConfig(name="m", max_image_pixels=100))
    with TestClient(app) as c:
        r = c.post("/predict", content=png_bytes(np.zeros((20, 20), np.uint8)))
        assert r.status_code == 400 and "too large" in r.json()["error"]


def test_overload_is_503_with_retry_after_and_timeout_is_504() -> None:
    cfg = ServeConfig(name="m", max_batch_size=1, max_queue=2, request_timeout_s=5.0)
    app = create_app(EchoPredictor(delay=0.1), cfg)

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            rs = await asyncio.gather(*(c.post(INFER, json=echo_body(v)) for v in range(12)))
        await app.state.serve.batcher.close(5.0)
        return list(rs)

    rs = asyncio.run(go())
    codes = [r.status_code for r in rs]
    assert codes.count(503) >= 6 and 200 in codes
    for v, r in enumerate(rs):
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1" and "overloaded" in r.json()["error"]
        else:
            assert labels_of(r.json()) == [str(v)]

    slow = create_app(EchoPredictor(delay=0.5), ServeConfig(name="m", request_timeout_s=0.1))
    with TestClient(slow) as c:
        late = c.post(INFER, json=echo_body(1))
        assert late.status_code == 504 and late.json()["error"]


def test_draining_turns_readiness_off(echo: TestClient) -> None:
    state = echo.app.state.serve  # type: ignore[attr-defined]
    state.begin_drain()
    assert echo.get("/v2/health/ready").status_code == 503
    assert echo.get("/v2/models/m/ready").json()["ready"] is False
    assert echo.get("/v2/health/live").status_code == 200


def test_serve_config_is_validated() -> None:
    for bad in ({"max_batch_size": 0}, {"max_queue": 0}, {"max_queue_delay_ms": -1},
                {"backend": "tensorrt"}, {"port": 70000}, {"name": "a/b"}, {"token": " "},
                {"workers": 0}, {"max_body_bytes": 0}):  # fmt: skip
        with pytest.raises(ConfigError):
            ServeConfig(**bad)  # type: ignore[arg-type]
    assert ServeConfig(threads=3).threads_per_worker == 3
    assert ServeConfig(workers=64).threads_per_worker == 1


def test_onnx_backend_needs_an_exported_model(trained_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="export it first with dlhpc optimize"):
        load_predictor(trained_run, "onnx")
    with pytest.raises(ConfigError, match="no such run"):
        load_predictor(tmp_path / "nope", "eager")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's legacy exporter
def test_onnx_predictor_matches_eager(trained_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("checkpoint", "tb"))
    model, _ = load_model(run)
    onnx_path = run / "optimized" / "onnx" / "model.onnx"
    onnx_path.parent.mkdir(parents=True)
    torch.onnx.export(  # a stand-in for `dlhpc optimize --export onnx`: raw uint8 in, logits out
        model, (torch.zeros(1, 1, 28, 28, dtype=torch.uint8),), str(onnx_path), dynamo=False,
        input_names=["pixels"], output_names=["logits"],
        dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
    )  # fmt: skip
    onnx = load_predictor(run, "onnx", threads=1)
    assert isinstance(onnx, OnnxPredictor)
    eager = load_predictor(run, "eager", threads=1)
    x = np.random.default_rng(2).integers(0, 256, (5, 1, 28, 28), dtype=np.uint8)
    np.testing.assert_allclose(onnx.predict(x), eager.predict(x), atol=1e-5)
    app = create_app(onnx, ServeConfig(name="m", backend="onnx"))
    with TestClient(app) as c:
        assert c.get("/v2/models/m").json()["platform"] == "onnxruntime_onnx"
        r = c.post(INFER, json=infer_body(x[:, 0]))
        np.testing.assert_allclose(probs_of(r.json()), eager.predict(x), atol=1e-5)
