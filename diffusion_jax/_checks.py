"""Input validation shared by the math core.

Checks on *values* (a timestep out of range) only run on concrete arrays: inside
``jax.jit`` the values are tracers and cannot be inspected without a host round trip,
so jitted callers get the shape and dtype checks only. Every error names the argument
and says what was expected.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_timesteps(t, num_timesteps: int, *, name: str = "t", batch: int | None = None):
    """Validate integer timesteps ``0..T-1``; returns ``t`` as an int32 array.

    ``t`` may be a scalar (shared by the whole batch) or have shape ``(B,)``.
    """
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.integer):
        raise TypeError(
            f"{name} must hold integer timesteps in [0, {num_timesteps - 1}], "
            f"got dtype {t.dtype} (continuous times belong to the flow-matching API)"
        )
    if t.ndim > 1:
        raise ValueError(f"{name} must be a scalar or have shape (B,), got shape {t.shape}")
    if batch is not None and t.ndim == 1 and t.shape[0] != batch:
        raise ValueError(
            f"{name} has {t.shape[0]} timesteps but the batch has {batch} rows; "
            f"expected shape ({batch},) or a scalar"
        )
    if is_concrete(t) and t.size:
        lo, hi = int(np.min(t)), int(np.max(t))
        if lo < 0 or hi >= num_timesteps:
            raise ValueError(
                f"{name} must lie in [0, {num_timesteps - 1}] for a schedule with "
                f"T={num_timesteps}, got values in [{lo}, {hi}]"
            )
    return t.astype(jnp.int32)


def check_batched(x, *, name: str, min_rank: int = 1):
    """``x`` must be an array with a leading batch axis: ``(B, ...)``."""
    x = jnp.asarray(x)
    if x.ndim < min_rank:
        raise ValueError(
            f"{name} must have a leading batch axis, shape (B, ...) with at least "
            f"{min_rank} dims, got shape {x.shape}"
        )
    return x


def check_same_shape(a, b, *, names: tuple[str, str]):
    if jnp.shape(a) != jnp.shape(b):
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got "
            f"{jnp.shape(a)} and {jnp.shape(b)}"
        )


def check_choice(value, choices, *, name: str):
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {list(choices)}")
    return value


def check_shape(shape, *, name: str = "shape") -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError as err:
        raise TypeError(f"{name} must be a tuple of ints like (B, H, W, C), got {shape!r}") from err
    if len(shape) < 1 or any(s <= 0 for s in shape):
        raise ValueError(f"{name} must be a non-empty tuple of positive ints, got {shape}")
    return shape


def expand_to(coef, x):
    """Broadcast per-row coefficients ``()`` or ``(B,)`` against ``x`` of shape ``(B, ...)``."""
    coef = jnp.asarray(coef)
    if coef.ndim == 0:
        return coef
    return coef.reshape(coef.shape + (1,) * (x.ndim - coef.ndim))  # (B, 1, ..., 1)


def as_partial(fn, *, name: str = "denoise"):
    """Wrap a callable ``fn(x_t, t, cond)`` as a pytree so it can pass through ``jax.jit``."""
    if isinstance(fn, jax.tree_util.Partial):
        return fn
    if not callable(fn):
        raise TypeError(f"{name} must be callable as {name}(x_t, t, cond), got {type(fn).__name__}")
    return jax.tree_util.Partial(fn)
