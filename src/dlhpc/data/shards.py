"""Memory-mapped token shards: the encoded corpus on disk, read back without copying.

A shard is a directory::

    header.json         {"format": "dlhpc.shard/1", "records": N, "tokens": T, ...}
    ids.bin             int32 (T,)    token ids of all records, concatenated
    offsets.bin         int64 (N+1,)  record i is ids[offsets[i]:offsets[i+1]]
    labels.bin          int64 (N,)    class ids

Written chunk by chunk (the corpus never has to fit in memory), opened with ``np.memmap``: the
operating system pages in what a batch touches. Files are written under a temporary name and
the shard directory appears by one rename, so a reader never sees half a shard.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from dlhpc.errors import DataError

SHARD_FORMAT = "dlhpc.shard/1"


class ShardWriter:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self._ids = open(directory / "ids.bin", "wb")  # noqa: SIM115
        self._labels = open(directory / "labels.bin", "wb")  # noqa: SIM115
        self._lengths: list[np.ndarray] = []
        self.records = 0
        self.tokens = 0

    def add(self, ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray) -> None:
        """Append a chunk in CSR form: ``ids`` (T,), ``offsets`` (B+1,), ``labels`` (B,)."""
        self._ids.write(np.ascontiguousarray(ids, dtype=np.int32).tobytes())
        self._labels.write(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
        self._lengths.append(np.diff(offsets).astype(np.int64))
        self.records += len(labels)
        self.tokens += len(ids)

    def close(self, **header: Any) -> None:
        self._ids.close()
        self._labels.close()
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        offsets = np.zeros(self.records + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        offsets.tofile(self.dir / "offsets.bin")
        meta = {"format": SHARD_FORMAT, "records": self.records, "tokens": self.tokens, **header}
        (self.dir / "header.json").write_text(json.dumps(meta, indent=2) + "\n")

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is not None:
            self._ids.close()
            self._labels.close()


def open_shard(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(ids, offsets, labels, header), ids and labels memory-mapped."""
    try:
        header = json.loads((directory / "header.json").read_text())
        n, t = int(header["records"]), int(header["tokens"])

        def mm(name: str, dtype: type, count: int) -> np.ndarray:
            if count == 0:
                return np.zeros(0, dtype=dtype)
            # copy-on-write: torch wants writable memory; the file is never changed
            return np.memmap(directory / name, dtype=dtype, mode="c", shape=(count,))

        ids = mm("ids.bin", np.int32, t)
        offsets = np.fromfile(directory / "offsets.bin", dtype=np.int64)
        labels = mm("labels.bin", np.int64, n)
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{directory}: damaged token shard ({e}); delete it to rebuild") from None
    if len(offsets) != n + 1 or offsets[-1] != t:
        raise DataError(f"{directory}: damaged token shard (offsets disagree with the header)")
    return ids, offsets, labels, header


def publish(tmp: Path, final: Path) -> Path:
    """Move a finished cache entry into place atomically; if another process won, keep theirs."""
    try:
        os.replace(tmp, final)
    except OSError:
        if (final / "done").is_file():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            raise
    return final


def new_entry(cache: Path, key: str) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache))
