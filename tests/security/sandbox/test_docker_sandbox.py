"""The docker sandbox: one container per workspace, made with no network, a read-only root,
no capabilities, no new privileges and the limits, the workspace mounted read-write; a
command is an exec in it under the per-process limits; a timed-out command takes its
container with it; an engine that does not answer refuses commands with the reason. Against a
fake engine here, and against the real one where one answers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sandbox_support import STUCK

from promptline.app import build_app
from promptline.config import load_settings
from promptline.security.sandbox import (
    DockerSandbox,
    SandboxLimits,
    SandboxUnavailable,
    docker_problem,
)
from promptline.security.sandbox.container import LABEL, container_options


class FakeContainer:
    def __init__(self, engine: FakeEngine, options: dict[str, Any]) -> None:
        self.id = f"c{len(engine.made)}"
        self.options = options
        self.status = "running"
        self.removed = threading.Event()

    def reload(self) -> None:
        pass

    def remove(self, force: bool = False) -> None:
        self.status = "removed"
        self.removed.set()


class FakeEngine:
    """Enough of the SDK's client: containers.run, and exec through the low-level api."""

    def __init__(self, output: list[bytes], *, exit_code: int = 0, hang: bool = False) -> None:
        self.made: list[FakeContainer] = []
        self.execs: list[dict[str, Any]] = []
        self.output = output
        self.exit_code = exit_code
        self.hang = hang
        self.containers = self
        self.api = self

    def ping(self) -> bool:
        return True

    def run(self, **options: Any) -> FakeContainer:
        container = FakeContainer(self, options)
        self.made.append(container)
        return container

    def exec_create(self, container: str, cmd: list[str], **options: Any) -> dict[str, str]:
        self.execs.append({"container": container, "cmd": cmd, **options})
        return {"Id": f"e{len(self.execs)}"}

    def exec_start(self, exec_id: str, stream: bool) -> Iterator[bytes]:
        yield from self.output
        if self.hang:  # a command that runs until its container is removed
            assert self.made[-1].removed.wait(STUCK)

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return {"ExitCode": self.exit_code}


def sandbox_on(engine: FakeEngine) -> DockerSandbox:
    return DockerSandbox(image="debian:bookworm-slim", client_factory=lambda: engine)


async def run(sandbox: DockerSandbox, workspace: Path, limits: SandboxLimits) -> Any:
    return await sandbox.run(
        ["/bin/sh", "-c", "echo hi"],
        workspace=workspace,
        cwd=workspace,
        env={"HOME": str(workspace)},
        limits=limits,
    )


async def test_a_container_per_workspace_made_locked_down(tmp_path: Path) -> None:
    engine = FakeEngine([b"hi\n"])
    sandbox = sandbox_on(engine)
    limits = SandboxLimits(memory_mb=256, max_processes=32, time_secs=STUCK)
    first, second = tmp_path / "a", tmp_path / "b"

    result = await run(sandbox, first, limits)
    await run(sandbox, first, limits)
    await run(sandbox, second, limits)

    assert (result.output, result.exit_code, result.sandbox) == ("hi\n", 0, "docker")
    assert len(engine.made) == 2
    options = engine.made[0].options
    assert {key: options[key] for key in ("network_mode", "read_only", "cap_drop")} == {
        "network_mode": "none",
        "read_only": True,
        "cap_drop": ["ALL"],
    }
    assert options["security_opt"] == ["no-new-privileges"]
    assert (options["mem_limit"], options["pids_limit"]) == ("256m", 32)
    assert options["volumes"] == {str(first): {"bind": str(first), "mode": "rw"}}
    assert options["labels"] == {LABEL: "1"}
    assert list(options["tmpfs"]) == ["/tmp"]

    await sandbox.aclose()

    assert [c.status for c in engine.made] == ["removed", "removed"]


async def test_a_command_is_an_exec_under_the_per_process_limits(tmp_path: Path) -> None:
    engine = FakeEngine([b"ok\n"])
    limits = SandboxLimits(cpu_secs=5, memory_mb=64, time_secs=STUCK)

    await run(sandbox_on(engine), tmp_path, limits)

    [made] = engine.execs
    assert made["cmd"] == [
        "/bin/sh",
        "-c",
        'ulimit -S -t 5 && ulimit -H -t 6 && ulimit -v 65536 && exec "$@"',
        "sh",
        "/bin/sh",
        "-c",
        "echo hi",
    ]
    assert (made["workdir"], made["environment"]) == (str(tmp_path), {"HOME": str(tmp_path)})


async def test_a_timed_out_command_takes_its_container_with_it(tmp_path: Path) -> None:
    engine = FakeEngine([b"started\n"], hang=True)
    sandbox = sandbox_on(engine)

    result = await run(sandbox, tmp_path, SandboxLimits(time_secs=0.2))

    assert result.timed_out
    assert result.output == "started\n"
    assert engine.made[0].status == "removed"


async def test_an_engine_that_does_not_answer_refuses_the_command(tmp_path: Path) -> None:
    def refuse() -> Any:
        raise ConnectionError("no socket")

    sandbox = DockerSandbox(image="x", client_factory=refuse)

    with pytest.raises(SandboxUnavailable) as caught:
        await run(sandbox, tmp_path, SandboxLimits(time_secs=STUCK))

    assert str(caught.value) == (
        "the docker sandbox cannot run here: the Docker engine does not answer: no socket"
    )


async def test_the_app_removes_the_containers_when_it_stops(tmp_path: Path) -> None:
    environ = {"PROMPTLINE_HOME": str(tmp_path), "PROMPTLINE__SECURITY__SANDBOX": "docker"}
    settings = load_settings(None, environ=environ)
    engine = FakeEngine([b"hi\n"])
    async with build_app(settings) as app:
        sandbox = app.sandboxes.for_agent("assistant")
        assert isinstance(sandbox, DockerSandbox)
        sandbox._factory = lambda: engine
        await run(sandbox, tmp_path, SandboxLimits(time_secs=STUCK))
        assert engine.made[0].status == "running"

    assert engine.made[0].status == "removed"


ENGINE_PROBLEM = docker_problem()


@pytest.mark.skipif(ENGINE_PROBLEM is not None, reason=f"no Docker engine here: {ENGINE_PROBLEM}")
async def test_against_the_real_engine_only_the_workspace_is_writable(tmp_path: Path) -> None:
    sandbox = DockerSandbox(image="debian:bookworm-slim")
    try:
        result = await sandbox.run(
            ["/bin/sh", "-c", "echo kept > inside.txt; touch /x || echo read-only"],
            workspace=tmp_path,
            cwd=tmp_path,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
            limits=SandboxLimits(time_secs=120),
        )
    finally:
        await sandbox.aclose()

    assert "read-only" in result.output
    assert (tmp_path / "inside.txt").read_text() == "kept\n"


async def test_the_proxy_network_is_refused_before_any_container_is_made(tmp_path: Path) -> None:
    engine = FakeEngine([b"hi\n"])
    sandbox = DockerSandbox(
        image="debian:bookworm-slim", network="proxy", client_factory=lambda: engine
    )

    with pytest.raises(SandboxUnavailable, match="cannot put its commands behind the egress"):
        await run(sandbox, tmp_path, SandboxLimits(time_secs=STUCK))

    assert engine.made == []


def test_the_host_network_is_the_engines_network(tmp_path: Path) -> None:
    options = container_options("alpine:3", tmp_path, SandboxLimits(), network="host")

    assert options["network_mode"] == "bridge"
