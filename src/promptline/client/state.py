"""State over REST: values in the ``global`` (the tenant's), ``session`` and ``local`` (the
caller's own) scopes, versioned, with compare-and-set."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptline.client.models import Scope, StateEntry

if TYPE_CHECKING:
    from promptline.client.async_client import AsyncPromptLine

__all__ = ["State"]


class State:
    """``client.state``: a key/value store in three scopes."""

    def __init__(self, client: AsyncPromptLine) -> None:
        self._http = client.http

    async def get(self, scope: Scope, key: str, *, session_id: str | None = None) -> StateEntry:
        """The value at ``key`` and its version; `NotFoundError` when nothing is stored
        there. ``session_id`` names the session of the ``session`` scope."""
        answer = await self._http.request(
            "GET", f"/v1/state/{scope}/{key}", params={"session_id": session_id}
        )
        return _entry(answer)

    async def set(
        self,
        scope: Scope,
        key: str,
        value: Any,
        *,
        expected_version: int | None = None,
        session_id: str | None = None,
    ) -> StateEntry:
        """Store ``value``; with ``expected_version`` only if the stored version is that one
        (0: nothing stored yet), `ConflictError` otherwise."""
        body: dict[str, Any] = {"value": value}
        if expected_version is not None:
            body["expected_version"] = expected_version
        answer = await self._http.request(
            "PUT", f"/v1/state/{scope}/{key}", params={"session_id": session_id}, json=body
        )
        return _entry(answer)

    async def delete(self, scope: Scope, key: str, *, session_id: str | None = None) -> None:
        """Remove the value at ``key``."""
        await self._http.request(
            "DELETE", f"/v1/state/{scope}/{key}", params={"session_id": session_id}
        )


def _entry(answer: Any) -> StateEntry:
    return StateEntry.model_validate(answer if isinstance(answer, dict) else {"value": answer})
