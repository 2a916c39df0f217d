"""Text sources: find the train/test files and stream (text, label) records out of them.

Formats (``find_text_files`` picks by file name; ``.gz`` after any of them is read through gzip)::

    FILE.csv   FILE.tsv    a header row, then one record per row; columns ``text`` and ``label``
                           by default (others are ignored); quotes, commas, tabs and newlines
                           inside quoted fields as Excel and pandas write them
    FILE.jsonl             one JSON object per line: {"text": "…", "label": "pos"} (int/bool
                           labels become strings); blank lines are skipped
    FILE.txt   FILE.ft     fastText lines: ``__label__pos some text``
    DIR/                   train.<one of the above> and, optionally, test.<the same format>

Every reader streams: one record at a time, whatever the size of the file::

    files = find_text_files("corpus/")          # None: not a text source (try the image readers)
    for text, label in iter_records(files.train, files.format):
        ...

Speed: the hot loops are the C line iterator, the C ``csv`` reader, ``json.loads`` and ``str``
methods, with no regex and no per-line decode in Python. Decoding is strict UTF-8 (a BOM at the
start is allowed); when it fails, the file is scanned again in binary to name the line.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections import Counter
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dlhpc.errors import ConfigError, DataError

TEXT_FORMATS = ("csv", "tsv", "jsonl", "fasttext")
SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".txt": "fasttext",
    ".ft": "fasttext",
}
LABEL_PREFIX = "__label__"
CSV_FIELD_LIMIT = 1 << 28  # the csv module's default (128 KiB) is too small for long documents
_SHOW = 40  # characters of an offending line quoted in an error message


@dataclass(frozen=True)
class TextFiles:
    train: Path
    test: Path | None  # None: the caller holds out a fixed fraction of train
    format: str  # one of TEXT_FORMATS
    text_column: str = "text"  # csv/tsv column, jsonl key
    label_column: str = "label"


# ---------------------------------------------------------------- finding the files


def text_format(path: Path) -> str | None:
    """The format a file name says (``train.csv.gz`` → "csv"), or None if it is not text."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None


def _split_files(root: Path, split: str) -> list[Path]:
    """``root/train.csv``, ``root/train.jsonl.gz``, ...: every file named SPLIT.<text suffix>."""
    names = {f"{split}{suffix}" for suffix in SUFFIX_FORMATS}
    names |= {f"{name}.gz" for name in names}
    return sorted(p for p in root.glob(f"{split}.*") if p.name.lower() in names and p.is_file())


def _one(files: list[Path], root: Path, split: str) -> Path | None:
    if len(files) > 1:
        names = ", ".join(p.name for p in files)
        raise DataError(f"{root}: several {split} files ({names}); keep one")
    return files[0] if files else None


def find_text_files(
    source: str, text_column: str = "text", label_column: str = "label"
) -> TextFiles | None:
    """The text files ``source`` names, or None when it is not a text source."""
    path = Path(source).expanduser()
    found: tuple[Path, Path | None, str] | None
    if path.is_file():
        fmt = text_format(path)
        found = None if fmt is None else (path, None, fmt)
    elif path.is_dir():
        found = _dir_files(path)
    else:
        return None
    if found is None:
        return None
    train, test, fmt = found
    _check_columns(text_column, label_column)
    if fmt == "fasttext":
        for p in (train, test):
            if p is not None:
                _check_fasttext(p)
    return TextFiles(train, test, fmt, text_column, label_column)


def require_text_files(source: str, text_column: str, label_column: str, model: str) -> TextFiles:
    """``find_text_files`` for a text model (``model`` says which: "the run", "lstm"): a
    source that is missing, or not text, is a DataError saying which of the two it is."""
    files = find_text_files(source, text_column, label_column)
    if files is not None:
        return files
    from dlhpc.data.readers import BUILTIN_SOURCES

    if not Path(source).expanduser().exists() and source not in BUILTIN_SOURCES:
        raise DataError(f"{source}: no such file or directory")
    raise DataError(
        f"{source}: not a text source (a CSV, TSV, JSONL or fastText file, or a directory "
        f"with train.* and test.*), and {model} is a text model"
    )


def _dir_files(root: Path) -> tuple[Path, Path | None, str] | None:
    train = _one(_split_files(root, "train"), root, "train")
    test = _one(_split_files(root, "test"), root, "test")
    if train is None:
        if test is None:
            return None
        raise DataError(f"{root}: {test.name} but no training file (train.csv, .tsv, ...)")
    fmt = text_format(train)
    assert fmt is not None
    if test is not None and text_format(test) != fmt:
        raise DataError(
            f"{root}: {train.name} and {test.name} are different formats; use one for both"
        )
    return train, test, fmt


def _check_columns(text_column: str, label_column: str) -> None:
    if not text_column or not label_column or text_column == label_column:
        raise ConfigError(
            f"text and label columns must be two different names, got {text_column!r} "
            f"and {label_column!r}"
        )


def _check_fasttext(path: Path) -> None:
    """A ``.txt`` file must look like fastText: its first non-blank line starts with a label."""
    with _open_text(path, "\n") as f, _read_errors(path):
        for n, line in enumerate(f, 1):
            if line.strip():
                if not line.lstrip().startswith(LABEL_PREFIX):
                    raise DataError(
                        f"{path}: line {n}: not fastText format: a .txt data file holds one "
                        f"example per line, '__label__<label> <text>'; found {_shown(line)}"
                    )
                return


# ---------------------------------------------------------------- reading records


def iter_records(
    path: Path, fmt: str, text_column: str = "text", label_column: str = "label"
) -> Iterator[tuple[str, str]]:
    """(text, label) of every record of ``path``, in file order, one at a time.

    Raises DataError (naming the file, the line and the problem) while iterating: on an empty
    file, a missing column, a record without a label, bytes that are not UTF-8, malformed JSON.
    """
    if fmt in ("csv", "tsv"):
        return _iter_csv(Path(path), "," if fmt == "csv" else "\t", text_column, label_column)
    if fmt == "jsonl":
        return _iter_jsonl(Path(path), text_column, label_column)
    if fmt == "fasttext":
        return _iter_fasttext(Path(path))
    raise ValueError(f"unknown text format {fmt!r}; expected one of {TEXT_FORMATS}")


def count_labels(
    path: Path, fmt: str, text_column: str = "text", label_column: str = "label"
) -> Counter[str]:
    """How many records of ``path`` carry each label (one streaming pass)."""
    return Counter(label for _, label in iter_records(path, fmt, text_column, label_column))


def check_classes(labels_seen: Collection[str], where: str) -> None:
    """A classifier needs at least two classes among ``labels_seen`` (a set or a Counter)."""
    if len(labels_seen) == 0:
        raise DataError(f"{where}: no labelled records")
    if len(labels_seen) == 1:
        (only,) = labels_seen
        raise DataError(
            f"{where}: only one class ({only!r}); a classifier needs at least two labels"
        )


def _iter_csv(
    path: Path, delimiter: str, text_column: str, label_column: str
) -> Iterator[tuple[str, str]]:
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    with _open_text(path, "") as f, _read_errors(path):  # newline="": csv sees embedded newlines
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader, None)
            while header is not None and not any(h.strip() for h in header):
                header = next(reader, None)  # blank lines before the header
            if header is None:
                raise DataError(
                    f"{path}: empty file (expected a header row naming the columns "
                    f"{text_column!r} and {label_column!r})"
                )
            names = [h.strip() for h in header]
            ti = _column_index(path, names, text_column, "text")
            li = _column_index(path, names, label_column, "label")
            need = max(ti, li) + 1
            start = reader.line_num + 1  # the line the next record starts on
            records = 0
            for row in reader:
                if len(row) < need:
                    if not any(field.strip() for field in row):
                        start = reader.line_num + 1  # a blank line
                        continue
                    raise DataError(
                        f"{path}: line {start}: {len(row)} field(s) but the "
                        f"{text_column!r} and {label_column!r} columns need {need}"
                    )
                label = row[li].strip()
                if not label:
                    raise DataError(f"{path}: line {start}: empty label in column {label_column!r}")
                yield row[ti], label
                records += 1
                start = reader.line_num + 1
        except csv.Error as e:
            raise DataError(f"{path}: line {reader.line_num}: unreadable CSV ({e})") from None
        if not records:
            raise DataError(f"{path}: no records after the header")


def _column_index(path: Path, names: list[str], column: str, role: str) -> int:
    try:
        return names.index(column)
    except ValueError:
        found = ", ".join(repr(n) for n in names)
        raise DataError(
            f"{path}: no {role} column {column!r} in the header (columns found: {found})"
        ) from None


def _iter_jsonl(path: Path, text_column: str, label_column: str) -> Iterator[tuple[str, str]]:
    loads, decode_error = json.loads, json.JSONDecodeError
    records = 0
    with _open_text(path, "\n") as f, _read_errors(path):
        for n, line in enumerate(f, 1):
            try:
                obj = loads(line)
            except decode_error as e:
                if not line.strip():
                    continue  # blank lines: checked only here, off the hot path
                raise DataError(
                    f"{path}: line {n}: malformed JSON ({e.msg}, column {e.colno})"
                ) from None
            try:
                text, label = obj[text_column], obj[label_column]
            except (KeyError, TypeError, IndexError):
                raise _jsonl_shape_error(path, n, obj, text_column, label_column) from None
            if text.__class__ is not str:
                raise DataError(
                    f"{path}: line {n}: {text_column!r} must be a string, got {type(text).__name__}"
                )
            if label.__class__ is str:
                label = label.strip()
            elif isinstance(label, int):  # bool is an int
                label = str(label)
            else:
                raise DataError(
                    f"{path}: line {n}: {label_column!r} must be a string, an integer or a "
                    f"boolean, got {type(label).__name__}"
                )
            if not label:
                raise DataError(f"{path}: line {n}: empty label in {label_column!r}")
            yield text, label
            records += 1
    if not records:
        raise DataError(f"{path}: empty file (no JSON records)")


def _jsonl_shape_error(
    path: Path, n: int, obj: object, text_column: str, label_column: str
) -> DataError:
    if not isinstance(obj, dict):
        return DataError(f"{path}: line {n}: expected a JSON object, got {type(obj).__name__}")
    missing = text_column if text_column not in obj else label_column
    found = ", ".join(repr(k) for k in obj) or "none"
    return DataError(f"{path}: line {n}: no key {missing!r} (keys found: {found})")


def _iter_fasttext(path: Path) -> Iterator[tuple[str, str]]:
    prefix, skip = LABEL_PREFIX, len(LABEL_PREFIX)
    records = 0
    with _open_text(path, "\n") as f, _read_errors(path):  # "\n" only, as fastText splits lines
        for n, line in enumerate(f, 1):
            try:
                head, text = line.split(None, 1)  # the common case, in one C call
            except ValueError:  # a blank line, or a label with no text
                parts = line.split()
                if not parts:
                    continue
                head, text = parts[0], ""
            if not head.startswith(prefix):
                raise DataError(
                    f"{path}: line {n}: no label: a fastText line starts with "
                    f"'__label__<label>', found {_shown(line)}"
                )
            label = head[skip:]
            if not label:
                raise DataError(f"{path}: line {n}: empty label ('__label__' with nothing after)")
            while text.startswith(prefix):  # further labels: only the first one counts
                rest = text.split(None, 1)
                text = rest[1] if len(rest) > 1 else ""
            yield text.rstrip(), label
            records += 1
    if not records:
        raise DataError(f"{path}: empty file (no '__label__<label> <text>' lines)")


# ---------------------------------------------------------------- opening and decoding


def _open_text(path: Path, newline: str) -> IO[str]:
    """Strict UTF-8 text (a leading BOM dropped); ``.gz`` files through gzip."""
    try:
        if path.suffix.lower() == ".gz":
            return gzip.open(path, "rt", encoding="utf-8-sig", newline=newline)
        return open(path, encoding="utf-8-sig", newline=newline)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


@contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    """Turn decoding and I/O failures inside the block into one-line DataErrors."""
    try:
        yield
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: corrupt gzip data ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def _not_utf8(path: Path) -> DataError:
    """Find the first line that is not UTF-8. The text decoder works in chunks, so it cannot
    say; a byte ``\\n`` never occurs inside a UTF-8 sequence, so decoding line by line can."""
    try:
        with gzip.open(path) if path.suffix.lower() == ".gz" else open(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    bad = raw[e.start : e.end].hex()
                    return DataError(
                        f"{path}: line {n}: bytes that are not UTF-8 (0x{bad} at byte "
                        f"{e.start + 1} of the line); save the file as UTF-8"
                    )
    except (OSError, EOFError, zlib.error):
        pass
    return DataError(f"{path}: bytes that are not UTF-8; save the file as UTF-8")


def _shown(line: str) -> str:
    line = line.rstrip("\r\n")
    return repr(line if len(line) <= _SHOW else line[:_SHOW] + "…")
