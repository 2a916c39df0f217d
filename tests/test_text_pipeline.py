"""Text end to end: sources → tokenizer → cached shards → bucketed batches → the models."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from dlhpc.cli import main
from dlhpc.data import DataConfig
from dlhpc.data.batches import TokenBatches, gather_ragged
from dlhpc.data.shards import ShardWriter, open_shard
from dlhpc.data.text import load_text
from dlhpc.data.text_sources import find_text_files
from dlhpc.data.tokenizer import PAD_ID, UNK_ID, encode_texts, train_tokenizer
from dlhpc.engine.recipes import recipe
from dlhpc.errors import ConfigError, DataError

TOPICS = {
    "sports": ["ball", "goal", "team", "match", "score", "win", "coach", "player"],
    "tech": ["code", "cpu", "gpu", "python", "compile", "memory", "server", "byte"],
    "food": ["pasta", "bread", "cheese", "taste", "cook", "bake", "salt", "sugar"],
}
FILLER = ["the", "a", "of", "and", "to", "in", "is", "it", "that", "with"]


def corpus(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(sorted(TOPICS))
        words = [rng.choice(TOPICS[label]) if rng.random() < 0.4 else rng.choice(FILLER)
                 for _ in range(rng.randint(2, 25))]  # fmt: skip
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("topics")
    write_csv(d / "train.csv", corpus(900, 0))
    write_csv(d / "test.csv", corpus(300, 1))
    return d


def test_tokenizer_reserves_pad_and_unk_and_lowercases() -> None:
    tok = train_tokenizer(["Hello World", "hello there, world!"], vocab_size=50)
    assert tok.token_to_id("[PAD]") == PAD_ID and tok.token_to_id("[UNK]") == UNK_ID
    ids, offsets = encode_texts(tok, ["HELLO world", "", "never seen"])
    assert offsets.tolist() == [0, 2, 2, 4]
    assert ids[0] == tok.token_to_id("hello") and ids[2] == ids[3] == UNK_ID
    assert PAD_ID not in ids.tolist()


def test_shards_round_trip_in_chunks(tmp_path: Path) -> None:
    with ShardWriter(tmp_path / "s") as w:
        w.add(np.array([5, 6, 7]), np.array([0, 2, 3]), np.array([1, 0]))
        w.add(np.array([], dtype=np.int32), np.array([0, 0]), np.array([2]))
        w.add(np.array([9]), np.array([0, 1]), np.array([1]))
        w.close(split="train")
    ids, offsets, labels, header = open_shard(tmp_path / "s")
    assert ids.tolist() == [5, 6, 7, 9] and offsets.tolist() == [0, 2, 3, 3, 4]
    assert labels.tolist() == [1, 0, 2, 1] and header["records"] == 4
    (tmp_path / "s" / "offsets.bin").write_bytes(b"\0" * 8)
    with pytest.raises(DataError, match="damaged token shard"):
        open_shard(tmp_path / "s")


def test_gather_ragged_matches_a_loop() -> None:
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(0, 7, (40,), generator=g)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    ids = torch.randint(2, 100, (int(offsets[-1]),), generator=g, dtype=torch.int32)
    rows = torch.randperm(40, generator=g)[:17]
    got_ids, got_off = gather_ragged(ids, offsets, rows)
    want = [ids[offsets[r] : offsets[r + 1]].tolist() for r in rows.tolist()]
    assert [got_ids[got_off[i] : got_off[i + 1]].tolist() for i in range(17)] == want
    assert got_ids.dtype == torch.int64


def test_load_text_caches_by_content(text_dir: Path, tmp_path: Path) -> None:
    files = find_text_files(str(text_dir))
    assert files is not None
    cfg = DataConfig(str(text_dir), cache_dir=str(tmp_path / "cache"), vocab_size=100)
    first = load_text(cfg, files)
    assert first.classes == ("food", "sports", "tech")
    assert len(first.train) == 900 and first.test is not None and len(first.test) == 300
    entries = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1
    stamp = (entries[0] / "train" / "ids.bin").stat().st_mtime_ns
    second = load_text(cfg, files)  # served from the cache: nothing rewritten
    assert (entries[0] / "train" / "ids.bin").stat().st_mtime_ns == stamp
    assert torch.equal(second.train.ids, first.train.ids)
    # another vocabulary is another entry; so is a changed file
    load_text(DataConfig(str(text_dir), cache_dir=str(tmp_path / "cache"), vocab_size=60), files)
    assert len([p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]) == 2


def test_single_file_gets_a_fixed_held_out_test_split(tmp_path: Path) -> None:
    write_csv(tmp_path / "all.csv", corpus(1000, 2))
    files = find_text_files(str(tmp_path / "all.csv"))
    assert files is not None and files.test is None
    cfg = DataConfig(str(tmp_path / "all.csv"), cache_dir=str(tmp_path / "c"), val_fraction=0.1)
    s = load_text(cfg, files)
    assert s.test is not None and 150 <= len(s.test) <= 250  # test_fraction 0.2
    assert s.val is not None and len(s.train) + len(s.val) + len(s.test) == 1000
    assert not set(s.val.rows.tolist()) & set(s.train.rows.tolist())


def test_bucketed_order_is_a_permutation_with_little_padding(
    text_dir: Path, tmp_path: Path
) -> None:
    files = find_text_files(str(text_dir))
    assert files is not None
    s = load_text(DataConfig(str(text_dir), cache_dir=str(tmp_path / "c")), files)
    bucketed = TokenBatches(s.train, torch.device("cpu"))
    plain = TokenBatches(s.train, torch.device("cpu"), bucket=False)
    order = bucketed.order(0, 0, 32)
    assert sorted(order.tolist()) == list(range(len(s.train)))
    assert torch.equal(order, bucketed.order(0, 0, 32)) and not torch.equal(
        order, bucketed.order(0, 1, 32)
    )

    def padding(ds: TokenBatches, o: torch.Tensor) -> int:
        lengths = ds.tokens.lengths[o]
        return sum(int(b.max() * len(b) - b.sum()) for b in lengths.split(32))

    assert padding(bucketed, order) < 0.25 * padding(plain, plain.order(0, 0, 32))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["bag", "lstm", "transformer"])
def test_train_evaluate_predict_text(
    model: str, text_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    run = tmp_path / model
    argv = ["train", model, "--data", str(text_dir), "--out", str(run), "--epochs", "4",
            "--cache-dir", str(tmp_path / "c"), "--quiet", "--json", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["model"] == model and summary["test_samples"] == 300
    assert summary["test_accuracy"] > 0.85, summary  # topic words make this easy
    assert (run / "tokenizer.json").is_file()
    cfg = json.loads((run / "config.json").read_text())  # the model's recipe, the flags on top
    assert cfg["optim"] | recipe(model, "optim") == cfg["optim"] and cfg["train"]["epochs"] == 4
    spec = json.loads((run / "model.json").read_text())
    assert spec["input"]["kind"] == "text" and spec["labels"] == ["food", "sports", "tech"]

    assert main(["evaluate", str(run), "--data", str(text_dir), "--json", "--quiet"]) == 0
    ev = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert ev["test_accuracy"] == pytest.approx(summary["test_accuracy"])

    lines = tmp_path / "lines.txt"
    lines.write_text("cheese pasta bread salt\npython gpu compile code\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("the team and the coach win the match\n"))
    assert main(["predict", str(run), str(lines), "-", "--json", "--quiet"]) == 0
    preds = json.loads(capsys.readouterr().out.splitlines()[-1])["predictions"]
    assert [p["label"] for p in preds] == ["food", "tech", "sports"]


def test_text_and_image_models_are_not_mixed(
    text_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "cnn", "--data", str(text_dir), "--quiet"]) == 2
    assert "image model" in capsys.readouterr().err
    assert main(["train", "lstm", "--data", "digits", "--quiet"]) == 2
    assert "text model" in capsys.readouterr().err


def test_a_missing_or_empty_text_source_is_named(
    text_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "bag", "--data", str(tmp_path / "nope.csv"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().endswith("nope.csv: no such file or directory")
    empty = tmp_path / "empty.csv"
    write_csv(empty, [("", "a"), ("  ", "b")] * 10)
    argv = ["train", "bag", "--data", str(empty), "--out", str(tmp_path / "r"),
            "--cache-dir", str(tmp_path / "c"), "--quiet"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "empty.csv: the training texts have no words" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists() and list((tmp_path / "c").iterdir()) == []


def test_bad_text_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="vocab-size"):
        DataConfig("x.csv", vocab_size=2)
