"""Text sources (design.md §1, data sources; issue 4 items 1 and 5): CSV/TSV, JSONL, fastText.

Every format round-trips what a user writes, the readers stream, and every bad input raises one
``DataError`` line that names the file, the line where there is one, and the problem.
"""

from __future__ import annotations

import csv
import gzip
import json
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from dlhpc.data.text_sources import (
    TEXT_FORMATS,
    TextFiles,
    check_classes,
    count_labels,
    find_text_files,
    iter_records,
    text_format,
)
from dlhpc.errors import ConfigError, DataError

# Texts that break naive parsers: commas, quotes, tabs, newlines, non-ASCII.
TRICKY = [
    ('She said "hi", then left', "pos"),
    ("line one\nline two, still one record", "neg"),
    ("tab\there and ünïcödé ✓ 日本語 🙂", "pos"),
    ("  leading and trailing spaces  ", "neutral"),
]


# ---------------------------------------------------------------- helpers


def write_csv(path: Path, rows: list[tuple[str, str]], header=("text", "label"), delim=",") -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=delim)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def error_of(path: Path, fmt: str, **cols: str) -> str:
    """The one-line message of the DataError that reading ``path`` raises."""
    with pytest.raises(DataError) as e:
        for _ in iter_records(path, fmt, **cols):
            pass
    msg = str(e.value)
    assert "\n" not in msg, msg  # one line on stderr
    assert str(path) in msg, msg  # names the file
    return msg


def big_file(path: Path, fmt: str, n: int = 200_000) -> Path:
    text = "some words of a sentence that is neither long nor short"
    with open(path, "w", encoding="utf-8") as f:
        if fmt in ("csv", "tsv"):
            sep = "," if fmt == "csv" else "\t"
            f.write(f"text{sep}label\n")
            f.writelines(f"{text} {i}{sep}{i % 3}\n" for i in range(n))
        elif fmt == "jsonl":
            f.writelines(f'{{"text": "{text} {i}", "label": {i % 3}}}\n' for i in range(n))
        else:
            f.writelines(f"__label__{i % 3} {text} {i}\n" for i in range(n))
    return path


# ---------------------------------------------------------------- round trips


def test_csv_round_trips_quotes_commas_newlines_and_unicode(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", TRICKY)
    assert list(iter_records(path, "csv")) == TRICKY


def test_csv_ignores_extra_columns_in_any_order(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "d.csv", [("7", "b", "x", "hello")], header=("id", "label", "x", "text")
    )
    assert list(iter_records(path, "csv")) == [("hello", "b")]


def test_tsv_round_trips(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.tsv", TRICKY, delim="\t")
    assert list(iter_records(path, "tsv")) == TRICKY


def test_renamed_columns(tmp_path: Path) -> None:
    rows = [("great film", "5"), ("dull", "1")]
    path = write_csv(tmp_path / "d.csv", rows, header=("review", "stars"))
    assert list(iter_records(path, "csv", text_column="review", label_column="stars")) == rows
    jl = write_lines(tmp_path / "d.jsonl", [json.dumps({"review": t, "stars": s}) for t, s in rows])
    assert list(iter_records(jl, "jsonl", "review", "stars")) == rows


def test_csv_with_bom_crlf_blank_lines_and_padded_labels(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\r\nhello, pos \r\n\r\nbye,neg\r\n\r\n")
    assert list(iter_records(path, "csv")) == [("hello", "pos"), ("bye", "neg")]


@pytest.mark.parametrize(
    ("fmt", "body"),
    [("jsonl", b'{"text": "hi", "label": "a"}\n'), ("fasttext", b"__label__a hi\n")],
)
def test_a_utf8_bom_at_the_start_is_allowed(tmp_path: Path, fmt: str, body: bytes) -> None:
    path = tmp_path / ("d.jsonl" if fmt == "jsonl" else "d.txt")
    path.write_bytes(b"\xef\xbb\xbf" + body)
    assert list(iter_records(path, fmt)) == [("hi", "a")]
    assert find_text_files(str(path)) is not None


def test_jsonl_round_trips_int_and_bool_labels(tmp_path: Path) -> None:
    objs = [{"text": t, "label": lab, "extra": [1]} for t, lab in TRICKY]
    objs += [{"label": 3, "text": "int label"}, {"text": "bool label", "label": True}]
    lines = [json.dumps(o, ensure_ascii=i % 2 == 0) for i, o in enumerate(objs)]
    path = write_lines(tmp_path / "d.jsonl", [lines[0], "", "   ", *lines[1:]])
    assert list(iter_records(path, "jsonl")) == [
        *TRICKY,
        ("int label", "3"),
        ("bool label", "True"),
    ]


def test_fasttext_round_trips_and_keeps_the_first_of_several_labels(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_bytes(
        "__label__pos great film\n"
        "\n"
        "__label__a __label__b __label__c several labels, the first counts\r\n"
        "__label__neg\tseparated by a tab ✓ 日本語\n"
        "   __label__x leading spaces\n"
        "__label__only\n"
        "__label__z a __label__mid stays in the text".encode()
    )
    assert list(iter_records(path, "fasttext")) == [
        ("great film", "pos"),
        ("several labels, the first counts", "a"),
        ("separated by a tab ✓ 日本語", "neg"),
        ("leading spaces", "x"),
        ("", "only"),
        ("a __label__mid stays in the text", "z"),
    ]


def test_gzip_files_read_like_plain_ones(tmp_path: Path) -> None:
    plain = write_csv(tmp_path / "d.csv", TRICKY)
    gz = tmp_path / "train.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert list(iter_records(gz, "csv")) == TRICKY
    assert find_text_files(str(gz)) == TextFiles(gz, None, "csv", "text", "label")


def test_count_labels_and_check_classes(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.txt", ["__label__a x", "__label__b y", "__label__a z"])
    counts = count_labels(path, "fasttext")
    assert counts == Counter({"a": 2, "b": 1})
    check_classes(counts, str(path))  # two classes: fine
    check_classes({"a", "b", "c"}, str(path))


# ---------------------------------------------------------------- finding the files


def test_directory_with_train_and_test(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", TRICKY)
    test = write_csv(tmp_path / "test.csv", TRICKY[:2])
    (tmp_path / "README.md").write_text("not data")
    files = find_text_files(str(tmp_path), "text", "label")
    assert files == TextFiles(train, test, "csv", "text", "label")


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("train.tsv", "tsv"),
        ("train.jsonl", "jsonl"),
        ("train.txt", "fasttext"),
        ("train.ft", "fasttext"),
    ],
)
def test_directory_with_train_only_leaves_the_split_to_the_caller(
    tmp_path: Path, name: str, fmt: str
) -> None:
    write_lines(tmp_path / name, ["__label__a x"])  # content is only checked for .txt/.ft
    files = find_text_files(str(tmp_path), label_column="y")
    assert files == TextFiles(tmp_path / name, None, fmt, "text", "y")


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("c.csv", "csv"),
        ("t.tsv", "tsv"),
        ("j.jsonl", "jsonl"),
        ("f.txt", "fasttext"),
        ("f.ft", "fasttext"),
    ],
)
def test_single_file(tmp_path: Path, name: str, fmt: str) -> None:
    path = write_lines(tmp_path / name, ["", "__label__a x"])
    assert find_text_files(str(path)) == TextFiles(path, None, fmt, "text", "label")
    assert fmt in TEXT_FORMATS and text_format(path) == fmt


def test_non_text_sources_are_none(tmp_path: Path) -> None:
    (tmp_path / "x.npz").write_bytes(b"PK")
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03")
    (tmp_path / "train").mkdir()  # image class folders live under train/
    assert find_text_files("digits") is None
    assert find_text_files(str(tmp_path / "x.npz")) is None
    assert find_text_files(str(tmp_path)) is None
    assert find_text_files(str(tmp_path / "missing.csv")) is None
    assert find_text_files(str(tmp_path / "empty_dir_that_is_not_there")) is None


def test_txt_that_is_not_fasttext(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "notes.txt", ["", "just some prose, no labels"])
    with pytest.raises(DataError) as e:
        find_text_files(str(path))
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    assert "line 2" in msg and "fastText" in msg and "__label__<label> <text>" in msg


def test_test_without_train(tmp_path: Path) -> None:
    write_csv(tmp_path / "test.csv", TRICKY)
    with pytest.raises(DataError, match=r"test\.csv but no training file"):
        find_text_files(str(tmp_path))


def test_train_and_test_of_different_formats(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", TRICKY)
    write_lines(tmp_path / "test.jsonl", ['{"text": "x", "label": "pos"}'])
    with pytest.raises(DataError, match=r"train\.csv and test\.jsonl are different formats"):
        find_text_files(str(tmp_path))


def test_several_train_files(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", TRICKY)
    write_csv(tmp_path / "train.tsv", TRICKY, delim="\t")
    with pytest.raises(DataError, match=r"several train files \(train\.csv, train\.tsv\)"):
        find_text_files(str(tmp_path))


def test_text_and_label_columns_must_differ(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", TRICKY)
    with pytest.raises(ConfigError, match="two different names"):
        find_text_files(str(path), "text", "text")


def test_unknown_format_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown text format"):
        iter_records(tmp_path / "d.csv", "xml")


# ---------------------------------------------------------------- streaming


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_first_record_comes_without_reading_the_file(tmp_path: Path, fmt: str) -> None:
    path = big_file(tmp_path / f"big.{fmt}", fmt)
    size = path.stat().st_size
    assert size > 10_000_000
    tracemalloc.start()
    try:
        records = iter_records(path, fmt)
        first = next(records)
        _, peak = tracemalloc.get_traced_memory()
        records.close()  # type: ignore[attr-defined]
    finally:
        tracemalloc.stop()
    assert first == ("some words of a sentence that is neither long nor short 0", "0")
    assert peak < size / 40, f"peak {peak} bytes for a {size}-byte file"


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_whole_file_streams_in_small_memory(tmp_path: Path, fmt: str) -> None:
    path = big_file(tmp_path / f"big.{fmt}", fmt, n=20_000)  # tracemalloc slows every allocation
    size = path.stat().st_size
    tracemalloc.start()
    try:
        labels: Counter[str] = Counter()
        for _, label in iter_records(path, fmt):
            labels[label] += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(labels.values()) == 20_000 and set(labels) == {"0", "1", "2"}
    assert peak < 256 * 1024, f"peak {peak} bytes for a {size}-byte file"


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_empty_file(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "empty.data"
    path.write_text("\n\n")
    assert "empty file" in error_of(path, fmt)


@pytest.mark.parametrize(("fmt", "delim"), [("csv", ","), ("tsv", "\t")])
def test_header_only(tmp_path: Path, fmt: str, delim: str) -> None:
    path = write_csv(tmp_path / f"d.{fmt}", [], delim=delim)
    assert "no records after the header" in error_of(path, fmt)


def test_csv_missing_column_lists_the_columns_found(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [("x", "a")], header=("sentence", "label"))
    msg = error_of(path, "csv")
    assert "no text column 'text'" in msg and "columns found: 'sentence', 'label'" in msg
    msg = error_of(path, "csv", text_column="sentence", label_column="y")
    assert "no label column 'y'" in msg and "'sentence', 'label'" in msg


def test_jsonl_missing_key_lists_the_keys_found(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", ['{"text": "a", "label": 1}', '{"text": "b", "y": 2}'])
    msg = error_of(path, "jsonl")
    assert "line 2" in msg and "no key 'label'" in msg and "keys found: 'text', 'y'" in msg


def test_csv_empty_label_names_the_line_a_record_starts_on(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [("two\nlines", "a"), ("ok", "b"), ("no label", "  ")])
    msg = error_of(path, "csv")  # header 1, record 2-3, record 4, the bad one on line 5
    assert "line 5" in msg and "empty label" in msg and "'label'" in msg


def test_csv_row_with_too_few_fields(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\nfine,a\nmissing its label\n")
    msg = error_of(path, "csv")
    assert "line 3" in msg and "1 field(s)" in msg


def test_jsonl_empty_label(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "d.jsonl", ['{"text": "a", "label": "x"}', '{"text": "b", "label": " "}']
    )
    msg = error_of(path, "jsonl")
    assert "line 2" in msg and "empty label" in msg


def test_jsonl_label_of_the_wrong_type(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", ['{"text": "a", "label": null}'])
    msg = error_of(path, "jsonl")
    assert "line 1" in msg and "'label' must be a string, an integer or a boolean" in msg


def test_fasttext_line_without_a_label(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.txt", ["__label__a fine", "", "no label here"])
    msg = error_of(path, "fasttext")
    assert "line 3" in msg and "no label" in msg and "'no label here'" in msg


def test_fasttext_empty_label(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.txt", ["__label__a fine", "__label__ nothing after"])
    msg = error_of(path, "fasttext")
    assert "line 2" in msg and "empty label" in msg


def _with_bad_byte(path: Path, good: list[bytes], bad_line: int) -> Path:
    lines = list(good)
    lines.insert(bad_line - 1, lines[bad_line - 1].replace(b"x", b"caf\xe9", 1))  # Latin-1 é
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize(
    ("fmt", "header", "line"),
    [
        ("csv", b"text,label", b"x is here,a"),
        ("tsv", b"text\tlabel", b"x is here\ta"),
        ("jsonl", None, b'{"text": "x is here", "label": "a"}'),
        ("fasttext", None, b"__label__a x is here"),
    ],
)
def test_bytes_that_are_not_utf8(
    tmp_path: Path, fmt: str, header: bytes | None, line: bytes
) -> None:
    good = ([header] if header else []) + [line] * 50_000
    path = _with_bad_byte(tmp_path / "d.data", good, bad_line=40_000)  # deep inside the file
    msg = error_of(path, fmt)
    assert "line 40000" in msg and "not UTF-8" in msg and "0xe9" in msg


def test_bytes_that_are_not_utf8_in_gzip(tmp_path: Path) -> None:
    raw = _with_bad_byte(tmp_path / "raw", [b"text,label", b"x,a", b"x,b"], bad_line=3)
    path = tmp_path / "train.csv.gz"
    path.write_bytes(gzip.compress(raw.read_bytes()))
    msg = error_of(path, "csv")
    assert "line 3" in msg and "not UTF-8" in msg


def test_malformed_json(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "d.jsonl", ['{"text": "a", "label": 1}', "", '{"text": "b", label: 2}']
    )
    msg = error_of(path, "jsonl")
    assert "line 3" in msg and "malformed JSON" in msg


@pytest.mark.parametrize("value", ["3", "null", '["a"]', '{"a": 1}'])
def test_jsonl_text_that_is_not_a_string(tmp_path: Path, value: str) -> None:
    path = write_lines(
        tmp_path / "d.jsonl", ['{"text": "a", "label": 1}', f'{{"text": {value}, "label": 2}}']
    )
    msg = error_of(path, "jsonl")
    assert "line 2" in msg and "'text' must be a string" in msg


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", ['["text", "label"]'])
    msg = error_of(path, "jsonl")
    assert "line 1" in msg and "expected a JSON object, got list" in msg


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    assert "cannot read" in error_of(tmp_path / "missing.csv", "csv")
    gz = tmp_path / "d.csv.gz"
    gz.write_bytes(gzip.compress(b"text,label\n" + b"x,a\n" * 1000)[:-30])
    assert "corrupt gzip data" in error_of(gz, "csv")


def test_only_one_class() -> None:
    with pytest.raises(DataError) as e:
        check_classes(Counter({"pos": 10}), "corpus/train.csv")
    msg = str(e.value)
    assert msg.startswith("corpus/train.csv: only one class ('pos')") and "\n" not in msg
    with pytest.raises(DataError, match="no labelled records"):
        check_classes(set(), "corpus/train.csv")
