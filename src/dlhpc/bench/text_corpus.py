"""A real labelled text corpus that every machine already has: the standard library's docstrings.

Run it::

    python -m dlhpc.bench.text_corpus /tmp/stdlib-docs      # prints the count per class
    dlhpc train bag --data /tmp/stdlib-docs --threads 2     # train.csv / test.csv
    # fasttext/train.txt, fasttext/test.txt: the same records in fastText format (__label__X text)

What it is: every module, class and function docstring of the Python standard library
(``sysconfig.get_paths()["stdlib"]``, parsed with ``ast``, nothing is imported), split into
paragraphs and then sentences, one short text per sentence of at least ``min_words`` words.
Doctest paragraphs (``>>>``) are dropped, whitespace is collapsed, and a text is cut to its first
``max_words`` words.

The label is the module *family* of the file: the chapter of the Library Reference its top-level
module belongs to (``FAMILIES``; e.g. ``gui`` = tkinter, idlelib, turtle). Top-level modules
alone are too small — the twelve largest packages give only ~9k sentences — so modules are
grouped the way the documentation groups them. Files of the ``test`` package count for the module
they test (``test/test_asyncio/…`` → asyncio → ``networking``); other tests are skipped.

Duplicates: a text that occurs under two families is dropped everywhere (it cannot be labelled);
repeats within one family are kept once. The ``classes`` largest families are kept (ties by name).
The split is stratified: per class (sorted), a seeded permutation (seed 0) puts
``round(test_fraction · n)`` texts in test; both files are then shuffled with the same seed, since
fastText reads its training file in order. Everything is deterministic for one Python version.
"""

from __future__ import annotations

import argparse
import ast
import csv
import os
import re
import sysconfig
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Chapters of the Library Reference (https://docs.python.org/3/library/), by top-level module.
FAMILIES: dict[str, tuple[str, ...]] = {
    "text": ("string", "re", "sre_compile", "sre_constants", "sre_parse", "difflib", "textwrap",
             "unicodedata", "stringprep", "readline", "rlcompleter", "codecs", "encodings",
             "struct", "gettext", "locale", "_strptime"),
    "datatypes": ("datetime", "zoneinfo", "calendar", "collections", "_collections_abc", "heapq",
                  "bisect", "array", "weakref", "_weakrefset", "types", "copy", "pprint",
                  "reprlib", "enum", "graphlib", "functools", "operator", "itertools"),
    "numeric": ("numbers", "math", "cmath", "decimal", "_pydecimal", "fractions", "random",
                "statistics", "colorsys"),
    "files": ("pathlib", "os", "posixpath", "ntpath", "genericpath", "fileinput", "stat",
              "filecmp", "tempfile", "glob", "fnmatch", "linecache", "shutil", "io", "_pyio",
              "tty", "pty", "getpass", "platform", "errno"),
    "persistence": ("pickle", "_compat_pickle", "copyreg", "shelve", "marshal", "dbm", "sqlite3",
                    "pickletools", "zlib", "gzip", "bz2", "lzma", "zipfile", "tarfile",
                    "_compression", "csv", "configparser", "tomllib", "netrc", "plistlib",
                    "hashlib", "hmac", "secrets"),
    "concurrency": ("threading", "_threading_local", "multiprocessing", "concurrent",
                    "subprocess", "sched", "queue", "contextvars", "signal"),
    "networking": ("asyncio", "socket", "ssl", "select", "selectors", "mmap", "asyncore",
                   "asynchat"),
    "internet_data": ("email", "json", "mailbox", "mimetypes", "base64", "binascii", "quopri",
                      "uu", "mailcap"),
    "markup": ("html", "xml", "_markupbase"),
    "internet_protocols": ("webbrowser", "wsgiref", "urllib", "nturl2path", "http", "ftplib",
                           "poplib", "imaplib", "smtplib", "smtpd", "nntplib", "telnetlib",
                           "uuid", "socketserver", "xmlrpc", "ipaddress", "cgi", "cgitb"),
    "gui": ("tkinter", "idlelib", "turtle", "turtledemo"),
    "devtools": ("typing", "pydoc", "doctest", "unittest"),
    "debugging": ("bdb", "faulthandler", "pdb", "timeit", "trace", "tracemalloc", "cProfile",
                  "profile", "pstats"),
    "cli": ("argparse", "optparse", "getopt", "logging", "curses", "cmd", "shlex"),
    "packaging": ("distutils", "ensurepip", "venv", "zipapp", "lib2to3"),
    "runtime": ("sys", "sysconfig", "builtins", "warnings", "dataclasses", "contextlib", "abc",
                "_py_abc", "atexit", "traceback", "__future__", "gc", "inspect", "site",
                "code", "codeop"),
    "importing": ("importlib", "zipimport", "pkgutil", "modulefinder", "runpy", "imp"),
    "language": ("ast", "symtable", "token", "keyword", "tokenize", "tabnanny", "pyclbr",
                 "py_compile", "compileall", "dis", "opcode"),
    "ctypes": ("ctypes",),
}  # fmt: skip
MODULE_FAMILY = {m: fam for fam, mods in FAMILIES.items() for m in mods}
TEST_ALIASES = {"idle": "idlelib", "ttk": "tkinter", "ttk_textonly": "tkinter", "tk": "tkinter",
                "httplib": "http", "httpservers": "http", "minidom": "xml", "sax": "xml",
                "pulldom": "xml", "htmlparser": "html", "memoryio": "io", "fileio": "io",
                "dbm_dumb": "dbm", "dbm_gnu": "dbm", "dbm_ndbm": "dbm", "contextlib_async":
                "contextlib", "code_module": "code", "cprofile": "cProfile"}  # fmt: skip

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'`])")
_PARAGRAPH = re.compile(r"\n\s*\n")
_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass(frozen=True)
class Corpus:
    train: list[tuple[str, str]]  # (text, label)
    test: list[tuple[str, str]]
    classes: tuple[str, ...]

    def counts(self) -> dict[str, tuple[int, int]]:
        tr = Counter(label for _, label in self.train)
        te = Counter(label for _, label in self.test)
        return {c: (tr[c], te[c]) for c in self.classes}


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def family_of(rel: Path) -> str | None:
    """The family of a stdlib file (path relative to the stdlib), or None to skip it."""
    parts = rel.parts
    if "site-packages" in parts or "__pycache__" in parts:
        return None
    top = parts[0].removesuffix(".py")
    if top == "test":
        if len(parts) < 2 or not parts[1].startswith("test_"):
            return None
        name = parts[1].removesuffix(".py")[len("test_") :]
        top = TEST_ALIASES.get(name, name)
    return MODULE_FAMILY.get(top)


def _python_files(root: Path) -> Iterator[Path]:
    """``*.py`` under ``root``, not descending into site-packages (it can be huge)."""
    for here, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("site-packages", "__pycache__")]
        yield from (Path(here) / n for n in names if n.endswith(".py"))


def source_files(root: Path, max_files_per_family: int | None = None) -> list[tuple[Path, str]]:
    """(file, family) in sorted order; at most ``max_files_per_family`` each (for quick tests)."""
    taken: Counter[str] = Counter()
    out: list[tuple[Path, str]] = []
    for path in sorted(_python_files(root)):
        fam = family_of(path.relative_to(root))
        if fam is None or (max_files_per_family is not None and taken[fam] >= max_files_per_family):
            continue
        taken[fam] += 1
        out.append((path, fam))
    return out


def docstrings(path: Path) -> Iterator[str]:
    """Module, class and function docstrings of one file, in ``ast.walk`` order (BFS)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old test files
            tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, UnicodeDecodeError):
        return  # lib2to3's Python 2 test data, for one
    for node in ast.walk(tree):
        if isinstance(node, _DOC_NODES) and (doc := ast.get_docstring(node)):
            yield doc


def short_texts(doc: str, min_words: int, max_words: int) -> Iterator[str]:
    """Sentences of a docstring's prose paragraphs, whitespace collapsed."""
    for para in _PARAGRAPH.split(doc):
        if para.lstrip().startswith(">>>"):
            continue
        for sentence in _SENTENCE_END.split(" ".join(para.split())):
            words = sentence.split()
            if len(words) >= min_words:
                yield " ".join(words[:max_words])


def collect(
    root: Path, min_words: int = 3, max_words: int = 64, max_files_per_family: int | None = None
) -> dict[str, list[str]]:
    """Family → its unique texts, in first-seen order; texts seen in two families are dropped."""
    first: dict[str, str] = {}  # text → family; insertion order is deterministic
    ambiguous: set[str] = set()
    for path, fam in source_files(root, max_files_per_family):
        for doc in docstrings(path):
            for text in short_texts(doc, min_words, max_words):
                if first.setdefault(text, fam) != fam:
                    ambiguous.add(text)
    by_family: dict[str, list[str]] = {}
    for text, fam in first.items():
        if text not in ambiguous:
            by_family.setdefault(fam, []).append(text)
    return by_family


def stratified_split(
    by_class: dict[str, list[str]], test_fraction: float, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    rng = np.random.default_rng(seed)
    train: list[tuple[str, str]] = []
    test: list[tuple[str, str]] = []
    for label in sorted(by_class):
        texts = by_class[label]
        perm = rng.permutation(len(texts))
        n_test = round(test_fraction * len(texts))
        test += [(texts[i], label) for i in perm[:n_test]]
        train += [(texts[i], label) for i in perm[n_test:]]
    train = [train[i] for i in rng.permutation(len(train))]
    test = [test[i] for i in rng.permutation(len(test))]
    return train, test


def build_corpus(
    root: Path | None = None,
    classes: int = 12,
    test_fraction: float = 0.2,
    seed: int = 0,
    min_words: int = 3,
    max_words: int = 64,
    max_files_per_family: int | None = None,
) -> Corpus:
    """The corpus of the ``classes`` largest families (see the module docstring)."""
    by_family = collect(root or stdlib_dir(), min_words, max_words, max_files_per_family)
    ranked = sorted(by_family, key=lambda f: (-len(by_family[f]), f))[:classes]
    kept = {f: by_family[f] for f in ranked}
    train, test = stratified_split(kept, test_fraction, seed)
    return Corpus(train, test, tuple(sorted(kept)))


def write_corpus(corpus: Corpus, out: Path) -> None:
    """``out/{train,test}.csv`` (header text,label) and ``out/fasttext/{train,test}.txt``.

    The fastText files live one level down: ``dlhpc train --data out`` wants one train file.
    """
    (out / "fasttext").mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", corpus.train), ("test", corpus.test)):
        with open(out / f"{split}.csv", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(rows)
        with open(out / "fasttext" / f"{split}.txt", "w", encoding="utf-8") as f:
            f.writelines(f"__label__{label} {text}\n" for text, label in rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("out", type=Path, help="directory for {train,test}.csv and fasttext/*.txt")
    p.add_argument("--classes", type=int, default=12)
    p.add_argument("--min-words", type=int, default=3)
    p.add_argument("--max-files-per-family", type=int, default=None)
    a = p.parse_args(argv)
    corpus = build_corpus(
        classes=a.classes, min_words=a.min_words, max_files_per_family=a.max_files_per_family
    )
    write_corpus(corpus, a.out)
    print(f"{'class':<20} {'train':>7} {'test':>6}")
    for label, (tr, te) in corpus.counts().items():
        print(f"{label:<20} {tr:>7} {te:>6}")
    print(f"{'total':<20} {len(corpus.train):>7} {len(corpus.test):>6}   → {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
