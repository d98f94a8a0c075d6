"""U-Net: shapes, parameter arithmetic, what conditioning does at init and after, jit, FLOPs.

Shape, parameter and FLOP checks use abstract models (``nnx.eval_shape``) so no weights
are initialised; behaviour checks share one tiny concrete model run through
``nnx.split`` / ``nnx.merge`` + ``jax.jit``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffusion_jax.models.common import forward_flops, param_count
from diffusion_jax.models.unet import PRESETS, UNet, UNetConfig

TINY = UNetConfig(channels=(8, 16), attention_levels=(1,), num_heads=2, groups=4,
                  num_classes=3, context_dim=6, in_channels=1)
B, S, L = 2, 8, 5  # batch, image side, context tokens


def abstract(cfg):
    return nnx.eval_shape(lambda: UNet(cfg, rngs=nnx.Rngs(0)))


def sds(*shape, dtype=jnp.float32):
    return jax.ShapeDtypeStruct(shape, dtype)


def out_shape(cfg, x_shape):
    graphdef, state = nnx.split(abstract(cfg))
    b = x_shape[0]
    cond = sds(b, dtype=jnp.int32) if cfg.num_classes else None

    def fn(s, x, t, c):
        return nnx.merge(graphdef, s)(x, t, c)

    return jax.eval_shape(fn, state, sds(*x_shape), sds(b, dtype=jnp.int32), cond).shape


# ---------------------------------------------------------------- shapes and size


@pytest.mark.parametrize("cfg, x_shape", [
    (UNetConfig(channels=(8, 16, 16), groups=4, num_heads=2, num_classes=10), (2, 28, 28, 1)),
    (UNetConfig(channels=(8, 16, 16), groups=4, num_heads=2, in_channels=3), (2, 32, 32, 3)),
    (UNetConfig(channels=(8, 16), attention_levels=(1,), groups=4, num_heads=2, in_channels=4),
     (2, 8, 8, 4)),
    # odd latent side: 7 -> 4 on the way down, cropped back to 7 on the way up
    (UNetConfig(channels=(8, 16), attention_levels=(1,), groups=4, num_heads=2, in_channels=4),
     (2, 7, 7, 4)),
    (UNetConfig(channels=(8, 8, 16), blocks_per_level=2, attention_levels=(1, 2), groups=4,
                num_heads=2, in_channels=3, out_channels=6), (1, 32, 32, 3)),
])
def test_output_shape(cfg, x_shape):
    assert out_shape(cfg, x_shape) == x_shape[:3] + (cfg.out_dim,)


def hand_param_count(cfg):
    """The architecture's arithmetic written out independently of the module code."""
    def conv(i, o, k=3):
        return k * k * i * o + o

    def lin(i, o):
        return i * o + o

    def gn(c):  # scale and bias
        return 2 * c

    E, ch, n = cfg.emb_dim, cfg.channels, len(cfg.channels)

    def res(i, o):
        return gn(i) + conv(i, o) + lin(E, 2 * o) + gn(o) + conv(o, o) + (conv(i, o, 1) if i != o else 0)

    def layer(i, o, level):
        if level not in cfg.attention_levels:
            return res(i, o)
        cross = gn(o) + lin(o, o) + lin(cfg.context_dim, 2 * o) + lin(o, o) if cfg.context_dim else 0
        return res(i, o) + gn(o) + lin(o, 3 * o) + lin(o, o) + cross

    total = lin(64, E) + lin(E, E) + conv(cfg.in_channels, ch[0])
    total += (cfg.num_classes + 1) * E if cfg.num_classes else 0
    c, skips = ch[0], []
    for lvl, w in enumerate(ch):
        for _ in range(cfg.blocks_per_level):
            total, c = total + layer(c, w, lvl), w
            skips.append(c)
        total += conv(c, c) if lvl < n - 1 else 0  # strided downsample
    total += layer(c, c, n - 1) + res(c, c)  # bottleneck
    for lvl in reversed(range(n)):
        for _ in range(cfg.blocks_per_level):
            total, c = total + layer(c + skips.pop(), ch[lvl], lvl), ch[lvl]
        total += conv(c, c) if lvl > 0 else 0  # conv after nearest upsample
    return total + gn(c) + conv(c, cfg.out_dim)


@pytest.mark.parametrize("cfg", [
    TINY,
    PRESETS["mnist"],
    PRESETS["latent"],
    UNetConfig(channels=(8, 8, 16), blocks_per_level=2, attention_levels=(0, 2), groups=4,
               num_heads=2, context_dim=5, in_channels=3, out_channels=6, time_dim=24),
])
def test_param_count_matches_hand_count(cfg):
    model = abstract(cfg)
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert param_count(model) == sum(math.prod(x.shape) for x in leaves) == hand_param_count(cfg)


def test_param_count_grows_with_width_and_mnist_preset_is_about_half_a_million():
    counts = [param_count(abstract(UNetConfig(channels=(w, 2 * w, 4 * w))))
              for w in (8, 16, 24)]
    assert counts[0] < counts[1] < counts[2]
    assert 400_000 < param_count(abstract(PRESETS["mnist"])) < 700_000


def test_forward_flops_positive_and_linear_in_batch():
    model = abstract(TINY)
    f = {b: forward_flops(model, sds(b, S, S, 1), sds(b, dtype=jnp.int32), sds(b, dtype=jnp.int32),
                          context=sds(b, L, 6)) for b in (2, 4)}
    assert all(math.isfinite(v) and v > 0 for v in f.values())
    assert 1.7 <= f[4] / f[2] <= 2.3


# ---------------------------------------------------------------- behaviour


@pytest.fixture(scope="module")
def tiny():
    """(eager model, graphdef, init state, perturbed state, jitted apply)."""
    # The "rbg" PRNG compiles much faster than threefry for the many distinct weight
    # shapes initialised eagerly (several seconds on 2 cores); the init is the same.
    model = UNet(TINY, rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))
    graphdef, state = nnx.split(model)
    leaves, treedef = jax.tree.flatten(state)
    rng = np.random.default_rng(1)  # host noise: no per-shape compilation
    # Noise on every weight, so the zero-initialised modulation and cross-attention
    # output are switched on, as they would be after some training.
    perturbed = jax.tree.unflatten(
        treedef, [x + 0.2 * rng.standard_normal(x.shape, np.float32) for x in leaves])

    @jax.jit
    def apply(state, x, t, cond=None, context=None):
        return nnx.merge(graphdef, state)(x, t, cond, context=context)

    return model, graphdef, state, perturbed, apply


@pytest.fixture(scope="module")
def inputs():
    kx, kc = jax.random.split(jax.random.key(2))
    x = jax.random.uniform(kx, (B, S, S, 1), minval=-1, maxval=1)
    ctx = jax.random.normal(kc, (B, L, 6))
    return x, jnp.array([3, 500]), jnp.array([0, 2]), ctx


def test_at_init_timestep_and_label_have_no_effect(tiny, inputs):
    # Zero-initialised scale/shift make every block a plain residual block at init.
    _, _, state, _, apply = tiny
    x, t, cond, _ = inputs
    y = apply(state, x, t, cond)
    np.testing.assert_array_equal(y, apply(state, x, jnp.array([900, 7]), cond))
    np.testing.assert_array_equal(y, apply(state, x, t, jnp.array([1, 3])))
    assert float(jnp.abs(y).max()) > 0  # but the output itself is not trivially zero


def test_after_perturbation_timestep_and_label_change_output(tiny, inputs):
    _, _, _, perturbed, apply = tiny
    x, t, cond, _ = inputs
    y = apply(perturbed, x, t, cond)
    assert float(jnp.abs(y - apply(perturbed, x, jnp.array([900, 7]), cond)).max()) > 1e-3
    assert float(jnp.abs(y - apply(perturbed, x, t, jnp.array([1, 3]))).max()) > 1e-3
    # float timesteps are accepted, and a scalar t broadcasts over the batch
    np.testing.assert_allclose(apply(perturbed, x, jnp.float32(3.0), cond),
                               apply(perturbed, x, jnp.array([3, 3]), cond), rtol=1e-5, atol=1e-5)


def test_null_label_equals_no_cond(tiny, inputs):
    _, _, _, perturbed, apply = tiny
    x, t, _, _ = inputs
    null = jnp.full((B,), TINY.num_classes)
    np.testing.assert_array_equal(apply(perturbed, x, t, null), apply(perturbed, x, t, None))


def test_cross_attention_starts_as_identity_then_reads_context(tiny, inputs):
    _, _, state, perturbed, apply = tiny
    x, t, cond, ctx = inputs
    np.testing.assert_array_equal(apply(state, x, t, cond, ctx), apply(state, x, t, cond, None))
    np.testing.assert_array_equal(apply(state, x, t, cond, ctx), apply(state, x, t, cond, 2 * ctx))
    y = apply(perturbed, x, t, cond, ctx)
    assert float(jnp.abs(y - apply(perturbed, x, t, cond, 2 * ctx)).max()) > 1e-3
    assert float(jnp.abs(y - apply(perturbed, x, t, cond, None)).max()) > 1e-3


def test_jit_split_merge_matches_eager(tiny, inputs):
    _, graphdef, _, perturbed, apply = tiny
    x, t, cond, ctx = inputs
    eager = nnx.merge(graphdef, perturbed)
    np.testing.assert_allclose(apply(perturbed, x, t, cond, ctx), eager(x, t, cond, context=ctx),
                               rtol=1e-5, atol=1e-5)


def test_gradients_finite_and_reach_zero_initialised_layers(tiny, inputs):
    _, _, state, _, apply = tiny
    x, t, cond, ctx = inputs

    def loss(s):
        return jnp.mean((apply(s, x, t, cond, ctx) - x) ** 2)

    grads = jax.grad(loss)(state)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
    # conv2 is not zeroed, so the zero-initialised modulation still gets a gradient
    mod = grads["down"][0]["res"]["modulation"]["kernel"]
    assert float(jnp.abs(mod[...]).max()) > 0
    cross = grads["mid"]["cross"]["proj"]["kernel"]
    assert float(jnp.abs(cross[...]).max()) > 0


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("args, kwargs, name", [
    ((jnp.zeros((S, S, 1)), jnp.zeros((B,))), {}, "x_t"),
    ((jnp.zeros((B, S, S, 3)), jnp.zeros((B,))), {}, "x_t"),
    ((jnp.zeros((B, S, S, 1)), jnp.zeros((B + 1,))), {}, "t"),
    ((jnp.zeros((B, S, S, 1)), jnp.zeros((B, 1))), {}, "t"),
    ((jnp.zeros((B, S, S, 1)), jnp.zeros((B,)), jnp.zeros((B, 1), jnp.int32)), {}, "cond"),
    ((jnp.zeros((B, S, S, 1)), jnp.zeros((B,)), jnp.zeros((B,))), {}, "cond"),  # float labels
    ((jnp.zeros((B, S, S, 1)), jnp.zeros((B,)), jnp.array([0, 4])), {}, "cond"),  # > null
    ((jnp.zeros((B, S, S, 1)), jnp.zeros((B,))), {"context": jnp.zeros((B, L, 5))}, "context"),
    ((jnp.zeros((B, S, S, 1)), jnp.zeros((B,))), {"context": jnp.zeros((B, 6))}, "context"),
])
def test_bad_inputs_raise_naming_the_argument(tiny, args, kwargs, name):
    model = tiny[0]
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        model(*args, **kwargs)


def test_unconditional_model_rejects_cond_and_context():
    cfg = UNetConfig(channels=(8, 16), attention_levels=(1,), groups=4, num_heads=2)
    graphdef, state = nnx.split(abstract(cfg))

    def fn(s, *a, **k):
        return nnx.merge(graphdef, s)(*a, **k)

    x, t = sds(B, S, S, 1), sds(B)
    with pytest.raises(ValueError, match=r"\bcond\b"):
        jax.eval_shape(fn, state, x, t, sds(B, dtype=jnp.int32))
    with pytest.raises(ValueError, match=r"\bcontext\b"):
        jax.eval_shape(fn, state, x, t, context=sds(B, L, 4))


@pytest.mark.parametrize("kwargs, name", [
    ({"channels": (8, 12), "groups": 8}, "groups"),
    ({"attention_levels": (3,)}, "attention_levels"),
    ({"channels": (16, 32, 60), "num_heads": 8, "groups": 4}, "num_heads"),
    ({"blocks_per_level": 0}, "blocks_per_level"),
])
def test_bad_config_raises_naming_the_field(kwargs, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        UNetConfig(**kwargs)
