"""Shared pieces of the serve tests: a stub predictor, request bodies, a live uvicorn server.

No tests here; the other ``test_serve*`` / ``test_loadgen*`` modules import from it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI

from dlhpc.models.spec import ImageInput, TextInput
from dlhpc.serve.server import bind

LABELS = tuple(str(v) for v in range(256))


class EchoPredictor:
    """A stand-in model (1×2×2 images): its label is the first pixel, so mixed answers show.

    ``delay`` makes each forward pass slow; ``batches`` records the batch sizes it ran.
    """

    backend = "eager"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.batches: list[int] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    @property
    def input(self) -> ImageInput:
        return ImageInput(1, 2, 2, (0.5,), (0.25,))

    @property
    def labels(self) -> tuple[str, ...]:
        return LABELS

    def join(self, items: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate(items)

    def predict(self, x_NCHW: np.ndarray) -> np.ndarray:
        with self._lock:
            self.batches.append(len(x_NCHW))
            self.threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        probs = np.zeros((len(x_NCHW), 256), np.float32)
        probs[np.arange(len(x_NCHW)), x_NCHW[:, 0, 0, 0]] = 1.0
        return probs


class WordCountPredictor:
    """A stand-in text model: "short" for texts of under 4 words, "long" otherwise."""

    backend = "eager"
    labels = ("long", "short")

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    @property
    def input(self) -> TextInput:
        return TextInput(vocab_size=10)

    def join(self, items: Sequence[list[str]]) -> list[str]:
        return [t for item in items for t in item]

    def predict(self, texts: list[str]) -> np.ndarray:
        self.batches.append(texts)
        short = np.array([len(t.split()) < 4 for t in texts])
        return np.stack([np.where(short, 0.1, 0.9), np.where(short, 0.9, 0.1)], 1).astype(
            np.float32
        )


def infer_body(x_BHWC: np.ndarray, **extra: Any) -> dict[str, Any]:
    tensor = {"name": "input", "datatype": "UINT8", "shape": list(x_BHWC.shape)}
    tensor["data"] = x_BHWC.ravel().tolist()
    return {"inputs": [tensor], **extra}


def echo_body(value: int, batch: int = 1) -> dict[str, Any]:
    return infer_body(np.full((batch, 2, 2), value, np.uint8))


def labels_of(response_json: dict[str, Any]) -> list[str]:
    out = {o["name"]: o for o in response_json["outputs"]}
    return list(out["label"]["data"])


def probs_of(response_json: dict[str, Any]) -> np.ndarray:
    out = {o["name"]: o for o in response_json["outputs"]}["probabilities"]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


@contextmanager
def live_server(app: FastAPI, **config: Any) -> Iterator[str]:
    """``app`` on a real loopback socket (uvicorn in a thread); yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **config))
    with running(server) as url:
        yield url


@contextmanager
def running(server: uvicorn.Server) -> Iterator[str]:
    """``server`` on a real loopback socket, in a thread; yields its base URL."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()
