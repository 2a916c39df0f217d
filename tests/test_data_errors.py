"""Bad input gives one clear error naming the file and the problem (design.md §1, data sources).

Each malformed source must raise ``DataError`` (bad settings: ``ConfigError``) whose message
names the path and says what is wrong; the CLI turns it into one stderr line and exit code 2,
with nothing half-written.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dlhpc.data import DataConfig, load_images
from dlhpc.data.idx import write_idx
from dlhpc.errors import ConfigError, DataError, DlhpcError

IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")  # fmt: skip


# ---------------------------------------------------------------- helpers


def data_error(source: Path | str, **cfg: Any) -> str:
    """The message of the DataError that loading ``source`` raises."""
    with pytest.raises(DataError) as e:
        load_images(DataConfig(str(source), **cfg))
    msg = str(e.value)
    assert "\n" not in msg, msg  # one line on stderr
    return msg


def x_y(n: int = 12, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).integers(0, 256, (n, 4, 4), dtype=np.uint8)
    return x, (np.arange(n) % k).astype(np.uint8)


def idx_dir(root: Path) -> Path:
    """A valid four-file IDX directory; tests then break one file."""
    root.mkdir(parents=True, exist_ok=True)
    x, y = x_y()
    for name, arr in zip(IDX, (x, y, x[:6], y[:6]), strict=True):
        write_idx(root / name, arr)
    return root


def png(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((5, 5), value, dtype=np.uint8)).save(path)
    return path


def folders(root: Path, classes: tuple[str, ...] = ("a", "b")) -> Path:
    for c in classes:
        png(root / "train" / c / "0.png")
        png(root / "train" / c / "1.png", 200)
    return root


# ---------------------------------------------------------------- where the source is


def test_missing_path(tmp_path: Path) -> None:
    msg = data_error(tmp_path / "nope")
    assert str(tmp_path / "nope") in msg and "no such file or directory" in msg


def test_unknown_format_txt_file(tmp_path: Path) -> None:
    f = tmp_path / "data.txt"
    f.write_text("1,2,3\n")
    msg = data_error(f)
    assert str(f) in msg and "unknown image format" in msg and ".txt" in msg


def test_unknown_format_empty_dir(tmp_path: Path) -> None:
    d = tmp_path / "empty"
    d.mkdir()
    msg = data_error(d)
    assert str(d) in msg and "unknown image format" in msg


def test_unknown_format_dir_of_loose_images(tmp_path: Path) -> None:
    png(tmp_path / "loose" / "0.png")  # images, but no class folders and no IDX files
    msg = data_error(tmp_path / "loose")
    assert str(tmp_path / "loose") in msg and "unknown image format" in msg


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("size", [2, 6])  # shorter than the magic; shorter than the dims
def test_idx_truncated_header(tmp_path: Path, size: int) -> None:
    root = idx_dir(tmp_path / "m")
    f = root / IDX[0]
    f.write_bytes(f.read_bytes()[:size])
    msg = data_error(root)
    assert str(f) in msg and "truncated IDX header" in msg


def test_idx_corrupt_magic(tmp_path: Path) -> None:
    root = idx_dir(tmp_path / "m")
    f = root / IDX[1]
    f.write_bytes(b"\x12\x34" + f.read_bytes()[2:])
    msg = data_error(root)
    assert str(f) in msg and "not an IDX file" in msg and "magic" in msg


def test_idx_wrong_rank(tmp_path: Path) -> None:
    root = idx_dir(tmp_path / "m")
    write_idx(root / IDX[3], np.zeros((6, 2, 2), dtype=np.uint8))  # labels with 3 dims
    msg = data_error(root)
    assert str(root / IDX[3]) in msg and "1-dimensional" in msg and "found 3" in msg


def test_idx_data_truncated(tmp_path: Path) -> None:
    root = idx_dir(tmp_path / "m")
    f = root / IDX[2]
    raw = f.read_bytes()
    f.write_bytes(raw[:-10])
    msg = data_error(root)
    assert str(f) in msg and "truncated" in msg
    assert f"{len(raw) - 10} bytes, header says {len(raw)}" in msg


def test_idx_data_with_trailing_bytes(tmp_path: Path) -> None:
    root = idx_dir(tmp_path / "m")
    f = root / IDX[0]
    f.write_bytes(f.read_bytes() + b"\0\0\0")
    msg = data_error(root)
    assert str(f) in msg and "trailing bytes" in msg


def test_idx_corrupt_gzip(tmp_path: Path) -> None:
    root = idx_dir(tmp_path / "m")
    (root / IDX[0]).unlink()
    f = root / f"{IDX[0]}.gz"
    f.write_bytes(b"\x1f\x8b" + b"this is not deflate data" * 4)
    msg = data_error(root)
    assert str(f) in msg and "corrupt gzip" in msg


def test_idx_truncated_gzip(tmp_path: Path) -> None:
    root = idx_dir(tmp_path / "m")
    f = root / f"{IDX[1]}.gz"
    z = gzip.compress((root / IDX[1]).read_bytes())
    (root / IDX[1]).unlink()
    f.write_bytes(z[: len(z) // 2])
    msg = data_error(root)
    assert str(f) in msg and "corrupt gzip" in msg


def test_idx_image_label_count_mismatch_train(tmp_path: Path) -> None:
    root = idx_dir(tmp_path / "m")
    write_idx(root / IDX[1], np.zeros(11, dtype=np.uint8))
    msg = data_error(root)
    assert str(root / IDX[0]) in msg and "12 images but 11 labels" in msg


def test_idx_image_label_count_mismatch_test(tmp_path: Path) -> None:
    root = idx_dir(tmp_path / "m")
    write_idx(root / IDX[3], np.zeros(9, dtype=np.uint8))
    msg = data_error(root)
    assert str(root / IDX[2]) in msg and "6 images but 9 labels" in msg


def test_idx_missing_train_labels(tmp_path: Path) -> None:
    root = idx_dir(tmp_path / "m")
    (root / IDX[1]).unlink()
    msg = data_error(root)
    assert str(root) in msg and "missing IDX file" in msg and IDX[1] in msg


def test_idx_only_one_test_file(tmp_path: Path) -> None:
    root = idx_dir(tmp_path / "m")
    (root / IDX[3]).unlink()
    msg = data_error(root)
    assert str(root) in msg and IDX[3] in msg and "test needs both files" in msg


def test_idx_test_label_never_seen_in_train(tmp_path: Path) -> None:
    root = idx_dir(tmp_path / "m")
    write_idx(root / IDX[3], np.array([0, 1, 2, 7, 0, 1], dtype=np.uint8))
    msg = data_error(root)
    assert str(root) in msg and "[7]" in msg and "never occur in train" in msg


# ---------------------------------------------------------------- NPZ


def test_npz_image_label_count_mismatch_train(tmp_path: Path) -> None:
    x, y = x_y()
    f = tmp_path / "d.npz"
    np.savez(f, x_train=x, y_train=y[:-2])
    msg = data_error(f)
    assert str(f) in msg and "x_train has 12 images but y_train 10" in msg


def test_npz_image_label_count_mismatch_test(tmp_path: Path) -> None:
    x, y = x_y()
    f = tmp_path / "d.npz"
    np.savez(f, x_train=x, y_train=y, x_test=x[:5], y_test=y[:4])
    msg = data_error(f)
    assert str(f) in msg and "x_test has 5 images but y_test 4" in msg


def test_npz_without_expected_keys(tmp_path: Path) -> None:
    x, y = x_y()
    f = tmp_path / "d.npz"
    np.savez(f, images=x, labels=y)
    msg = data_error(f)
    assert str(f) in msg and "expected keys x_train, y_train" in msg
    assert "found images, labels" in msg


def test_npz_with_x_test_but_no_y_test(tmp_path: Path) -> None:
    x, y = x_y()
    f = tmp_path / "d.npz"
    np.savez(f, x_train=x, y_train=y, x_test=x[:3])
    msg = data_error(f)
    assert str(f) in msg and "x_test, y_test" in msg and "found x_test, x_train, y_train" in msg


def test_npz_that_is_not_an_npz(tmp_path: Path) -> None:
    f = tmp_path / "d.npz"
    f.write_text("x_train,y_train\n1,2\n")
    msg = data_error(f)
    assert str(f) in msg and "not a readable .npz file" in msg


def test_npz_truncated_zip(tmp_path: Path) -> None:
    x, y = x_y()
    f = tmp_path / "d.npz"
    np.savez(f, x_train=x, y_train=y)
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2])
    msg = data_error(f)
    assert str(f) in msg and "not a readable .npz file" in msg


def test_npz_that_is_really_an_npy(tmp_path: Path) -> None:
    f = tmp_path / "d.npz"
    with f.open("wb") as fh:
        np.save(fh, x_y()[0])
    msg = data_error(f)
    assert str(f) in msg and ".npz" in msg


def test_npz_images_of_the_wrong_shape(tmp_path: Path) -> None:
    f = tmp_path / "d.npz"
    np.savez(f, x_train=np.zeros((4, 3, 3, 2), np.uint8), y_train=np.array([0, 1, 0, 1]))
    msg = data_error(f)
    assert str(f) in msg and "x_train" in msg and "(4, 3, 3, 2)" in msg


def test_npz_images_not_numeric(tmp_path: Path) -> None:
    f = tmp_path / "d.npz"
    np.savez(f, x_train=np.full((4, 3, 3), "a"), y_train=np.array([0, 1, 0, 1]))
    msg = data_error(f)
    assert str(f) in msg and "numeric" in msg


def test_npz_images_with_nan_or_inf(tmp_path: Path) -> None:
    f = tmp_path / "d.npz"
    x = np.random.default_rng(0).random((4, 3, 3)).astype(np.float32)
    x[1, 0, 0], x[2, 1, 1] = np.nan, np.inf
    np.savez(f, x_train=x, y_train=np.array([0, 1, 0, 1]))
    msg = data_error(f)
    assert str(f) in msg and "x_train" in msg and "2 pixel value(s) are NaN or infinite" in msg


def test_npz_labels_that_are_not_class_ids(tmp_path: Path) -> None:
    f = tmp_path / "d.npz"
    x = np.zeros((4, 3, 3), np.uint8)
    np.savez(f, x_train=x, y_train=np.array([0.5, 1.0, 0.25, 1.0]))
    msg = data_error(f)
    assert str(f) in msg and "class ids" in msg and "0.5" in msg
    np.savez(f, x_train=x, y_train=np.array([0.0, 1.0, np.nan, 1.0]))
    assert "class ids" in data_error(f)


def test_npz_whole_float_labels_are_class_ids(tmp_path: Path) -> None:
    f = tmp_path / "d.npz"
    x = np.random.default_rng(0).integers(0, 256, (6, 3, 3), dtype=np.uint8)
    np.savez(f, x_train=x, y_train=np.array([0.0, 1.0, 2.0] * 2))
    s = load_images(DataConfig(str(f), test_fraction=0.5))
    assert s.classes == ("0.0", "1.0", "2.0") and len(s.train) + len(s.test) == 6


# ---------------------------------------------------------------- class folders


def test_empty_class_folder(tmp_path: Path) -> None:
    root = folders(tmp_path / "ds")
    empty = root / "train" / "c"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    msg = data_error(root)
    assert str(empty) in msg and "empty class folder" in msg


def test_unreadable_image_file(tmp_path: Path) -> None:
    root = folders(tmp_path / "ds")
    bad = root / "train" / "b" / "2.png"
    bad.write_bytes(b"this is not a png at all")
    msg = data_error(root)
    assert str(bad) in msg and "unreadable image" in msg


def test_truncated_image_file(tmp_path: Path) -> None:
    root = folders(tmp_path / "ds")
    bad = root / "train" / "b" / "2.png"
    arr = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)  # incompressible
    Image.fromarray(arr).save(bad)
    raw = bad.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])  # the header reads fine; the pixels do not
    msg = data_error(root)
    assert str(bad) in msg and "unreadable image" in msg


def test_test_class_without_training_folder(tmp_path: Path) -> None:
    root = folders(tmp_path / "ds")
    png(root / "test" / "a" / "0.png")
    png(root / "test" / "zebra" / "0.png")
    msg = data_error(root)
    assert str(root / "test") in msg and "zebra" in msg and "no training folder" in msg


def test_only_one_class_in_folders(tmp_path: Path) -> None:
    root = folders(tmp_path / "ds", classes=("only",))
    msg = data_error(root)
    assert str(root) in msg and "only one class" in msg and "'only'" in msg


def test_only_one_class_in_npz(tmp_path: Path) -> None:
    x, _ = x_y()
    f = tmp_path / "d.npz"
    np.savez(f, x_train=x, y_train=np.full(12, 4))
    msg = data_error(f)
    assert str(f) in msg and "only one class" in msg and "'4'" in msg


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("kw", "flag", "value"),
    [
        ({"val_fraction": -0.1}, "--val-fraction", "-0.1"),
        ({"val_fraction": 1.0}, "--val-fraction", "1.0"),
        ({"test_fraction": 0.0}, "--test-fraction", "0.0"),
        ({"test_fraction": 1.0}, "--test-fraction", "1.0"),
        ({"image_size": 0}, "--image-size", "0"),
        ({"image_size": -28}, "--image-size", "-28"),
        ({"channels": 2}, "--channels", "2"),
        ({"channels": 0}, "--channels", "0"),
        ({"augment": "flip"}, "--augment", "'flip'"),
        ({"source": ""}, "--data", ""),
    ],
)
def test_bad_data_config_is_a_config_error(kw: dict[str, Any], flag: str, value: str) -> None:
    kw = {"source": "digits", **kw}
    with pytest.raises(ConfigError) as e:
        DataConfig(**kw)
    msg = str(e.value)
    assert flag in msg and value in msg and "\n" not in msg


def test_edge_data_config_values_are_accepted() -> None:
    for kw in ({"val_fraction": 0.0}, {"test_fraction": 0.99}, {"image_size": 1},
               {"channels": 1}, {"channels": 3}, {"augment": "none"}):  # fmt: skip
        DataConfig("digits", **kw)  # type: ignore[arg-type]


def test_user_errors_exit_with_code_2() -> None:
    assert issubclass(DataError, DlhpcError) and issubclass(ConfigError, DlhpcError)
    assert DataError("x").exit_code == ConfigError("x").exit_code == 2


# ---------------------------------------------------------------- the CLI, as a user runs it

# The three bad sources the CLI is run on, and the file each message must name.
CLI_CASES = ("idx-magic", "garbage-png", "npz-keys")


def _cli_source(case: str, root: Path) -> tuple[Path, Path]:
    if case == "idx-magic":
        src = idx_dir(root / "mnist")
        bad = src / IDX[0]
        bad.write_bytes(b"\xff\xff" + bad.read_bytes()[2:])
        return src, bad
    if case == "garbage-png":
        src = folders(root / "ds")
        bad = src / "train" / "a" / "9.png"
        bad.write_bytes(b"\x00garbage\x00" * 8)
        return src, bad
    src = root / "d.npz"
    np.savez(src, images=x_y()[0])
    return src, src


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run ``dlhpc train cnn --data BAD --out RUN --quiet`` for every case, all at once (each
    process pays torch's import; in parallel they cost about one)."""
    procs = {}
    for case in CLI_CASES:
        root = tmp_path_factory.mktemp(case)
        src, bad = _cli_source(case, root)
        run = root / "run"
        argv = [sys.executable, "-m", "dlhpc", "train", "cnn", "--data", str(src),
                "--out", str(run), "--quiet",
                # Bound the cost should --data ever be ignored and a real run start.
                "--epochs", "1", "--max-steps", "1", "--threads", "1"]  # fmt: skip
        proc = subprocess.Popen(
            argv, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        procs[case] = (proc, bad, run)
    out = {}
    for case, (proc, bad, run) in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        out[case] = (proc.returncode, stdout, stderr, bad, run)
    return out


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_bad_data_is_one_line_exit_2_nothing_written(
    cli_runs: dict[str, Any], case: str
) -> None:
    code, _stdout, stderr, bad, run = cli_runs[case]
    assert "Traceback" not in stderr, stderr
    assert code == 2, (code, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and stderr.endswith("\n"), stderr
    assert lines[0].startswith("dlhpc train: error: ") and str(bad) in lines[0], lines
    assert not (run / "config.json").exists()
    assert not run.exists() or not any(run.iterdir())
