"""Runs over REST: list and read their records; cancel, pause and resume them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptline.client.models import Page, Run, RunStatus

if TYPE_CHECKING:
    from promptline.client.async_client import AsyncPromptLine

__all__ = ["Runs"]


class Runs:
    """``client.runs``: the runs of the sessions the caller may see."""

    def __init__(self, client: AsyncPromptLine) -> None:
        self._http = client.http

    async def list(
        self,
        *,
        session_id: str | None = None,
        status: str | None = None,
        active: bool | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Run]:
        """One page of run records, newest first (``active``: only runs not ended yet)."""
        params = {
            "session_id": session_id,
            "status": status,
            "active": active,
            "limit": limit,
            "cursor": cursor,
        }
        return Page[Run].model_validate(await self._http.request("GET", "/v1/runs", params=params))

    async def get(self, run_id: str) -> Run:
        """The run's record (status, answer, usage, cost, error)."""
        return Run.model_validate(await self._http.request("GET", f"/v1/runs/{run_id}"))

    async def cancel(self, run_id: str) -> RunStatus:
        """Cancel the run (its events end with ``run_cancelled``)."""
        return await self._control(run_id, "cancel")

    async def pause(self, run_id: str) -> RunStatus:
        """Pause the run at its next safe point."""
        return await self._control(run_id, "pause")

    async def resume(self, run_id: str) -> RunStatus:
        """Resume a paused run."""
        return await self._control(run_id, "resume")

    async def _control(self, run_id: str, action: str) -> RunStatus:
        answer = await self._http.request("POST", f"/v1/runs/{run_id}/{action}")
        return RunStatus.model_validate({"run_id": run_id, **(answer or {})})
