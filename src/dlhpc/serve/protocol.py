"""The KServe v2 / Open Inference Protocol, REST flavour: request checks and response bodies.

Pure functions, no web framework: bytes in, arrays and dicts out, ``BadRequest`` (→ 400) on any
malformed input. Shape, datatype and element count are checked before any array is made.

    POST /v2/models/NAME/infer
    {"inputs": [{"name": "input", "datatype": "UINT8", "shape": [2, 28, 28], "data": [...]}]}
    → {"model_name": "NAME", "outputs": [
         {"name": "probabilities", "datatype": "FP32", "shape": [2, 10], "data": [...]},
         {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["7", "2"]}]}
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlhpc.serve.predictor import Predictor

INPUT_NAME = "input"
OUTPUTS = ("probabilities", "label")
PLATFORMS = {"eager": "pytorch", "onnx": "onnxruntime_onnx"}


class BadRequest(Exception):
    """A request the server will not run (→ 400 with this message)."""


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    x_NCHW: np.ndarray  # uint8
    outputs: tuple[str, ...]


def model_metadata(name: str, predictor: Predictor, max_batch_size: int) -> dict[str, Any]:
    c, h, w = predictor.input.shape
    return {
        "name": name,
        "versions": ["1"],
        "platform": PLATFORMS.get(predictor.backend, predictor.backend),
        "inputs": [{"name": INPUT_NAME, "datatype": "UINT8", "shape": [-1, h, w, c]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(predictor.labels)]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ],
        "labels": list(predictor.labels),
        "parameters": {"max_batch_size": max_batch_size, "input_layout": "NHWC, raw pixels"},
    }


def _load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, absurd nesting
        raise BadRequest(f"malformed JSON: {str(e)[:200]}") from None


def _flatten(data: list[Any], depth: int = 0) -> list[Any]:
    """Nested lists (row-major) → one flat list; at most 4 levels, as the shape allows."""
    if not data or not isinstance(data[0], list):
        return data  # flat (a list hiding further on fails the integer check)
    if depth >= 3 or not all(isinstance(d, list) for d in data):
        raise BadRequest("'data' must be a flat list of numbers, or evenly nested lists")
    return [v for d in data for v in _flatten(d, depth + 1)]


def _check_shape(shape: Any, chw: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """The request's shape as (B, H, W, C), or BadRequest naming what the model takes."""
    c, h, w = chw
    want = f"[B, {h}, {w}] or [B, {h}, {w}, 1]" if c == 1 else f"[B, {h}, {w}, {c}]"
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in shape
    ):
        raise BadRequest(f"'shape' must be a list of integers, {want}")
    if len(shape) == 3 and c == 1:
        shape = [*shape, 1]
    if len(shape) != 4 or shape[1:] != [h, w, c] or shape[0] < 1:
        raise BadRequest(f"shape {shape} does not fit the model: send {want} with B ≥ 1")
    b, hh, ww, cc = shape
    return b, hh, ww, cc


def _pixels(data: Any, bhwc: tuple[int, int, int, int]) -> np.ndarray:
    if not isinstance(data, list):
        raise BadRequest("'data' must be a list")
    flat = _flatten(data)
    count = math.prod(bhwc)
    if len(flat) != count:
        raise BadRequest(f"shape {list(bhwc)} needs {count} elements, got {len(flat)}")
    try:
        a = np.asarray(flat)
    except (ValueError, OverflowError):  # a list or an object among the numbers
        raise BadRequest("UINT8 data must be integers 0–255") from None
    if a.dtype.kind not in "iu":
        raise BadRequest("UINT8 data must be integers 0–255")
    if count and (a.min() < 0 or a.max() > 255):
        raise BadRequest("UINT8 data must be integers 0–255")
    x_BHWC = a.astype(np.uint8).reshape(bhwc)
    return np.ascontiguousarray(x_BHWC.transpose(0, 3, 1, 2))


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


def parse_infer_request(body: bytes, chw: tuple[int, int, int]) -> InferRequest:
    req = _load_json(body)
    if not isinstance(req, dict):
        raise BadRequest("the request must be a JSON object with 'inputs'")
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequest("'inputs' must be a list of one tensor object")
    tensor = inputs[0]
    if not isinstance(tensor.get("name"), str):
        raise BadRequest(f"the input tensor needs a 'name' (this model's is {INPUT_NAME!r})")
    if tensor.get("datatype") != "UINT8":
        raise BadRequest(f"datatype must be UINT8 (raw pixels), got {tensor.get('datatype')!r}")
    bhwc = _check_shape(tensor.get("shape"), chw)
    x = _pixels(tensor.get("data"), bhwc)
    rid = req.get("id")
    if rid is not None and not isinstance(rid, str):
        raise BadRequest("'id' must be a string")
    return InferRequest(rid, x, _requested_outputs(req))


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


def decode_image(data: bytes, chw: tuple[int, int, int], max_pixels: int) -> np.ndarray:
    """An image file's bytes → uint8 (1, C, H, W), converted and resized as training did."""
    from PIL import Image, UnidentifiedImageError

    c, h, w = chw
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > max_pixels:  # header only: nothing decoded yet
                raise BadRequest(f"image of {im.width}×{im.height} pixels is too large")
            pixels = im.convert("L" if c == 1 else "RGB")
            if pixels.size != (w, h):
                pixels = pixels.resize((w, h), Image.Resampling.BILINEAR)
            a = np.array(pixels, dtype=np.uint8).reshape(h, w, c)
    except BadRequest:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise BadRequest("not a readable image file (PNG, JPEG, …)") from None
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None])
