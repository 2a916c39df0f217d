"""Text data sets: files → tokenizer → memory-mapped token shards, cached by content hash.

    splits = load_text(DataConfig("corpus.csv"), files)     # files from find_text_files
    splits.train.ids, splits.train.offsets, splits.train.y  # CSR tokens and labels (torch)

Two streaming passes over the training file: one trains the tokenizer on the training split,
one encodes every record in chunks with ``encode_batch_fast`` (all cores) into shards. A second
run on the same files and settings finds the cache entry and skips both.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dlhpc.data.config import DataConfig
from dlhpc.data.images import stratified_split
from dlhpc.data.shards import ShardWriter, new_entry, open_shard, publish
from dlhpc.data.text_sources import TextFiles, check_classes, iter_records
from dlhpc.data.tokenizer import encode_texts, load_tokenizer, train_tokenizer
from dlhpc.errors import DataError

CHUNK = 16_384  # records per encode_batch call: big enough for all cores, small in memory
CACHE_VERSION = "text/1"


@dataclass(frozen=True)
class TokenSet:
    """Records in CSR form; ``rows`` selects a subset of a shard without copying it."""

    ids: torch.Tensor  # (T,) int32, memory-mapped
    offsets: torch.Tensor  # (M+1,) int64 over the whole shard
    labels: torch.Tensor  # (M,) int64 over the whole shard
    rows: torch.Tensor  # (N,) int64: record i of this set is shard record rows[i]

    def __len__(self) -> int:
        return int(self.rows.numel())

    @property
    def y(self) -> torch.Tensor:
        return self.labels[self.rows]

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[self.rows + 1] - self.offsets[self.rows]

    def subset(self, idx: torch.Tensor) -> TokenSet:
        return TokenSet(self.ids, self.offsets, self.labels, self.rows[idx])


@dataclass(frozen=True)
class TextSplits:
    train: TokenSet
    test: TokenSet | None
    val: TokenSet | None
    classes: tuple[str, ...]
    tokenizer_file: Path
    vocab_size: int
    source: str


def _file_digest(path: Path, h: hashlib._Hash) -> None:
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)


def cache_key(
    files: TextFiles, cfg: DataConfig, vocab_size: int, tokenizer: Path | None = None
) -> str:
    h = hashlib.sha256(CACHE_VERSION.encode())
    if tokenizer is not None:  # a given (pretrained) tokenizer is part of the key
        _file_digest(tokenizer, h)
    settings = [files.format, files.text_column, files.label_column, vocab_size,
                cfg.test_fraction if files.test is None else None, cfg.seed]  # fmt: skip
    h.update(json.dumps(settings).encode())
    for p in (files.train, files.test):
        if p is not None:
            _file_digest(p, h)
            h.update(b"\0")
    return h.hexdigest()[:24]


def _held_out(index: int, fraction: float, seed: int) -> bool:
    """A fixed pseudo-random test membership per record (splitmix64 of its index)."""
    z = (index + 0x9E3779B97F4A7C15 * (seed + 1)) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return ((z ^ (z >> 31)) % 1_000_000) < fraction * 1_000_000


def split_records(files: TextFiles, cfg: DataConfig, split: str) -> Iterator[tuple[str, str]]:
    """(text, label) of ``split`` ("train" or "test"), streaming."""
    cols = (files.text_column, files.label_column)
    if files.test is not None:
        yield from iter_records(
            files.train if split == "train" else files.test, files.format, *cols
        )
        return
    want_test = split == "test"
    for i, rec in enumerate(iter_records(files.train, files.format, *cols)):
        if _held_out(i, cfg.test_fraction, cfg.seed) == want_test:
            yield rec


def _build(
    files: TextFiles, cfg: DataConfig, vocab_size: int, entry: Path, tokenizer: Path | None
) -> None:
    labels: set[str] = set()

    def train_texts() -> Iterator[str]:
        for text, label in split_records(files, cfg, "train"):
            labels.add(label)
            yield text

    if tokenizer is None:
        tok = train_tokenizer(train_texts(), vocab_size)
        if tok.get_vocab_size() < 3:  # no word beside the padding and unknown tokens
            raise DataError(f"{files.train}: the training texts have no words (all empty?)")
    else:  # fine-tuning: keep the pretrained run's vocabulary, so its embeddings still fit
        tok = load_tokenizer(tokenizer)
        for _ in train_texts():  # still collect the labels
            pass
    check_classes(labels, str(files.train))
    classes = sorted(labels)
    index = {c: i for i, c in enumerate(classes)}
    tok.save(str(entry / "tokenizer.json"))
    for split in ("train", "test"):
        with ShardWriter(entry / split) as w:
            texts: list[str] = []
            ids_of: list[int] = []
            for text, label in split_records(files, cfg, split):
                if label not in index:
                    where = files.test or files.train
                    raise DataError(f"{where}: test label {label!r} never occurs in training data")
                texts.append(text)
                ids_of.append(index[label])
                if len(texts) == CHUNK:
                    w.add(*encode_texts(tok, texts), np.asarray(ids_of))
                    texts, ids_of = [], []
            if texts:
                w.add(*encode_texts(tok, texts), np.asarray(ids_of))
            w.close(split=split)
    meta = {"classes": classes, "vocab_size": tok.get_vocab_size(), "source": str(files.train)}
    (entry / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (entry / "done").write_text("")


def _token_set(shard: Path) -> TokenSet:
    ids, offsets, labels, _ = open_shard(shard)
    t = torch.from_numpy  # shares memory with the memory map
    return TokenSet(t(ids), t(offsets), t(labels), torch.arange(len(labels)))


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "dlhpc" / "text"


def load_text(cfg: DataConfig, files: TextFiles, tokenizer: Path | None = None) -> TextSplits:
    """The token shards of ``files``; ``tokenizer`` reuses a given one instead of training."""
    vocab_size = cfg.vocab_size
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    entry = cache / cache_key(files, cfg, vocab_size, tokenizer)
    if not (entry / "done").is_file():
        tmp = new_entry(cache, entry.name)
        try:
            _build(files, cfg, vocab_size, tmp, tokenizer)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        publish(tmp, entry)
    meta = json.loads((entry / "meta.json").read_text())
    train, test = _token_set(entry / "train"), _token_set(entry / "test")
    val = None
    if cfg.val_fraction > 0:
        keep, held = stratified_split(train.y.numpy(), cfg.val_fraction, cfg.seed + 1)
        val = train.subset(torch.from_numpy(held))
        train = train.subset(torch.from_numpy(keep))
    return TextSplits(
        train, test if len(test) else None, val, tuple(meta["classes"]),
        entry / "tokenizer.json", int(meta["vocab_size"]), cfg.source,
    )  # fmt: skip


def encode_for_run(tokenizer_file: Path, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode new texts with a run's own tokenizer: (ids (T,) int64, offsets (B+1,) int64)."""
    ids, offsets = encode_texts(load_tokenizer(tokenizer_file), texts)
    return torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(offsets)
