"""The image sources of the data contract (design.md §1) load, split and shape as promised.

Every test makes its own small data in ``tmp_path``. Images carry their own index in their first
two pixels (``tagged``), so a split can be traced back to the exact source images it holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dlhpc.data import (
    DataConfig,
    ImageSet,
    ImageSplits,
    batch_slices,
    decode_image_files,
    epoch_order,
    load_images,
    random_affine,
)
from dlhpc.data.idx import read_idx, write_idx

IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")  # fmt: skip


# ---------------------------------------------------------------- helpers


def tagged(n: int, h: int = 6, w: int = 7, seed: int = 0) -> np.ndarray:
    """(n, h, w) uint8 noise whose pixels [0, 0] and [0, 1] spell the image's index."""
    x = np.random.default_rng(seed).integers(0, 256, (n, h, w), dtype=np.uint8)
    x[:, 0, 0] = np.arange(n) % 256
    x[:, 0, 1] = np.arange(n) // 256
    return x


def ids_of(s: ImageSet) -> np.ndarray:
    """The indices ``tagged`` wrote into the images of ``s`` (channel 0)."""
    x = s.x.numpy().astype(np.int64)
    return x[:, 0, 0, 0] + 256 * x[:, 0, 0, 1]


def labels(n: int, k: int) -> np.ndarray:
    return (np.arange(n) % k).astype(np.uint8)


def write_idx_dir(
    root: Path,
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    x_te: np.ndarray | None = None,
    y_te: np.ndarray | None = None,
    names: tuple[str, ...] = IDX,
    suffixes: tuple[str, ...] = ("", "", "", ""),
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for arr, name, suffix in zip((x_tr, y_tr, x_te, y_te), names, suffixes, strict=True):
        if arr is not None:
            write_idx(root / f"{name}{suffix}", arr)
    return root


def save_image(path: Path, arr: np.ndarray, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def assert_stratified_partition(
    kept: np.ndarray, held: np.ndarray, y_all: np.ndarray, fraction: float
) -> None:
    """``kept`` and ``held`` (source indices) are disjoint, cover ``y_all``, and every class
    gives ``fraction`` of its members (±1) to ``held``."""
    assert set(kept.tolist()).isdisjoint(held.tolist())
    assert sorted(kept.tolist() + held.tolist()) == list(range(len(y_all)))
    for c in np.unique(y_all):
        n_c = int((y_all == c).sum())
        h_c = int((y_all[held] == c).sum())
        assert abs(h_c - fraction * n_c) <= 1, (c, h_c, n_c)
        assert 1 <= h_c < n_c


# ---------------------------------------------------------------- digits (built in)


@pytest.fixture(scope="module")
def digits() -> ImageSplits:
    return load_images(DataConfig("digits"))


def test_digits_are_1797_uint8_28x28_images_in_10_classes(digits: ImageSplits) -> None:
    assert digits.test is not None
    for s in (digits.train, digits.test):
        assert s.x.dtype == torch.uint8 and s.x.shape[1:] == (1, 28, 28)
        assert s.y.dtype == torch.int64
    assert len(digits.train) + len(digits.test) == 1797
    assert digits.classes == tuple(str(i) for i in range(10))
    assert digits.val is None
    assert digits.train.x.min() == 0 and digits.train.x.max() >= 250  # full 0–255 range used
    # The labels are scikit-learn's, every one of them, split between train and test.
    from sklearn.datasets import load_digits

    want = np.bincount(load_digits().target, minlength=10)
    got = np.bincount(torch.cat([digits.train.y, digits.test.y]).numpy(), minlength=10)
    assert got.tolist() == want.tolist()


def test_digits_split_is_stratified_about_20_percent(digits: ImageSplits) -> None:
    assert digits.test is not None
    tr = np.bincount(digits.train.y.numpy(), minlength=10)
    te = np.bincount(digits.test.y.numpy(), minlength=10)
    for c in range(10):
        assert abs(te[c] - 0.2 * (tr[c] + te[c])) <= 1, (c, tr[c], te[c])


def test_digits_split_is_fixed_and_ignores_seed_and_test_fraction(digits: ImageSplits) -> None:
    other = load_images(DataConfig("digits", seed=1234, test_fraction=0.5))
    assert digits.test is not None and other.test is not None
    for a, b in ((digits.train, other.train), (digits.test, other.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


# ---------------------------------------------------------------- MNIST IDX directories


@pytest.mark.parametrize(
    ("names", "suffixes"),
    [
        (IDX, ("", "", "", "")),
        (IDX, (".gz", ".gz", ".gz", ".gz")),
        (IDX, (".gz", "", "", ".gz")),
        (tuple(n.replace("-idx", ".idx") for n in IDX), ("", "", "", "")),
        (tuple(n.replace("-idx", ".idx") for n in IDX), (".gz", ".gz", ".gz", ".gz")),
    ],
    ids=["raw", "gz", "mixed", "dot-named", "dot-named-gz"],
)
def test_idx_dir_round_trips_values_and_labels(
    tmp_path: Path, names: tuple[str, ...], suffixes: tuple[str, ...]
) -> None:
    x_tr, y_tr = tagged(40, 5, 9, seed=1), labels(40, 4)
    x_te, y_te = tagged(12, 5, 9, seed=2), labels(12, 4)[::-1].copy()
    root = write_idx_dir(tmp_path / "mnist", x_tr, y_tr, x_te, y_te, names, suffixes)
    s = load_images(DataConfig(str(root)))
    assert s.test is not None
    assert s.classes == ("0", "1", "2", "3")
    assert s.train.image_shape == (1, 5, 9)
    np.testing.assert_array_equal(s.train.x.numpy()[:, 0], x_tr)
    np.testing.assert_array_equal(s.train.y.numpy(), y_tr)
    np.testing.assert_array_equal(s.test.x.numpy()[:, 0], x_te)
    np.testing.assert_array_equal(s.test.y.numpy(), y_te)


def test_idx_labels_map_to_sorted_class_names(tmp_path: Path) -> None:
    y_tr = np.array([7, 2, 9, 2, 7, 9, 9, 2], dtype=np.uint8)
    y_te = np.array([9, 2, 7], dtype=np.uint8)
    root = write_idx_dir(tmp_path / "m", tagged(8), y_tr, tagged(3), y_te)
    s = load_images(DataConfig(str(root)))
    assert s.classes == ("2", "7", "9") and s.test is not None
    assert s.train.y.tolist() == [1, 0, 2, 0, 1, 2, 2, 0]
    assert s.test.y.tolist() == [2, 0, 1]


def test_read_idx_handles_big_endian_dtypes(tmp_path: Path) -> None:
    a = np.array([[-2, 300], [7, -32768]], dtype=">i2")
    f = tmp_path / "a.idx"
    f.write_bytes(bytes([0, 0, 0x0B, 2]) + np.array([2, 2], ">u4").tobytes() + a.tobytes())
    got = read_idx(f, 2)
    assert got.dtype.isnative and got.tolist() == a.tolist()


def test_write_idx_then_read_idx_is_exact_raw_and_gz(tmp_path: Path) -> None:
    x = tagged(5, 3, 4)
    for name in ("x.idx", "x.idx.gz"):
        write_idx(tmp_path / name, x)
        np.testing.assert_array_equal(read_idx(tmp_path / name, 3), x)
    assert (tmp_path / "x.idx.gz").read_bytes()[:2] == b"\x1f\x8b"  # really gzipped


def test_idx_dir_with_only_train_files_gets_a_held_out_test_split(tmp_path: Path) -> None:
    x, y = tagged(60, 4, 4), labels(60, 3)
    root = write_idx_dir(tmp_path / "m", x, y)
    s = load_images(DataConfig(str(root), test_fraction=0.25))
    assert s.test is not None
    assert_stratified_partition(ids_of(s.train), ids_of(s.test), y, 0.25)
    np.testing.assert_array_equal(s.train.y.numpy(), y[ids_of(s.train)])


# ---------------------------------------------------------------- Keras-style .npz


def test_npz_uint8_nhw_round_trips(tmp_path: Path) -> None:
    x_tr, y_tr, x_te, y_te = tagged(20, 4, 5), labels(20, 2), tagged(6, 4, 5, 3), labels(6, 2)
    f = tmp_path / "d.npz"
    np.savez(f, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    s = load_images(DataConfig(str(f)))
    assert s.test is not None and s.classes == ("0", "1")
    assert s.train.x.shape == (20, 1, 4, 5)
    np.testing.assert_array_equal(s.train.x.numpy()[:, 0], x_tr)
    np.testing.assert_array_equal(s.test.x.numpy()[:, 0], x_te)
    np.testing.assert_array_equal(s.test.y.numpy(), y_te)


def test_npz_nhw1_is_one_channel(tmp_path: Path) -> None:
    x = tagged(10, 4, 4)
    f = tmp_path / "d.npz"
    np.savez(f, x_train=x[..., None], y_train=labels(10, 2), x_test=x[:4, ..., None],
             y_test=labels(4, 2))  # fmt: skip
    s = load_images(DataConfig(str(f)))
    assert s.train.image_shape == (1, 4, 4)
    np.testing.assert_array_equal(s.train.x.numpy()[:, 0], x)


def test_npz_colour_nhwc_becomes_nchw(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (8, 4, 5, 3), dtype=np.uint8)
    f = tmp_path / "d.npz"
    np.savez(f, x_train=x, y_train=labels(8, 2), x_test=x[:2], y_test=labels(2, 2))
    s = load_images(DataConfig(str(f)))
    assert s.train.x.shape == (8, 3, 4, 5)
    np.testing.assert_array_equal(s.train.x.numpy(), x.transpose(0, 3, 1, 2))


def test_npz_float_in_0_1_is_scaled_to_0_255(tmp_path: Path) -> None:
    x = tagged(10, 4, 4)
    x[0, 1, 1], x[1, 1, 1] = 0, 255  # the ends of the range survive
    f = tmp_path / "d.npz"
    np.savez(f, x_train=(x / 255.0).astype(np.float32), y_train=labels(10, 2))
    s = load_images(DataConfig(str(f)))
    assert s.train.x.dtype == torch.uint8 and s.test is not None
    got = torch.cat([s.train.x, s.test.x]).numpy()[:, 0]
    got_ids = np.concatenate([ids_of(s.train), ids_of(s.test)])
    np.testing.assert_array_equal(got, x[got_ids])


def test_npz_one_hot_labels(tmp_path: Path) -> None:
    y = np.array([2, 0, 1, 2, 1, 0])
    f = tmp_path / "d.npz"
    np.savez(f, x_train=tagged(6), y_train=np.eye(3, dtype=np.float32)[y],
             x_test=tagged(3), y_test=np.eye(3)[[1, 2, 0]])  # fmt: skip
    s = load_images(DataConfig(str(f)))
    assert s.classes == ("0", "1", "2") and s.test is not None
    assert s.train.y.tolist() == y.tolist()
    assert s.test.y.tolist() == [1, 2, 0]


def test_npz_string_labels_map_to_sorted_class_names(tmp_path: Path) -> None:
    y = np.array(["dog", "cat", "bird", "cat", "dog", "bird"])
    f = tmp_path / "d.npz"
    np.savez(f, x_train=tagged(6), y_train=y, x_test=tagged(2), y_test=np.array(["dog", "bird"]))
    s = load_images(DataConfig(str(f)))
    assert s.classes == ("bird", "cat", "dog") and s.test is not None
    assert [s.classes[i] for i in s.train.y.tolist()] == y.tolist()
    assert [s.classes[i] for i in s.test.y.tolist()] == ["dog", "bird"]


def test_npz_without_test_arrays_gets_a_stratified_held_out_split(tmp_path: Path) -> None:
    x, y = tagged(90), labels(90, 3)
    f = tmp_path / "d.npz"
    np.savez(f, x_train=x, y_train=y)
    s = load_images(DataConfig(str(f), test_fraction=0.3, seed=5))
    assert s.test is not None
    assert_stratified_partition(ids_of(s.train), ids_of(s.test), y, 0.3)
    np.testing.assert_array_equal(s.test.y.numpy(), y[ids_of(s.test)])
    # Fixed by the seed: the same seed gives the same split, another seed another one.
    again = load_images(DataConfig(str(f), test_fraction=0.3, seed=5))
    other = load_images(DataConfig(str(f), test_fraction=0.3, seed=6))
    assert again.test is not None and other.test is not None
    assert ids_of(again.test).tolist() == ids_of(s.test).tolist()
    assert ids_of(other.test).tolist() != ids_of(s.test).tolist()


# ---------------------------------------------------------------- class folders


def gray(value: int, h: int = 6, w: int = 8) -> np.ndarray:
    a = np.full((h, w), value, dtype=np.uint8)
    a[0, 0] = 255 - value  # not constant, so a channel mix-up would show
    return a


def test_folders_train_and_test_with_grayscale_png(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for split, n in (("train", 3), ("test", 2)):
        for ci, cls in enumerate(("cat", "ant", "bee")):  # sorted: ant, bee, cat
            for i in range(n):
                save_image(root / split / cls / f"{i:03d}.png", gray(10 * ci + i + 1))
    (root / "train" / "ant" / "notes.txt").write_text("not an image")  # ignored
    (root / "train" / ".cache").mkdir()  # hidden folders are not classes
    s = load_images(DataConfig(str(root)))
    assert s.classes == ("ant", "bee", "cat") and s.test is not None
    assert s.train.image_shape == (1, 6, 8)  # all grayscale → one channel
    assert len(s.train) == 9 and len(s.test) == 6
    for got, n in ((s.train, 3), (s.test, 2)):
        for cls in s.classes:
            ci = ("cat", "ant", "bee").index(cls)
            rows = (got.y == s.classes.index(cls)).nonzero().flatten()
            assert len(rows) == n
            for row, i in zip(rows.tolist(), range(n), strict=True):
                np.testing.assert_array_equal(got.x[row, 0].numpy(), gray(10 * ci + i + 1))


def colour(rgb: tuple[int, int, int], h: int = 6, w: int = 8) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (h, w, 3)).copy()


def test_folders_with_a_colour_jpeg_are_three_channels(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    save_image(root / "train" / "a" / "0.png", gray(40))
    save_image(root / "train" / "a" / "1.png", gray(50))
    save_image(root / "train" / "b" / "0.jpg", colour((200, 30, 90)), quality=95)
    save_image(root / "train" / "b" / "1.jpg", colour((10, 220, 60)), quality=95)
    save_image(root / "test" / "b" / "0.jpg", colour((90, 90, 250)), quality=95)
    s = load_images(DataConfig(str(root)))
    assert s.train.image_shape == (3, 6, 8) and s.test is not None
    x = s.train.x.numpy().astype(int)
    # The grayscale PNG is repeated on all three channels, exactly.
    for c in range(3):
        np.testing.assert_array_equal(x[0, c], gray(40))
    # The JPEG keeps its colour (lossy, so within a few levels).
    assert np.abs(x[2].mean(axis=(1, 2)) - [200, 30, 90]).max() <= 4
    assert np.abs(s.test.x.numpy()[0].astype(int).mean(axis=(1, 2)) - [90, 90, 250]).max() <= 4


def test_folders_forced_channels(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    save_image(root / "train" / "a" / "0.png", gray(40))
    save_image(root / "train" / "b" / "0.png", colour((200, 30, 90)))
    save_image(root / "test" / "a" / "0.png", gray(70))
    one = load_images(DataConfig(str(root), channels=1))
    assert one.train.image_shape == (1, 6, 8)
    luma = round(0.299 * 200 + 0.587 * 30 + 0.114 * 90)
    assert abs(int(one.train.x[1, 0, 3, 3]) - luma) <= 1
    np.testing.assert_array_equal(one.train.x[0, 0].numpy(), gray(40))
    root2 = tmp_path / "gray"
    save_image(root2 / "train" / "a" / "0.png", gray(40))
    save_image(root2 / "train" / "b" / "0.png", gray(90))
    three = load_images(DataConfig(str(root2), channels=3))
    assert three.train.image_shape == (3, 6, 8)
    for c in range(3):
        np.testing.assert_array_equal(three.train.x[1, c].numpy(), gray(90))


def test_folders_resize_to_the_first_image_or_to_image_size(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    save_image(root / "train" / "a" / "0.png", gray(40, h=10, w=12))  # the first image
    save_image(root / "train" / "a" / "1.png", gray(50, h=5, w=5))
    save_image(root / "train" / "b" / "0.png", gray(60, h=20, w=7))
    save_image(root / "test" / "b" / "0.png", gray(70, h=3, w=30))
    s = load_images(DataConfig(str(root)))
    assert s.test is not None
    assert s.train.image_shape == s.test.image_shape == (1, 10, 12)
    np.testing.assert_array_equal(s.train.x[0, 0].numpy(), gray(40, h=10, w=12))  # not resized
    assert abs(float(s.train.x[1, 0, 2:8, 2:8].float().mean()) - 50) <= 1  # resized, same level
    sized = load_images(DataConfig(str(root), image_size=16))
    assert sized.test is not None
    assert sized.train.image_shape == sized.test.image_shape == (1, 16, 16)


def test_folders_without_train_dir_get_a_held_out_test_split(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    y = labels(30, 3)
    for i in range(30):
        img = np.zeros((4, 4), dtype=np.uint8)
        img[0, 0] = i  # ``tagged``'s index
        save_image(root / f"class{y[i]}" / f"{i:02d}.png", img)
    s = load_images(DataConfig(str(root), test_fraction=0.2))
    assert s.classes == ("class0", "class1", "class2") and s.test is not None
    assert_stratified_partition(ids_of(s.train), ids_of(s.test), y, 0.2)
    np.testing.assert_array_equal(s.test.y.numpy(), y[ids_of(s.test)])


# ---------------------------------------------------------------- shaping shared by all formats


def test_val_fraction_carves_a_stratified_val_split_from_train(tmp_path: Path) -> None:
    x, y = tagged(100), labels(100, 4)
    f = tmp_path / "d.npz"
    np.savez(f, x_train=x, y_train=y, x_test=tagged(8, seed=9), y_test=labels(8, 4))
    s = load_images(DataConfig(str(f), val_fraction=0.2))
    assert s.val is not None and s.test is not None
    assert_stratified_partition(ids_of(s.train), ids_of(s.val), y, 0.2)
    np.testing.assert_array_equal(s.val.y.numpy(), y[ids_of(s.val)])
    assert len(s.test) == 8  # the test split is not touched
    again = load_images(DataConfig(str(f), val_fraction=0.2))
    assert again.val is not None and torch.equal(again.val.x, s.val.x)
    assert load_images(DataConfig(str(f))).val is None


def test_image_size_resizes_every_split(tmp_path: Path) -> None:
    f = tmp_path / "d.npz"
    np.savez(f, x_train=tagged(40, 6, 10), y_train=labels(40, 2),
             x_test=tagged(6, 12, 12), y_test=labels(6, 2))  # fmt: skip
    s = load_images(DataConfig(str(f), image_size=8, val_fraction=0.25, channels=3))
    assert s.val is not None and s.test is not None
    for part in (s.train, s.val, s.test):
        assert part.image_shape == (3, 8, 8) and part.x.dtype == torch.uint8


def test_channel_stats_are_per_channel_mean_and_std_of_pixel_over_255(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = np.zeros((30, 5, 5, 3), dtype=np.uint8)
    x[..., 0] = 255
    x[..., 1] = rng.integers(0, 256, (30, 5, 5))
    x[..., 2] = 0
    f = tmp_path / "d.npz"
    np.savez(f, x_train=x, y_train=labels(30, 2), x_test=x[:4], y_test=labels(4, 2))
    s = load_images(DataConfig(str(f)))
    mean, std = s.channel_stats()
    assert len(mean) == len(std) == 3
    g = x[..., 1] / 255.0
    assert mean[0] == pytest.approx(1.0) and mean[2] == pytest.approx(0.0)
    assert mean[1] == pytest.approx(g.mean(), rel=1e-9)
    assert std[1] == pytest.approx(g.std(), rel=2e-3)
    assert 0 < std[0] <= 1e-3 and 0 < std[2] <= 1e-3  # constant channels: no division by zero


# ---------------------------------------------------------------- batching


def test_epoch_order_is_a_deterministic_permutation_per_seed_and_epoch() -> None:
    a = epoch_order(100, seed=3, epoch=0)
    assert a.dtype == torch.int64
    assert sorted(a.tolist()) == list(range(100))
    assert torch.equal(a, epoch_order(100, seed=3, epoch=0))
    assert not torch.equal(a, epoch_order(100, seed=3, epoch=1))
    assert not torch.equal(a, epoch_order(100, seed=4, epoch=0))
    assert not torch.equal(a, torch.arange(100))
    assert torch.equal(epoch_order(7, seed=3, epoch=5, shuffle=False), torch.arange(7))


@pytest.mark.parametrize(
    ("n", "bs", "drop_last", "sizes"),
    [
        (10, 3, False, [3, 3, 3, 1]),
        (10, 3, True, [3, 3, 3]),
        (9, 3, False, [3, 3, 3]),
        (9, 3, True, [3, 3, 3]),
        (2, 5, False, [2]),
        (2, 5, True, []),
        (0, 4, False, []),
    ],
)
def test_batch_slices_cover_the_order_once(
    n: int, bs: int, drop_last: bool, sizes: list[int]
) -> None:
    slices = batch_slices(n, bs, drop_last=drop_last)
    covered = [i for s in slices for i in range(n)[s]]
    assert [len(range(n)[s]) for s in slices] == sizes
    assert covered == list(range(sum(sizes)))  # in order, each index once, no gaps


# ---------------------------------------------------------------- augmentation


@pytest.fixture(scope="module")
def blobs() -> torch.Tensor:
    """(8, 1, 28, 28) uint8: a bright off-centre square per image."""
    x = torch.zeros(8, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 6:16, 9:20] = 200
    return x


def test_random_affine_keeps_shape_and_range(blobs: torch.Tensor) -> None:
    out = random_affine(blobs, seed=0, step=0)
    assert out.shape == blobs.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 255.0
    colour3 = random_affine(blobs.expand(-1, 3, -1, -1).contiguous(), seed=0, step=0)
    assert colour3.shape == (8, 3, 28, 28)


def test_random_affine_is_deterministic_per_seed_and_step(blobs: torch.Tensor) -> None:
    a = random_affine(blobs, seed=0, step=0)
    assert torch.equal(a, random_affine(blobs, seed=0, step=0))
    assert not torch.allclose(a, random_affine(blobs, seed=0, step=1))
    assert not torch.allclose(a, random_affine(blobs, seed=1, step=0))


def test_random_affine_is_a_small_transform_not_the_identity(blobs: torch.Tensor) -> None:
    out = random_affine(blobs, seed=0, step=0)
    x = blobs.float()
    assert (out - x).abs().mean() > 1.0  # moved
    # Each image draws its own transform, even when the inputs are equal.
    assert not torch.allclose(out[0], out[1])
    # Small: the square stays mostly where it was and keeps roughly its mass.
    overlap = (out * x).sum((1, 2, 3)) / (x * x).sum((1, 2, 3))
    assert bool((overlap > 0.5).all()), overlap
    mass = out.sum((1, 2, 3)) / x.sum((1, 2, 3))
    assert bool(((mass > 0.7) & (mass < 1.4)).all()), mass


@pytest.mark.parametrize(("h", "w"), [(28, 28), (5, 9)])
def test_affine_grid_is_pytorchs(h: int, w: int) -> None:
    from dlhpc.data.augment import affine_grid

    theta = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(0))
    want = torch.nn.functional.affine_grid(theta, [6, 3, h, w], align_corners=False)
    torch.testing.assert_close(affine_grid(theta, h, w), want, rtol=0, atol=2e-6)


# ---------------------------------------------------------------- decode_image_files


def test_decode_image_files_gives_nhwc_uint8_at_the_requested_size(tmp_path: Path) -> None:
    files = [
        save_image(tmp_path / "a.png", gray(30, h=9, w=11)),
        save_image(tmp_path / "b.png", gray(90, h=20, w=4)),
        save_image(tmp_path / "c.jpg", colour((250, 0, 0), h=5, w=5), quality=95),
    ]
    x = decode_image_files(files, 3, 9, 11)
    assert x.shape == (3, 9, 11, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[0, :, :, 1], gray(30, h=9, w=11))  # exact size: untouched
    assert x[2, 4, 5, 0] > 230 and x[2, 4, 5, 1] < 25  # red stays red
    g = decode_image_files([str(f) for f in files], 1, 7, 7)
    assert g.shape == (3, 7, 7, 1) and g.dtype == np.uint8
    assert decode_image_files([], 3, 9, 11).shape == (0, 9, 11, 3)
