"""Tests for diffusion_jax.metrics: FID/KID against closed forms and direct loops,
nearest-neighbour search against brute force, the classifier and its parameter cache.

Nothing here trains the real MNIST classifier: models are tiny and data synthetic.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest
from flax import nnx

from diffusion_jax import classifier, metrics
from diffusion_jax.data import to_float
from diffusion_jax.classifier import load_params, save_params
from diffusion_jax.metrics import (Classifier, class_accuracy, evaluate, features_and_logits,
                                   fid, frechet_distance, kid, nearest_neighbour_distances, train_classifier)

TINY = dict(widths=(4, 8), strides=(2, 2), feature_dim=8)  # a classifier that compiles fast


def random_orthogonal(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def tiny_data(n=40, shape=(8, 8, 1), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, *shape), dtype=np.uint8),
            rng.integers(0, 10, n).astype(np.int32))


# ---------------------------------------------------------------- Fréchet distance / FID


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    s1, s2 = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_commuting_covariances():
    rng = np.random.default_rng(1)
    q = random_orthogonal(rng, 5)  # shared eigenvectors: the covariances commute
    a, b = rng.uniform(0.1, 2.0, 5), rng.uniform(0.1, 2.0, 5)
    mu1, mu2 = rng.standard_normal(5), rng.standard_normal(5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("m1, s1, m2, s2", [(0.0, 1.0, 0.0, 1.0), (1.0, 2.0, -0.5, 0.3),
                                            (3.0, 0.1, 3.0, 5.0)])
def test_frechet_distance_1d_gaussians(m1, s1, m2, s2):
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2.
    got = frechet_distance(np.array([m1]), np.array([[s1 ** 2]]), np.array([m2]),
                           np.array([[s2 ** 2]]))
    assert got == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, abs=1e-12)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_fid_self_zero_and_symmetric():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((400, 16)) @ rng.standard_normal((16, 16))
    b = rng.standard_normal((300, 16)) * 1.5 + 0.3
    assert abs(fid(a, a)) < 1e-8
    assert fid(a, b) == pytest.approx(fid(b, a), rel=1e-9)
    assert fid(a, b) > 1.0


def test_fid_grows_with_mean_shift_squared():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((500, 8))
    direction = rng.standard_normal(8)
    for scale in (0.1, 0.5, 1.0, 3.0):
        shift = scale * direction
        # Shifting every row leaves the covariance unchanged: FID is exactly |shift|^2.
        assert fid(a, a + shift) == pytest.approx(shift @ shift, rel=1e-6, abs=1e-9)


def test_fid_singular_covariance_is_finite():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((10, 32)), rng.standard_normal((12, 32))  # N < D: singular
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # handled quietly, as the reference does
        value = fid(a, b)
    assert np.isfinite(value) and value > 0
    assert abs(fid(a, a)) < 1e-3


# ---------------------------------------------------------------- KID


def direct_mmd2(x, y):
    """Unbiased MMD^2 with the cubic kernel, written as a plain double loop."""
    m, d = len(x), x.shape[1]
    k = lambda u, v: (float(np.dot(u, v)) / d + 1.0) ** 3
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_double_loop():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((9, 3)), rng.standard_normal((9, 3)) + 0.4
    # One subset holding every row: MMD^2 does not depend on the row order.
    mean, std = kid(jax.random.key(0), x, y, num_subsets=1, subset_size=9)
    assert mean == pytest.approx(direct_mmd2(x, y), rel=1e-10)
    assert std == 0.0


def test_kid_same_distribution_near_zero_and_shift_positive():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((600, 16)), rng.standard_normal((600, 16))
    mean, std = kid(jax.random.key(1), a, b, num_subsets=50, subset_size=200)
    assert abs(mean) < 3 * std
    mean_shift, std_shift = kid(jax.random.key(1), a, b + 1.0, num_subsets=50, subset_size=200)
    assert mean_shift > 10 * std_shift and mean_shift > 100 * abs(mean)


def test_kid_key_reproducible_and_checked():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((50, 4)), rng.standard_normal((60, 4))
    assert kid(jax.random.key(3), a, b, 5, 20) == kid(jax.random.key(3), a, b, 5, 20)
    assert kid(jax.random.key(3), a, b, 5, 20) != kid(jax.random.key(4), a, b, 5, 20)
    with pytest.raises(ValueError, match="subset_size"):
        kid(jax.random.key(0), a, b, 5, 51)


def test_class_accuracy():
    logits = np.eye(4)[[0, 1, 2, 3, 0]]  # argmax 0 1 2 3 0
    assert class_accuracy(logits, [0, 1, 2, 0, 0]) == pytest.approx(0.8)


# ---------------------------------------------------------------- nearest neighbours


def brute_force_nn(samples, train):
    a, b = samples.reshape(len(samples), -1), train.reshape(len(train), -1)
    dist = np.sqrt(((a[:, None, :].astype(np.float64) - b[None]) ** 2).sum(-1))  # (N, M)
    return dist.min(1), dist.argmin(1)


def test_nearest_neighbour_matches_brute_force_and_finds_copies():
    rng = np.random.default_rng(8)
    train = rng.uniform(-1, 1, (53, 6, 6, 1)).astype(np.float32)
    samples = rng.uniform(-1, 1, (21, 6, 6, 1)).astype(np.float32)
    samples[4] = train[17]  # an exact copy
    dist, idx = nearest_neighbour_distances(samples, train)
    ref_dist, ref_idx = brute_force_nn(samples, train)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-6)
    assert dist[4] == 0.0 and idx[4] == 17
    chunked = nearest_neighbour_distances(samples, train, batch=4, train_batch=7)
    np.testing.assert_array_equal(chunked[1], idx)
    np.testing.assert_allclose(chunked[0], dist, rtol=0, atol=0)


def test_nearest_neighbour_uint8_and_exclude_self():
    images, _ = tiny_data(30)
    dist, idx = nearest_neighbour_distances(images, images, batch=8, train_batch=11,
                                            exclude=np.arange(30))
    x = to_float(images).reshape(30, -1).astype(np.float64)
    full = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    np.fill_diagonal(full, np.inf)
    np.testing.assert_array_equal(idx, full.argmin(1))
    np.testing.assert_allclose(dist, full.min(1), rtol=1e-9)
    with pytest.raises(ValueError, match="pixel counts"):
        nearest_neighbour_distances(images, images[:, :4])


# ---------------------------------------------------------------- classifier and cache


def shapes(model, x):
    """Output shapes of ``model(x)`` and ``model.features(x)``, traced without compiling."""
    graphdef, params = nnx.split(model)
    logits = jax.eval_shape(lambda p: nnx.merge(graphdef, p)(x), params)
    feats = jax.eval_shape(lambda p: nnx.merge(graphdef, p).features(x), params)
    return logits.shape, feats.shape


def test_classifier_shapes():
    model = nnx.eval_shape(lambda: Classifier((28, 28, 1), 10, rngs=nnx.Rngs(0)))  # abstract
    assert shapes(model, np.zeros((3, 28, 28, 1), np.float32)) == ((3, 10), (3, 128))
    small = Classifier((9, 7, 3), 5, **TINY, rngs=nnx.Rngs(0))  # odd sizes: ceil strides
    assert shapes(small, np.zeros((2, 9, 7, 3), np.float32)) == ((2, 5), (2, 8))
    feats, logits = features_and_logits(small, np.zeros((4, 9, 7, 3), np.uint8))
    assert feats.shape == (4, 8) and logits.shape == (4, 5) and feats.dtype == np.float64


def test_features_and_logits_batching_and_input_types():
    images, _ = tiny_data(23)
    model = Classifier((8, 8, 1), 10, **TINY, rngs=nnx.Rngs(1))
    f1, l1 = features_and_logits(model, images, batch_size=100)
    f2, l2 = features_and_logits(nnx.split(model), to_float(images), batch_size=5)  # pads
    np.testing.assert_allclose(f1, f2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(l1, l2, rtol=1e-5, atol=1e-6)


def test_augment_identity_and_shape():
    x = np.random.default_rng(9).uniform(-1, 1, (3, 8, 8, 2)).astype(np.float32)
    same = classifier._augment(jax.random.key(0), x, rotate=0.0, zoom=0.0, shift=0.0)
    np.testing.assert_allclose(same, x, atol=1e-6)
    assert classifier._augment(jax.random.key(0), x).shape == x.shape


def test_save_load_round_trip(tmp_path):
    graphdef, params = nnx.split(Classifier((8, 8, 1), 10, **TINY, rngs=nnx.Rngs(2)))
    path = tmp_path / "c.npz"
    save_params(path, params, {"a": 1})
    loaded = load_params(path, params, {"a": 1})
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(params)
    for x, y in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not list(tmp_path.glob(".*"))  # the temp file was renamed away
    with pytest.raises(ValueError, match="another config"):
        load_params(path, params, {"a": 2})
    _, other = nnx.split(Classifier((8, 8, 1), 10, widths=(4, 16), strides=(2, 2),
                                    feature_dim=8, rngs=nnx.Rngs(2)))
    with pytest.raises(ValueError, match="wrong shape"):
        load_params(path, other)


def test_train_classifier_caches_and_reloads(tmp_path, monkeypatch):
    data = tiny_data()
    kwargs = dict(steps=2, batch_size=8, cache_dir=tmp_path, progress=False, **TINY)
    graphdef, params = train_classifier(jax.random.key(0), data, **kwargs)
    files = list(tmp_path.glob("custom-*.npz"))
    assert len(files) == 1

    def no_training(*args, **kw):
        raise AssertionError("trained although a cache file exists")

    with monkeypatch.context() as m:
        m.setattr(classifier, "_fit", no_training)
        graphdef2, params2 = train_classifier(jax.random.key(0), data, **kwargs)
    for x, y in zip(jax.tree_util.tree_leaves(params2), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    feats, logits = features_and_logits((graphdef2, params2), data[0])
    assert feats.shape == (40, 8) and logits.shape == (40, 10)
    # A different key or setting is a different cache entry, trained afresh.
    train_classifier(jax.random.key(1), data, **kwargs)
    train_classifier(jax.random.key(0), data, **{**kwargs, "steps": 3})
    assert len(list(tmp_path.glob("custom-*.npz"))) == 3


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_train_classifier_retrains_over_corrupt_cache(tmp_path, monkeypatch, damage):
    data = tiny_data()
    kwargs = dict(steps=2, batch_size=8, cache_dir=tmp_path, progress=False, **TINY)
    _, params = train_classifier(jax.random.key(0), data, **kwargs)
    (path,) = tmp_path.glob("*.npz")
    raw = path.read_bytes()
    path.write_bytes(b"not a zip file" if damage == "garbage" else raw[: len(raw) // 2])
    calls = []
    real_fit = classifier._fit
    monkeypatch.setattr(classifier, "_fit", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    with pytest.warns(UserWarning, match="unreadable classifier cache"):
        _, again = train_classifier(jax.random.key(0), data, **kwargs)
    assert calls == [1]
    for x, y in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # same key: same result
    assert path.read_bytes() != b"not a zip file" and len(path.read_bytes()) == len(raw)


def test_evaluate_on_copies_of_training_data():
    train, labels = tiny_data(60)
    model = Classifier((8, 8, 1), 10, **TINY, rngs=nnx.Rngs(3))
    real, _ = tiny_data(50, seed=1)
    out = evaluate(jax.random.key(0), train[:30], labels[:30], real, train, model, kid_subsets=5,
                   kid_subset_size=20, nn_reference=25)
    assert set(out) >= {"fid", "kid_mean", "kid_std", "accuracy", "nn_distance_mean",
                        "nn_ratio", "num_generated", "num_real"}
    assert out["nn_distance_mean"] == 0.0 and out["nn_ratio"] == 0.0  # copies: memorised
    assert out["nn_train_distance_mean"] > 0
    assert out["num_generated"] == 30 and out["num_real"] == 50
    _, logits = features_and_logits(model, train[:30])
    assert out["accuracy"] == class_accuracy(logits, labels[:30])
    assert np.isfinite(out["fid"]) and np.isfinite(out["kid_mean"])
    assert np.isnan(evaluate(jax.random.key(0), real, None, real, train, model, kid_subsets=2,
                             kid_subset_size=10, nn_reference=10)["accuracy"])
