"""Sample-quality metrics on *domain features*: FID, KID, class accuracy, memorisation.

Features come from the data set's reference classifier (:func:`diffusion_jax.classifier.reference`):
the shipped weights, so every score in the project uses the same network.

* **Domain-feature FID is comparable only within this project** (same classifier
  config, data and key). It is not the FID of papers, which uses Inception-v3 pool
  features, so the numbers live on a different scale.
* **FID is biased upward for small sample counts**: covariance-estimation noise adds a
  positive term shrinking roughly like 1/N. Compare at equal N against the same
  reference set. KID is unbiased, so it is the better number for small N.
* The nearest-neighbour distance is a memorisation check in pixel space ([-1, 1]
  images); ``nn_ratio`` well below 1 means samples sit closer to training images than
  training images sit to each other: likely copies.
"""

from __future__ import annotations

import functools
import warnings

import jax
import numpy as np

from .classifier import Classifier, features_and_logits, reference, train_classifier
from ._checks import check_int, check_key, check_labels
from .data import IMAGE_SHAPES, NAMES, as_float, check_images, num_classes

__all__ = ["Classifier", "train_classifier", "features_and_logits", "reference", "feature_statistics",
           "frechet_distance", "fid", "kid", "class_accuracy", "nearest_neighbour_distances", "evaluate",
           "score", "SCORE_SEED", "within_class_spread"]


def feature_statistics(features):
    """Mean ``(D,)`` and covariance ``(D, D)`` (ddof=1) of ``(N, D)`` features, float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need (N >= 2, D) features, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), as the reference FID code does it:
    if ``sqrtm`` of the product is not finite (singular), ``eps`` is added to both
    diagonals; imaginary parts (diagonal within 1e-3 of 0) are dropped, larger raise."""
    try:
        import scipy.linalg  # an optional dependency: pip install 'diffusion-jax[eval]'
    except ImportError as err:
        raise ImportError("FID needs scipy: pip install 'diffusion-jax[eval]' (or scipy)") from err
    mu1, mu2 = (np.atleast_1d(np.asarray(m, np.float64)) for m in (mu1, mu2))
    s1, s2 = (np.atleast_2d(np.asarray(s, np.float64)) for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size,) * 2:
        raise ValueError(f"shapes differ: mu {mu1.shape} {mu2.shape}, sigma {s1.shape} {s2.shape}")
    with warnings.catch_warnings():  # as the reference's disp=False: no "singular" warning
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(s1)) * eps
            covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm(sigma1 sigma2) has imaginary part "
                             f"{np.max(np.abs(covmean.imag)):.3g}: are both covariances PSD?")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fid(features_a, features_b) -> float:
    """Fréchet distance between Gaussians fitted to two ``(N, D)`` feature sets."""
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _subsets(keys, n: int, m: int):
    """``(S, m)`` row indices: for each key, the first m of a permutation of ``range(n)``."""
    return jax.vmap(lambda k: jax.random.permutation(k, n)[:m])(keys)


def kid(key, features_a, features_b, num_subsets: int = 100, subset_size: int = 1000):
    """Kernel Inception Distance: ``(mean, std)`` of unbiased MMD^2 over random subsets.

    Kernel k(x, y) = (x.y / d + 1)^3. Each subset takes ``subset_size`` = m rows of each
    set without replacement (drawn with ``key``), then
    MMD^2 = [sum_{i!=j} k(a_i,a_j) + sum_{i!=j} k(b_i,b_j)] / (m(m-1)) - 2 mean k(a_i,b_j).
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need (N, D) features of equal D, got {a.shape} and {b.shape}")
    m = int(subset_size)
    if not 2 <= m <= min(len(a), len(b)):
        raise ValueError(f"subset_size must be in 2..{min(len(a), len(b))} (the smaller "
                         f"set's size), got {subset_size}")
    keys = jax.random.split(key, (num_subsets, 2))
    rows_a = np.asarray(_subsets(keys[:, 0], len(a), m))  # (S, m)
    rows_b = np.asarray(_subsets(keys[:, 1], len(b), m))
    kernel = lambda x, y: (x @ y.T / x.shape[1] + 1.0) ** 3
    values = np.empty(num_subsets)
    for s in range(num_subsets):
        x, y = a[rows_a[s]], b[rows_b[s]]
        kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
        values[s] = ((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                     - 2.0 * kxy.sum() / (m * m))
    return float(values.mean()), float(values.std())


def class_accuracy(logits, intended_labels) -> float:
    """Fraction of rows whose argmax logit is the intended class."""
    logits, labels = np.asarray(logits), np.asarray(intended_labels)
    if len(logits) != len(labels):
        raise ValueError(f"{len(logits)} rows of logits but {len(labels)} labels")
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def nearest_neighbour_distances(samples, train_images, *, batch: int = 256,
                                train_batch: int = 4096, exclude=None):
    """``(distance (N,), index (N,))`` of each sample's nearest training image.

    L2 in pixel space on [-1, 1] floats (uint8 is converted), over ``batch`` x
    ``train_batch`` chunks, so memory stays bounded. ``exclude`` (optional ``(N,)`` ints)
    names one training index per sample to skip, e.g. the sample itself. The search uses
    float32 ``|a|^2 + |b|^2 - 2 a.b``; the winner's distance is recomputed exactly in
    float64, so an exact copy gives 0.
    """
    a, m = as_float(samples).reshape(len(samples), -1), len(train_images)
    if m == 0 or a.shape[1] != int(np.prod(np.shape(train_images)[1:])):
        raise ValueError(f"samples {np.shape(samples)} and train images "
                         f"{np.shape(train_images)}: pixel counts differ or no train images")
    best, index = np.full(len(a), np.inf, np.float32), np.zeros(len(a), np.int64)
    for lo in range(0, m, train_batch):
        b = as_float(train_images[lo:lo + train_batch]).reshape(-1, a.shape[1])  # (Mc, D)
        b_sq = np.square(b).sum(1)
        for s in range(0, len(a), batch):
            x = a[s:s + batch]
            d2 = np.square(x).sum(1)[:, None] + b_sq[None] - 2.0 * (x @ b.T)  # (Bc, Mc)
            if exclude is not None:
                skip = np.asarray(exclude)[s:s + batch] - lo
                rows = np.flatnonzero((skip >= 0) & (skip < len(b)))
                d2[rows, skip[rows]] = np.inf
            j = np.argmin(d2, axis=1)
            d = d2[np.arange(len(x)), j]
            better = d < best[s:s + batch]
            best[s:s + batch][better] = d[better]
            index[s:s + batch][better] = j[better] + lo
    nearest = as_float(np.asarray(train_images)[index]).reshape(len(a), -1)
    return np.sqrt(np.square(a.astype(np.float64) - nearest).sum(1)), index


def evaluate(key, generated_images, intended_labels, real_images, train_images, classifier, *,
             kid_subsets: int = 100, kid_subset_size: int = 1000,
             nn_reference: int = 500, batch_size: int = 500, value_range: str | None = None) -> dict:
    """FID and KID against ``real_images`` (held-out data), class accuracy of the samples
    (NaN if ``intended_labels`` is None), and the nearest-training-image distance with
    its ratio to the train-to-train one (``nn_reference`` random training images, each
    against the rest). ``key`` draws the KID subsets and those rows. Also returns
    ``nn_train_distance_mean``, the ratio's denominator. With at most ``kid_subset_size``
    images per set every KID subset is the whole set: kid_std is 0.
    Draw ``real_images`` at random, not the first N of a class-sorted array.

    Checked before any work (:func:`diffusion_jax.data.check_images`): the images must
    share ``real_images``' ``(H, W, C)``, be finite and lie in ``value_range`` ("signed"
    [-1, 1], "unit" [0, 1], "byte" [0, 255]; uint8 is always bytes). ``None`` means
    [-1, 1] and refuses a float set without one negative value, which is almost surely
    [0, 1] or [0, 255] data scored on the wrong scale."""
    check_key(key)
    real_shape = np.shape(real_images)
    if len(real_shape) != 4 or real_shape[0] < 2:
        raise ValueError(f"real_images must have shape (N >= 2, H, W, C), got {real_shape}")
    generated_images = check_images(generated_images, name="generated_images", value_range=value_range,
                                    shape=real_shape[1:], min_count=2)
    if intended_labels is not None:
        intended_labels = check_labels(intended_labels, None, name="intended_labels", allow_null=False,
                                       length=len(generated_images))
    fg, lg = features_and_logits(classifier, generated_images, batch_size=batch_size)
    fr, _ = features_and_logits(classifier, real_images, batch_size=batch_size)
    kid_mean, kid_std = kid(jax.random.fold_in(key, 0), fg, fr, kid_subsets, min(kid_subset_size, len(fg), len(fr)))
    nn, _ = nearest_neighbour_distances(generated_images, train_images)
    ref = np.sort(np.asarray(jax.random.permutation(jax.random.fold_in(key, 1),
                                                    len(train_images)))[:nn_reference])
    ref_nn, _ = nearest_neighbour_distances(np.asarray(train_images)[ref], train_images,
                                            exclude=ref)
    acc = float("nan") if intended_labels is None else class_accuracy(lg, intended_labels)
    return dict(fid=fid(fg, fr), kid_mean=kid_mean, kid_std=kid_std, accuracy=acc,
                nn_distance_mean=float(nn.mean()), nn_ratio=float(nn.mean() / ref_nn.mean()),
                nn_train_distance_mean=float(ref_nn.mean()),
                num_generated=len(fg), num_real=len(fr))


#: The seed of the key every reported score uses (demo, ``diffusion-jax eval``, the shipped
#: models' manifest): with it, the same file always gets the same numbers.
SCORE_SEED = 3


def score(key, images, labels, dataset: str, *, kid_subset_size: int = 250, value_range: str | None = None) -> dict:
    """THE score of a set of samples of ``dataset``: :func:`evaluate` against the held-out
    split and the training split with the data set's reference classifier.

    The demo and ``diffusion-jax eval`` both call this, so the same file gets the same
    numbers. ``images``: ``(N >= 2, H, W, C)`` with the data set's ``(H, W, C)``, in
    [-1, 1] (or uint8; other ranges with ``value_range``, as in :func:`evaluate`);
    ``labels``: intended classes ``(N,)`` in ``[0, 9]``, or None. Everything is checked
    before the data set or the classifier is loaded.
    """
    from .data import load_dataset

    check_key(key)
    if dataset not in NAMES:
        raise ValueError(f"dataset must be one of {list(NAMES)}, got {dataset!r}")
    images = check_images(images, value_range=value_range, shape=IMAGE_SHAPES[dataset], min_count=2)
    if labels is not None:
        labels = check_labels(labels, num_classes(dataset), allow_null=False, length=len(images))
    kid_subset_size = check_int(kid_subset_size, name="kid_subset_size", min=2)
    test, train = load_dataset(dataset, "test"), load_dataset(dataset, "train")
    return evaluate(key, images, labels, test.images, train.images, reference(dataset),
                    kid_subset_size=min(kid_subset_size, len(images), len(test.images)), value_range="signed")


def within_class_spread(features, labels, num_classes: int | None = None) -> np.ndarray:
    """Mean pairwise Euclidean distance between the ``(N, D)`` features of each class.

    Returns a ``(K,)`` float64 array (K = ``num_classes`` or ``max(labels) + 1``), NaN for
    a class with fewer than two rows. Lower spread at equal fidelity = less diverse
    samples: the quantity classifier-free guidance trades for class accuracy.
    """
    x = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (len(x),):
        raise ValueError(f"need (N, D) features and (N,) labels, got {x.shape} and {labels.shape}")
    k = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    out = np.full(k, np.nan)
    for c in range(k):
        f = x[labels == c]  # (n_c, D)
        m = len(f)
        if m < 2:
            continue
        sq = np.square(f).sum(1)
        d2 = np.maximum(sq[:, None] + sq[None] - 2.0 * f @ f.T, 0.0)  # (n_c, n_c)
        out[c] = np.sqrt(d2)[np.triu_indices(m, 1)].mean()
    return out
