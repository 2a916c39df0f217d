"""Single-device ``torch.nn`` models: no data I/O and no process groups (the engine wraps
them for parallelism from the outside)."""

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
