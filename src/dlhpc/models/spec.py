"""What it takes to rebuild a model: its config, its input and its labels (``RUN/model.json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dlhpc.errors import ConfigError

ACTIVATIONS = ("relu", "sigmoid", "tanh")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture settings. ``hidden`` is used by ``mlp``; the tutorial's models fix the rest."""

    name: str = "cnn"
    hidden: tuple[int, ...] = (256, 128)  # mlp
    activation: str = "relu"  # mlp
    dropout: float = 0.0  # mlp, transformer
    embed_dim: int = 64  # text: the tutorial's Embedding(10000, 64)
    units: int = 64  # text: LSTM units / the Dense(64) before the output
    bigrams: int = 0  # bag: hashed word-bigram buckets (fastText's trick); 0 = off
    sparse: bool = False  # bag: sparse embedding gradients, the table stepped by SparseAdam
    max_length: int = 256  # lstm, transformer: tokens kept per text
    layers: int = 2  # transformer
    heads: int = 4  # transformer

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if any(h <= 0 for h in self.hidden):
            raise ConfigError(f"hidden sizes must be positive, got {list(self.hidden)}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose from {ACTIVATIONS}")
        for name in ("embed_dim", "units", "max_length", "layers", "heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.bigrams < 0:
            raise ConfigError(f"--bigrams must be ≥ 0, got {self.bigrams}")
        if self.name == "transformer" and self.embed_dim % self.heads:
            raise ConfigError(f"--embed-dim {self.embed_dim} must divide by --heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class ImageInput:
    """Raw image input: uint8 pixels (N, C, H, W); the model standardizes them itself."""

    channels: int
    height: int
    width: int
    mean: tuple[float, ...]  # per channel, of pixel/255 on the training split
    std: tuple[float, ...]
    kind: str = "image"

    def __post_init__(self) -> None:
        if min(self.channels, self.height, self.width) <= 0:
            raise ConfigError(f"bad image shape {(self.channels, self.height, self.width)}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ConfigError("mean and std need one value per channel")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


@dataclass(frozen=True)
class TextInput:
    """Token ids in CSR form (ids (T,), offsets (B+1,)); the tokenizer travels with the run."""

    vocab_size: int
    tokenizer: str = "tokenizer.json"  # Hugging Face tokenizers format, next to model.json
    pad_id: int = 0
    unk_id: int = 1
    kind: str = "text"

    def __post_init__(self) -> None:
        if self.vocab_size < 3:
            raise ConfigError(f"vocabulary too small ({self.vocab_size})")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a trained model from ``model.json`` and its weights."""

    config: ModelConfig
    input: ImageInput | TextInput
    labels: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "dlhpc.model/1",
            "architecture": self.config.name,
            "config": asdict(self.config),
            "input": asdict(self.input),
            "labels": list(self.labels),
            **self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        try:
            config = ModelConfig(**d["config"])
            inp = d["input"]
            kinds: dict[str, type[ImageInput] | type[TextInput]] = {
                "image": ImageInput,
                "text": TextInput,
            }
            kind = kinds.get(inp.get("kind", "image"))
            if kind is None:
                raise ConfigError(f"unknown input kind {inp.get('kind')!r}")
            image = kind(**inp)
            labels = tuple(str(label) for label in d["labels"])
        except (KeyError, TypeError) as e:
            raise ConfigError(f"model.json is incomplete or malformed: {e}") from None
        known = {"format", "architecture", "config", "input", "labels"}
        return cls(config, image, labels, {k: v for k, v in d.items() if k not in known})
