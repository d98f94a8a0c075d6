"""Input validation shared by the library's public functions and the command line.

Every check raises a one-line ``ValueError`` (``TypeError`` for a wrong kind of object)
that names the argument and says what was expected and what came: ``per_class must be
>= 1, got 0``. ``name`` is the argument as the caller knows it, so the command line
passes its flag (``--per-class``) and the message is in the user's own vocabulary;
:func:`arg_name` turns a field name into either spelling.

Values inside ``jax.jit``. Shapes and dtypes are static and are checked while tracing,
exactly as outside. *Values* are tracers there and cannot be read without a host round
trip, so this project's rule is: an out-of-range value never yields plausible numbers.

* Timesteps: :func:`check_timesteps` raises for concrete arrays; for tracers it passes
  ``t`` through, and every schedule lookup goes through :func:`take_timesteps`, which
  returns NaN for an index outside ``[0, T-1]``. So ``t = 1000`` on a T = 1000 schedule,
  or ``t = -1``, makes those rows of ``x_t`` (and everything computed from them) NaN,
  instead of silently using ``t = 999`` (JAX clamps out-of-range gathers and wraps
  negative indices). A NaN loss or image is impossible to mistake for a result.
* Class labels of the exact toy mixture: a label outside ``[0, K]`` (K = the null,
  unconditional label) gives NaN rows the same way (:mod:`diffusion_jax.toy`).
* Anything else that only a value can reveal (a NaN guidance scale built inside a traced
  function) is the caller's job; the public entry points check it on concrete input.

Checked ``jax.experimental.checkify`` as the alternative: its checks fail to trace unless
the caller wraps the function with ``checkify.checkify``, which would break every plain
``jax.jit`` user, and a host callback that raises costs a device-to-host sync per call.
"""

from __future__ import annotations

import math
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["arg_name", "is_concrete", "check_timesteps", "take_timesteps", "check_batched", "check_same_shape",
           "check_choice", "check_shape", "check_int", "check_number", "check_key", "check_labels",
           "check_output_dir", "expand_to", "as_partial"]


def arg_name(field: str, as_flag: bool = False) -> str:
    """``per_class`` as Python spells it, or ``--per-class`` as the command line does."""
    return "--" + field.replace("_", "-") if as_flag else field


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_timesteps(t, num_timesteps: int, *, name: str = "t", batch: int | None = None):
    """Validate integer timesteps ``0..T-1``; returns ``t`` as an int32 array.

    ``t`` may be a scalar (shared by the whole batch) or have shape ``(B,)``. Values are
    checked only when concrete; traced values are left to :func:`take_timesteps`.
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


def take_timesteps(table, t):
    """``table[t]`` for a per-timestep ``(T,)`` table, NaN where ``t`` is outside ``[0, T-1]``.

    Concrete timesteps were already checked by :func:`check_timesteps`; this is what makes
    a traced out-of-range timestep visible (see the module docstring).
    """
    return jnp.asarray(table).at[t].get(mode="fill", fill_value=jnp.nan, wrap_negative_indices=False)


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


def check_int(value, *, name: str, min: int | None = None, max: int | None = None) -> int:
    """An integer (not a bool, not 2.5) in ``[min, max]``; returns it as ``int``."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok and isinstance(value, (float, np.floating)) and float(value).is_integer():
        ok, value = True, int(value)
    if not ok:
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if min is not None and value < min:
        raise ValueError(f"{name} must be >= {min}, got {value}")
    if max is not None and value > max:
        raise ValueError(f"{name} must be <= {max}, got {value}")
    return value


def check_number(value, *, name: str, min: float | None = None, max: float | None = None) -> float:
    """A finite real number in ``[min, max]``; returns it as ``float``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, (bool, np.bool_)) or np.ndim(value) != 0:
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {x}")
    if (min is not None and x < min) or (max is not None and x > max):
        lo = "-inf" if min is None else f"{min:g}"
        hi = "inf" if max is None else f"{max:g}"
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {x:g}")
    return x


def check_key(key, *, name: str = "key"):
    """A ``jax.random`` key: a typed key (``jax.random.key(seed)``) or a raw uint32 ``(2,)`` one."""
    shape, dtype = np.shape(key), getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
        return key
    if dtype is not None and dtype == jnp.uint32 and shape == (2,):
        return key
    what = f"{type(key).__name__} {key!r}" if np.ndim(key) == 0 else f"array of shape {shape} and dtype {dtype}"
    raise TypeError(f"{name} must be one jax.random key such as jax.random.key(0), got {what}")


def check_labels(labels, num_classes: int | None, *, name: str = "labels", allow_null: bool = True,
                 length: int | None = None) -> np.ndarray:
    """Integer class ids ``(N,)`` in ``[0, num_classes - 1]``, or ``num_classes`` (the null,
    unconditional label) when ``allow_null``; returns them as an int32 NumPy array.
    ``num_classes=None`` checks only that the ids are >= 0."""
    a = np.asarray(labels)
    if a.ndim != 1 or a.size == 0 or not (np.issubdtype(a.dtype, np.integer) and a.dtype != np.bool_):
        raise ValueError(f"{name} must be a non-empty 1-D array of integer class ids, got "
                         f"dtype {a.dtype} shape {a.shape}")
    if length is not None and len(a) != length:
        raise ValueError(f"{name} must have one entry per image ({length}), got {len(a)}")
    if num_classes is None:
        if a.min() < 0:
            raise ValueError(f"{name} must be class ids >= 0, got values down to {a.min()}")
        return a.astype(np.int32)
    hi = num_classes if allow_null else num_classes - 1
    if a.min() < 0 or a.max() > hi:
        null = f" ({num_classes} = unconditional)" if allow_null else ""
        raise ValueError(f"{name} must lie in [0, {hi}]{null}, got values in [{a.min()}, {a.max()}]")
    return a.astype(np.int32)


def check_output_dir(path, *, name: str = "out_dir", files=()) -> pathlib.Path:
    """A folder that can be created (or exists) and written, before any work is done.

    Refuses an empty path, a path that is a file or lies under one, a folder that cannot
    be written, and any of ``files`` (names inside it) that already exists as a folder.
    Creates nothing: the probe is a temporary file in the nearest existing folder.
    """
    if path is None or str(path).strip() == "":
        raise ValueError(f"{name} must name a folder, got an empty path")
    p = pathlib.Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a file; expected a folder")
    existing = p
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{name} {str(path)!r} lies under {str(existing)!r}, which is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {str(path)!r}: cannot write into {str(existing)!r} (permission denied)")
    try:  # os.access says yes to root even on a read-only file system: try it
        import tempfile

        with tempfile.TemporaryFile(dir=existing, prefix=".diffusion-jax-probe-"):
            pass
    except OSError as err:
        raise ValueError(f"{name} {str(path)!r}: cannot write into {str(existing)!r} ({err.strerror})") from None
    for f in files:
        if (p / f).is_dir():
            raise ValueError(f"{name} {str(path)!r} holds a folder named {f!r} where the output file goes")
    return p


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
