"""Pytest fixtures serving the fake Anthropic server; import them into a test module or conftest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.anthropic_server import FakeAnthropic, running_fake_anthropic


@pytest.fixture(scope="session")
def anthropic_fake_server() -> Iterator[FakeAnthropic]:
    """One fake Anthropic server for the whole test session (state is reset per test)."""
    with running_fake_anthropic(FakeAnthropic()) as fake:
        yield fake


@pytest.fixture
def anthropic_fake(anthropic_fake_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    """The fake with an empty script and no recorded requests.

    On teardown it checks that the test used every scripted entry and scripted enough of them.
    """
    anthropic_fake_server.reset()
    yield anthropic_fake_server
    pending, misses = anthropic_fake_server.pending, anthropic_fake_server.misses
    anthropic_fake_server.reset()
    assert pending == 0, f"{pending} scripted fake Anthropic replies were never requested"
    assert misses == 0, f"{misses} requests reached the fake Anthropic with an empty script"
