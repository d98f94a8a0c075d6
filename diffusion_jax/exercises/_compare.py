"""Comparing a learner's output with the reference, leaf by leaf, and saying where it differs.

:func:`compare` returns ``None`` when two pytrees agree within a tolerance, otherwise a
:class:`Mismatch` that knows which output (leaf) differs, how (structure, type, shape, NaN,
values) and, for batched outputs, which rows along axis 0. The grader turns that into one
line; it never needs the reference's values to do so, so a message cannot leak them.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Mismatch:
    kind: str  # "structure", "type", "shape", "nan" or "values"
    text: str  # what differs, without the case (the grader adds it after this)
    output: int | None = None  # leaf index when the output has several leaves
    bad_rows: tuple[int, ...] = ()  # rows (axis 0) of that leaf with a wrong entry
    num_rows: int = 0  # rows of that leaf (0 for a scalar leaf)
    max_error: float = 0.0
    ndim: int = 0  # of that leaf: a 1-D leaf has entries, not rows
    detail: str = ""  # shown after the case: ": expected (4, 3), got (4,)"


def _short(x, limit: int = 160) -> str:
    s = " ".join(str(x).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _leaves(tree):
    import jax

    return jax.tree_util.tree_flatten(tree)


def _as_array(x) -> np.ndarray:
    a = np.asarray(x)
    return a.astype(np.int8) if a.dtype == bool else a


def _output_name(i: int, n: int, names) -> str:
    if n <= 1:
        return ""
    label = f" ({names[i]})" if names and i < len(names) else ""
    return f" for output {i + 1} of {n}{label}"


def compare(expected, got, *, rtol: float, atol: float, output_names=()) -> Mismatch | None:
    """``None`` if ``got`` matches ``expected`` leaf by leaf within ``rtol``/``atol``."""
    exp_leaves, exp_def = _leaves(expected)
    try:
        got_leaves, got_def = _leaves(got)
    except Exception:  # pragma: no cover - flattening arbitrary objects rarely fails
        return Mismatch("type", "wrong output type", detail=f": got {type(got).__name__}")
    n = len(exp_leaves)
    if n != len(got_leaves):
        return Mismatch("structure", "wrong output structure", detail=f": expected {n} array(s) "
                        f"({_short(exp_def, 80)}), got {len(got_leaves)} ({_short(got_def, 80)})")
    arrays = []
    for i, (e, g) in enumerate(zip(exp_leaves, got_leaves)):
        where = _output_name(i, n, output_names)
        try:
            g_arr = _as_array(g)
        except Exception:
            return Mismatch("type", f"wrong output type{where}", i if n > 1 else None,
                            detail=f": got {type(g).__name__}")
        if g_arr.dtype == object or not np.issubdtype(g_arr.dtype, np.number):
            return Mismatch("type", f"wrong output type{where}", i if n > 1 else None,
                            detail=f": got {type(g).__name__} ({g_arr.dtype})")
        e_arr = _as_array(e)
        if e_arr.shape != g_arr.shape:
            return Mismatch("shape", f"wrong shape{where}", i if n > 1 else None,
                            detail=f": expected {e_arr.shape}, got {g_arr.shape}")
        arrays.append((i, where, e_arr, g_arr))
    for i, where, e_arr, g_arr in arrays:
        e64, g64 = e_arr.astype(np.complex128 if np.iscomplexobj(e_arr) else np.float64), \
            g_arr.astype(np.complex128 if np.iscomplexobj(g_arr) else np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            close = np.isclose(g64, e64, rtol=rtol, atol=atol, equal_nan=True)
        if np.all(close):
            continue
        bad_nan = np.isnan(g64) & ~np.isnan(e64)
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(g64 - e64)
        diff = np.where(close, 0.0, np.where(np.isnan(diff), np.inf, diff))
        rows: tuple[int, ...] = ()
        num_rows = 0
        if close.ndim >= 1:
            num_rows = close.shape[0]
            wrong = ~close.reshape(num_rows, -1).all(axis=1)  # (rows,)
            rows = tuple(int(r) for r in np.flatnonzero(wrong))
        if np.any(bad_nan):
            return Mismatch("nan", f"NaN in your output{where}", i if n > 1 else None, rows, num_rows,
                            float("inf"), close.ndim, f": at {int(bad_nan.sum())} of {bad_nan.size} entries")
        return Mismatch("values", f"wrong values{where}", i if n > 1 else None, rows, num_rows,
                        float(diff.max()), close.ndim)
    return None


def same(a, b, *, rtol: float, atol: float) -> bool:
    """True when two outputs agree (the test the grader uses to recognise a known mistake)."""
    try:
        return compare(a, b, rtol=rtol, atol=atol) is None
    except Exception:
        return False


def describe_rows(m: Mismatch, row_labels=None, limit: int = 4) -> str:
    """"rows with t = 0 are wrong (2 of 6 rows)", "rows 0, 5 of 6 are wrong" or
    "entries 3, 4, … are wrong (12 of 1000)"; "" when the leaf is a scalar."""
    if not m.num_rows or not m.bad_rows:
        return ""
    k, n = len(m.bad_rows), m.num_rows
    labelled = row_labels is not None and len(row_labels) == n
    what = "entries" if m.ndim == 1 and not labelled else "rows"
    one = "entry" if what == "entries" else "row"
    if k == n:
        return f"every {one} is wrong ({n} of {n})" if n > 1 else ""
    if labelled:
        labels = []
        for r in m.bad_rows:
            if row_labels[r] not in labels:
                labels.append(row_labels[r])
        shown = "; ".join(labels[:limit]) + ("; …" if len(labels) > limit else "")
        return f"{what if k > 1 else one} with {shown} {'are' if k > 1 else 'is'} wrong ({k} of {n} {what})"
    shown = ", ".join(str(r) for r in m.bad_rows[:limit]) + (", …" if k > limit else "")
    if k == 1:
        return f"{one} {shown} of {n} is wrong"
    return f"{what} {shown} are wrong ({k} of {n})"
