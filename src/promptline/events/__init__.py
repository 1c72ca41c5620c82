"""Layer 2: the append-only event log (`EventStore`) and publish/subscribe (`EventBus`).

Names are imported on first use, so ``promptline.events.bus`` or the in-memory store do not
pull in SQLAlchemy and the database drivers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Light, and eager on purpose: the submodule `replay` would otherwise shadow the function.
from promptline.events.protocols import EventBus, EventFilter, EventStore, Subscription
from promptline.events.replay import Projection, replay

if TYPE_CHECKING:
    from promptline.events.bus import BusSubscription, InProcessEventBus
    from promptline.events.factory import create_event_store
    from promptline.events.memory import InMemoryEventStore
    from promptline.events.postgres import PostgresEventStore
    from promptline.events.sql import SqlEventStore
    from promptline.events.sqlite import SqliteEventStore

_WHERE = {
    "BusSubscription": "bus",
    "InProcessEventBus": "bus",
    "create_event_store": "factory",
    "InMemoryEventStore": "memory",
    "PostgresEventStore": "postgres",
    "SqlEventStore": "sql",
    "SqliteEventStore": "sqlite",
}

__all__ = [
    "BusSubscription",
    "EventBus",
    "EventFilter",
    "EventStore",
    "InMemoryEventStore",
    "InProcessEventBus",
    "PostgresEventStore",
    "Projection",
    "SqlEventStore",
    "SqliteEventStore",
    "Subscription",
    "create_event_store",
    "replay",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'promptline.events' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"promptline.events.{module}"), name)
    globals()[name] = value
    return value
