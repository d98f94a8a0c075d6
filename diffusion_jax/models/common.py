"""Size and cost of a model: parameter count and XLA-measured forward FLOPs.

Every backbone in the course states both numbers, so they are computed the same way
for all of them: parameters from the ``nnx.Param`` leaves, FLOPs from XLA's own cost
analysis of the compiled forward pass (no hand-maintained formulas that drift).
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
from flax import nnx


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
