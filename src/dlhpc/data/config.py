"""``DataConfig``: where the data comes from and how it is split and shaped."""

from __future__ import annotations

from dataclasses import dataclass

from dlhpc.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    source: str = "digits"
    val_fraction: float = 0.0  # carved from train, stratified; needed for early stopping
    test_fraction: float = 0.2  # only for sources with no test split of their own
    image_size: int | None = None  # resize images to SIZE×SIZE (default: the source's size)
    channels: int | None = None  # 1 or 3 (default: 1 if every image is grayscale)
    seed: int = 0  # fixes the held-out splits
    augment: str = "affine"  # image training batches only: none | affine (data/augment.py)
    text_column: str = "text"  # CSV/TSV/JSONL field names
    label_column: str = "label"
    vocab_size: int = 10_000  # the tutorial's; specials [PAD] and [UNK] included
    cache_dir: str | None = None  # token shards (default ~/.cache/dlhpc/text)

    def __post_init__(self) -> None:
        if not self.source:
            raise ConfigError("--data needs a source: 'digits', a directory or a file")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"--test-fraction must be in (0, 1), got {self.test_fraction}")
        if self.image_size is not None and self.image_size < 1:
            raise ConfigError(f"--image-size must be positive, got {self.image_size}")
        if self.vocab_size < 3:
            raise ConfigError(f"--vocab-size must be at least 3, got {self.vocab_size}")
        if self.augment not in ("none", "affine"):
            raise ConfigError(f"--augment must be none or affine, got {self.augment!r}")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"--channels must be 1 or 3, got {self.channels}")
