"""Fixtures of the catalogue tests: ``sys.path`` and the modules of installed test packages
are restored after a test that loads them."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def clean_imports(tmp_path: Path) -> Iterator[None]:
    """Restore ``sys.path`` and forget modules imported from the test's folder."""
    saved_path = list(sys.path)
    before = set(sys.modules)
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for name in set(sys.modules) - before:
            location = str(getattr(sys.modules.get(name), "__file__", "") or "")
            if location.startswith(str(tmp_path)):
                del sys.modules[name]
        importlib.invalidate_caches()
