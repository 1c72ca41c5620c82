"""The Python client of a PromptLine gateway: `AsyncPromptLine` (asyncio) and `PromptLine`
(blocking), over its REST, Server-Sent Events and WebSocket APIs.

Importing it loads neither the server nor the database layers."""

from __future__ import annotations

from promptline.client.async_client import AsyncPromptLine
from promptline.client.backoff import Backoff
from promptline.client.errors import ClientError, ConnectionLostError
from promptline.client.models import (
    Agent,
    Approval,
    ApprovalOutcome,
    CatalogueModel,
    Model,
    Page,
    Run,
    RunStatus,
    SearchHit,
    Session,
    StartedRun,
    StateEntry,
    Tool,
)
from promptline.client.run_stream import RunStream
from promptline.client.subscription import Subscription
from promptline.client.sync_client import (
    PromptLine,
    SyncRunStream,
    SyncSubscription,
    SyncWebSocketConnection,
)
from promptline.client.websocket import WebSocketConnection
from promptline.core.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PromptLineError,
    RateLimitedError,
    ServiceUnavailableError,
)

__all__ = [
    "Agent",
    "Approval",
    "ApprovalOutcome",
    "AsyncPromptLine",
    "AuthenticationError",
    "Backoff",
    "CatalogueModel",
    "ClientError",
    "ConflictError",
    "ConnectionLostError",
    "InvalidInputError",
    "Model",
    "NotFoundError",
    "Page",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PromptLine",
    "PromptLineError",
    "RateLimitedError",
    "Run",
    "RunStatus",
    "RunStream",
    "SearchHit",
    "ServiceUnavailableError",
    "Session",
    "StartedRun",
    "StateEntry",
    "Subscription",
    "SyncRunStream",
    "SyncSubscription",
    "SyncWebSocketConnection",
    "Tool",
    "WebSocketConnection",
]
