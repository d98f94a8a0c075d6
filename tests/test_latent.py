"""Latent plumbing: cached VAE training, parameter fingerprints, scaled codec, latent cache."""

import dataclasses
import json
import warnings

import jax
import numpy as np
import pytest

from diffusion_jax import paths, latent
from diffusion_jax.data import to_float
from diffusion_jax.latent import (
    LatentCodec,
    VAETrainConfig,
    encode_dataset,
    fingerprint,
    make_codec,
    train_vae,
)
from diffusion_jax.models.vae import VAEConfig

TINY = VAEConfig(in_channels=1, latent_channels=4, channels=(8, 16, 16), input_size=28)  # 7x7x4
CONFIG = VAETrainConfig(steps=30, batch_size=32, lr=3e-3, kl_weight=1e-4, seed=0)


def shapes(n=64, seed=0):
    """White filled discs (even rows) and squares (odd rows) of random size and place."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    out = np.zeros((n, 28, 28, 1), np.uint8)
    for i in range(n):
        cy, cx, r = rng.integers(8, 20), rng.integers(8, 20), rng.integers(3, 8)
        square = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        out[i, ..., 0] = 255 * (square if i % 2 else (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)
    return out


def runs(cache_dir):
    return sorted(cache_dir.glob("vae-custom-*"))


@pytest.fixture(scope="module")
def images():
    return shapes()


@pytest.fixture(scope="module")
def trained(images, tmp_path_factory):
    cache = tmp_path_factory.mktemp("vae_cache")
    graphdef, params = train_vae((images, None), TINY, CONFIG, cache_dir=cache, progress=False)
    return graphdef, params, cache


@pytest.fixture(scope="module")
def codec(trained, images):
    graphdef, params, _ = trained
    return make_codec(graphdef, params, images)


def perturbed(params):
    """``params`` with one element of one leaf changed."""
    leaves, treedef = jax.tree.flatten(params)
    leaves = [np.asarray(x).copy() for x in leaves]
    leaves[3].flat[0] += 1e-3
    return jax.tree.unflatten(treedef, leaves)


# ----------------------------------------------------------------------------- train_vae
def test_train_vae_reduces_the_loss_and_records_it(trained):
    *_, cache = trained
    (run,) = runs(cache)
    meta = json.loads(next(run.glob("step_*/meta.json")).read_text())
    history = meta["history"]
    assert [h["step"] for h in history][-1] == CONFIG.steps
    assert meta["train"] == dataclasses.asdict(CONFIG) and meta["num_images"] == 64
    first, last = history[0], history[-1]
    assert np.isfinite(last["loss"])
    assert last["recon"] < 0.3 * first["recon"], (first, last)


def test_train_vae_second_call_loads_and_other_config_retrains(trained, images, monkeypatch):
    graphdef, params, cache = trained
    calls = []
    real_loop = latent._train_loop

    def counting_loop(*args, **kwargs):
        calls.append(args[3])
        return real_loop(*args, **kwargs)

    monkeypatch.setattr(latent, "_train_loop", counting_loop)
    graphdef2, params2 = train_vae((images, None), TINY, CONFIG, cache_dir=cache, progress=False)
    assert calls == []  # loaded, not trained
    assert graphdef2 == graphdef and fingerprint(params2) == fingerprint(params)

    other = dataclasses.replace(CONFIG, steps=3, seed=1)
    _, params3 = train_vae((images, None), TINY, other, cache_dir=cache, progress=False)
    assert calls == [other] and len(runs(cache)) == 2
    assert fingerprint(params3) != fingerprint(params)


def test_train_vae_retrains_over_a_corrupt_cache(images, tmp_path):
    short = dataclasses.replace(CONFIG, steps=2)
    _, params = train_vae((images, None), TINY, short, cache_dir=tmp_path, progress=False)
    (npz,) = tmp_path.glob("vae-custom-*/step_*/arrays.npz")
    npz.write_bytes(npz.read_bytes()[:-10])
    with pytest.warns(UserWarning, match="VAE cache .* is unusable .*; rebuilding it"):
        _, again = train_vae((images, None), TINY, short, cache_dir=tmp_path, progress=False)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # same seed: same run
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rewritten: loads cleanly now
        train_vae((images, None), TINY, short, cache_dir=tmp_path, progress=False)


def test_train_vae_rejects_images_that_do_not_fit_the_config(images, tmp_path):
    with pytest.raises(ValueError, match="do not fit the VAE config"):
        train_vae((images[:, :16, :16], None), TINY, CONFIG, cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="unknown preset"):
        train_vae((images, None), "mnits", CONFIG, cache_dir=tmp_path, progress=False)


def test_relative_cache_dirs_resolve_from_the_repository_root(monkeypatch):
    monkeypatch.delenv(paths.ENV_VAR, raising=False)
    root = paths.REPO_ROOT
    assert (root / "pyproject.toml").is_file()
    assert paths.resolve("data/cache") == root / "data" / "cache"


# ----------------------------------------------------------------------------- fingerprint
def test_fingerprint_is_stable_and_sees_one_changed_parameter(trained):
    _, params, _ = trained
    fp = fingerprint(params)
    assert len(fp) == 64 and fp == fingerprint(params)
    assert fingerprint(jax.tree.map(np.asarray, params)) == fp  # host copy: same bytes
    assert fingerprint(perturbed(params)) != fp


# ----------------------------------------------------------------------------- codec
def test_make_codec_scale_gives_unit_std_latents(codec, images):
    z = codec.encode(images)
    assert 0.0 < codec.scale < np.inf
    assert abs(float(z.std()) - 1.0) < 1e-3


def test_encode_decode_shapes_ranges_and_batching(codec, images):
    assert codec.latent_shape == (7, 7, 4)
    z = codec.encode(images)
    assert z.shape == (64, 7, 7, 4) and z.dtype == np.float32
    np.testing.assert_allclose(codec.encode(to_float(images)), z, atol=1e-6)  # uint8 == float
    np.testing.assert_allclose(codec.encode(images, batch_size=24), z, atol=1e-5)  # padded chunks
    x_hat = codec.decode(z)
    assert x_hat.shape == images.shape and x_hat.dtype == np.float32
    assert x_hat.min() >= -1.0 and x_hat.max() <= 1.0
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        codec.encode(images.astype(np.float32))  # 0..255 floats: a missed to_float


def test_decode_of_encode_reconstructs(codec, images):
    x = to_float(images)
    z = codec.encode(images)
    recon = np.mean((codec.decode(z) - x) ** 2)
    noise = np.random.default_rng(0).standard_normal(z.shape).astype(np.float32)
    random = np.mean((codec.decode(noise) - x) ** 2)
    mean_image = np.mean((x.mean(axis=0) - x) ** 2)  # the best latent-blind guess
    assert recon < 0.5 * random and recon < 0.5 * mean_image, (recon, random, mean_image)


# ----------------------------------------------------------------------------- latent cache
def test_encode_dataset_caches_and_keys_by_vae(codec, images, tmp_path, monkeypatch):
    z = encode_dataset(codec, images, name="shapes", cache_dir=tmp_path)
    (file,) = tmp_path.glob("latents-shapes-*.npz")
    assert file.name.startswith(f"latents-shapes-{fingerprint(codec.params)[:16]}-")
    np.testing.assert_array_equal(z, codec.encode(images))

    def no_encoding(*a, **k):
        raise AssertionError("encoded again instead of loading the cache")

    with monkeypatch.context() as m:
        m.setattr(LatentCodec, "encode", no_encoding)
        z2 = encode_dataset(codec, images, name="shapes", cache_dir=tmp_path)
    assert z2.dtype == np.float32 and np.array_equal(z2, z)

    other = LatentCodec(codec.graphdef, perturbed(codec.params), codec.scale)
    encode_dataset(other, images, name="shapes", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("latents-shapes-*.npz"))) == 2
    encode_dataset(codec, images[:32], name="shapes", cache_dir=tmp_path)  # other data
    assert len(list(tmp_path.glob("latents-shapes-*.npz"))) == 3
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


@pytest.mark.parametrize("damage", ["garbage", "truncate", "flip_latent_byte"])
def test_encode_dataset_detects_a_corrupt_cache_and_recomputes(codec, images, tmp_path, damage):
    z = encode_dataset(codec, images, name="shapes", cache_dir=tmp_path)
    (file,) = tmp_path.glob("latents-*.npz")
    raw = bytearray(file.read_bytes())
    if damage == "garbage":
        raw = bytearray(b"not an npz file at all")
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:  # rewrite a valid npz whose latents no longer match their stored SHA-256
        with np.load(file, allow_pickle=False) as f:
            parts = {k: f[k] for k in f.files}
        parts["latents"] = parts["latents"].copy()
        parts["latents"].flat[0] += 1.0
        np.savez(file, **parts)
        raw = bytearray(file.read_bytes())
    file.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="latent cache .* is unusable"):
        z2 = encode_dataset(codec, images, name="shapes", cache_dir=tmp_path)
    np.testing.assert_array_equal(z2, z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rewritten: loads cleanly now
        np.testing.assert_array_equal(encode_dataset(codec, images, name="shapes", cache_dir=tmp_path), z)


def test_encode_dataset_rejects_unsafe_names(codec, images, tmp_path):
    with pytest.raises(ValueError, match="name must match"):
        encode_dataset(codec, images, name="../escape", cache_dir=tmp_path)


# ----------------------------------------------------------------------------- value_counts
@pytest.mark.parametrize("pixel, lat", [((512, 512, 3), (64, 64, 4)), ((28, 28, 1), (7, 7, 4)),
                                        ((32, 32, 3), (8, 8, 4)), ((30, 20, 3), (7, 5, 4))])
def test_value_counts_against_numpy(pixel, lat):
    got = latent.value_counts(pixel, lat)
    pv, lv = int(np.prod(pixel, dtype=np.int64)), int(np.prod(lat, dtype=np.int64))
    sp = np.float64(pixel[0] * pixel[1]) / np.float64(lat[0] * lat[1])
    assert got["pixel_values"] == pv and got["latent_values"] == lv
    assert got["scalar_reduction"] == pytest.approx(pv / lv, rel=1e-12)
    assert got["spatial_reduction"] == pytest.approx(sp, rel=1e-12)
    for k in ("scalar_reduction", "spatial_reduction"):  # exact ratios stay integers
        assert isinstance(got[k], int) == (float(got[k]).is_integer())


def test_value_counts_validates_shapes():
    with pytest.raises(ValueError, match="pixel_shape"):
        latent.value_counts((28, 0, 1), (7, 7, 4))
    with pytest.raises(ValueError, match="latent_shape"):
        latent.value_counts((28, 28, 1), 7)
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        latent.value_counts((28, 28), (7, 7, 4))
    with pytest.raises(ValueError, match="latent_shape"):
        latent.value_counts((28, 28, 1), (7, 7.5, 4))
