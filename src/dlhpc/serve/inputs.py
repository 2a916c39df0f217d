"""Request inputs by kind: a v2 input tensor or a ``/predict`` body → one batch item.

    codec = input_codec(predictor.input, cfg)          # ImageCodec or TextCodec
    item = codec.from_tensor({"name": "input", "datatype": "BYTES", "shape": [1], "data": ["hi"]})
    item = codec.from_upload(b"first text\\nsecond text", "text/plain")     # ["first text", …]

Items are what the predictor joins and runs: uint8 pixels (N, C, H, W) for image models, a list
of N texts for text models. Every size is checked before anything is allocated or tokenized:
shape and element count against the data, the number of texts (400) and their UTF-8 bytes (413).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from typing import Any, TypeGuard

import numpy as np

from dlhpc.errors import ConfigError
from dlhpc.models.spec import ImageInput, TextInput
from dlhpc.serve.config import ServeConfig
from dlhpc.serve.protocol import INPUT_NAME, BadRequest, InputCodec, TooLarge, flatten, load_json

# --------------------------------------------------------------------------- images


class ImageCodec:
    """UINT8 ``[B, H, W]`` / ``[B, H, W, C]`` raw pixels, or an image file for ``/predict``."""

    kind = "image"

    def __init__(self, inp: ImageInput, max_pixels: int) -> None:
        self.chw = inp.shape
        self.max_pixels = max_pixels

    def tensor_metadata(self) -> dict[str, Any]:
        c, h, w = self.chw
        return {"name": INPUT_NAME, "datatype": "UINT8", "shape": [-1, h, w, c]}

    def parameters(self) -> dict[str, Any]:
        return {"input_kind": "image", "input_layout": "NHWC, raw pixels"}

    def from_tensor(self, tensor: dict[str, Any]) -> np.ndarray:
        if tensor.get("datatype") != "UINT8":
            raise BadRequest(f"datatype must be UINT8 (raw pixels), got {tensor.get('datatype')!r}")
        bhwc = self._check_shape(tensor.get("shape"))
        return _pixels(tensor.get("data"), bhwc)

    def _check_shape(self, shape: Any) -> tuple[int, int, int, int]:
        """The request's shape as (B, H, W, C), or BadRequest naming what the model takes."""
        c, h, w = self.chw
        want = f"[B, {h}, {w}] or [B, {h}, {w}, 1]" if c == 1 else f"[B, {h}, {w}, {c}]"
        if not _int_list(shape):
            raise BadRequest(f"'shape' must be a list of integers, {want}")
        if len(shape) == 3 and c == 1:
            shape = [*shape, 1]
        if len(shape) != 4 or shape[1:] != [h, w, c] or shape[0] < 1:
            raise BadRequest(f"shape {shape} does not fit the model: send {want} with B ≥ 1")
        b, hh, ww, cc = shape
        return b, hh, ww, cc

    def from_upload(self, body: bytes, content_type: str) -> np.ndarray:
        return decode_image(body, self.chw, self.max_pixels)


def _int_list(shape: Any) -> TypeGuard[list[int]]:
    return isinstance(shape, list) and all(
        isinstance(d, int) and not isinstance(d, bool) for d in shape
    )


def _pixels(data: Any, bhwc: tuple[int, int, int, int]) -> np.ndarray:
    if not isinstance(data, list):
        raise BadRequest("'data' must be a list")
    flat = flatten(data)
    count = math.prod(bhwc)
    if len(flat) != count:
        raise BadRequest(f"shape {list(bhwc)} needs {count} elements, got {len(flat)}")
    try:
        # bytearray() checks each element in C: an int in 0–255 (else ValueError / TypeError),
        # 4–5× faster than np.asarray + range checks. It would take True as 1: JSON booleans
        # are refused before, by parse_infer_request.
        raw = bytearray(flat)
    except (ValueError, TypeError):
        raise BadRequest("UINT8 data must be integers 0–255") from None
    x_BHWC = np.frombuffer(raw, np.uint8).reshape(bhwc)
    return np.ascontiguousarray(x_BHWC.transpose(0, 3, 1, 2))


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


# --------------------------------------------------------------------------- texts


class TextCodec:
    """BYTES ``[B]`` (or ``[B, 1]``) UTF-8 strings; ``text/plain`` or JSON for ``/predict``."""

    kind = "text"

    def __init__(self, max_texts: int, max_text_bytes: int) -> None:
        self.max_texts = max_texts
        self.max_text_bytes = max_text_bytes

    def tensor_metadata(self) -> dict[str, Any]:
        return {"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}

    def parameters(self) -> dict[str, Any]:
        return {
            "input_kind": "text",
            "input_encoding": "UTF-8 strings, one text per element",
            "max_texts": self.max_texts,
            "max_text_bytes": self.max_text_bytes,
        }

    def from_tensor(self, tensor: dict[str, Any]) -> list[str]:
        if tensor.get("datatype") != "BYTES":
            raise BadRequest(
                f"datatype must be BYTES (UTF-8 strings), got {tensor.get('datatype')!r}"
            )
        shape = tensor.get("shape")
        if not _int_list(shape) or len(shape) not in (1, 2) or shape[1:] not in ([], [1]):
            raise BadRequest(f"shape must be [B] (or [B, 1]) for B texts, got {shape!r}")
        b = shape[0]
        if b < 1:
            raise BadRequest(f"shape {shape}: send at least one text")
        self._check_count(b)  # before looking at the data
        data = tensor.get("data")
        if not isinstance(data, list):
            raise BadRequest("'data' must be a list of strings")
        if len(shape) == 2:
            data = flatten(data)
        if len(data) != b:
            raise BadRequest(f"shape {shape} needs {b} strings, got {len(data)}")
        return self._checked(data)

    def from_upload(self, body: bytes, content_type: str) -> list[str]:
        """JSON ``{"text": …}`` / ``{"texts": […]}``, else plain text: one text per line."""
        if content_type.split(";")[0].strip().lower() == "application/json":
            return self._checked(_json_texts(load_json(body)))
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            where = f"{e.reason} at byte {e.start}"
            raise BadRequest(f"the text is not valid UTF-8 ({where})") from None
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            raise BadRequest("no text: send one text per line (text/plain)")
        return self._checked(lines)

    def _check_count(self, n: int) -> None:
        if n > self.max_texts:
            raise BadRequest(f"{n} texts are over the limit of {self.max_texts} per request")

    def _checked(self, texts: list[Any]) -> list[str]:
        """Strings, at most ``max_texts`` and ``max_text_bytes`` (as UTF-8) of them, or 400/413."""
        self._check_count(len(texts))
        size = 0
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise BadRequest(f"BYTES data must be strings; element {i} is {_json_type(t)}")
            try:
                size += len(t.encode("utf-8"))
            except UnicodeEncodeError:  # a lone surrogate, e.g. "\udc80" in the JSON
                raise BadRequest(f"text {i} is not valid UTF-8 (a lone surrogate)") from None
            if size > self.max_text_bytes:
                raise TooLarge(f"the texts are over the limit of {self.max_text_bytes} bytes")
        return texts


def _json_texts(obj: Any) -> list[Any]:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        return [obj["text"]]
    if isinstance(obj, dict) and isinstance(obj.get("texts"), list) and obj["texts"]:
        return list(obj["texts"])
    raise BadRequest('send {"text": "…"} or {"texts": ["…", …]} (at least one text)')


def _json_type(v: Any) -> str:
    return json.dumps(v)[:20] if v is None or isinstance(v, bool) else type(v).__name__


# --------------------------------------------------------------------------- by kind

CODECS: dict[type, Callable[[Any, ServeConfig], InputCodec]] = {
    ImageInput: lambda inp, cfg: ImageCodec(inp, cfg.max_image_pixels),
    TextInput: lambda _, cfg: TextCodec(cfg.max_texts, cfg.max_text_bytes),
}


def input_codec(inp: ImageInput | TextInput, cfg: ServeConfig) -> InputCodec:
    """The codec for the model's input kind; new kinds register in ``CODECS``."""
    make = CODECS.get(type(inp))
    if make is None:
        raise ConfigError(f"serving {inp.kind} models is not supported")
    return make(inp, cfg)
