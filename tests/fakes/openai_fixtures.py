"""Pytest fixtures serving the fake OpenAI server; import them into a test module or conftest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.openai_server import FakeOpenAI, running_fake_openai


@pytest.fixture(scope="session")
def openai_fake_server() -> Iterator[FakeOpenAI]:
    """One fake OpenAI server for the whole test session (state is reset per test)."""
    with running_fake_openai(FakeOpenAI()) as fake:
        yield fake


@pytest.fixture
def openai_fake(openai_fake_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The fake with an empty script and no recorded requests.

    On teardown it checks that the test used every scripted entry and scripted enough of them.
    """
    openai_fake_server.reset()
    yield openai_fake_server
    pending, misses = openai_fake_server.pending, openai_fake_server.misses
    openai_fake_server.reset()
    assert pending == 0, f"{pending} scripted fake OpenAI replies were never requested"
    assert misses == 0, f"{misses} requests reached the fake OpenAI with an empty script"
