"""Fixtures of the tools tests: a workspace folder and an event bus in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from promptline.events.bus import InProcessEventBus
from promptline.events.memory import InMemoryEventStore


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty workspace folder, with ``outside`` next to it for escape attempts."""
    folder = tmp_path / "workspace"
    folder.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("top secret\n")
    return folder


@pytest.fixture
async def bus() -> AsyncIterator[InProcessEventBus]:
    """An event bus over an in-memory event store."""
    bus = InProcessEventBus(InMemoryEventStore())
    yield bus
    await bus.close()
