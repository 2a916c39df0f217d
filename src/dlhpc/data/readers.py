"""One reader per image format. A reader turns a path into NHWC uint8 arrays and labels.

Formats (``find_reader`` picks by looking at the path)::

    digits                   scikit-learn's 1,797 8×8 digits, resized to 28×28 (built in)
    DIR with IDX files       train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-…
    FILE.npz                 Keras style: x_train, y_train[, x_test, y_test]
    DIR/train/<class>/*.png  class folders (and DIR/test/<class>/*); or DIR/<class>/* alone
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from dlhpc.data.config import DataConfig
from dlhpc.data.idx import read_idx
from dlhpc.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F", "P;L"}
DIGITS_TEST_FRACTION = 0.2
DIGITS_SEED = 0


@dataclass(frozen=True)
class RawImages:
    x_train: np.ndarray  # (N, H, W, C) uint8
    y_train: np.ndarray  # (N,) int class ids into ``classes``
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    classes: tuple[str, ...]
    color: bool  # True if any image has colour (C == 3)


class ImageReader(Protocol):
    name: str

    def matches(self, path: Path) -> bool: ...

    def read(self, path: Path, cfg: DataConfig) -> RawImages: ...


def _nhwc(x: np.ndarray, where: str) -> np.ndarray:
    """(N,H,W) or (N,H,W,C) of any numeric type → (N,H,W,C) uint8 0–255."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"{where}: images must be (N, H, W) or (N, H, W, 1|3), got {x.shape}")
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{where}: images must be numeric, got dtype {x.dtype}")
    xf = x.astype(np.float32)
    bad = int(np.count_nonzero(~np.isfinite(xf)))
    if bad:
        raise DataError(f"{where}: {bad} pixel value(s) are NaN or infinite")
    if x.size and float(xf.max()) <= 1.0:  # float images in [0, 1]
        xf = xf * 255.0
    return np.clip(np.rint(xf), 0, 255).astype(np.uint8)


def _label_ids(
    y_train: np.ndarray, y_test: np.ndarray | None, where: str
) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """Map raw labels (ints, strings or one-hot rows) to ids 0..K-1, sorted by value."""

    def flat(y: np.ndarray) -> np.ndarray:
        y = y.argmax(1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(len(y))
        # float class ids are fine when whole (3.0); 0.37 is a regression target, not a class
        if np.issubdtype(y.dtype, np.floating):
            odd = y[~(np.isfinite(y) & (y == np.round(y)))]
            if odd.size:
                raise DataError(f"{where}: labels must be class ids, names or one-hot rows; "
                                f"got numbers such as {odd[:3].tolist()}")  # fmt: skip
        return y

    tr = flat(y_train)
    values = np.unique(tr)
    ids_tr = np.searchsorted(values, tr)
    ids_te = None
    if y_test is not None:
        te = flat(y_test)
        unknown = np.setdiff1d(np.unique(te), values)
        if unknown.size:
            raise DataError(f"{where}: test labels {unknown[:5].tolist()} never occur in train")
        ids_te = np.searchsorted(values, te)
    return ids_tr, ids_te, tuple(str(v) for v in values.tolist())


BUILTIN_SOURCES = ("digits",)  # names of data shipped with the installed packages


class DigitsReader:
    name = "digits"

    def matches(self, path: Path) -> bool:
        return str(path) == self.name and not path.exists()

    def read(self, path: Path, cfg: DataConfig) -> RawImages:
        import torch
        import torch.nn.functional as F
        from sklearn.datasets import load_digits

        d = load_digits()
        x8 = torch.from_numpy(d.images.astype(np.float32) * (255.0 / 16.0))[:, None]
        x = F.interpolate(x8, size=(28, 28), mode="bilinear", align_corners=False)
        x_u8 = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        y = d.target.astype(np.int64)
        # The fixed split of the contract: stratified, 20% test, seed 0, whatever --seed says.
        from dlhpc.data.images import stratified_split

        keep, held = stratified_split(y, DIGITS_TEST_FRACTION, DIGITS_SEED)
        classes = tuple(str(i) for i in range(10))
        return RawImages(x_u8[keep], y[keep], x_u8[held], y[held], classes, color=False)


def _idx_file(root: Path, stem: str) -> Path | None:
    for name in (stem, stem.replace("-idx", ".idx")):
        for cand in (root / name, root / f"{name}.gz"):
            if cand.is_file():
                return cand
    return None


class IdxReader:
    name = "mnist-idx"
    FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")  # fmt: skip

    def matches(self, path: Path) -> bool:
        return path.is_dir() and _idx_file(path, self.FILES[0]) is not None

    def read(self, path: Path, cfg: DataConfig) -> RawImages:
        files = [_idx_file(path, f) for f in self.FILES]
        missing = [name for name, f in zip(self.FILES, files, strict=True) if f is None]
        if files[0] is None or files[1] is None:
            raise DataError(f"{path}: missing IDX file(s) {', '.join(missing)}")
        if len(missing) == 1:
            raise DataError(f"{path}: missing IDX file {missing[0]} (test needs both files)")
        arrays = [read_idx(f, nd) if f else None for f, nd in zip(files, (3, 1, 3, 1), strict=True)]
        x_tr, y_tr, x_te, y_te = arrays
        assert x_tr is not None and y_tr is not None
        for x, y, fx in ((x_tr, y_tr, files[0]), (x_te, y_te, files[2])):
            if x is not None and y is not None and len(x) != len(y):
                raise DataError(f"{fx}: {len(x)} images but {len(y)} labels")
        ids_tr, ids_te, classes = _label_ids(y_tr, y_te, str(path))
        x_te_u8 = _nhwc(x_te, str(files[2])) if x_te is not None else None
        return RawImages(_nhwc(x_tr, str(files[0])), ids_tr, x_te_u8, ids_te, classes, False)


class NpzReader:
    name = "npz"

    def matches(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() == ".npz"

    def read(self, path: Path, cfg: DataConfig) -> RawImages:
        try:
            z = np.load(path, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single array (.npy), not named arrays")
            with z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise DataError(f"{path}: not a readable .npz file ({e})") from None
        missing = [k for k in ("x_train", "y_train") if k not in arrays]
        if missing or (("x_test" in arrays) != ("y_test" in arrays)):
            keys = ", ".join(sorted(arrays)) or "none"
            raise DataError(
                f"{path}: expected keys x_train, y_train (and x_test, y_test); found {keys}"
            )
        x_tr, y_tr = arrays["x_train"], arrays["y_train"]
        x_te, y_te = arrays.get("x_test"), arrays.get("y_test")
        for x, y, split in ((x_tr, y_tr, "train"), (x_te, y_te, "test")):
            if x is not None and y is not None and len(x) != len(y):
                raise DataError(f"{path}: x_{split} has {len(x)} images but y_{split} {len(y)}")
        ids_tr, ids_te, classes = _label_ids(y_tr, y_te, str(path))
        xtr = _nhwc(x_tr, f"{path}: x_train")
        xte = _nhwc(x_te, f"{path}: x_test") if x_te is not None else None
        color = xtr.shape[-1] == 3
        return RawImages(xtr, ids_tr, xte, ids_te, classes, color)


def _class_dirs(root: Path) -> dict[str, list[Path]]:
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    out: dict[str, list[Path]] = {}
    for d in dirs:
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{d}: empty class folder (no {'/'.join(sorted(IMAGE_SUFFIXES))})")
        out[d.name] = files
    return out


class FolderReader:
    name = "image-folders"

    def matches(self, path: Path) -> bool:
        if not path.is_dir():
            return False
        root = path / "train" if (path / "train").is_dir() else path
        return any(p.is_dir() for p in root.iterdir())

    def read(self, path: Path, cfg: DataConfig) -> RawImages:
        has_split = (path / "train").is_dir()
        train = _class_dirs(path / "train" if has_split else path)
        test = _class_dirs(path / "test") if has_split and (path / "test").is_dir() else {}
        classes = tuple(sorted(train))
        extra = sorted(set(test) - set(train))
        if extra:
            raise DataError(f"{path / 'test'}: classes {extra} have no training folder")
        files_tr = [(f, classes.index(c)) for c in classes for f in train[c]]
        files_te = [(f, classes.index(c)) for c in sorted(test) for f in test[c]]
        all_files = [f for f, _ in files_tr + files_te]
        color = cfg.channels == 3 or (cfg.channels is None and not _all_gray(all_files))
        size = cfg.image_size
        if size is None:
            with _open(all_files[0]) as im:
                w, h = im.size
        else:
            h = w = size
        x = decode_image_files(all_files, 3 if color else 1, h, w)
        y = np.array([c for _, c in files_tr + files_te], dtype=np.int64)
        n = len(files_tr)
        if not files_te:
            return RawImages(x, y, None, None, classes, color)
        return RawImages(x[:n], y[:n], x[n:], y[n:], classes, color)


def _open(path: Path):  # type: ignore[no-untyped-def]
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"{path}: unreadable image ({e.__class__.__name__}: {e})") from None


def _all_gray(files: Sequence[Path]) -> bool:
    for f in files:
        with _open(f) as im:
            if im.mode not in GRAY_MODES:
                return False
    return True


def _decode_one(path: Path, channels: int, height: int, width: int) -> np.ndarray:
    from PIL import Image

    with _open(path) as im:
        try:
            im = im.convert("L" if channels == 1 else "RGB")
            if im.size != (width, height):
                im = im.resize((width, height), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError) as e:
            raise DataError(f"{path}: unreadable image ({e.__class__.__name__}: {e})") from None
    return a.reshape(height, width, channels)


def decode_image_files(paths: Sequence[Path], channels: int, height: int, width: int) -> np.ndarray:
    """Image files → (N, H, W, C) uint8, decoded on a thread pool (Pillow releases the GIL)."""
    workers = min(8, max(1, len(os.sched_getaffinity(0))))
    with ThreadPoolExecutor(workers) as pool:
        arrays = list(pool.map(lambda p: _decode_one(Path(p), channels, height, width), paths))
    if not arrays:
        return np.zeros((0, height, width, channels), dtype=np.uint8)
    return np.stack(arrays)


READERS: tuple[ImageReader, ...] = (DigitsReader(), NpzReader(), IdxReader(), FolderReader())


def find_reader(source: str) -> tuple[ImageReader, Path]:
    path = Path(source).expanduser()
    for reader in READERS:
        if reader.matches(path):
            return reader, path
    if not path.exists():
        raise DataError(f"{source}: no such file or directory (and not a built-in source: digits)")
    if path.is_dir():
        raise DataError(
            f"{source}: unknown image format: expected MNIST IDX files, "
            "or class folders (train/<class>/*.png)"
        )
    raise DataError(f"{source}: unknown image format {path.suffix or '(no suffix)'!r}; use .npz")
