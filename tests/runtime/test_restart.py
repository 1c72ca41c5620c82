"""A process killed while a run waits for an approval: after a restart the approval is still
pending, can be answered, and the run goes on; a run killed mid-way is recorded as
interrupted."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from promptline.app import App, build_app
from promptline.config import load_settings
from promptline.events.protocols import EventFilter
from promptline.runtime.records import load_run
from promptline.sessions.models import Principal

CONFIG = """\
models:
  default: scripted/writer
  providers:
    scripted:
      scripts_dir: "{scripts}"
tools:
  file_write: ask
  shell_execute: allow
agent:
  default_mode: act
  stream_enabled: false
  workspace: "{workspace}"
"""

SLEEPER = """\
- tool_calls:
    - name: shell_execute
      arguments: {command: "sleep 60"}
- reply: "slept"
"""

WRITER = """\
- tool_calls:
    - name: file_write
      arguments: {path: note.txt, content: "written after the restart"}
- reply: "Done: note.txt is written."
"""

CHILD = """\
import asyncio, sys
from promptline.app import build_app
from promptline.config import load_settings
from promptline.sessions.models import Principal

async def main():
    async with build_app(load_settings(sys.argv[1])) as app:
        runtime = await app.start_runtime()
        principal = Principal(user_id="alice")
        session = await app.sessions.create(principal, channel="cli")
        print(session.id, flush=True)
        run = await runtime.start_run(
            "go", session_id=session.id, principal=principal, model=sys.argv[2]
        )
        await run.result()  # waits for the approval until the process is killed

asyncio.run(main())
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROMPTLINE_HOME", str(tmp_path / "home"))
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "writer.yaml").write_text(WRITER, encoding="utf-8")
    (scripts / "sleeper.yaml").write_text(SLEEPER, encoding="utf-8")
    (tmp_path / "workspace").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(
        CONFIG.format(scripts=scripts, workspace=tmp_path / "workspace"), encoding="utf-8"
    )
    return tmp_path


async def _crash(home: Path, script: str, wait_for: str) -> str:
    """Run a child process that starts a run of ``scripted/<script>``, wait until the run
    records ``wait_for``, kill the child (SIGKILL); returns the session id."""
    child = home / "child.py"
    child.write_text(textwrap.dedent(CHILD), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(child),
        str(home / "config.yaml"),
        f"scripted/{script}",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ},
    )
    try:
        assert proc.stdout is not None
        session_id = (await proc.stdout.readline()).decode().strip()
        assert session_id.startswith("ses_")
        async with build_app(load_settings(home / "config.yaml")) as app:
            wanted = EventFilter(types=frozenset({wait_for}), session_id=session_id)
            for _ in range(600):  # until the child got there (bounded: 60 s)
                if await app.events.count(wanted):
                    break
                await asyncio.sleep(0.1)
            assert await app.events.count(wanted) == 1
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), timeout=30)
        return session_id
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def crashed(home: Path) -> tuple[str, Path]:
    """A child process that started a run and was killed while it waited for approval."""
    return await _crash(home, "writer", "permission_request"), home


async def _restart(home: Path) -> AsyncIterator[App]:
    async with build_app(load_settings(home / "config.yaml")) as app:
        await app.start_runtime()
        yield app


async def test_an_approval_pending_at_a_crash_can_be_answered_and_the_run_goes_on(
    crashed: tuple[str, Path],
) -> None:
    session_id, home = crashed
    async for app in _restart(home):
        [pending] = await app.permissions.pending(session_id)
        assert pending.tool == "file_write"
        record = await load_run(app.events, pending.run_id or "")
        assert record.status == "waiting_approval"

        finished = app.bus.subscribe(
            EventFilter(types=frozenset({"run_completed", "run_failed"}), session_id=session_id)
        )
        await app.permissions.respond(pending.request_id, approve=True, decided_by="alice")
        event = await asyncio.wait_for(anext(aiter(finished)), timeout=30)
        await finished.close()

        assert event.type == "run_completed"
        assert (home / "workspace" / "note.txt").read_text() == "written after the restart"
        record = await load_run(app.events, pending.run_id or "")
        assert record.status == "completed"
        assert record.output == "Done: note.txt is written."
        assert record.tool_calls.count("file_write") == 2  # asked before, run after the restart


async def test_a_denial_after_the_crash_reaches_the_model_and_nothing_is_written(
    crashed: tuple[str, Path],
) -> None:
    session_id, home = crashed
    async for app in _restart(home):
        [pending] = await app.permissions.pending(session_id)
        finished = app.bus.subscribe(
            EventFilter(types=frozenset({"run_completed", "run_failed"}), session_id=session_id)
        )
        await app.permissions.respond(pending.request_id, approve=False, decided_by="alice")
        event = await asyncio.wait_for(anext(aiter(finished)), timeout=30)
        await finished.close()

        assert event.type == "run_completed"
        assert not (home / "workspace" / "note.txt").exists()
        events = await app.events.read_all(EventFilter(run_id=pending.run_id))
        results = [e for e in events if e.type == "tool_result"]
        assert results[-1].data.result.metadata["outcome"] == "denied"


async def test_a_run_killed_during_a_tool_call_resumes_and_the_model_hears_the_call_was_cut(
    home: Path,
) -> None:
    session_id = await _crash(home, "sleeper", "tool_command")
    async for app in _restart(home):
        [queued] = await app.events.read_all(
            EventFilter(session_id=session_id, types=frozenset({"run_queued"}))
        )
        record = await app.runtime.wait(queued.run_id or "")

        assert (record.status, record.output, record.resumed) == ("completed", "slept", 1)
        events = await app.events.read_all(EventFilter(run_id=queued.run_id))
        # shell_execute may have had an effect: it is not run again, and the model is told.
        assert [e.type for e in events].count("tool_command") == 1
        [result] = [e.data.result for e in events if e.type == "tool_result"]
        assert result.metadata["outcome"] == "interrupted"
        assert "interrupted by a restart" in result.text
        # The session takes new runs.
        again = await app.runtime.run(
            "hello",
            session_id=session_id,
            principal=Principal(user_id="alice"),
            model="scripted/demo",
        )
        assert again.ok


async def test_a_run_of_an_agent_with_on_crash_interrupt_is_recorded_as_interrupted(
    home: Path,
) -> None:
    config = home / "config.yaml"
    config.write_text(
        config.read_text().replace(
            "  default_mode: act", "  default_mode: act\n  on_crash: interrupt"
        ),
        encoding="utf-8",
    )
    session_id = await _crash(home, "sleeper", "tool_command")
    async for app in _restart(home):
        [queued] = await app.events.read_all(
            EventFilter(session_id=session_id, types=frozenset({"run_queued"}))
        )
        record = await load_run(app.events, queued.run_id or "")
        assert (record.status, record.cancelled_by) == ("interrupted", "recovery")
        events = await app.events.read_all(EventFilter(run_id=queued.run_id))
        states = [e.data.to_state for e in events if e.type == "agent_lifecycle"]
        assert states[-2:] == ["stopping", "stopped"]
        # Its open call is answered, so the session's conversation stays valid for providers.
        session = await app.sessions.get(session_id, Principal(user_id="alice"))
        assert session.history[-1].role == "tool"
        assert "did not finish" in session.history[-1].text
