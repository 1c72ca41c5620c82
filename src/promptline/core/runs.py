"""The statuses of a run, as its record tells them: one list for the runtime, the API and the
CLI (this module imports nothing heavy, so the CLI can name them at start-up)."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["OPEN_STATUSES", "RUN_STATUSES", "RunRecordStatus"]

RunRecordStatus = Literal[
    "queued",
    "running",
    "waiting_approval",
    "completed",
    "failed",
    "cancelled",
    "interrupted",
    "steered",
]
"""``queued`` (waiting for its session's turn), ``running``, ``waiting_approval``; then how it
ended: ``completed``, ``failed``, ``cancelled``, ``interrupted`` (a process stopped it and it
was not resumed), ``steered`` (its message joined the run in flight instead)."""

RUN_STATUSES: tuple[str, ...] = get_args(RunRecordStatus)
"""Every status, in the order above."""

OPEN_STATUSES = frozenset({"queued", "running", "waiting_approval"})
"""The statuses of a run that has not ended."""
