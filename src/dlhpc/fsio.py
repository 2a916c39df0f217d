"""Atomic file writes: write to a temporary file in the same directory, fsync, then rename.

A reader (or a crash) never sees a half-written file: it sees the old one or the new one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The process's umask, read once at import (os.umask can only be read by setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically.

    The file gets the permissions a plain ``open(path, "w")`` would (0666 less the umask), not
    the owner-only 0600 of the temporary file it starts as."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    with contextlib.suppress(OSError):  # a filesystem without modes keeps its own
        os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float as None: JSON has no such numbers, and Python's
    ``NaN`` / ``Infinity`` tokens break other readers (a diverged loss, say, is null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def json_line(obj: Any) -> str:
    """One line of strict JSON (non-finite floats as null)."""
    return json.dumps(json_safe(obj), allow_nan=False)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    text = json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def dated_name(directory: str | os.PathLike[str], prefix: str, *suffixes: str) -> str:
    """``prefix_YYYYMMDD`` (today), the stem of a dated benchmark report; ``…-2``, ``-3`` … when
    a file of that stem with any of ``suffixes`` is already in ``directory``, so a second run
    on the same day never overwrites the first one's record."""
    base = f"{prefix}_{time.strftime('%Y%m%d')}"
    d, k, name = Path(directory), 1, base
    while any((d / f"{name}{s}").exists() for s in suffixes or ("",)):
        k += 1
        name = f"{base}-{k}"
    return name


def unwritable(path: Path, directory: bool = False) -> str | None:
    """Why ``path`` cannot be written as ``atomic_write`` writes (``directory``: made and
    written into), or None when it can; for commands that write their output after minutes of
    work, to say so before it. Folders still missing are made at the write, so the nearest one
    that exists is tried, by making (and removing) a temporary file in it, as the write will:
    that asks the filesystem itself (``os.access`` says yes to root for any directory, /proc
    included)."""
    try:
        if os.path.lexists(path):
            if directory and not path.is_dir():
                return f"{path}: exists and is not a directory"
            if not directory and path.is_dir():
                return f"{path}: is a directory; give a file name"
            if not directory and not path.is_file():  # a device or pipe: the rename replaces it
                return f"{path}: exists and is not a regular file"
        where = path if directory and path.is_dir() else path.absolute().parent
        while not os.path.lexists(where) and where != where.parent:
            where = where.parent
        if not where.is_dir():
            return f"{path}: cannot be written, {where} is not a directory"
        fd, tmp = tempfile.mkstemp(prefix=".dlhpc-probe.", suffix=".tmp", dir=where)
    except OSError as e:  # no search permission on the way, a read-only filesystem, …
        return f"{path}: cannot be written ({e.strerror or e})"
    os.close(fd)
    os.unlink(tmp)
    return None
