"""Appending never reads or rewrites the history: the same statements at message 3 and 60."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sessions_support import ALICE, Stack
from sqlalchemy import event

from promptline.core.messages import Message


@contextmanager
def _statements(stack: Stack) -> Iterator[list[tuple[str, str]]]:
    """Every SQL statement the engine runs inside the block, with its parameters' text."""
    seen: list[tuple[str, str]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((" ".join(statement.split()), repr(params)))

    event.listen(stack.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(stack.engine.sync_engine, "before_cursor_execute", record)


async def _append(stack: Stack, sid: str) -> list[tuple[str, str]]:
    with _statements(stack) as seen:
        await stack.manager.append_message(sid, Message(role="user", content="hello"), ALICE)
    return seen


async def test_an_append_runs_the_same_statements_however_long_the_history(stack: Stack) -> None:
    big_context = {"notes": "n" * 50_000}
    session = await stack.manager.create(ALICE, channel="cli", context=big_context)
    for _ in range(2):
        await _append(stack, session.id)
    early = await _append(stack, session.id)
    for _ in range(56):
        await _append(stack, session.id)
    late = await _append(stack, session.id)

    assert [sql for sql, _ in early] == [sql for sql, _ in late]
    for sql, params in late:
        lowered = sql.lower()
        assert not re.search(r"select .* from session_messages", lowered), sql
        assert "context" not in lowered or not lowered.startswith("update"), sql
        assert "nnnnnnnnnn" not in params  # the context is neither read back nor written
    assert (await stack.manager.get(session.id, ALICE)).message_count == 60
