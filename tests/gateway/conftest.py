"""Fixtures of the gateway tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from gateway_support import Keys, gateway_app, make_keys, settings_for

from promptline.app import App
from promptline.config.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_for(tmp_path / "home")


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[tuple[App, httpx.AsyncClient]]:
    async with gateway_app(settings) as pair:
        yield pair


@pytest.fixture
async def keys(served: tuple[App, httpx.AsyncClient]) -> Keys:
    return await make_keys(served[0])
