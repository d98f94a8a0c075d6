"""Test-session settings shared by every test file.

`make test` runs the suite on two pytest-xdist workers with ``--dist loadgroup``. The hook
below puts each test file in one group, so a module-scoped fixture (a trained tiny model,
a parsed CLI table) is built once, in one worker; the lesson notebooks are grouped per
lesson instead, so the twelve lessons spread over both workers while a lesson's solution
and learner runs (which share lesson 02's short training run in the checkpoint cache)
never run at the same time. Without xdist the marks are inert.
"""

from __future__ import annotations

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "xdist_group(name): tests that must run in the same xdist worker")


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__ if item.module is not None else item.nodeid.split("::")[0]
        group = module
        lesson = getattr(item, "callspec", None) and item.callspec.params.get("lesson")
        if module.endswith("test_lessons") and lesson is not None:
            group = f"lesson-{getattr(lesson, 'stem', lesson)}"
        item.add_marker(pytest.mark.xdist_group(group))
