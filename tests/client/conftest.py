"""Fixtures of the client library's tests: a real gateway (``promptline serve`` on a free
loopback port) on a temporary home, with API keys, and clients of it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "gateway"))

from client_support import Served, client_settings, serving

from promptline.client import AsyncPromptLine
from promptline.config.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return client_settings(tmp_path / "home")


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[Served]:
    async with serving(settings) as found:
        yield found


@pytest.fixture
async def client(served: Served) -> AsyncIterator[AsyncPromptLine]:
    async with AsyncPromptLine(served.url, served.keys.alice) as found:
        yield found
