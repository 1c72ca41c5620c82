"""docs/client.md stays true: every Python example runs, as written, against a live gateway
(named by PROMPTLINE_URL and PROMPTLINE_API_KEY, the client's defaults)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from pathlib import Path

import pytest
from client_support import Served

DOC = Path(__file__).parents[2] / "docs" / "client.md"


def examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def run_example(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {"__name__": "client_doc_example"})
    return out.getvalue()


async def test_every_example_runs_against_a_live_gateway(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTLINE_URL", served.url)
    monkeypatch.setenv("PROMPTLINE_API_KEY", served.keys.alice)
    codes = examples()
    assert len(codes) == 8

    # Each example runs its own event loop (or none): in a thread, while the gateway runs
    # on this one.
    outputs = [await asyncio.to_thread(run_example, code) for code in codes]

    connecting, streaming, approvals, sessions, live, state, errors, blocking = outputs
    assert connecting.startswith("completed Hello from PromptLine's offline demo model!")
    assert 'You said: "stream it"' in streaming
    assert "ended with run_completed" in streaming
    assert re.search(r"run run_\w+ said Hello from PromptLine's offline demo model!", streaming)
    assert "pending now: []" in approvals
    assert "completed True" in approvals
    assert "found: " in sessions
    assert "[blue] [door]" in sessions
    assert "copied 2 messages" in sessions
    assert "deleted: no session" in sessions
    assert re.search(r"read up to seq \d+", live)
    assert "someone wrote first; value 2" in state
    assert "version 2" in state
    assert "not_found - no session 'ses_does_not_exist'" in errors
    assert "hint: " in errors
    assert 'You said: "hello from blocking code"' in blocking
    assert "the session began with session_created" in blocking
