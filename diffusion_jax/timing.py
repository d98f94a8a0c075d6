"""Wall-clock timing that keeps compilation out of the number (one module, used everywhere).

* :func:`timed` ``(fn)``: ``(result, seconds)`` of one call, blocking on JAX's async results.
* :func:`median_ms` ``(fn, repeats)``: median milliseconds over ``repeats`` calls after one
  warm-up call (which compiles).
* :func:`compile_timer`: a context manager whose dict's ``"seconds"`` sums the tracing and
  compilation JAX did inside the block (from :mod:`jax.monitoring` duration events), so a
  first call's run time can be reported without its compile time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import jax
import numpy as np

__all__ = ["timed", "median_ms", "compile_timer"]

_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """``(result, seconds)`` of one call of ``fn``, waiting for its arrays to be computed."""
    t0 = time.perf_counter()
    res = jax.block_until_ready(fn())
    return res, time.perf_counter() - t0


def median_ms(fn: Callable[[], object], repeats: int = 5) -> float:
    """Median milliseconds of ``repeats`` calls of ``fn`` after one warm-up (compiling) call."""
    if isinstance(repeats, bool) or int(repeats) != repeats or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    jax.block_until_ready(fn())
    return 1000.0 * float(np.median([timed(fn)[1] for _ in range(int(repeats))]))


@contextlib.contextmanager
def compile_timer():
    """Yields a dict whose ``"seconds"`` sums JAX's tracing and compilation inside the block."""
    spent = {"seconds": 0.0}

    def listener(event, duration, **kwargs):
        if event in _COMPILE_EVENTS:
            spent["seconds"] += float(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield spent
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
