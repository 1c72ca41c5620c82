"""What each sandbox keeps from a command: under bubblewrap it writes only in its workspace,
reads nothing of the host's files beyond the system's, and reaches no socket of the host's
unless given the host's network; under process it has the server's user rights on files and
the network (what that backend does not contain); under both it gets only the allowed
environment."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from sandbox_support import STUCK, needs_bwrap, sh

from promptline.security.sandbox import BubblewrapSandbox, ProcessSandbox, Sandbox
from promptline.security.sandbox.base import SandboxNetwork
from promptline.security.sandbox.egress import IPAddress

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bash"), reason="needs bash")


def exists(path: str) -> bool:
    """Whether ``path`` exists on the host."""
    return Path(path).exists()


@needs_bwrap
async def test_under_bubblewrap_only_the_workspace_is_writable(workspace: Path) -> None:
    outside = workspace.parent / "outside"
    scratch = f"/tmp/{workspace.parent.name}-scratch.txt"
    command = (
        "echo kept > inside.txt; "
        f"echo lost > {outside}/new.txt; "
        "echo lost > ../new.txt; "
        "echo lost > /usr/new.txt; "
        f"cat {outside}/secret.txt; "
        f"echo private > {scratch} && cat {scratch}"
    )

    result = await sh(BubblewrapSandbox(), workspace, command)

    assert (workspace / "inside.txt").read_text() == "kept\n"
    assert not (outside / "new.txt").exists()
    assert not (workspace.parent / "new.txt").exists()
    assert not exists("/usr/new.txt")
    assert "top secret" not in result.output
    assert "private\n" in result.output  # a /tmp of its own
    assert not exists(scratch)


async def test_under_process_the_files_of_the_servers_user_are_not_contained(
    workspace: Path,
) -> None:
    # Documented: the process sandbox limits resources, not what the command may touch.
    outside = workspace.parent / "outside"

    result = await sh(ProcessSandbox(), workspace, f"cat {outside}/secret.txt; echo x > ../x")

    assert "top secret" in result.output
    assert (workspace.parent / "x").exists()


async def _connect_from(sandbox: Sandbox, workspace: Path, port: int, word: str) -> int | None:
    command = f"echo {word} > /dev/tcp/127.0.0.1/{port}"
    return (await sh(sandbox, workspace, f"bash -c '{command}'")).exit_code


def allow_all(host: str, addresses: list[IPAddress]) -> None:
    """An egress policy that refuses nothing."""


@needs_bwrap
@pytest.mark.parametrize("network", ["none", "proxy", "host"])
async def test_bubblewrap_reaches_the_hosts_loopback_only_with_the_host_network(
    workspace: Path, network: SandboxNetwork
) -> None:
    # Under proxy even a policy that allows everything leaves raw sockets no route.
    heard: asyncio.Queue[bytes] = asyncio.Queue()

    async def listen(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await heard.put(await reader.read())
        writer.close()

    server = await asyncio.start_server(listen, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sandboxed = await _connect_from(
            BubblewrapSandbox(network=network, egress=allow_all), workspace, port, "sandboxed"
        )
        # The server hears this one for sure; had the first connected, it would come first.
        assert await _connect_from(ProcessSandbox(), workspace, port, "plain") == 0
        first = await asyncio.wait_for(heard.get(), STUCK)
    finally:
        server.close()

    if network == "host":
        assert (sandboxed, first) == (0, b"sandboxed\n")
    else:
        assert sandboxed != 0
        assert first == b"plain\n"


@pytest.mark.parametrize(
    "sandbox",
    ["process", pytest.param("bubblewrap", marks=needs_bwrap)],
    indirect=True,
)
async def test_the_environment_is_the_allow_list_only(
    sandbox: Sandbox, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTLINE_TEST_SECRET", "s3cret")
    monkeypatch.setenv("TZ", "UTC")

    result = await sh(sandbox, workspace, "env | sort")
    names = {line.split("=", 1)[0] for line in result.output.splitlines()}

    assert "s3cret" not in result.output
    assert names <= {"PATH", "HOME", "LANG", "PWD", "SHLVL", "_"}
    assert f"HOME={workspace}" in result.output.splitlines()


async def test_allowed_variables_of_the_server_are_passed_on(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Europe/Paris")
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    sandbox = ProcessSandbox(pass_env=["TZ", "NOT_SET_HERE"])

    env = sandbox.environment(workspace)

    assert env["TZ"] == "Europe/Paris"
    assert "NOT_SET_HERE" not in env


@needs_bwrap
async def test_bubblewrap_runs_the_command_in_namespaces_of_its_own(workspace: Path) -> None:
    kinds = ["user", "pid", "ipc", "uts", "net", "cgroup", "mnt"]
    command = "; ".join(f"readlink /proc/self/ns/{kind}" for kind in kinds)

    result = await sh(BubblewrapSandbox(), workspace, command)

    host = [os.readlink(f"/proc/self/ns/{kind}") for kind in kinds]
    inside = result.output.split()
    assert len(inside) == len(kinds)
    assert [a == b for a, b in zip(inside, host, strict=True)] == [False] * len(kinds)
