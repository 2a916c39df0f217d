"""The stdlib-docstring corpus: deterministic, stratified, disjoint, well-formed files."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from dlhpc.bench.text_corpus import (
    Corpus,
    build_corpus,
    family_of,
    main,
    short_texts,
    write_corpus,
)

FILES_PER_FAMILY = 2  # a few dozen files: the test runs in seconds


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return build_corpus(max_files_per_family=FILES_PER_FAMILY)


def test_family_of_maps_modules_and_their_tests() -> None:
    assert family_of(Path("tkinter/__init__.py")) == "gui"
    assert family_of(Path("asyncio/tasks.py")) == "networking"
    assert family_of(Path("test/test_asyncio/test_tasks.py")) == "networking"
    assert family_of(Path("test/test_ttk/test_widgets.py")) == "gui"
    assert family_of(Path("test/support/__init__.py")) is None
    assert family_of(Path("site-packages/pip/__init__.py")) is None


def test_short_texts_split_sentences_and_skip_doctests() -> None:
    doc = "Return the thing.  Raise  ValueError\nif it is bad.\n\n>>> f(1)\n1\n\nToo short."
    assert list(short_texts(doc, min_words=3, max_words=64)) == [
        "Return the thing.",
        "Raise ValueError if it is bad.",
    ]
    assert list(short_texts("one two three four five", 3, max_words=2)) == ["one two"]


def test_deterministic(corpus: Corpus) -> None:
    again = build_corpus(max_files_per_family=FILES_PER_FAMILY)
    assert again == corpus


def test_classes_and_texts(corpus: Corpus) -> None:
    assert len(corpus.classes) >= 8
    rows = corpus.train + corpus.test
    assert all(text.strip() and "\n" not in text for text, _ in rows)
    assert {label for _, label in rows} == set(corpus.classes)


def test_split_is_stratified_and_disjoint(corpus: Corpus) -> None:
    train_texts = {t for t, _ in corpus.train}
    test_texts = {t for t, _ in corpus.test}
    assert not train_texts & test_texts
    assert len(train_texts) == len(corpus.train) and len(test_texts) == len(corpus.test)
    for label, (n_train, n_test) in corpus.counts().items():
        assert n_test == round(0.2 * (n_train + n_test)), label
    # a text's label is unique: the same text never appears under two classes
    labels_of: dict[str, set[str]] = {}
    for text, label in corpus.train + corpus.test:
        labels_of.setdefault(text, set()).add(label)
    assert all(len(v) == 1 for v in labels_of.values())


def test_written_files_agree(corpus: Corpus, tmp_path: Path) -> None:
    write_corpus(corpus, tmp_path)
    for split, rows in (("train", corpus.train), ("test", corpus.test)):
        with open(tmp_path / f"{split}.csv", encoding="utf-8", newline="") as f:
            got = [(r["text"], r["label"]) for r in csv.DictReader(f)]
        assert got == rows
        lines = (tmp_path / "fasttext" / f"{split}.txt").read_text(encoding="utf-8").splitlines()
        assert lines == [f"__label__{label} {text}" for text, label in rows]


def test_cli_prints_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), "--max-files-per-family", "1", "--classes", "8"]) == 0
    out = capsys.readouterr().out
    assert "total" in out
    lines = (tmp_path / "fasttext" / "train.txt").read_text(encoding="utf-8").splitlines()
    labels = Counter(line.split()[0] for line in lines)
    assert lines and len(labels) >= 2
