"""What the local and the remote chat share: writing lines, errors with their hints, the
``/mode`` command and how a session is listed."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal, TextIO

if TYPE_CHECKING:
    from promptline.cli.live import Style

Mode = Literal["plan", "act"]

__all__ = ["ChatScreen", "session_line"]


class ChatScreen:
    """Base of both REPLs; a subclass sets ``out``, ``style``, ``mode`` and ``session_id``."""

    out: TextIO
    style: Style
    mode: Mode
    session_id: str | None

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def error(self, message: str, hint: str | None = None) -> None:
        self.say(self.style.red(f"error: {message}"))
        if hint:
            self.say(self.style.yellow(f"hint: {hint}"))

    def _mode(self, args: list[str]) -> None:
        if not args:
            self.say(f"mode: {self.mode}")
            return
        if args[0] not in ("plan", "act"):
            self.error(f"unknown mode {args[0]!r}", "use /mode plan or /mode act")
            return
        self.mode = "plan" if args[0] == "plan" else "act"
        self.say(f"mode: {self.mode}")

    def _say_session(
        self, session_id: str, count: int, updated: datetime | None, status: str
    ) -> None:
        self.say(session_line(session_id, count, updated, status, current=self.session_id))


def session_line(
    session_id: str, count: int, updated: datetime | None, status: str, *, current: str | None
) -> str:
    """One row of ``/session list``; the current session is marked ``*``."""
    mark = "*" if session_id == current else " "
    when = updated.strftime("%Y-%m-%d %H:%M") if updated else ""
    return f"{mark} {session_id}  {count:>4} messages  {when}  {status}"
