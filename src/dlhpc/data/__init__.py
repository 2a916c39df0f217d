"""Bytes → tensors: loaders per format, batching by index."""

from dlhpc.data.augment import AUGMENTS, random_affine
from dlhpc.data.batching import batch_slices, epoch_order
from dlhpc.data.config import DataConfig
from dlhpc.data.images import ImageSet, ImageSplits, load_images
from dlhpc.data.readers import decode_image_files

__all__ = [
    "AUGMENTS",
    "DataConfig",
    "ImageSet",
    "ImageSplits",
    "batch_slices",
    "decode_image_files",
    "epoch_order",
    "load_images",
    "random_affine",
]
