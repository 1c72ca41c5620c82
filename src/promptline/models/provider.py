"""The `ModelProvider` protocol: what every wire-format implementation offers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from promptline.models.types import ModelRequest, ModelResponse, StreamDelta


class ModelProvider(Protocol):
    """Talks to one endpoint in one wire format.

    ``request.model`` reaching a provider is the bare model name (``gpt-4``), the router having
    stripped the ``provider/`` prefix. Errors are `core.errors.ProviderError` subclasses whose
    ``retryable`` flag the router's failover trusts.
    """

    @property
    def name(self) -> str:
        """The provider's configured name (``openai``, ``kimi``, ``ollama``, ...)."""
        ...

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """One call; the whole answer."""
        ...

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamDelta | ModelResponse]:
        """Deltas as they arrive, then exactly one final `ModelResponse` (the full answer)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
