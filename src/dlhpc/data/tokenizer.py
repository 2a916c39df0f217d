"""Word-level tokenization with Hugging Face ``tokenizers`` (Rust, parallel batch encoding).

The tutorial's Keras ``Tokenizer(num_words=10000)`` made exact: NFKC + lower-case, words and
punctuation split apart, the ``vocab_size`` most frequent words of the *training* split, id 0
for padding and id 1 for unknown words. Saved as ``RUN/tokenizer.json``::

    tok = train_tokenizer(["some text", "more text"], vocab_size=10_000)
    ids, offsets = encode_texts(tok, ["some new text"])   # CSR: ids (T,), offsets (B+1,)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlhpc.errors import ConfigError

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID, UNK_ID = 0, 1


def train_tokenizer(texts: Iterable[str], vocab_size: int = 10_000) -> Any:
    """A WordLevel tokenizer over the ``vocab_size`` most frequent words (specials included)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK])
    tok.train_from_iterator(texts, trainer)
    return tok


def load_tokenizer(path: Path) -> Any:
    from tokenizers import Tokenizer

    if not path.is_file():
        raise ConfigError(f"{path}: tokenizer file is missing")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
        raise ConfigError(f"{path}: unreadable tokenizer ({e})") from None


def encode_texts(tok: Any, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Texts → CSR token ids: ``ids`` (T,) int32 and ``offsets`` (B+1,) int64.

    ``encode_batch_fast`` runs on all cores in Rust (no offsets mapping is computed).
    """
    enc = tok.encode_batch_fast(list(texts), add_special_tokens=False)
    lists = [e.ids for e in enc]  # each .ids builds a new list: read it once
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, lists), dtype=np.int64, count=len(lists)), out=offsets[1:])
    # flattened in C (chain), not by a generator per token: 0.12 s less on 14k texts
    flat = itertools.chain.from_iterable(lists)
    ids = np.fromiter(flat, dtype=np.int32, count=int(offsets[-1]))
    return ids, offsets
