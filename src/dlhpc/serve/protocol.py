"""The KServe v2 / Open Inference Protocol, REST flavour: request checks and response bodies.

Pure functions, no web framework: bytes in, batch items and dicts out, ``BadRequest`` (→ 400,
or 413 for ``TooLarge``) on any malformed input. The envelope is checked here; the one input
tensor by the model's ``InputCodec`` (``dlhpc.serve.inputs``), which checks shape, datatype and
element count before any array is made.

    POST /v2/models/NAME/infer
    {"inputs": [{"name": "input", "datatype": "UINT8", "shape": [2, 28, 28], "data": [...]}]}
    {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}]}
    → {"model_name": "NAME", "outputs": [
         {"name": "probabilities", "datatype": "FP32", "shape": [2, 10], "data": [...]},
         {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["7", "2"]}]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

INPUT_NAME = "input"
OUTPUTS = ("probabilities", "label")
PLATFORMS = {"eager": "pytorch", "onnx": "onnxruntime_onnx"}


class BadRequest(Exception):
    """A request the server will not run (→ 400 with this message)."""

    status = 400


class TooLarge(BadRequest):
    """A request over a size limit (→ 413 with this message)."""

    status = 413


class InputCodec(Protocol):
    """One input kind on the wire: its metadata, and request data → a batch item."""

    kind: str

    def tensor_metadata(self) -> dict[str, Any]:
        """The model metadata's input tensor: name, datatype, shape."""
        ...

    def parameters(self) -> dict[str, Any]: ...

    def from_tensor(self, tensor: dict[str, Any]) -> Any:
        """A v2 input tensor (a dict with a string name) → an item, or BadRequest."""
        ...

    def from_upload(self, body: bytes, content_type: str) -> Any:
        """A ``/predict`` body → an item, or BadRequest."""
        ...


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    item: Any  # what the codec made: pixels (N, C, H, W) or N texts
    outputs: tuple[str, ...]


def model_metadata(
    name: str, backend: str, labels: tuple[str, ...], codec: InputCodec, max_batch_size: int
) -> dict[str, Any]:
    return {
        "name": name,
        "versions": ["1"],
        "platform": PLATFORMS.get(backend, backend),
        "inputs": [codec.tensor_metadata()],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(labels)]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ],
        "labels": list(labels),
        "parameters": {"max_batch_size": max_batch_size, **codec.parameters()},
    }


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except UnicodeDecodeError as e:
        raise BadRequest(f"the body is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, absurd nesting
        raise BadRequest(f"malformed JSON: {str(e)[:200]}") from None


def flatten(data: list[Any], depth: int = 0) -> list[Any]:
    """Nested lists (row-major) → one flat list; at most 4 levels, as the shape allows."""
    if not data or not isinstance(data[0], list):
        return data  # flat (a list hiding further on fails the integer check)
    if depth >= 3 or not all(isinstance(d, list) for d in data):
        raise BadRequest("'data' must be a flat list, or evenly nested lists")
    return [v for d in data for v in flatten(d, depth + 1)]


def _holds_bool(data: Any, depth: int = 0) -> bool:
    """Whether nested lists (at most 4 levels, as ``flatten`` takes) hold a JSON boolean.

    Only looked at when the body has the words: the codecs read data with bytearray() and
    numpy, to which True is 1.
    """
    if isinstance(data, bool):
        return True
    if isinstance(data, list) and depth < 4:
        return any(_holds_bool(d, depth + 1) for d in data)
    return False


def _requested_outputs(req: dict[str, Any]) -> tuple[str, ...]:
    outs = req.get("outputs")
    if outs is None:
        return OUTPUTS
    if not isinstance(outs, list) or not all(isinstance(o, dict) for o in outs):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    names = tuple(o.get("name") for o in outs)
    bad = [n for n in names if n not in OUTPUTS]
    if bad:
        raise BadRequest(f"unknown output {bad[0]!r}; the model has {list(OUTPUTS)}")
    return names or OUTPUTS  # type: ignore[return-value]


def parse_infer_request(body: bytes, codec: InputCodec) -> InferRequest:
    req = load_json(body)
    if not isinstance(req, dict):
        raise BadRequest("the request must be a JSON object with 'inputs'")
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequest("'inputs' must be a list of one tensor object")
    tensor = inputs[0]
    if not isinstance(tensor.get("name"), str):
        raise BadRequest(f"the input tensor needs a 'name' (this model's is {INPUT_NAME!r})")
    if (b"true" in body or b"false" in body) and _holds_bool(tensor.get("data")):
        raise BadRequest("'data' holds true/false: no input of this model is BOOL")
    item = codec.from_tensor(tensor)
    rid = req.get("id")
    if rid is not None and not isinstance(rid, str):
        raise BadRequest("'id' must be a string")
    return InferRequest(rid, item, _requested_outputs(req))


def infer_response(
    name: str, req: InferRequest, probs_NK: np.ndarray, labels: tuple[str, ...]
) -> dict[str, Any]:
    n, k = probs_NK.shape
    outputs: list[dict[str, Any]] = []
    for out in req.outputs:
        if out == "probabilities":
            data: list[Any] = probs_NK.astype(np.float32).ravel().tolist()
            outputs.append({"name": out, "datatype": "FP32", "shape": [n, k], "data": data})
        else:
            data = [labels[i] for i in probs_NK.argmax(axis=1).tolist()]
            outputs.append({"name": out, "datatype": "BYTES", "shape": [n], "data": data})
    resp: dict[str, Any] = {"model_name": name, "model_version": "1", "outputs": outputs}
    if req.id is not None:
        resp["id"] = req.id
    return resp
