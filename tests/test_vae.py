"""VAE: KL algebra against float64 referees, shapes, explicit keys, latent scaling, training."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from diffusion_jax.models.vae import (
    VAE,
    VAE_PRESETS,
    VAEConfig,
    kl_to_standard_normal,
    latent_scale_factor,
    sample_latent,
    vae_loss,
)

# A few thousand parameters: compiles and trains in seconds.
TINY = VAEConfig(in_channels=1, latent_channels=4, channels=(8, 16, 16), input_size=28)


def n_params(module):
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


@functools.cache
def _initialised(cfg):
    # Compiling threefry for every parameter shape dominates CPU test time (measured: 13 s
    # of CPU for TINY's init vs 3 s with an "rbg" key, which gives the same distributions).
    return nnx.split(nnx.jit(lambda: VAE(cfg, rngs=nnx.Rngs(jax.random.key(0, impl="rbg"))))())


def build(cfg):
    return nnx.merge(*_initialised(cfg))


def images(cfg, b=4, seed=0):
    """Smooth random images in [-1, 1]: blurred noise, so there is structure to learn."""
    rng = np.random.default_rng(seed)
    s = cfg.input_size
    x = rng.standard_normal((b, s + 4, s + 4, cfg.in_channels))
    # 5x5 box blur; the sum of 25 unit normals has std 5.
    x = sum(x[:, i:i + s, j:j + s] for i in range(5) for j in range(5)) / 5.0
    return jnp.asarray(np.tanh(x).astype(np.float32))


@nnx.jit
def _forward(vae, x, key):
    return vae(x, key)


# ----------------------------------------------------------------------------- KL / loss
def test_kl_closed_form_matches_float64_gaussian_kl():
    rng = np.random.default_rng(0)
    mean = rng.normal(0.0, 1.5, (3, 4, 4, 2))
    logvar = rng.uniform(-4.0, 2.0, (3, 4, 4, 2))
    # Referee: the textbook KL between Gaussians N(mu_q, s_q^2) and N(mu_p, s_p^2).
    s_q, mu_p, s_p = np.exp(0.5 * logvar), 0.0, 1.0
    per_elem = np.log(s_p / s_q) + (s_q**2 + (mean - mu_p) ** 2) / (2 * s_p**2) - 0.5
    expected = per_elem.reshape(3, -1).sum(axis=1)
    got = kl_to_standard_normal(jnp.asarray(mean, jnp.float32), jnp.asarray(logvar, jnp.float32))
    assert got.shape == (3,)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)


def test_kl_closed_form_matches_monte_carlo():
    rng = np.random.default_rng(1)
    mean = np.array([[0.5, -1.0, 0.0]])
    logvar = np.array([[-1.0, 0.5, 0.0]])
    n = 400_000
    z = mean + np.exp(0.5 * logvar) * rng.standard_normal((n, 3))  # z ~ q, float64
    log_q = -0.5 * ((z - mean) ** 2 / np.exp(logvar) + logvar + np.log(2 * np.pi))
    log_p = -0.5 * (z**2 + np.log(2 * np.pi))
    samples = (log_q - log_p).sum(axis=1)
    estimate, stderr = samples.mean(), samples.std() / np.sqrt(n)
    closed = float(kl_to_standard_normal(jnp.asarray(mean), jnp.asarray(logvar))[0])
    assert abs(closed - estimate) < 4 * stderr + 1e-6, (closed, estimate, stderr)


def test_vae_loss_combines_mse_and_weighted_kl():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (2, 8, 8, 1)).astype(np.float32)
    x_hat = rng.uniform(-1, 1, (2, 8, 8, 1)).astype(np.float32)
    mean = rng.normal(size=(2, 2, 2, 4)).astype(np.float32)
    logvar = rng.normal(size=(2, 2, 2, 4)).astype(np.float32)
    total, metrics = vae_loss(x, x_hat, mean, logvar, kl_weight=1e-2)
    recon = np.mean((x.astype(np.float64) - x_hat) ** 2)
    kl = np.mean(np.asarray(kl_to_standard_normal(mean, logvar)))
    np.testing.assert_allclose(metrics["recon"], recon, rtol=1e-5)
    np.testing.assert_allclose(metrics["kl"], kl, rtol=1e-5)
    np.testing.assert_allclose(total, recon + 1e-2 * kl, rtol=1e-5)
    assert metrics["loss"] == total
    # The prior itself costs nothing.
    _, m0 = vae_loss(x, x, np.zeros_like(mean), np.zeros_like(logvar), kl_weight=1.0)
    assert float(m0["kl"]) == 0.0 and float(m0["recon"]) == 0.0


# ----------------------------------------------------------------------------- model
@pytest.mark.parametrize("name,latent_shape", [("mnist", (7, 7, 4)), ("cifar", (8, 8, 4))])
def test_preset_shapes(name, latent_shape):
    cfg = VAE_PRESETS[name]
    assert (cfg.latent_size, cfg.latent_size, cfg.latent_channels) == latent_shape
    # Shapes only (no compute) keeps the test fast; TINY runs real data below.
    vae = nnx.eval_shape(lambda: VAE(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(vae)
    x = jax.ShapeDtypeStruct((2, cfg.input_size, cfg.input_size, cfg.in_channels), jnp.float32)
    mean, logvar = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s).encode(x), state, x)
    assert mean.shape == logvar.shape == (2, *latent_shape)
    x_hat = jax.eval_shape(lambda s, z: nnx.merge(graphdef, s).decode(z), state, mean)
    assert x_hat.shape == x.shape
    full = jax.eval_shape(lambda s, x, k: nnx.merge(graphdef, s)(x, k), state, x,
                          jax.random.key(0))
    assert [a.shape for a in full] == [x.shape, mean.shape, mean.shape]
    assert n_params(vae) > 0


def test_forward_shapes_and_same_key_same_sample():
    vae = build(TINY)
    x = images(TINY, b=8)
    out_a = _forward(vae, x, jax.random.key(0))
    mean, logvar = out_a[1:]
    assert mean.shape == logvar.shape == (8, 7, 7, 4)
    out_b = _forward(vae, x, jax.random.key(0))
    out_c = _forward(vae, x, jax.random.key(1))
    assert out_a[0].shape == x.shape
    for a, b in zip(out_a, out_b):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(out_a[0], out_c[0])  # a new key draws a new latent
    # The posterior does not depend on the key.
    np.testing.assert_array_equal(np.asarray(out_c[1]), np.asarray(mean))
    np.testing.assert_array_equal(np.asarray(out_c[2]), np.asarray(logvar))


def test_sample_latent_is_reparameterised_gaussian():
    mean = jnp.full((4000, 2, 2, 4), 0.5)
    logvar = jnp.full((4000, 2, 2, 4), np.log(0.25))
    z = sample_latent(jax.random.key(3), mean, logvar)
    z_again = sample_latent(jax.random.key(3), mean, logvar)
    np.testing.assert_array_equal(np.asarray(z), np.asarray(z_again))
    assert abs(float(z.mean()) - 0.5) < 0.01 and abs(float(z.std()) - 0.5) < 0.01


def test_latent_scale_factor_gives_unit_variance():
    _, mean, logvar = _forward(build(TINY), images(TINY, b=8, seed=4), jax.random.key(1))
    latents = sample_latent(jax.random.key(0), mean, logvar)
    factor = latent_scale_factor(latents)
    assert isinstance(factor, float) and factor > 0
    np.testing.assert_allclose(np.std(np.asarray(latents, np.float64) * factor), 1.0, rtol=1e-6)
    # Known answer: std 4 -> 0.25, whatever the mean.
    z = np.random.default_rng(0).normal(3.0, 4.0, (64, 7, 7, 4))
    assert abs(latent_scale_factor(z) - 0.25) < 0.01
    with pytest.raises(ValueError, match="latents"):
        latent_scale_factor(np.ones((2, 7, 7, 4)))


def test_a_few_adam_steps_reduce_the_loss():
    # One level fewer than TINY: the backward pass is what costs compile time.
    cfg = dataclasses.replace(TINY, channels=(8, 16), input_size=16)
    graphdef, state = nnx.split(build(cfg))
    params = nnx.state(nnx.merge(graphdef, state), nnx.Param)
    opt = optax.adam(3e-3)
    opt_state = opt.init(params)
    x = images(cfg, b=8, seed=5)

    @jax.jit
    def step(params, opt_state, key):
        def loss_fn(params):
            x_hat, mean, logvar = nnx.merge(graphdef, params)(x, key)
            return vae_loss(x, x_hat, mean, logvar, kl_weight=1e-4)

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics

    keys = jax.random.split(jax.random.key(0, impl="rbg"), 12)  # cheap to compile
    losses = []
    for key in keys:
        params, opt_state, metrics = step(params, opt_state, key)
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda v: v.encode(jnp.zeros((28, 28, 1))), "x must"),  # wrong rank
        (lambda v: v.encode(jnp.zeros((2, 28, 28, 3))), "x has 3 channels"),
        (lambda v: v.encode(jnp.zeros((2, 30, 30, 1))), "x spatial size 30x30"),
        (lambda v: v.decode(jnp.zeros((2, 7, 7, 3))), "z must"),
    ],
)
def test_bad_inputs_raise_value_error_naming_argument(call, match):
    vae = build(TINY)
    with pytest.raises(ValueError, match=match):
        call(vae)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="input_size"):
        nnx.eval_shape(lambda: VAE(dataclasses.replace(TINY, input_size=30), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="num_groups"):
        nnx.eval_shape(lambda: VAE(dataclasses.replace(TINY, channels=(12, 16, 16)),
                                   rngs=nnx.Rngs(0)))
