"""DiT / MM-DiT: patch bookkeeping, adaLN-Zero init, conditioning, jit, input checks."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffusion_jax.models.dit import (
    DIT_PRESETS,
    DiT,
    DiTConfig,
    MMDiTBlock,
    patchify,
    sincos_pos_embed_2d,
    unpatchify,
)

# Small enough that each compile (init, forward, grad) takes a couple of seconds on CPU.
SMALL = DiTConfig(patch_size=4, hidden=32, depth=2, num_heads=2, num_classes=10)


def n_params(module):
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


@functools.cache
def _initialised(cls, args):
    # Init once per architecture, as one compiled program, from an "rbg" key: compiling
    # threefry for every parameter shape otherwise dominates the CPU test time.
    key = jax.random.key(0, impl="rbg")
    return nnx.split(nnx.jit(lambda: cls(*args, rngs=nnx.Rngs(key)))())


def build(cls, *args, noise=0.0, seed=0):
    """A fresh ``cls(*args)``; with ``noise``, every parameter gets Gaussian noise of that
    scale (drawn with numpy, so nothing compiles) so zero-initialised layers stop
    hiding the inputs."""
    graphdef, state = _initialised(cls, args)
    rng = np.random.default_rng(seed)
    state = jax.tree.map(
        lambda x: jnp.asarray(np.asarray(x) + noise * rng.standard_normal(x.shape, np.float32)),
        state,
    )
    return nnx.merge(graphdef, state)


# Compiled calls keep the file fast; eager equivalence is tested once below.
call = nnx.jit(lambda module, *args: module(*args))


def inputs(cfg, b=3, seed=0):
    rng = np.random.default_rng(seed)
    s, c = cfg.input_size, cfg.in_channels
    x = jnp.asarray(rng.uniform(-1.0, 1.0, (b, s, s, c)).astype(np.float32))
    t = jnp.asarray(rng.integers(0, 1000, (b,)), jnp.int32)
    y = jnp.asarray(rng.integers(0, cfg.num_classes or 1, (b,)), jnp.int32)
    return x, t, y


@pytest.fixture(scope="module")
def noisy_dit():
    return build(DiT, SMALL, noise=0.1)


# ----------------------------------------------------------------------------- patches
def patchify_loops(x, p):
    """Referee: one patch at a time, token index row-major over the patch grid."""
    b, h, w, c = x.shape
    out = np.zeros((b, (h // p) * (w // p), p * p * c), x.dtype)
    for i in range(h // p):
        for j in range(w // p):
            out[:, i * (w // p) + j] = x[:, i * p:(i + 1) * p, j * p:(j + 1) * p, :].reshape(b, -1)
    return out


SHAPES = [((2, 28, 28, 1), 2), ((2, 28, 28, 1), 4), ((3, 7, 7, 4), 1), ((2, 8, 8, 4), 2),
          ((1, 12, 8, 3), 4), ((2, 6, 10, 2), 2)]


@pytest.mark.parametrize("shape,p", SHAPES)
def test_patchify_matches_loops_and_round_trips(shape, p):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    tokens = patchify(jnp.asarray(x), p)
    b, h, w, c = shape
    assert tokens.shape == (b, (h // p) * (w // p), p * p * c)
    np.testing.assert_array_equal(np.asarray(tokens), patchify_loops(x, p))
    np.testing.assert_array_equal(np.asarray(unpatchify(tokens, p, h, w, c)), x)


def test_patchify_and_unpatchify_reject_bad_input():
    x = jnp.zeros((2, 28, 28, 1))
    with pytest.raises(ValueError, match="x"):
        patchify(x[0], 2)  # rank 3
    with pytest.raises(ValueError, match="p=3"):
        patchify(x, 3)
    with pytest.raises(ValueError, match="p "):
        patchify(x, 0)
    with pytest.raises(ValueError, match="tokens"):
        unpatchify(jnp.zeros((2, 49, 4)), 2, 28, 28, 1)  # 196 tokens expected


def test_pos_embed_is_fixed_sincos_and_not_a_parameter():
    emb = sincos_pos_embed_2d(7, 7, 32)
    assert emb.shape == (49, 32) and emb.dtype == np.float32
    # Token (i, j): first half codes the row i, second half the column j.
    i, j = 3, 5
    omega = 1.0 / 10_000.0 ** (np.arange(8) / 8)
    row = np.concatenate([np.sin(i * omega), np.cos(i * omega)])
    col = np.concatenate([np.sin(j * omega), np.cos(j * omega)])
    np.testing.assert_allclose(emb[i * 7 + j], np.concatenate([row, col]), atol=1e-6)
    assert len(np.unique(emb.round(5), axis=0)) == 49  # every position distinct
    model = nnx.eval_shape(lambda: DiT(SMALL, rngs=nnx.Rngs(0)))
    shapes = [x.shape for x in jax.tree.leaves(nnx.state(model, nnx.Param))]
    assert (SMALL.num_patches, SMALL.hidden) not in shapes


# ----------------------------------------------------------------------------- DiT
@pytest.mark.parametrize("name", sorted(DIT_PRESETS))
def test_preset_output_shape_and_param_count(name):
    cfg = DIT_PRESETS[name]
    # Shapes only (no compute): the presets cost seconds each to build for real.
    model = nnx.eval_shape(lambda: DiT(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    x, t, y = inputs(cfg, b=2)
    out = jax.eval_shape(lambda s: nnx.merge(graphdef, s)(x, t, y), state)
    assert out.shape == x.shape and out.dtype == jnp.float32

    # Closed-form count: every parameter of the architecture is accounted for.
    D, p, C = cfg.hidden, cfg.patch_size, cfg.in_channels
    M = int(D * cfg.mlp_ratio)
    block = (3 * D * D + 3 * D) + (D * D + D) + (D * M + M + M * D + D) + (D * 6 * D + 6 * D)
    expected = ((p * p * C * D + D) + (64 * D + D + D * D + D) + (cfg.num_classes + 1) * D
                + cfg.depth * block + (D * 2 * D + 2 * D) + (D * p * p * C + p * p * C))
    assert n_params(model) == expected


@pytest.mark.parametrize(
    "cfg",
    [SMALL,  # 28x28x1, patch 4
     dataclasses.replace(SMALL, patch_size=1, in_channels=4, input_size=7),
     dataclasses.replace(SMALL, patch_size=2, in_channels=4, input_size=8)],
    ids=["28x28x1-p4", "7x7x4-p1", "8x8x4-p2"],
)
def test_output_is_exactly_zero_at_init(cfg):
    model = build(DiT, cfg)
    x, t, y = inputs(cfg)
    out = call(model, x, t, y)
    assert out.shape == x.shape
    np.testing.assert_array_equal(np.asarray(out), 0.0)  # zero-initialised final layer


def test_blocks_are_identity_at_init():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 9, 32), np.float32))  # (B, N, D)
    c = jnp.asarray(rng.standard_normal((2, 32), np.float32))  # (B, D)
    for block in build(DiT, SMALL).blocks:
        np.testing.assert_array_equal(np.asarray(call(block, x, c)), np.asarray(x))
    # ... and stop being the identity once the gates leave zero.
    assert not np.allclose(call(build(DiT, SMALL, noise=0.1).blocks[0], x, c), x)


def test_label_and_timestep_change_output_and_none_is_null_label(noisy_dit):
    model = noisy_dit
    x, t, _ = inputs(SMALL)
    out_a = call(model, x, t, jnp.array([1, 2, 3]))
    out_b = call(model, x, t, jnp.array([4, 5, 6]))
    assert not np.allclose(out_a, out_b)
    assert not np.allclose(call(model, x, t + 100, jnp.array([1, 2, 3])), out_a)
    null = jnp.full((3,), model.null_label)
    np.testing.assert_array_equal(
        np.asarray(call(model, x, t)), np.asarray(call(model, x, t, null))
    )
    assert model.null_label == SMALL.num_classes


def test_batch_rows_are_independent(noisy_dit):
    x, t, y = inputs(SMALL)
    full = call(noisy_dit, x, t, y)
    one = call(noisy_dit, x[1:2], t[1:2], y[1:2])
    np.testing.assert_allclose(full[1:2], one, rtol=1e-5, atol=1e-6)


def test_scalar_timestep_broadcasts(noisy_dit):
    x, _, y = inputs(SMALL)
    np.testing.assert_allclose(
        call(noisy_dit, x, jnp.float32(17), y), call(noisy_dit, x, jnp.full((3,), 17.0), y),
        rtol=1e-6, atol=1e-7,
    )


def test_unconditional_and_learn_sigma():
    cfg = dataclasses.replace(SMALL, num_classes=None, learn_sigma=True)
    model = build(DiT, cfg, noise=0.1)
    x, t, _ = inputs(cfg)
    assert call(model, x, t).shape == x.shape[:3] + (2 * cfg.in_channels,)
    assert model.null_label is None
    with pytest.raises(ValueError, match="cond"):
        model(x, t, jnp.zeros((3,), jnp.int32))


def test_jit_via_split_merge_equals_eager(noisy_dit):
    graphdef, state = nnx.split(noisy_dit)

    @jax.jit
    def apply(state, x, t, y):
        return nnx.merge(graphdef, state)(x, t, y)

    x, t, y = inputs(SMALL)
    np.testing.assert_allclose(apply(state, x, t, y), noisy_dit(x, t, y), rtol=1e-5, atol=1e-6)


def test_gradients_reach_every_parameter(noisy_dit):
    # At init only the zero-initialised output layer gets gradient (the gates are zero);
    # once the parameters move, every parameter must be on the gradient path.
    x, t, y = inputs(SMALL)

    @nnx.jit
    def grads(model):
        return nnx.grad(lambda m: jnp.mean(jnp.square(m(x, t, y) - x)))(model)

    for path, g in jax.tree_util.tree_leaves_with_path(nnx.state(grads(noisy_dit), nnx.Param)):
        name = jax.tree_util.keystr(path)
        if "y_embedder" in name:
            continue  # only the table rows of the labels in the batch get gradient
        assert float(jnp.abs(g).max()) > 0, name


@pytest.mark.parametrize(
    "x_shape,t,cond,match",
    [
        ((3, 28, 28), (3,), None, "x_t"),  # wrong rank
        ((3, 28, 28, 3), (3,), None, "x_t has 3 channels"),
        ((3, 30, 30, 1), (3,), None, "x_t spatial size 30x30"),  # 30 % 4 != 0
        ((3, 28, 28, 1), (2,), None, "t must"),
        ((3, 28, 28, 1), (3,), (3, 1), "cond must"),
    ],
)
def test_bad_inputs_raise_value_error_naming_argument(noisy_dit, x_shape, t, cond, match):
    c = None if cond is None else jnp.zeros(cond, jnp.int32)
    with pytest.raises(ValueError, match=match):
        noisy_dit(jnp.zeros(x_shape), jnp.zeros(t), c)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="config.patch_size"):
        nnx.eval_shape(lambda: DiT(dataclasses.replace(SMALL, input_size=30), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="num_heads"):
        nnx.eval_shape(lambda: DiT(dataclasses.replace(SMALL, num_heads=3), rngs=nnx.Rngs(0)))


# ----------------------------------------------------------------------------- MM-DiT
def mm_inputs(seed=0, b=2, n=6, l=4, d=32):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.standard_normal((b, n, d), np.float32)),  # image tokens (B, N, D)
            jnp.asarray(rng.standard_normal((b, l, d), np.float32)),  # context tokens (B, L, D)
            jnp.asarray(rng.standard_normal((b, d), np.float32)))  # conditioning (B, D)


def mmdit(noise=0.0):
    return build(MMDiTBlock, 32, 4, noise=noise)


def test_mmdit_identity_at_init_and_shapes():
    x, y, c = mm_inputs()
    x2, y2 = call(mmdit(), x, y, c)
    np.testing.assert_array_equal(np.asarray(x2), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(y2), np.asarray(y))
    x3, y3 = call(mmdit(noise=0.1), x, y, c)
    assert x3.shape == x.shape and y3.shape == y.shape
    assert not np.allclose(x3, x) and not np.allclose(y3, y)


def test_mmdit_attention_is_joint():
    block = mmdit(noise=0.1)
    x, y, c = mm_inputs()
    x_a, y_a = call(block, x, y, c)
    # Random perturbations: a constant shift would be erased by the LayerNorms.
    dx, dy, _ = mm_inputs(seed=1)
    x_b, _ = call(block, x, y + dy, c)  # only the context tokens change
    assert not np.allclose(x_a, x_b, atol=1e-3)
    _, y_b = call(block, x + dx, y, c)  # only the image tokens change
    assert not np.allclose(y_a, y_b, atol=1e-3)


def test_mmdit_streams_have_separate_weights():
    block = mmdit(noise=0.1)
    x_leaves = jax.tree.leaves(nnx.state(block.x_stream, nnx.Param))
    y_leaves = jax.tree.leaves(nnx.state(block.y_stream, nnx.Param))
    assert len(x_leaves) == len(y_leaves) > 0
    assert block.x_stream is not block.y_stream
    assert not {id(a) for a in x_leaves} & {id(b) for b in y_leaves}
    assert not any(np.array_equal(a, b) for a, b in zip(x_leaves, y_leaves))
    assert n_params(block) == n_params(block.x_stream) + n_params(block.y_stream)

    x, y, c = mm_inputs()
    x_before, _ = call(block, x, y, c)
    x_params_before = [np.asarray(a) for a in x_leaves]
    kernel = block.y_stream.qkv.kernel  # a context-only weight
    kernel[...] = kernel[...] + 0.5
    x_after, _ = call(block, x, y, c)
    assert not np.allclose(x_before, x_after)  # reaches x through the joint attention
    for a, b in zip(x_params_before, jax.tree.leaves(nnx.state(block.x_stream, nnx.Param))):
        np.testing.assert_array_equal(a, np.asarray(b))  # x's own weights untouched


def test_mmdit_rejects_mismatched_streams():
    x, y, c = mm_inputs()
    with pytest.raises(ValueError, match="x .* y"):
        mmdit()(x, y[:1], c)
