"""`OutputCapture`: the head and the tail of a stream of text, in bounded memory."""

from __future__ import annotations

__all__ = ["OutputCapture"]


class OutputCapture:
    """Keeps the head and the tail of a stream of text, counting what was left out between
    them, so a tool printing gigabytes costs a bounded amount of memory: about ``limit``
    characters, three quarters from the head."""

    def __init__(self, limit: int) -> None:
        self._head_limit = limit * 3 // 4
        self._tail_limit = limit - self._head_limit
        self._head: list[str] = []
        self._head_len = 0
        self._tail = ""
        self.total = 0

    def add(self, text: str) -> None:
        """Append ``text`` to what was captured."""
        self.total += len(text)
        room = self._head_limit - self._head_len
        if room > 0:
            taken = text[:room]
            self._head.append(taken)
            self._head_len += len(taken)
            text = text[room:]
        if text:
            self._tail = (self._tail + text)[-self._tail_limit :] if self._tail_limit else ""

    @property
    def omitted(self) -> int:
        """How many characters are missing between head and tail."""
        return self.total - self._head_len - len(self._tail)

    def text(self) -> str:
        """The captured text, with a marker where characters were left out."""
        head = "".join(self._head)
        if self.omitted:
            return f"{head}\n[... {self.omitted} characters omitted ...]\n{self._tail}"
        return head + self._tail
