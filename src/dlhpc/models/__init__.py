"""Single-device ``torch.nn`` models. No I/O, never ``torch.distributed``."""

from dlhpc.models.registry import (
    build_model,
    count_parameters,
    image_model_names,
    model_names,
    text_model_names,
)
from dlhpc.models.spec import ImageInput, ModelConfig, ModelSpec, TextInput

__all__ = [
    "ImageInput",
    "ModelConfig",
    "ModelSpec",
    "TextInput",
    "build_model",
    "count_parameters",
    "image_model_names",
    "model_names",
    "text_model_names",
]
