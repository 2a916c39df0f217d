"""Single-device ``torch.nn`` models. No I/O, never ``torch.distributed``."""

from dlhpc.models.registry import build_model, count_parameters, image_model_names
from dlhpc.models.spec import ImageInput, ModelConfig, ModelSpec

__all__ = [
    "ImageInput",
    "ModelConfig",
    "ModelSpec",
    "build_model",
    "count_parameters",
    "image_model_names",
]
