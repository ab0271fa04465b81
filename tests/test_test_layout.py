"""Test modules have unique file names: pytest imports them by basename (no packages under tests/),
so a second `test_metrics.py` stops the whole collection on a fresh checkout."""

from __future__ import annotations

import collections
import pathlib

TESTS = pathlib.Path(__file__).resolve().parent


def test_no_two_test_modules_share_a_name():
    by_name = collections.defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        by_name[path.name].append(path.relative_to(TESTS).as_posix())
    assert {name: paths for name, paths in by_name.items() if len(paths) > 1} == {}
