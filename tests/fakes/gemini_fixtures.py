"""Pytest fixtures serving the fake Gemini server; import them into a test module or conftest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.gemini_server import FakeGemini, running_fake_gemini


@pytest.fixture(scope="session")
def gemini_fake_server() -> Iterator[FakeGemini]:
    """One fake Gemini server for the whole test session (state is reset per test)."""
    with running_fake_gemini(FakeGemini()) as fake:
        yield fake


@pytest.fixture
def gemini_fake(gemini_fake_server: FakeGemini) -> Iterator[FakeGemini]:
    """The fake with an empty script and no recorded requests.

    On teardown it checks that the test used every scripted entry and scripted enough of them.
    """
    gemini_fake_server.reset()
    yield gemini_fake_server
    pending, misses = gemini_fake_server.pending, gemini_fake_server.misses
    gemini_fake_server.reset()
    assert pending == 0, f"{pending} scripted fake Gemini replies were never requested"
    assert misses == 0, f"{misses} requests reached the fake Gemini with an empty script"
