"""Text models behind the server: BYTES tensors, /predict with text, equality with the eager
model and with ``predict_job``, batching that never mixes answers, limits and bad input."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from dlhpc.cli import main
from dlhpc.engine.inference import predict_job
from dlhpc.errors import ConfigError
from dlhpc.serve.app import create_app
from dlhpc.serve.config import ServeConfig
from dlhpc.serve.inputs import TextCodec
from dlhpc.serve.loadgen import LoadConfig, load_texts, run_loadgen
from dlhpc.serve.predictor import EagerPredictor, OnnxPredictor, TextEncoder, load_predictor
from dlhpc.serve.protocol import BadRequest
from tests.test_serve_support import labels_of, live_server, probs_of
from tests.test_text_pipeline import corpus, write_csv

INFER = "/v2/models/t/infer"
TEXTS = [
    "the ball and the goal of the team",
    "python code on the gpu server",
    "bake the bread with salt and sugar",
    "",  # an empty text: no tokens at all
    "Ünïcödé wörds, never seen — 日本語 🙂",
    "score " * 300,  # longer than the models' max length
    "cheese",
]


@pytest.fixture(scope="module")
def train(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Trains a tiny text run per model, once per module (~2 s each)."""
    root = tmp_path_factory.mktemp("serve-text")
    data = root / "data"
    data.mkdir()
    write_csv(data / "train.csv", corpus(300, 0))
    write_csv(data / "test.csv", corpus(60, 1))
    runs: dict[str, Path] = {}

    def run_of(model: str) -> Path:
        if model not in runs:
            run = root / model
            argv = ["train", model, "--data", str(data), "--out", str(run), "--epochs", "2",
                    "--cache-dir", str(root / "cache"), "--quiet", "--threads", "1"]  # fmt: skip
            assert main(argv) == 0
            runs[model] = run
        return runs[model]

    return run_of


@pytest.fixture(scope="module")
def bag(train: Callable[[str], Path]) -> Path:
    return train("bag")


@pytest.fixture(scope="module")
def client(bag: Path) -> Iterator[TestClient]:
    app = create_app(load_predictor(bag, "eager", threads=1), ServeConfig(name="t"))
    with TestClient(app) as c:
        yield c


def bytes_body(texts: Sequence[Any], **extra: Any) -> dict[str, Any]:
    tensor = {"name": "input", "datatype": "BYTES", "shape": [len(texts)], "data": list(texts)}
    return {"inputs": [tensor], **extra}


def job_probs(run: Path, texts: list[str]) -> np.ndarray:
    """``predict_job``'s probabilities, every class, in label order."""
    labels = load_predictor(run).labels
    out = predict_job(run, texts, top_k=len(labels))
    return np.array([[{t["label"]: t["probability"] for t in o["top"]}[lb] for lb in labels]
                     for o in out], np.float32)  # fmt: skip


def test_metadata_describes_the_bytes_input(client: TestClient) -> None:
    meta = client.get("/v2/models/t").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}
    assert meta["labels"] == ["food", "sports", "tech"]
    params = meta["parameters"]
    assert params["input_kind"] == "text" and params["max_texts"] == ServeConfig().max_texts


@pytest.mark.parametrize("model", ["bag", "lstm", "transformer"])
def test_batched_equals_unbatched_equals_predict_job(
    train: Callable[[str], Path], model: str
) -> None:
    run = train(model)
    app = create_app(load_predictor(run, "eager", threads=1), ServeConfig(name="t"))
    with TestClient(app) as c:
        r = c.post(INFER, json=bytes_body(TEXTS, id="x1"))
        assert r.status_code == 200, r.text
        assert r.json()["id"] == "x1"
        batched = probs_of(r.json())
        singles = [probs_of(c.post(INFER, json=bytes_body([t])).json())[0] for t in TEXTS]
        labels = labels_of(r.json())
    assert batched.shape == (len(TEXTS), 3)
    np.testing.assert_allclose(batched, np.stack(singles), atol=1e-5)
    # predict_job takes a text that names a file as that file: keep to short texts (< NAME_MAX)
    short = [i for i, t in enumerate(TEXTS) if len(t.encode()) < 200]
    want = job_probs(run, [TEXTS[i] for i in short])
    np.testing.assert_allclose(batched[short], want, atol=1e-5)
    names = load_predictor(run).labels
    assert labels == [names[i] for i in batched.argmax(axis=1)]
    assert [labels[i] for i in short] == [names[i] for i in want.argmax(axis=1)]


def test_shape_b1_and_nested_data_are_the_same_request(client: TestClient) -> None:
    flat = probs_of(client.post(INFER, json=bytes_body(TEXTS[:3])).json())
    body = bytes_body([[t] for t in TEXTS[:3]])
    body["inputs"][0]["shape"] = [3, 1]
    np.testing.assert_allclose(probs_of(client.post(INFER, json=body).json()), flat, atol=1e-6)


def test_onnx_backend_serves_text_models(train: Callable[[str], Path]) -> None:
    pytest.importorskip("onnxruntime")
    run = train("bag")
    argv = ["optimize", str(run), "--export", "onnx", "--quiet", "--threads", "1"]
    assert main(argv) == 0
    onnx = load_predictor(run, "onnx", threads=1)
    assert isinstance(onnx, OnnxPredictor)
    eager = load_predictor(run, "eager", threads=1)
    np.testing.assert_allclose(onnx.predict(TEXTS), eager.predict(TEXTS), atol=1e-5)
    with TestClient(create_app(onnx, ServeConfig(name="t", backend="onnx"))) as c:
        assert c.get("/v2/models/t").json()["platform"] == "onnxruntime_onnx"
        got = probs_of(c.post(INFER, json=bytes_body(TEXTS)).json())
    np.testing.assert_allclose(got, eager.predict(TEXTS), atol=1e-5)


class CountingTokenizer:
    """Wraps the run's tokenizer: records each batch call's size and thread."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[int, str]] = []
        self.lock = threading.Lock()

    def encode_batch_fast(self, texts: list[str], add_special_tokens: bool) -> Any:
        with self.lock:
            self.calls.append((len(texts), threading.current_thread().name))
        return self.inner.encode_batch_fast(texts, add_special_tokens=add_special_tokens)


def test_concurrent_requests_are_batched_tokenized_once_and_never_mixed(bag: Path) -> None:
    predictor = load_predictor(bag, "eager", threads=1)
    assert isinstance(predictor, EagerPredictor) and isinstance(predictor.encoder, TextEncoder)
    rng = np.random.default_rng(0)
    requests = [[corpus(1, 100 + 3 * i + k)[0][0] for k in range(1 + i % 3)] for i in range(24)]
    want = [predictor.predict(texts) for texts in requests]
    spy = CountingTokenizer(predictor.encoder.tokenizer)
    predictor.encoder.tokenizer = spy
    app = create_app(predictor, ServeConfig(name="t", max_batch_size=16, max_queue_delay_ms=20))

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            order = rng.permutation(len(requests)).tolist()
            rs = await asyncio.gather(*(c.post(INFER, json=bytes_body(requests[i])) for i in order))
        await app.state.serve.batcher.close(5.0)
        return [rs[order.index(i)] for i in range(len(requests))]

    for r, probs in zip(asyncio.run(go()), want, strict=True):
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(probs_of(r.json()), probs, atol=1e-5)
    sizes = [n for n, _ in spy.calls]
    assert sum(sizes) == sum(len(t) for t in requests)
    assert len(sizes) < len(requests) and max(sizes) <= 16  # whole batches, one call each
    assert all(name.startswith("dlhpc-predict") for _, name in spy.calls)  # not the event loop


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"datatype": "UINT8"}, "BYTES"),
        ({"datatype": "FP32"}, "BYTES"),
        ({"shape": [3]}, "needs 3 strings"),
        ({"shape": [1, 2]}, "shape"),
        ({"shape": [2, 2, 1]}, "shape"),
        ({"shape": [0]}, "at least one"),
        ({"shape": ["2"]}, "shape"),
        ({"shape": [2], "data": ["a", 3]}, "strings"),
        ({"shape": [2], "data": ["a", None]}, "strings"),
        ({"shape": [2], "data": ["a", ["b"]]}, "strings"),
        ({"data": "ab"}, "list"),
        ({"shape": [5], "data": list("abcde")}, "limit of 4"),
        ({"shape": [5], "data": "not even a list"}, "limit of 4"),  # counted before the data
        ({"data": ["\ud800", "b"]}, "UTF-8"),
    ],
)
def test_bad_text_tensors_are_400_with_a_message(
    bag: Path, change: dict[str, Any], message: str
) -> None:
    cfg = ServeConfig(name="t", max_texts=4)
    with TestClient(create_app(load_predictor(bag, threads=1), cfg)) as c:
        body = bytes_body(["a", "b"])
        body["inputs"][0].update(change)
        r = c.post(INFER, content=json.dumps(body))  # ASCII: "\ud800" stays an escape
        assert r.status_code == 400, r.text
        assert message in r.json()["error"]


def test_non_utf8_bodies_and_oversized_texts_are_refused(bag: Path) -> None:
    cfg = ServeConfig(name="t", max_text_bytes=100)
    with TestClient(create_app(load_predictor(bag, threads=1), cfg)) as c:
        raw = json.dumps(bytes_body(["\x00"])).encode().replace(b"\\u0000", b"\xff")
        r = c.post(INFER, content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 400 and "UTF-8" in r.json()["error"]
        r = c.post(INFER, json=bytes_body(["ü" * 40, "ü" * 11]))  # 102 bytes as UTF-8
        assert r.status_code == 413 and "100 bytes" in r.json()["error"]
        assert c.post(INFER, json=bytes_body(["ü" * 50])).status_code == 200
        r = c.post("/predict", content=b"caf\xe9", headers={"content-type": "text/plain"})
        assert r.status_code == 400 and "UTF-8" in r.json()["error"]


def test_predict_takes_plain_text_json_and_text_files(client: TestClient, bag: Path) -> None:
    want = load_predictor(bag).predict(TEXTS[:3])
    labels = ["food", "sports", "tech"]
    one = client.post("/predict", content=TEXTS[0].encode(), headers={"content-type": "text/plain"})
    assert one.status_code == 200, one.text
    got = one.json()
    assert got["label"] == labels[int(want[0].argmax())] and got["latency_ms"] > 0
    np.testing.assert_allclose([got["probabilities"][k] for k in labels], want[0], atol=1e-6)
    lines = "\n".join([TEXTS[0], "", TEXTS[1], "  ", TEXTS[2], ""]).encode()  # blanks skipped
    many = client.post("/predict", content=lines, headers={"content-type": "text/plain"}).json()
    assert [p["label"] for p in many["predictions"]] == [labels[i] for i in want.argmax(axis=1)]
    js = client.post("/predict", json={"texts": TEXTS[:3]}).json()
    assert js["predictions"] == many["predictions"]
    assert client.post("/predict", json={"text": TEXTS[0]}).json()["label"] == got["label"]
    up = client.post("/predict", files={"file": ("t.txt", lines, "text/plain")}).json()
    assert up["predictions"] == many["predictions"]


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"", "text/plain", "no text"),
        (b"\n \n", "text/plain", "no text"),
        (b'{"texts": []}', "application/json", "at least one"),
        (b'{"text": 3}', "application/json", "send"),
        (b'{"texts": ["a", 3]}', "application/json", "strings"),
        (b"{nope", "application/json", "JSON"),
        (b"a\nb\nc\nd\ne", "text/plain", "limit of 4"),
    ],
)
def test_predict_rejects_bad_text_with_a_message(
    bag: Path, body: bytes, content_type: str, message: str
) -> None:
    with TestClient(create_app(load_predictor(bag, threads=1), ServeConfig(max_texts=4))) as c:
        r = c.post("/predict", content=body, headers={"content-type": content_type})
        assert r.status_code == 400, r.text
        assert message in r.json()["error"]


def test_the_page_offers_a_text_box(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '"kind": "text"' in r.text and "<textarea" in r.text and "/predict" in r.text


texts_st = st.lists(st.text(max_size=5) | st.integers() | st.none(), max_size=6)
tensors_st = st.fixed_dictionaries(
    {"name": st.just("input")},
    optional={
        "datatype": st.sampled_from(["BYTES", "UINT8", "bytes"]),
        "shape": st.lists(st.integers(-2, 8) | st.text(max_size=2), max_size=3),
        "data": texts_st | st.lists(texts_st, max_size=3) | st.text(max_size=4),
    },
)


@settings(max_examples=200, deadline=None, database=None)
@given(tensors_st)
def test_text_tensors_are_items_or_bad_requests(tensor: dict[str, Any]) -> None:
    codec = TextCodec(max_texts=5, max_text_bytes=12)
    try:
        texts = codec.from_tensor(tensor)
    except BadRequest as e:
        assert str(e) and e.status in (400, 413)
        return
    assert isinstance(texts, list) and 1 <= len(texts) <= 5
    assert all(isinstance(t, str) for t in texts)
    assert sum(len(t.encode()) for t in texts) <= 12


def test_loadgen_sends_texts_to_a_text_model(bag: Path, tmp_path: Path) -> None:
    lines = tmp_path / "texts.txt"
    lines.write_text("ball goal\n\npython code\n", encoding="utf-8")
    assert load_texts(str(lines), 64, seed=0) == ["ball goal", "python code"]
    assert len(load_texts("random", 5, seed=0)) == 5
    with pytest.raises(ConfigError, match=r"\.txt"):
        load_texts(str(tmp_path / "texts.csv"), 4, seed=0)
    app = create_app(load_predictor(bag, threads=1), ServeConfig(name="t", max_batch_size=8))
    with live_server(app) as url:
        for data in ("random", str(lines)):
            cfg = LoadConfig(url, scenario="offline", duration_s=0.4, concurrency=4, data=data)
            report = run_loadgen(cfg)
            assert report["errors"] == {} and report["ok"] >= 4, report
