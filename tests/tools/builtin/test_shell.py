"""shell_execute: exit code and output, a minimal environment, resource limits, output
streamed while the command runs (at a bounded rate and size) and saved whole to a bounded file
of the workspace, answers that show the end of the output when time runs out, and no process
left behind after a timeout, a cancellation or the command's end."""

from __future__ import annotations

import asyncio
import shlex
import sys
import time
import tracemalloc
from collections.abc import Mapping
from pathlib import Path

import pytest

from promptline.core.events import ToolProgressEvent, ToolResultEvent
from promptline.core.messages import ToolCall
from promptline.events.bus import InProcessEventBus
from promptline.events.factory import create_event_store
from promptline.events.protocols import EventFilter
from promptline.storage.database import create_engine
from promptline.tools import ToolOutput, ToolRegistry
from promptline.tools.base import ToolError
from promptline.tools.builtin import file_read, shell_execute
from promptline.tools.builtin.output_file import MAX_OUTPUT_FILE_BYTES, OUTPUT_FOLDER
from promptline.tools.executor import (
    MAX_PROGRESS_OUTPUT_CHARS,
    MAX_PROGRESS_TOTAL_CHARS,
    PROGRESS_INTERVAL_SECS,
    CallScope,
    ToolExecutor,
)
from tools.support import STUCK, context, listing, real, recorded
from tools.support import call as call_tool

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell and rlimits")


async def run(
    workspace: Path,
    command: str,
    *,
    limits: Mapping[str, float] | None = None,
    **arguments: object,
) -> ToolOutput:
    ctx = context(workspace, tool="shell_execute", limits=dict(limits or {}), timeout=STUCK)
    arguments["command"] = command
    result = await shell_execute.run(shell_execute.validate(arguments), ctx)
    assert isinstance(result, ToolOutput)
    return result


def text(result: ToolOutput) -> str:
    assert isinstance(result.content, str)
    return result.content


def shown(result: ToolOutput) -> str:
    """The answer without its last line, the one naming the output file."""
    return text(result).rsplit("\n", 1)[0]


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting for its parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def all_gone(pids: list[int]) -> bool:
    """Whether every pid ends within the bound (SIGKILL is immediate; this covers scheduling)."""
    deadline = asyncio.get_running_loop().time() + STUCK
    while not all(gone(pid) for pid in pids):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


async def test_a_command_returns_its_output_and_exit_code(workspace: Path) -> None:
    result = await run(workspace, "echo out; echo err >&2")

    assert text(result) == (
        "out\nerr\n[exit code 0]\n[the whole output (8 bytes) is in "
        ".promptline/tool-output/call_test.log; read it with file_read]"
    )
    assert not result.is_error
    assert result.metadata["exit_code"] == 0
    assert result.metadata["output_file"] == ".promptline/tool-output/call_test.log"


async def test_a_failing_command_is_an_error_result_not_an_exception(
    bus: InProcessEventBus, workspace: Path
) -> None:
    executor = ToolExecutor(ToolRegistry([shell_execute]), bus)
    call = ToolCall(name="shell_execute", arguments={"command": "echo nope; exit 3"})

    result = await executor.execute(call, CallScope(workspace=workspace, session_id="s1"))

    assert result.is_error
    assert result.text.startswith("nope\n[exit code 3]\n[the whole output (5 bytes) is in ")
    assert result.metadata["outcome"] == "error"
    assert result.metadata["exit_code"] == 3


async def test_a_command_runs_in_the_workspace_or_a_folder_of_it(workspace: Path) -> None:
    (workspace / "sub").mkdir()

    root = await run(workspace, "pwd")
    sub = await run(workspace, "pwd", cwd="sub")

    assert text(root).splitlines()[0] == real(workspace)
    assert text(sub).splitlines()[0] == real(workspace / "sub")


@pytest.mark.parametrize(
    ("cwd", "rule"),
    [("..", r"'\.\.' may not climb"), ("/tmp", "is absolute"), ("nowhere", "is not a folder")],
)
async def test_cwd_must_be_a_folder_of_the_workspace(workspace: Path, cwd: str, rule: str) -> None:
    with pytest.raises(ToolError, match=rule):
        await run(workspace, "pwd", cwd=cwd)


async def test_an_empty_command_is_refused(workspace: Path) -> None:
    with pytest.raises(ToolError, match="the command is empty"):
        await run(workspace, "  ")


async def test_the_environment_is_minimal_and_holds_no_server_secrets(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-server-secret")

    env = dict(line.split("=", 1) for line in text(await run(workspace, "env")).splitlines()[:-2])

    assert "OPENAI_API_KEY" not in env
    assert env["HOME"] == real(workspace)
    assert env["LANG"] == "C.UTF-8"
    assert env["PATH"]
    assert set(env) <= {"PATH", "HOME", "LANG", "PWD", "SHLVL", "_", "OLDPWD"}


async def test_stdin_is_closed(workspace: Path) -> None:
    result = await run(workspace, "cat; echo after")

    assert shown(result) == "after\n[exit code 0]"


async def test_memory_and_cpu_limits_come_from_the_configured_limits(workspace: Path) -> None:
    limits = {"memory_mb": 256, "cpu_percent": 50, "timeout_secs": 10}

    result = await run(workspace, "ulimit -v; ulimit -S -t; ulimit -H -t", limits=limits)

    assert text(result).splitlines()[:3] == [str(256 * 1024), "5", "6"]


async def test_the_memory_limit_stops_a_process_that_allocates_too_much(workspace: Path) -> None:
    grab = shlex.quote(sys.executable) + " -c 'bytearray(1024 * 1024 * 1024)'"

    result = await run(workspace, grab, limits={"memory_mb": 200})

    assert result.is_error
    assert "MemoryError" in text(result)


async def test_the_cpu_limit_stops_a_busy_loop(workspace: Path) -> None:
    # 5 % of a 20 s limit is 1 CPU second: SIGXCPU arrives long before the wall-clock
    # limit, even on a machine too busy to give the loop a whole core.
    limits = {"cpu_percent": 5, "timeout_secs": 20}

    result = await run(workspace, "while :; do :; done", limits=limits)

    assert result.is_error
    assert result.metadata["timed_out"] is False
    assert "SIGXCPU, CPU time limit reached" in text(result)


async def test_a_huge_output_keeps_its_head_and_tail(workspace: Path) -> None:
    result = await run(
        workspace, "echo FIRST; head -c 5000000 /dev/zero | tr '\\0' x; echo; echo LAST"
    )

    body = shown(result)
    assert body.startswith("FIRST\n")
    assert body.endswith("LAST\n[exit code 0]")
    assert "characters omitted ...]" in body
    assert len(body) < 110_000
    assert result.metadata["omitted_chars"] > 4_800_000


@needs_proc
async def test_a_timeout_kills_the_whole_process_group(workspace: Path) -> None:
    command = "sleep 1000 & echo $!; echo $$; sleep 1000"

    result = await run(workspace, command, timeout=1)

    pids = [int(p) for p in text(result).splitlines()[:2]]
    assert len(pids) == 2
    assert result.is_error
    assert result.metadata["timed_out"] is True
    assert "[timed out after 1 s: the command and its processes were killed]" in text(result)
    assert await all_gone(pids)


async def test_the_configured_time_limit_caps_the_models_timeout(workspace: Path) -> None:
    result = await run(workspace, "sleep 1000", limits={"timeout_secs": 0.2}, timeout=100)

    assert "timed out after 0.2 s" in text(result)


@needs_proc
async def test_background_processes_are_stopped_when_the_command_ends(workspace: Path) -> None:
    # The background sleep keeps the output pipe open: without the group kill, reading the
    # output would wait for it to end.
    result = await run(workspace, "sleep 1000 & echo $!")

    assert result.metadata["exit_code"] == 0
    assert await all_gone([int(text(result).splitlines()[0])])


@needs_proc
async def test_cancelling_the_call_kills_the_process_group_and_records_it(
    bus: InProcessEventBus, workspace: Path
) -> None:
    executor = ToolExecutor(ToolRegistry([shell_execute]), bus)
    scope = CallScope(workspace=workspace, session_id="s1")
    call = ToolCall(
        name="shell_execute", arguments={"command": "sleep 1000 & echo $!; echo $$; sleep 1000"}
    )
    progress = bus.subscribe(EventFilter(types=frozenset({"tool_progress"})))
    task = asyncio.create_task(executor.execute(call, scope))
    output = ""
    async with progress:
        while output.count("\n") < 2:
            event = await asyncio.wait_for(anext(progress), STUCK)
            assert isinstance(event, ToolProgressEvent)
            output += event.data.output or ""

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert await all_gone([int(p) for p in output.split()])
    last = (await recorded(bus))[-1]
    assert isinstance(last, ToolResultEvent)
    assert last.data.result.metadata["outcome"] == "cancelled"


async def test_output_is_streamed_as_progress_while_the_command_runs(
    bus: InProcessEventBus, workspace: Path
) -> None:
    # The command waits for a file that the test creates only after it has seen the first
    # line as a tool_progress event: if output came only at the end, it would time out.
    command = "echo first; while [ ! -e go ]; do sleep 0.01; done; echo second"
    executor = ToolExecutor(ToolRegistry([shell_execute]), bus, max_timeout=STUCK)
    call = ToolCall(name="shell_execute", arguments={"command": command})
    progress = bus.subscribe(EventFilter(types=frozenset({"tool_progress"})))
    task = asyncio.create_task(
        executor.execute(call, CallScope(workspace=workspace, session_id="s1"))
    )
    async with progress:
        first = await asyncio.wait_for(anext(progress), STUCK)
        assert isinstance(first, ToolProgressEvent)
        assert first.data.message == f"the whole output goes to {OUTPUT_FOLDER}/{call.id}.log"
        while not isinstance(first, ToolProgressEvent) or not first.data.output:
            first = await asyncio.wait_for(anext(progress), STUCK)
    assert first.data.output == "first\n"

    (workspace / "go").touch()
    result = await task

    assert result.text.startswith("first\nsecond\n[exit code 0]\n")
    events = await recorded(bus)
    streamed = "".join(e.data.output or "" for e in events if isinstance(e, ToolProgressEvent))
    assert streamed == "first\nsecond\n"
    assert events[-1].type == "tool_result"


def test_shell_execute_is_marked_destructive_and_not_read_only() -> None:
    assert shell_execute.destructive
    assert not shell_execute.read_only
    with pytest.raises(Exception, match="greater than 0"):
        shell_execute.validate({"command": "ls", "timeout": 0})


def log_file(workspace: Path, result: ToolOutput) -> Path:
    """The output file the answer names."""
    name = result.metadata["output_file"]
    assert isinstance(name, str)
    assert name.startswith(OUTPUT_FOLDER + "/")
    assert name in text(result).splitlines()[-1]
    return workspace / name


async def test_a_command_printing_without_pause_streams_a_bounded_amount_of_progress(
    sqlite_url: str, workspace: Path
) -> None:
    # `yes` prints as fast as it is read: every chunk it writes is a progress report.
    store = create_event_store(create_engine(sqlite_url), owns_engine=True)
    bus = InProcessEventBus(store)
    executor = ToolExecutor(ToolRegistry([shell_execute]), bus)
    call = ToolCall(name="shell_execute", arguments={"command": "yes", "timeout": 1})
    started = time.monotonic()
    try:
        result = await executor.execute(call, CallScope(workspace=workspace, session_id="s1"))
        elapsed = time.monotonic() - started
        events = await recorded(bus)
    finally:
        await bus.close()
        await store.close()

    assert result.metadata["timed_out"] is True
    assert result.metadata["output_bytes"] > 1_000_000  # it did flood
    progress = [e for e in events if isinstance(e, ToolProgressEvent)]
    # One event at the start, at most one per interval after it, and the last one flushed.
    assert 1 <= len(progress) <= elapsed / PROGRESS_INTERVAL_SECS + 2
    outputs = [e.data.output or "" for e in progress]
    assert all(len(o) <= MAX_PROGRESS_OUTPUT_CHARS + 100 for o in outputs)
    assert sum(len(o) for o in outputs) <= MAX_PROGRESS_TOTAL_CHARS + 100
    assert events[-1].type == "tool_result"


async def test_the_whole_output_is_saved_to_the_file_the_answer_names(workspace: Path) -> None:
    result = await run(workspace, "yes | head -n 100000; echo done >&2")

    saved = log_file(workspace, result)
    assert saved.read_text() == "y\n" * 100_000 + "done\n"
    assert result.metadata["output_bytes"] == 200_005
    assert "characters omitted" in text(result)  # the answer itself keeps head and tail
    name = saved.relative_to(workspace)
    assert text(result).endswith(
        f"done\n[exit code 0]\n[the whole output (200005 bytes) is in {name}; "
        "read it with file_read]"
    )


async def test_the_output_file_is_readable_with_file_read(workspace: Path) -> None:
    result = await run(workspace, "echo hello")

    read = await call_tool(file_read, workspace, path=result.metadata["output_file"])

    assert read == "hello\n"


async def test_an_output_over_the_file_limit_keeps_its_head_and_tail_in_the_file(
    workspace: Path,
) -> None:
    size = MAX_OUTPUT_FILE_BYTES + 1_000_000
    command = f"echo FIRST; head -c {size} /dev/zero | tr '\\0' x; echo; echo LAST"

    result = await run(workspace, command)

    saved = log_file(workspace, result)
    assert saved.stat().st_size <= MAX_OUTPUT_FILE_BYTES
    content = saved.read_text()
    assert content.startswith("FIRST\nxxx")
    assert content.endswith("xxx\nLAST\n")
    assert "bytes cut: this file keeps the first" in content
    assert result.metadata["output_bytes"] == size + len("FIRST\n\nLAST\n")
    assert "cut in the middle to 10 MiB" in text(result).splitlines()[-1]


async def test_a_timed_out_command_answers_with_the_end_of_its_output_and_the_file(
    workspace: Path,
) -> None:
    command = "echo started; yes"

    result = await run(workspace, command, timeout=1)

    lines = shown(result).splitlines()
    assert lines[0] == "started"
    assert lines[-1] == "[timed out after 1 s: the command and its processes were killed]"
    assert lines[-3:-1] == ["y", "y"]  # the tail of what it printed, up to the kill
    assert result.metadata["timed_out"] is True
    saved = log_file(workspace, result)
    assert saved.read_text()[:16] == "started\ny\ny\ny\ny\n"
    assert saved.stat().st_size <= MAX_OUTPUT_FILE_BYTES


async def test_a_command_stopped_by_the_calls_own_time_limit_answers_with_its_output(
    bus: InProcessEventBus, workspace: Path
) -> None:
    # No timeout of its own: the executor's limit ends the call, and its answer shows what
    # the command said last and where the whole output is.
    executor = ToolExecutor(ToolRegistry([shell_execute]), bus, max_timeout=1)
    call = ToolCall(name="shell_execute", arguments={"command": "echo started; yes"})

    result = await executor.execute(call, CallScope(workspace=workspace, session_id="s1"))

    name = f"{OUTPUT_FOLDER}/{call.id}.log"
    head, status, count, *tail = result.text.splitlines()
    assert (head, status) == (
        "shell_execute timed out after 1 s",
        f"Its last status: the whole output goes to {name}",
    )
    assert count.startswith("The last 4000 of the ")
    assert tail[-3:] == ["y", "y", "y"]
    assert result.metadata["outcome"] == "timeout"
    assert (workspace / name).read_text()[:16] == "started\ny\ny\ny\ny\n"


@needs_proc
async def test_a_cancelled_command_answers_with_the_output_it_had_printed(
    bus: InProcessEventBus, workspace: Path
) -> None:
    executor = ToolExecutor(ToolRegistry([shell_execute]), bus)
    call = ToolCall(name="shell_execute", arguments={"command": "echo partial; sleep 1000"})
    progress = bus.subscribe(EventFilter(types=frozenset({"tool_progress"})))
    task = asyncio.create_task(
        executor.execute(call, CallScope(workspace=workspace, session_id="s1"))
    )
    async with progress:
        output = ""
        while "partial" not in output:
            event = await asyncio.wait_for(anext(progress), STUCK)
            assert isinstance(event, ToolProgressEvent)
            output += event.data.output or ""

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    last = (await recorded(bus))[-1]
    assert isinstance(last, ToolResultEvent)
    assert last.data.result.text == (
        "the call was cancelled before it finished\n"
        f"Its last status: the whole output goes to {OUTPUT_FOLDER}/{call.id}.log\n"
        "Its output:\npartial"
    )
    assert (workspace / OUTPUT_FOLDER / f"{call.id}.log").read_text() == "partial\n"


async def test_memory_stays_bounded_while_a_command_prints_without_pause(
    bus: InProcessEventBus, workspace: Path
) -> None:
    executor = ToolExecutor(ToolRegistry([shell_execute]), bus)
    call = ToolCall(name="shell_execute", arguments={"command": "yes", "timeout": 1})
    tracemalloc.start()
    try:
        result = await executor.execute(call, CallScope(workspace=workspace, session_id="s1"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.metadata["output_bytes"] > 1_000_000
    assert peak < 16 * 1024 * 1024


async def test_calls_with_the_same_id_keep_separate_output_files(workspace: Path) -> None:
    first = await run(workspace, "echo one")
    second = await run(workspace, "echo two")

    assert first.metadata["output_file"] == f"{OUTPUT_FOLDER}/call_test.log"
    assert second.metadata["output_file"] == f"{OUTPUT_FOLDER}/call_test-2.log"
    assert log_file(workspace, first).read_text() == "one\n"
    assert log_file(workspace, second).read_text() == "two\n"


async def test_a_call_id_cannot_lead_the_output_file_out_of_its_folder(workspace: Path) -> None:
    ctx = context(workspace, tool="shell_execute", timeout=STUCK)
    ctx.call_id = "../../escape me/\x00"

    result = await shell_execute.run(shell_execute.validate({"command": "echo hi"}), ctx)

    assert isinstance(result, ToolOutput)
    assert result.metadata["output_file"] == f"{OUTPUT_FOLDER}/______escape_me__.log"
    assert listing(workspace.parent) == ["outside", "workspace"]


async def test_the_output_folder_may_not_lead_out_of_the_workspace(workspace: Path) -> None:
    (workspace / ".promptline").symlink_to(workspace.parent / "outside")

    with pytest.raises(ToolError, match="symlink that resolves outside"):
        await run(workspace, "echo hi")

    assert listing(workspace.parent / "outside") == ["secret.txt"]


async def test_output_files_are_kept_out_of_git(workspace: Path) -> None:
    await run(workspace, "echo hi")

    assert (workspace / OUTPUT_FOLDER / ".gitignore").read_text() == "*\n"
