"""The U-Net's GroupNorm (models.common.group_norm) against NumPy float64 and nnx.GroupNorm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffusion_jax.models.common import GroupNorm, group_norm


def _numpy_group_norm(x, scale, bias, groups, eps):
    x = np.asarray(x, np.float64)
    b, c = x.shape[0], x.shape[-1]
    xg = x.reshape(b, -1, groups, c // groups)  # (B, positions, G, C/G)
    mean = xg.mean(axis=(1, 3), keepdims=True)
    var = xg.var(axis=(1, 3), keepdims=True)
    return ((xg - mean) / np.sqrt(var + eps)).reshape(x.shape) * scale + bias


@pytest.mark.parametrize("shape,groups", [((3, 5, 4, 16), 4), ((2, 7, 6, 8), 8), ((2, 9, 12), 3)])
def test_group_norm_matches_float64_and_its_gradient_matches_autodiff(shape, groups):
    kx, ks, kb, kw = jax.random.split(jax.random.key(0), 4)
    x = 3.0 * jax.random.normal(kx, shape) + 1.5
    c = shape[-1]
    scale = 1.0 + 0.3 * jax.random.normal(ks, (c,))
    bias = 0.2 * jax.random.normal(kb, (c,))
    y = group_norm(x, scale, bias, groups, 1e-6)
    np.testing.assert_allclose(y, _numpy_group_norm(x, np.asarray(scale), np.asarray(bias), groups, 1e-6),
                               rtol=1e-4, atol=1e-4)

    # The hand-written backward against autodiff of a plain float64-free reference.
    def reference(x, scale, bias):
        b = x.shape[0]
        xg = x.reshape(b, -1, groups, c // groups)
        mean = xg.mean(axis=(1, 3), keepdims=True)
        var = xg.var(axis=(1, 3), keepdims=True)
        return ((xg - mean) * jax.lax.rsqrt(var + 1e-6)).reshape(x.shape) * scale + bias

    w = jax.random.normal(kw, shape)
    ours = jax.grad(lambda *a: jnp.sum(group_norm(*a, groups, 1e-6) * w), argnums=(0, 1, 2))(x, scale, bias)
    ref = jax.grad(lambda *a: jnp.sum(reference(*a) * w), argnums=(0, 1, 2))(x, scale, bias)
    for a, r in zip(ours, ref):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)


def test_groupnorm_module_is_a_drop_in_for_nnx_groupnorm():
    ours = GroupNorm(32, num_groups=8, rngs=nnx.Rngs(0))
    theirs = nnx.GroupNorm(32, num_groups=8, rngs=nnx.Rngs(0))
    assert jax.tree.structure(nnx.state(ours, nnx.Param)) == jax.tree.structure(nnx.state(theirs, nnx.Param))
    ours.scale[...] = theirs.scale[...] = jnp.linspace(0.5, 1.5, 32)
    ours.bias[...] = theirs.bias[...] = jnp.linspace(-1.0, 1.0, 32)
    x = 2.0 * jax.random.normal(jax.random.key(1), (4, 6, 6, 32)) - 1.0
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_group_norm_rejects_channels_not_divisible_by_groups():
    with pytest.raises(ValueError, match="num_groups"):
        group_norm(jnp.ones((2, 4, 4, 6)), jnp.ones(6), jnp.zeros(6), 4)
