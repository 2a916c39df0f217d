"""Word-level tokenization with Hugging Face ``tokenizers`` (Rust, parallel batch encoding).

The tutorial's Keras ``Tokenizer(num_words=10000)`` made exact: NFKC + lower-case, words and
punctuation split apart, the ``vocab_size`` most frequent words of the *training* split, id 0
for padding and id 1 for unknown words. Saved as ``RUN/tokenizer.json``::

    tok = train_tokenizer(["some text", "more text"], vocab_size=10_000)
    ids, offsets = encode_texts(tok, ["some new text"])   # CSR: ids (T,), offsets (B+1,)
"""

from __future__ import annotations

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
    lengths = np.fromiter((len(e.ids) for e in enc), dtype=np.int64, count=len(enc))
    offsets = np.zeros(len(enc) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.fromiter((i for e in enc for i in e.ids), dtype=np.int32, count=int(offsets[-1]))
    return ids, offsets
