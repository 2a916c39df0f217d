"""Text classification side by side: dlhpc ``bag``/``lstm`` vs fastText and the tutorial's Keras.

Run it (peers live in their own virtual environment; nothing is downloaded)::

    python -m dlhpc.bench.text_corpus /tmp/stdlib-docs
    python -m dlhpc.bench.text_peers --data /tmp/stdlib-docs --threads 2 \\
        --peers-python /work/peers-venv/bin/python --repeats 3 --out benchmarks

Method: every run is its own process on the same files with the same thread budget. Rounds
repeat the whole set, each round in a rotated order, so drift and a neighbour's load hit every
runner alike; times are medians over rounds and ratios are taken against dlhpc within this one
invocation. "Train s" is what each tool spends training: dlhpc's ``train_seconds`` (the fit,
per-epoch test evaluation included, tokenization not — it is cached by content hash and is
measured separately as "tokenize s"), the ``fasttext.train_supervised`` call (it reads the file
and builds its dictionary itself), Keras ``model.fit``. "Process s" is the whole subprocess
(interpreter, imports, tokenization, training, evaluation). Samples/s = epochs × training
samples / train s.

Peers (run as scripts under ``--peers-python``; a missing one is reported as skipped):

* fastText: ``train_supervised(input=train.txt, epoch=25, lr=0.5, wordNgrams=2, thread=T)``;
  accuracy is ``model.test`` precision@1 (one label per line, so it is accuracy).
* Keras (TensorFlow CPU, ``tf.config.threading`` intra- and inter-op threads = T): the tutorial's
  ``Tokenizer(num_words=10000)`` + ``pad_sequences`` (``maxlen`` = the 95th percentile of the
  training lengths, Keras's default pre-padding and pre-truncation), Adam (Keras defaults),
  sparse categorical cross-entropy, batch 32, 10 epochs. ``bag`` = Embedding(10000, 64) →
  GlobalAveragePooling1D → Dense(64, relu) → Dense(C, softmax); ``lstm`` = Embedding(10000, 64)
  → LSTM(64) → Dense(64, relu) → Dense(C, softmax).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dlhpc.bench import peer_env, scratch_dir
from dlhpc.errors import DataError, DlhpcError
from dlhpc.fsio import atomic_write_text, dated_name

# The peers' settings: fastText's recommended ones, the tutorial's Keras models.
FASTTEXT = {"epoch": 25, "lr": 0.5, "wordNgrams": 2}
KERAS = {"epochs": 10, "batch_size": 32, "num_words": 10_000, "embed": 64, "units": 64,
         "maxlen_percentile": 95}  # fmt: skip

FASTTEXT_SCRIPT = r"""
import json, sys, time
from importlib.metadata import version
import fasttext
data, threads, cfg = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
t0 = time.perf_counter()
model = fasttext.train_supervised(input=f"{data}/fasttext/train.txt", thread=threads,
                                  verbose=0, **cfg)
seconds = time.perf_counter() - t0
n_test, p_at_1, _ = model.test(f"{data}/fasttext/test.txt")
with open(f"{data}/fasttext/train.txt", encoding="utf-8") as f:
    n_train = sum(1 for _ in f)
print(json.dumps({"accuracy": p_at_1, "train_seconds": seconds, "epochs": cfg["epoch"],
                  "train_samples": n_train, "test_samples": n_test,
                  "version": f"fasttext-wheel {version('fasttext-wheel')}"}))
"""

KERAS_SCRIPT = r"""
import csv, json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
data, threads, kind, cfg = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(threads)
import keras
from keras import layers
try:  # the tutorial's Tokenizer: Keras 3 keeps it under legacy; Keras 2 (tf_keras) exports it
    from keras.src.legacy.preprocessing.text import Tokenizer
except ImportError:
    from tf_keras.preprocessing.text import Tokenizer
from keras.utils import pad_sequences

def read(split):
    with open(f"{data}/{split}.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]

t_proc = time.perf_counter()
x_tr, l_tr = read("train")
x_te, l_te = read("test")
classes = sorted(set(l_tr))
index = {c: i for i, c in enumerate(classes)}
y_tr = np.array([index[c] for c in l_tr])
y_te = np.array([index[c] for c in l_te])
tok = Tokenizer(num_words=cfg["num_words"])
tok.fit_on_texts(x_tr)
s_tr, s_te = tok.texts_to_sequences(x_tr), tok.texts_to_sequences(x_te)
maxlen = max(1, int(np.ceil(np.percentile([len(s) for s in s_tr], cfg["maxlen_percentile"]))))
x_tr, x_te = pad_sequences(s_tr, maxlen=maxlen), pad_sequences(s_te, maxlen=maxlen)
keras.utils.set_random_seed(0)
body = ([layers.GlobalAveragePooling1D()] if kind == "bag" else [layers.LSTM(cfg["units"])])
model = keras.Sequential([keras.Input(shape=(maxlen,), dtype="int32"),
                          layers.Embedding(cfg["num_words"], cfg["embed"]), *body,
                          layers.Dense(64, activation="relu"),
                          layers.Dense(len(classes), activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
prep = time.perf_counter() - t_proc
t0 = time.perf_counter()
model.fit(x_tr, y_tr, batch_size=cfg["batch_size"], epochs=cfg["epochs"], verbose=0)
seconds = time.perf_counter() - t0
_, acc = model.evaluate(x_te, y_te, batch_size=1024, verbose=0)
print(json.dumps({"accuracy": float(acc), "train_seconds": seconds, "epochs": cfg["epochs"],
                  "train_samples": len(y_tr), "test_samples": len(y_te), "maxlen": maxlen,
                  "prep_seconds": prep, "version": f"tensorflow {tf.__version__}, "
                  f"keras {keras.__version__}, numpy {np.__version__}"}))
"""


@dataclass
class Runner:
    name: str  # e.g. "dlhpc bag (1 thread)"
    kind: str  # "bag" | "lstm": which dlhpc model it is compared with
    argv: list[str]
    threads: int
    is_dlhpc: bool = False
    results: list[dict[str, Any]] = field(default_factory=list)
    skipped: str | None = None


def _run_json(
    argv: list[str], timeout: float, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], float]:
    """Run a process, return the JSON object on its last stdout line and the process seconds."""
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {p.stderr.strip()[-800:]}")
    lines = [ln for ln in p.stdout.splitlines() if ln.strip().startswith("{")]
    if not lines:
        raise RuntimeError(f"no JSON on stdout: {p.stdout[-400:]} {p.stderr[-400:]}")
    return json.loads(lines[-1]), wall


def dlhpc_once(r: Runner, data: Path, work: Path, timeout: float) -> dict[str, Any]:
    """One dlhpc run on a cold token cache; tokenization is timed by a second, warm process."""
    run = Path(tempfile.mkdtemp(dir=work))
    cache = run / "cache"
    argv = [*r.argv, "--data", str(data), "--cache-dir", str(cache), "--json", "--quiet"]
    s, wall = _run_json([*argv, "--out", str(run / "run")], timeout)
    try:
        return {"accuracy": s["test_accuracy"], "train_seconds": s["train_seconds"],
                "epochs": s["epochs"], "train_samples": s["train_samples"],
                "test_samples": s["test_samples"], "process_seconds": wall,
                "tokenize_seconds": tokenize_seconds(data, cache.with_name("cache2"))}  # fmt: skip
    finally:
        shutil.rmtree(run, ignore_errors=True)


def tokenize_seconds(data: Path, cache: Path) -> float:
    """dlhpc's tokenizer training + encoding of train and test, on a cold cache."""
    from dlhpc.data.config import DataConfig
    from dlhpc.data.text import load_text
    from dlhpc.data.text_sources import find_text_files

    cfg = DataConfig(str(data), cache_dir=str(cache))
    files = find_text_files(str(data))
    if files is None:
        raise RuntimeError(f"{data}: no text files")
    t0 = time.perf_counter()
    load_text(cfg, files)
    return time.perf_counter() - t0


def peer_once(r: Runner, timeout: float) -> dict[str, Any]:
    out, wall = _run_json(r.argv, timeout, peer_env())  # as users would run it
    out["process_seconds"] = wall
    return out


def build_runners(
    data: Path, threads: int, dlhpc_threads: Sequence[int], peers_python: str | None
) -> list[Runner]:
    runners: list[Runner] = []
    for kind in ("bag", "lstm"):
        for t in dlhpc_threads:
            # dlhpc's defaults: what users get
            argv = [sys.executable, "-m", "dlhpc", "train", kind, "--threads", str(t)]
            name = f"dlhpc {kind} ({t} thread{'s' if t > 1 else ''})"
            runners.append(Runner(name, kind, argv, t, is_dlhpc=True))
        py = peers_python or ""
        if kind == "bag":
            ft = [py, "-c", FASTTEXT_SCRIPT, str(data), str(threads), json.dumps(FASTTEXT)]
            runners.append(Runner("fastText", kind, ft, threads))
        ks = [py, "-c", KERAS_SCRIPT, str(data), str(threads), kind, json.dumps(KERAS)]
        runners.append(Runner(f"Keras {kind}", kind, ks, threads))
    for r in runners:
        if not r.is_dlhpc:
            r.skipped = _peer_missing(peers_python, "fasttext" if "fastText" in r.name else "keras")
    return runners


def _peer_missing(python: str | None, module: str) -> str | None:
    if not python or not Path(python).exists():
        return "no --peers-python"
    p = subprocess.run([python, "-c", f"import {module}"], capture_output=True, check=False)
    return None if p.returncode == 0 else f"{module} is not installed in {python}"


def check_corpus(data: Path) -> None:
    """``--data``: a directory as ``text_corpus`` writes it. Every runner reads its train.csv
    and test.csv (fastText its fasttext/*.txt), and the report counts the classes in
    train.csv after the rounds: a wrong directory is refused before them."""
    if not data.is_dir():
        what = "no such directory" if not data.exists() else "not a directory"
        raise DataError(f"{data}: {what}; expected a corpus from python -m dlhpc.bench.text_corpus")
    missing = [name for name in ("train.csv", "test.csv") if not (data / name).is_file()]
    if missing:
        raise DataError(
            f"{data}: no {' or '.join(missing)}; expected a corpus from "
            "python -m dlhpc.bench.text_corpus"
        )


def run_rounds(runners: list[Runner], data: Path, repeats: int, timeout: float) -> None:
    active = [r for r in runners if r.skipped is None]
    with scratch_dir("dlhpc-text-peers-") as tmp:
        for k in range(repeats):
            order = active[k % len(active) :] + active[: k % len(active)]  # rotate each round
            for r in order:
                try:
                    res = dlhpc_once(r, data, tmp, timeout) if r.is_dlhpc else peer_once(r, timeout)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    r.skipped = f"failed: {e}"
                    active.remove(r)
                    continue
                r.results.append(res)
                print(f"round {k + 1}: {r.name:<24} acc {res['accuracy']:.4f}  "
                      f"train {res['train_seconds']:7.2f} s", flush=True)  # fmt: skip


def summarize(r: Runner) -> dict[str, Any]:
    def med(key: str) -> float | None:
        vals = [x[key] for x in r.results if key in x]
        return statistics.median(vals) if vals else None

    first = r.results[0]
    train_s = med("train_seconds") or float("nan")
    return {"name": r.name, "kind": r.kind, "threads": r.threads, "n": len(r.results),
            "accuracy": med("accuracy"), "train_seconds": train_s,
            "samples_per_second": first["epochs"] * first["train_samples"] / train_s,
            "process_seconds": med("process_seconds"), "tokenize_seconds": med("tokenize_seconds"),
            "epochs": first["epochs"], "train_samples": first["train_samples"],
            "test_samples": first["test_samples"], "maxlen": first.get("maxlen"),
            "version": first.get("version"),
            "accuracies": [x["accuracy"] for x in r.results],
            "times": [x["train_seconds"] for x in r.results]}  # fmt: skip


def lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return {"Model name": platform.processor() or platform.machine()}
    info = dict(ln.split(":", 1) for ln in out.splitlines() if ":" in ln)
    return {k.strip(): v.strip() for k, v in info.items()}


def _f(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def render(rows: list[dict[str, Any]], runners: list[Runner], ctx: dict[str, Any]) -> str:
    cpu = ctx["cpu"]
    hw = ", ".join(f"{k}: {cpu[k]}" for k in ("Model name", "CPU(s)", "Thread(s) per core",
                   "L2 cache", "L3 cache", "Hypervisor vendor") if k in cpu)  # fmt: skip
    lines = [
        f"# Text classification on CPU: dlhpc vs fastText and Keras ({ctx['date']})",
        "",
        "Generated by `python -m dlhpc.bench.text_peers` "
        f"(`{' '.join(ctx['argv'])}`); the method is in that module's docstring.",
        "",
        "## Hardware and versions",
        "",
        f"- CPU: {hw}",
        f"- Load: `uptime` load average before the run: {ctx['load_before']}; after: "
        f"{ctx['load_after']} (the machine is shared, hence interleaved rounds and ratios)",
        f"- dlhpc {ctx['dlhpc']}, torch {torch.__version__}, Python {platform.python_version()}",
        *[f"- {r['name']}: {r['version']}" for r in rows if r.get("version")],
        "",
        "## Data",
        "",
        f"`python -m dlhpc.bench.text_corpus`: {ctx['train_n']} training and {ctx['test_n']} "
        f"test texts in {ctx['classes']} classes (standard-library docstring sentences labelled "
        "by Library Reference chapter; stratified 80/20 split, seed 0).",
        "",
        "## Config",
        "",
        f"- Threads: peers {ctx['threads']}; dlhpc {', '.join(map(str, ctx['dlhpc_threads']))}",
        *[
            f"- dlhpc {k}: `dlhpc train {k} --data DATA --threads T` (its defaults)"
            for k in ("bag", "lstm")
        ],
        f"- fastText: `{json.dumps(FASTTEXT)}`",
        f"- Keras: `{json.dumps(KERAS)}`; maxlen = "
        f"{next((r['maxlen'] for r in rows if r.get('maxlen')), '–')} tokens",
        f"- Rounds: {ctx['repeats']}, rotated order; medians reported",
        "",
        "## Results",
        "",
        "| runner | threads | test acc | Δ acc vs dlhpc (pts) | train s | samples/s "
        "| train time ÷ dlhpc | process s | process ÷ dlhpc | tokenize s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in ("bag", "lstm"):
        ref = next((r for r in rows if r["kind"] == kind and r["name"].startswith("dlhpc")), None)
        for r in (x for x in rows if x["kind"] == kind):
            d_acc = ratio = whole = None
            if ref is not None and r["accuracy"] is not None:
                d_acc = 100 * (r["accuracy"] - ref["accuracy"])
                ratio = r["train_seconds"] / ref["train_seconds"]
                whole = r["process_seconds"] / ref["process_seconds"]
            lines.append(
                f"| {r['name']} | {r['threads']} | {_f(r['accuracy'], '.4f')} "
                f"| {_f(d_acc, '+.2f')} | {_f(r['train_seconds'], '.2f')} "
                f"| {_f(r['samples_per_second'], ',.0f')} | {_f(ratio, '.2f')}× "
                f"| {_f(r['process_seconds'], '.1f')} | {_f(whole, '.2f')}× "
                f"| {_f(r['tokenize_seconds'], '.2f')} |"
            )
    lines += ["", "Reference row per model: the first dlhpc row. Per-round values:", ""]
    lines += [f"- {r['name']}: acc {[round(a, 4) for a in r['accuracies']]}, "
              f"train s {[round(t, 2) for t in r['times']]}" for r in rows]  # fmt: skip
    lines += [f"- {r.name}: skipped ({r.skipped})" for r in runners if r.skipped]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--data", type=Path, required=True, help="text_corpus output directory")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="peers' threads")
    p.add_argument("--dlhpc-threads", default="1,2", help="comma list; the first is the reference")
    p.add_argument("--peers-python", default=None, help="python with fasttext and tensorflow")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    p.add_argument("--only", default="bag,lstm", help="models to compare")
    p.add_argument("--out", type=Path, default=None, help="directory for the .md and .json")
    a = p.parse_args(argv)
    dlhpc_threads = [int(t) for t in a.dlhpc_threads.split(",")]
    data = a.data.resolve()
    check_corpus(data)
    runners = [r for r in build_runners(data, a.threads, dlhpc_threads, a.peers_python)
               if r.kind in a.only.split(",")]  # fmt: skip
    load_before = os.getloadavg()
    run_rounds(runners, data, a.repeats, a.timeout)
    rows = [summarize(r) for r in runners if r.results]
    from dlhpc import __version__

    first = rows[0] if rows else {}
    ctx = {"date": dt.date.today().isoformat(), "argv": ["python -m dlhpc.bench.text_peers",
           *(argv if argv is not None else sys.argv[1:])], "cpu": lscpu(), "dlhpc": __version__,
           "load_before": [round(x, 2) for x in load_before],
           "load_after": [round(x, 2) for x in os.getloadavg()], "threads": a.threads,
           "dlhpc_threads": dlhpc_threads, "repeats": a.repeats,
           "train_n": first.get("train_samples"), "test_n": first.get("test_samples"),
           "classes": _count_classes(data)}  # fmt: skip
    text = render(rows, runners, ctx)
    print(text)
    if a.out is not None:
        name = dated_name(a.out, "text_cpu", ".md", ".json")
        atomic_write_text(a.out / f"{name}.md", text)
        atomic_write_text(a.out / f"{name}.json", json.dumps(rows, indent=2) + "\n")
    return 0


def _count_classes(data: Path) -> int:
    import csv

    with open(data / "train.csv", encoding="utf-8", newline="") as f:
        return len({row["label"] for row in csv.DictReader(f)})


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except DlhpcError as e:  # one line and status 2, as the dlhpc commands say it
        print(f"text_peers: error: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
