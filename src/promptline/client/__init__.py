"""The Python client of a PromptLine gateway: `AsyncPromptLine` (asyncio) and `PromptLine`
(blocking), over its REST, Server-Sent Events and WebSocket APIs.

Importing it loads neither the server nor the database layers, and each name loads its own
module on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptline._lazy import lazy_names

if TYPE_CHECKING:
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

_LAZY = {
    "AsyncPromptLine": "promptline.client.async_client",
    "Backoff": "promptline.client.backoff",
    "ClientError": "promptline.client.errors",
    "ConnectionLostError": "promptline.client.errors",
    "Agent": "promptline.client.models",
    "Approval": "promptline.client.models",
    "ApprovalOutcome": "promptline.client.models",
    "CatalogueModel": "promptline.client.models",
    "Model": "promptline.client.models",
    "Page": "promptline.client.models",
    "Run": "promptline.client.models",
    "RunStatus": "promptline.client.models",
    "SearchHit": "promptline.client.models",
    "Session": "promptline.client.models",
    "StartedRun": "promptline.client.models",
    "StateEntry": "promptline.client.models",
    "Tool": "promptline.client.models",
    "RunStream": "promptline.client.run_stream",
    "Subscription": "promptline.client.subscription",
    "PromptLine": "promptline.client.sync_client",
    "SyncRunStream": "promptline.client.sync_client",
    "SyncSubscription": "promptline.client.sync_client",
    "SyncWebSocketConnection": "promptline.client.sync_client",
    "WebSocketConnection": "promptline.client.websocket",
    "AuthenticationError": "promptline.core.errors",
    "ConflictError": "promptline.core.errors",
    "InvalidInputError": "promptline.core.errors",
    "NotFoundError": "promptline.core.errors",
    "PayloadTooLargeError": "promptline.core.errors",
    "PermissionDeniedError": "promptline.core.errors",
    "PromptLineError": "promptline.core.errors",
    "RateLimitedError": "promptline.core.errors",
    "ServiceUnavailableError": "promptline.core.errors",
}

__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__)
