"""Shared model pieces: size and cost (parameter count, XLA-measured FLOPs), attention, GroupNorm.

Every backbone in the course states both numbers, so they are computed the same way
for all of them: parameters from the ``nnx.Param`` leaves, FLOPs from XLA's own cost
analysis of the compiled forward pass (no hand-maintained formulas that drift).
"""

from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["param_count", "forward_flops", "attention", "group_norm", "GroupNorm"]

#: A list of submodules that NNX traverses as data (``nnx.List`` since flax 0.12; a plain
#: list before). One alias for every backbone, so parameter paths are the same everywhere.
ModuleList = getattr(nnx, "List", list)


def param_count(model: nnx.Module) -> int:
    """Number of trainable scalars: the sizes of all ``nnx.Param`` leaves, summed."""
    return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def forward_flops(model: nnx.Module, *example_args, **example_kwargs) -> float:
    """FLOPs of one forward pass ``model(*example_args, **example_kwargs)``.

    The model is split into a static graph and its state so the forward can be a plain
    ``jax.jit`` function; nothing is executed, the program is only lowered and compiled.
    XLA counts a multiply-add as two FLOPs. Returns ``nan`` (with a warning) when this
    jax/backend does not report a FLOP count.
    """
    graphdef, state = nnx.split(model)

    def forward(state, *args, **kwargs):
        return nnx.merge(graphdef, state)(*args, **kwargs)

    # Bad example arguments should raise here, not be reported as "no FLOP count".
    compiled = jax.jit(forward).lower(state, *example_args, **example_kwargs).compile()
    try:
        analysis = compiled.cost_analysis()
    except (NotImplementedError, RuntimeError, AttributeError) as err:  # backend lacks it
        warnings.warn(f"forward_flops: cost analysis unavailable ({err})", stacklevel=2)
        return float("nan")
    # Older jax returned one dict per device/program; newer returns a single dict.
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    flops = None if not analysis else analysis.get("flops")
    if flops is None or not math.isfinite(float(flops)) or flops < 0:
        warnings.warn("forward_flops: XLA reported no FLOP count", stacklevel=2)
        return float("nan")
    return float(flops)


def attention(q, k, v, num_heads: int):
    """Multi-head softmax attention of ``(B, N, D)`` queries over ``(B, M, D)`` keys/values.

    Shared by the U-Net's self/cross-attention and the DiT blocks (Vaswani et al. 2017).
    """
    b, n, d = q.shape
    m = k.shape[1]
    hd = d // num_heads
    q = q.reshape(b, n, num_heads, hd)  # (B, N, H, hd)
    k = k.reshape(b, m, num_heads, hd)  # (B, M, H, hd)
    v = v.reshape(b, m, num_heads, hd)  # (B, M, H, hd)
    logits = jnp.einsum("bnhd,bmhd->bhnm", q, k) / math.sqrt(hd)  # (B, H, N, M)
    weights = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum("bhnm,bmhd->bnhd", weights, v)  # (B, N, H, hd)
    return out.reshape(b, n, d)  # (B, N, D)


def _group_sums(v, groups: int):
    """Per-(batch, group) sums of ``v`` ``(B, ..., C)``: channel sums first, then groups."""
    b, c = v.shape[0], v.shape[-1]
    per_channel = jnp.sum(v, axis=tuple(range(1, v.ndim - 1)))  # (B, C)
    return per_channel.reshape(b, groups, c // groups).sum(-1)  # (B, G)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def group_norm(x, scale, bias, num_groups: int, epsilon: float = 1e-6):
    """GroupNorm (Wu & He 2018) of ``x`` ``(B, ..., C)`` with per-channel ``scale``, ``bias``.

    Statistics are over every axis but the batch and, within a group of ``C / num_groups``
    channels, the channels; the variance is ``E[x^2] - E[x]^2`` as in ``nnx.GroupNorm``'s
    default, so the result matches it to float32 rounding. The difference is speed on
    XLA's CPU backend: the statistics come from per-channel sums over the spatial axes
    (a contiguous NHWC reduction) instead of a reduction over a reshaped
    ``(B, H, W, G, C/G)`` array, the normalisation is one per-(batch, channel) affine map,
    and the backward pass is written out the same way (two per-channel sums, then one
    fused elementwise pass) instead of being derived by autodiff. Measured at batch 128,
    28x28x64, forward + backward: 13 ms instead of 51 ms.
    """
    return _group_norm_fwd(x, scale, bias, num_groups, epsilon)[0]


def _group_norm_fwd(x, scale, bias, num_groups, epsilon):
    b, c = x.shape[0], x.shape[-1]
    if c % num_groups:
        raise ValueError(f"group_norm: channels {c} are not divisible by num_groups={num_groups}")
    n = math.prod(x.shape[1:-1]) * (c // num_groups)  # elements per (batch, group)
    mean = _group_sums(x, num_groups) / n  # (B, G)
    var = jnp.maximum(_group_sums(jnp.square(x), num_groups) / n - jnp.square(mean), 0.0)
    mean_c = jnp.repeat(mean, c // num_groups, axis=1)  # (B, C)
    inv_c = jnp.repeat(jax.lax.rsqrt(var + epsilon), c // num_groups, axis=1)  # (B, C)
    a = inv_c * scale  # (B, C): y = x * a + (bias - mean * a)
    shape = (b,) + (1,) * (x.ndim - 2) + (c,)
    y = x * a.reshape(shape) + (bias - mean_c * a).reshape(shape)
    return y, (x, scale, mean_c, inv_c)


def _group_norm_bwd(num_groups, epsilon, res, dy):
    x, scale, mean_c, inv_c = res
    b, c = x.shape[0], x.shape[-1]
    axes = tuple(range(1, x.ndim - 1))
    n = math.prod(x.shape[1:-1]) * (c // num_groups)
    sum_dy = jnp.sum(dy, axis=axes)  # (B, C)
    sum_dy_xhat = inv_c * (jnp.sum(dy * x, axis=axes) - mean_c * sum_dy)  # (B, C): sum dy * xhat

    def group_mean(v):  # (B, C) -> (B, C): mean over each group's channels, divided by n
        return jnp.repeat(v.reshape(b, num_groups, -1).sum(-1) / n, c // num_groups, axis=1)

    m1 = group_mean(scale * sum_dy)  # mean of dxhat over the group
    m2 = group_mean(scale * sum_dy_xhat)  # mean of dxhat * xhat over the group
    # dx = inv * (dy * scale - m1 - xhat * m2) with xhat = (x - mean) * inv, as one affine map.
    shape = (b,) + (1,) * (x.ndim - 2) + (c,)
    coef_dy = (inv_c * scale).reshape(shape)
    coef_x = (-inv_c * inv_c * m2).reshape(shape)
    const = (inv_c * (mean_c * inv_c * m2 - m1)).reshape(shape)
    dx = dy * coef_dy + x * coef_x + const
    return dx, jnp.sum(sum_dy_xhat, axis=0), jnp.sum(sum_dy, axis=0)


group_norm.defvjp(_group_norm_fwd, _group_norm_bwd)


class GroupNorm(nnx.GroupNorm):
    """``nnx.GroupNorm`` computed by :func:`group_norm`: same parameters, same result, faster on CPU.

    A drop-in subclass, so parameter names (``scale``, ``bias``) and checkpoints are
    unchanged. Falls back to the parent for masks, custom reduction axes, a compute dtype
    or missing scale/bias.
    """

    def __call__(self, x, *, mask=None):
        if (mask is not None or self.reduction_axes is not None or self.dtype is not None
                or self.scale is None or self.bias is None or x.ndim < 3):
            return super().__call__(x, mask=mask)
        return group_norm(x, self.scale[...], self.bias[...], self.num_groups, self.epsilon)
