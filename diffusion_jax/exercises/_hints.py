"""Hints on request: ``hint("q_sample")`` shows the next tier, one call at a time.

The tiers live with the exercise's registration (``hints=(...)`` in ``lessonNN.py``). The
first tiers nudge (which quantity, which shape); only the last may give the formula. A
quiz notebook switches hints off with :func:`closed_book`.
"""

from __future__ import annotations

import time

from diffusion_jax.exercises import _answers, _core

_SHOWN: dict[str, int] = {}  # name -> highest tier shown in this session


def hints_of(name: str) -> tuple[str, ...]:
    if name in _core._REGISTRY:
        return _core._REGISTRY[name].hints
    if name in _answers._ANSWERS:
        return _answers._ANSWERS[name].hints
    known = sorted(set(_core._REGISTRY) | set(_answers._ANSWERS))
    raise ValueError(f"no exercise or question named {name!r}; known names: {', '.join(known) or '(none)'}")


def hint(name: str, tier: int | None = None) -> None:
    """Print hint ``tier`` (1, 2, ...) of exercise or question ``name``; without ``tier``,
    the next one not shown yet in this session (the last one again once all are shown)."""
    tiers = hints_of(name)
    if _core.closed_book_active():
        print(f"{name}: this is a closed-book quiz; no hints")
        return
    n = len(tiers)
    if tier is None:
        tier = min(_SHOWN.get(name, 0) + 1, n)
    if not isinstance(tier, int) or isinstance(tier, bool) or not 1 <= tier <= n:
        raise ValueError(f"hint {name!r}: tier must be an int in 1..{n}, got {tier!r}")
    _SHOWN[name] = max(_SHOWN.get(name, 0), tier)
    more = (f'  (hint("{name}") again for hint {tier + 1} of {n})' if tier < n
            else ("  (that was the last hint)" if n > 1 else ""))
    print(f"💡 {name}, hint {tier} of {n}: {tiers[tier - 1]}{more}")


def hints_shown() -> dict[str, int]:
    """Highest hint tier shown per name in this session."""
    return dict(_SHOWN)


def closed_book(minutes: float | None = None, *, on: bool = True) -> None:
    """Start a closed-book quiz in this notebook: no hints, and ``check``/``check_answer``
    record an answer without saying whether it is right. Prints the time limit and the
    time it ends, if given."""
    _core.set_closed_book(on)
    if not on:
        print("closed-book mode off")
        return
    line = "closed-book quiz: hints are off and answers are graded after the quiz"
    if minutes:
        end = time.strftime("%H:%M", time.localtime(time.time() + 60 * float(minutes)))
        line += f"; time limit {minutes:g} minutes (ends at {end})"
    print(line)
