"""Layer 2: the append-only event log (`EventStore`) and publish/subscribe (`EventBus`)."""

from promptline.events.bus import BusSubscription, InProcessEventBus
from promptline.events.factory import create_event_store
from promptline.events.postgres import PostgresEventStore
from promptline.events.protocols import EventBus, EventFilter, EventStore, Subscription
from promptline.events.replay import Projection, replay
from promptline.events.sql import SqlEventStore
from promptline.events.sqlite import SqliteEventStore

__all__ = [
    "BusSubscription",
    "EventBus",
    "EventFilter",
    "EventStore",
    "InProcessEventBus",
    "PostgresEventStore",
    "Projection",
    "SqlEventStore",
    "SqliteEventStore",
    "Subscription",
    "create_event_store",
    "replay",
]
