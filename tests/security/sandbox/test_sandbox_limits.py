"""Each sandbox that runs here (process, bubblewrap) holds a command to its limits: CPU
seconds, memory, processes (a bounded fork bomb), wall-clock time and output, each reported as
the limit it is; and kills the whole process tree, a child that ignores SIGTERM and a
grandchild that left the session included, when the call ends."""

from __future__ import annotations

import asyncio
import os
import resource
from pathlib import Path

import pytest
from sandbox_support import STUCK, marked, needs_proc, sh, until

from promptline.security.sandbox import NoSandbox, Sandbox, SandboxLimits, launcher


async def test_a_busy_loop_stops_at_the_cpu_limit(sandbox: Sandbox, workspace: Path) -> None:
    limits = SandboxLimits(cpu_secs=1, time_secs=STUCK * 3)

    result = await sh(sandbox, workspace, "while :; do :; done", limits)

    assert result.limit is not None
    assert (result.limit.limit, result.limit.message) == ("cpu", "CPU time limit of 1 s reached")
    assert result.timed_out is False


async def test_an_allocation_past_the_memory_limit_fails_and_says_so(
    sandbox: Sandbox, workspace: Path
) -> None:
    limits = SandboxLimits(memory_mb=100, time_secs=STUCK * 3)
    grab = 'awk \'BEGIN { s = sprintf("%400000000s", ""); print length(s) }\''

    result = await sh(sandbox, workspace, grab, limits)

    assert result.exit_code != 0
    assert result.limit is not None
    assert result.limit.limit == "memory"
    assert result.limit.message == "memory limit of 100 MiB reached (an allocation failed)"


@needs_proc
async def test_a_fork_bomb_is_killed_past_the_process_limit(
    sandbox: Sandbox, workspace: Path
) -> None:
    # Bounded: 200 sleeping processes, where 16 are allowed.
    bomb = "i=0; while [ $i -lt 200 ]; do sleep 4321.1 & i=$((i + 1)); done; wait"

    result = await sh(sandbox, workspace, bomb, SandboxLimits(max_processes=16, time_secs=60))

    assert result.limit is not None
    assert (result.limit.limit, result.limit.message) == (
        "processes",
        "killed: more than 16 processes",
    )
    assert result.exit_code == -9
    assert marked("4321.1") == []


async def test_a_command_is_killed_at_the_wall_clock_limit(
    sandbox: Sandbox, workspace: Path
) -> None:
    result = await sh(sandbox, workspace, "sleep 1000", SandboxLimits(time_secs=0.5))

    assert result.timed_out is True
    assert result.exit_code is None
    assert result.limit is not None
    assert result.limit.limit == "time"


async def test_output_past_its_limit_is_cut_and_the_command_killed(
    sandbox: Sandbox, workspace: Path
) -> None:
    limits = SandboxLimits(max_output_bytes=100_000, time_secs=STUCK * 3)

    result = await sh(sandbox, workspace, "yes", limits)

    assert result.output_cut_at == 100_000
    assert len(result.output) == 100_000
    assert result.limit is not None
    assert result.limit.message == "killed: output cut at 100000 bytes"
    assert result.timed_out is False


async def test_the_kernel_limits_are_set_in_the_command(sandbox: Sandbox, workspace: Path) -> None:
    limits = SandboxLimits(
        cpu_secs=7, memory_mb=256, max_open_files=100, max_file_size_mb=2, time_secs=STUCK
    )

    result = await sh(sandbox, workspace, "ulimit -t; ulimit -v; ulimit -n; ulimit -f", limits)

    # dash shows the file size in blocks of 512 bytes.
    assert result.output.split() == ["7", str(256 * 1024), "100", str(2 * 2048)]


@needs_proc
@pytest.mark.parametrize("how", ["cancelled", "timed out"])
async def test_the_whole_process_tree_is_killed_when_the_call_ends(
    sandbox: Sandbox, workspace: Path, how: str
) -> None:
    marker = "4321.2" if how == "cancelled" else "4321.3"
    stubborn = f"sh -c 'trap \"\" TERM; sleep {marker}1' &"
    escaped = f"(setsid sleep {marker}2 &) ;"
    limit = 1000.0 if how == "cancelled" else 2.0
    task = asyncio.create_task(
        sh(
            sandbox,
            workspace,
            f"{stubborn} {escaped} sleep {marker}3",
            SandboxLimits(time_secs=limit),
        )
    )
    await until(lambda: len(marked(marker)) == 3, "the three sleeps start")
    pids = marked(marker)

    if how == "cancelled":
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        result = await asyncio.wait_for(task, STUCK)
        assert result.timed_out

    await until(lambda: marked(marker) == [], f"{pids} end")


@needs_proc
async def test_what_a_command_leaves_running_is_killed_when_it_ends(
    sandbox: Sandbox, workspace: Path
) -> None:
    result = await sh(sandbox, workspace, "(setsid sleep 4321.4 &); sleep 4321.5 & echo started")

    assert result.exit_code == 0
    assert marked("4321.4") == marked("4321.5") == []


async def test_a_file_past_the_size_limit_stops_the_writer(
    sandbox: Sandbox, workspace: Path
) -> None:
    limits = SandboxLimits(max_file_size_mb=1, time_secs=STUCK * 3)

    result = await sh(sandbox, workspace, "head -c 3000000 /dev/zero > big", limits)

    assert result.limit is not None
    assert result.limit.message == "file size limit of 1 MiB reached"
    assert (workspace / "big").stat().st_size == 1024 * 1024


async def test_the_process_limit_is_also_set_as_rlimit_nproc(
    sandbox: Sandbox, workspace: Path
) -> None:
    # What the user runs already, plus twice the limit (dash calls it -p).
    result = await sh(sandbox, workspace, "ulimit -p", SandboxLimits(max_processes=10))

    assert 20 <= int(result.output) <= 20 + len(os.listdir("/proc"))


def test_a_limit_is_never_set_above_the_servers_own_hard_limit() -> None:
    infinity = resource.RLIM_INFINITY

    assert launcher.clamped("RLIMIT_CPU", 5, infinity) == (5, 6)
    assert launcher.clamped("RLIMIT_CPU", 5, 3) == (3, 3)
    assert launcher.clamped("RLIMIT_CPU", 5, 6) == (5, 6)
    assert launcher.clamped("RLIMIT_AS", 64 * 2**20, 32 * 2**20) == (32 * 2**20, 32 * 2**20)
    assert launcher.clamped("RLIMIT_NOFILE", 100, infinity) == (100, 100)


async def test_stdin_given_reaches_the_command_and_none_is_closed(
    sandbox: Sandbox, workspace: Path
) -> None:
    given = await sandbox.run(
        ["/bin/sh", "-c", "cat; echo end"],
        workspace=workspace,
        cwd=workspace,
        env=sandbox.environment(workspace),
        limits=SandboxLimits(time_secs=STUCK),
        stdin=b"hello\n",
    )
    closed = await sh(sandbox, workspace, "cat; echo end")

    assert (given.output, closed.output) == ("hello\nend\n", "end\n")


async def test_the_none_sandbox_sets_no_kernel_limit_but_keeps_time_and_output(
    workspace: Path,
) -> None:
    sandbox = NoSandbox()
    limits = SandboxLimits(cpu_secs=5, memory_mb=64, max_output_bytes=1000, time_secs=0.5)

    shown = await sh(sandbox, workspace, "ulimit -t; ulimit -v", limits)
    cut = await sh(sandbox, workspace, "yes", limits)
    slow = await sh(sandbox, workspace, "sleep 1000", limits)

    assert shown.output.split() == ["unlimited", "unlimited"]
    assert (cut.output_cut_at, slow.timed_out, shown.sandbox) == (1000, True, "none")
