"""The commands that read files: eval (a user's .npz of samples) and data (the data sets)."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

from diffusion_jax.cli._common import PROG, UsageError, one_line, usage

# ------------------------------------------------------------------------------------ eval

VALUE_RANGE_CHOICES = ("auto", "signed", "unit", "byte")


def eval_flags(p):
    from diffusion_jax.data import NAMES

    p.add_argument("samples", metavar="SAMPLES",
                   help="an .npz holding 'images' (N, H, W, C) and optionally 'labels' (N,), the intended "
                        "classes (what `diffusion-jax sample` and `demo` write)")
    p.add_argument("--dataset", default="mnist", choices=NAMES,
                   help="the data set the samples imitate; scored against its held-out split with its "
                        "reference classifier (default: %(default)s)")
    p.add_argument("--value-range", default="auto", choices=VALUE_RANGE_CHOICES,
                   help="pixel range of float images: signed = [-1, 1] (what the models produce), unit = "
                        "[0, 1], byte = [0, 255]; auto = signed, or unit/byte with a note when no value is "
                        "negative. Integer images are always byte (default: %(default)s)")


def load_samples(path_text: str, dataset: str, value_range: str):
    """``(images in [-1, 1], labels or None)`` from the user's .npz, every problem a UsageError."""
    import zipfile

    import numpy as np

    from diffusion_jax import data
    from diffusion_jax._checks import check_labels

    path = pathlib.Path(path_text)
    what = f"SAMPLES {path_text!r}"
    if not path.exists():
        raise UsageError(f"{what}: no such file")
    if path.is_dir():
        raise UsageError(f"{what} is a folder; expected an .npz file such as outputs/sample/samples.npz")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{what} cannot be read (permission denied)")
    if not zipfile.is_zipfile(path):
        kind = "a .npy array" if path.read_bytes()[:6] == b"\x93NUMPY" else "not an .npz archive"
        raise UsageError(f"{what} is {kind}; expected an .npz with an 'images' array "
                         "(np.savez(path, images=..., labels=...))")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "images" not in f.files:
                raise UsageError(f"{what} has no 'images' array (it holds {sorted(f.files)})")
            images = f["images"]
            labels = f["labels"] if "labels" in f.files else None
    except UsageError:
        raise
    except ValueError as err:  # object (pickled) arrays are refused by allow_pickle=False
        raise UsageError(f"{what} holds an array that needs unpickling, which is never done here ({one_line(err)})") from err
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise UsageError(f"{what} is a damaged .npz ({one_line(err)})") from err
    guessed = value_range == "auto" and np.issubdtype(np.asarray(images).dtype, np.floating)
    chosen = data.guess_value_range(images) if value_range == "auto" else value_range
    with usage():
        images = data.check_images(images, name=f"{path_text}: images", value_range=chosen,
                                   shape=data.IMAGE_SHAPES[dataset], min_count=2, range_name="--value-range")
        if labels is not None:
            labels = check_labels(labels, data.num_classes(dataset), name=f"{path_text}: labels", allow_null=False,
                                  length=len(images))
    if guessed and chosen != "signed":
        lo, hi = data.VALUE_RANGES[chosen]
        print(f"{PROG} eval: note: {path_text}: the float images have no negative value, so they are taken as "
              f"{chosen} pixels ({lo:g}..{hi:g}) and mapped to [-1, 1]; --value-range signed scores them as they are",
              file=sys.stderr)
    return images, labels


def run_eval(args):
    images, labels = load_samples(args.samples, args.dataset, args.value_range)
    import jax
    import numpy as np

    from diffusion_jax import metrics

    scores = metrics.score(jax.random.key(metrics.SCORE_SEED), images, labels, args.dataset, value_range="signed")
    print(json.dumps({k: float(v) if isinstance(v, (float, np.floating)) else v for k, v in scores.items()}, indent=1))


# ------------------------------------------------------------------------------------ data


def data_flags(p):
    from diffusion_jax.data import NAMES

    p.add_argument("--dataset", default=None, choices=NAMES,
                   help="report only this data set (then the exit status is 1 if a split is missing; "
                        "default: all of them)")
    p.add_argument("--name", dest="dataset", choices=NAMES, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def run_data(args):
    from diffusion_jax import data

    missing = False
    for name in [args.dataset] if args.dataset else data.NAMES:
        for split in data.SPLITS:
            try:
                ds = data.load_dataset(name, split)
                print(f"{name:14s} {split:5s} {len(ds):6d} images {ds.images.shape[1:]}  from {ds.source}")
            except FileNotFoundError as err:
                missing = True
                print(f"{name:14s} {split:5s} NOT FOUND\n{err}\n")
    return 1 if missing and args.dataset else 0


