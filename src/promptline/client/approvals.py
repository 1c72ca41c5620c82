"""Approvals over REST: the permission requests waiting for the caller, and answers to them."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

from promptline.client.models import Approval, ApprovalOutcome, GrantScope, items_of

if TYPE_CHECKING:
    from promptline.client.async_client import AsyncPromptLine

__all__ = ["Approvals"]


class Approvals:
    """``client.approvals``: tool calls waiting for a decision."""

    def __init__(self, client: AsyncPromptLine) -> None:
        self._http = client.http

    async def list(self, *, session_id: str | None = None) -> builtins.list[Approval]:
        """The pending requests the caller may answer (of one session when given)."""
        answer = await self._http.request("GET", "/v1/approvals", params={"session_id": session_id})
        return [Approval.model_validate(item) for item in items_of(answer)]

    async def respond(
        self,
        request_id: str,
        *,
        approve: bool,
        scope: GrantScope = "once",
        reason: str | None = None,
        content: dict[str, Any] | None = None,
    ) -> ApprovalOutcome:
        """Approve or refuse; ``scope`` says how far a yes reaches: this call (``once``),
        the rest of the session (``session``) or ``always``. ``content`` answers a question
        (tool ``mcp.<server>:elicitation``): the fields its ``requested_schema`` asks for."""
        body: dict[str, Any] = {"approve": approve, "scope": scope}
        if reason is not None:
            body["reason"] = reason
        if content is not None:
            body["content"] = content
        answer = await self._http.request("POST", f"/v1/approvals/{request_id}", json=body)
        return ApprovalOutcome.model_validate(answer if isinstance(answer, dict) else {})
