"""The ``docker`` sandbox: one container per workspace (a session's workspace is its own, so
one per session), through the Docker SDK (the ``docker`` extra).

The container runs ``sleep infinity`` as PromptLine's own user and id, with no network
(``security.sandbox_network: host`` gives it the engine's network, unfiltered; ``proxy`` is
refused: the image has no program to bridge to the egress proxy), a read-only root file
system, every capability dropped, ``no-new-privileges``, a private /tmp, memory, CPU-share
and process-count limits, and the workspace mounted read-write at its own path. A command is
an ``exec`` in it, under the same per-process kernel limits as the process sandbox (set by
``ulimit`` in the image's ``/bin/sh``). A command that runs out of time, passes the output
limit or is cancelled has its whole container killed and removed; the next command gets a
new one. The containers are removed when PromptLine stops (`DockerSandbox.aclose`).

What it does not contain: the kernel is shared; the process limit makes forks fail rather than
kill (so it is not reported as a limit hit); and what the image holds is readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from promptline.security.sandbox.base import (
    SandboxKind,
    SandboxLimits,
    SandboxNetwork,
    SandboxResult,
    SandboxUnavailable,
    limit_hit,
)
from promptline.security.sandbox.process import ProcessSandbox

__all__ = [
    "PROXY_REFUSED",
    "DockerSandbox",
    "container_options",
    "docker_problem",
    "ulimit_prefix",
]

LABEL = "promptline.sandbox"
"""Label of every container PromptLine makes."""


def docker_problem(client_factory: Callable[[], Any] | None = None) -> str | None:
    """Why the docker sandbox cannot run here (the SDK missing, the engine not answering),
    or None when it can."""
    try:
        client = (client_factory or _from_env)()
        client.ping()
    except ImportError:
        return "the Docker SDK is not installed (pip install 'promptline[docker]')"
    except Exception as exc:
        return f"the Docker engine does not answer: {exc}"
    return None


def _from_env() -> Any:
    import docker  # the optional extra

    return docker.from_env(timeout=10)


PROXY_REFUSED = (
    "the docker sandbox cannot put its commands behind the egress proxy "
    "(security.sandbox_network: proxy); set security.sandbox: bubblewrap for a filtered "
    "network, or security.sandbox_network: none (or host: the engine's network, unfiltered)"
)


def container_options(
    image: str, workspace: Path, limits: SandboxLimits, *, network: SandboxNetwork
) -> dict[str, Any]:
    """The arguments of ``containers.run`` for the container of ``workspace``
    (`SandboxUnavailable` for the ``proxy`` network)."""
    if network == "proxy":
        raise SandboxUnavailable(PROXY_REFUSED)
    options: dict[str, Any] = {
        "image": image,
        "command": ["sleep", "infinity"],
        "detach": True,
        "init": True,
        "user": f"{os.getuid()}:{os.getgid()}",
        "network_mode": "bridge" if network == "host" else "none",
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "tmpfs": {"/tmp": "rw,nosuid,nodev,size=64m"},
        "volumes": {str(workspace): {"bind": str(workspace), "mode": "rw"}},
        "working_dir": str(workspace),
        "labels": {LABEL: "1"},
    }
    if limits.memory_mb is not None:
        options["mem_limit"] = f"{limits.memory_mb}m"
        options["memswap_limit"] = f"{limits.memory_mb}m"
    if limits.max_processes is not None:
        options["pids_limit"] = limits.max_processes
    return options


def ulimit_prefix(limits: SandboxLimits) -> str:
    """A ``/bin/sh`` script that sets the per-process limits, then runs its arguments."""
    steps: list[str] = []
    if limits.cpu_secs is not None:
        steps += [f"ulimit -S -t {limits.cpu_secs}", f"ulimit -H -t {limits.cpu_secs + 1}"]
    if limits.memory_mb is not None:
        steps.append(f"ulimit -v {limits.memory_mb * 1024}")
    if limits.max_open_files is not None:
        steps.append(f"ulimit -n {limits.max_open_files}")
    if limits.max_file_size_mb is not None:
        steps.append(f"ulimit -f {limits.max_file_size_mb * 2048}")  # 512-byte blocks
    steps.append('exec "$@"')
    return " && ".join(steps)


class DockerSandbox(ProcessSandbox):
    """A container per workspace; see the module docstring."""

    kind: SandboxKind = "docker"

    def __init__(
        self,
        pass_env: Sequence[str] = (),
        *,
        image: str,
        network: SandboxNetwork = "none",
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(pass_env)
        self.image = image
        self.network: SandboxNetwork = network
        self._factory = client_factory or _from_env
        self._client: Any = None
        self._containers: dict[Path, Any] = {}
        self._lock = threading.Lock()

    def _container(self, workspace: Path, limits: SandboxLimits) -> Any:
        """The running container of ``workspace``, made when there is none."""
        with self._lock:
            if self._client is None:
                problem = docker_problem(self._factory)
                if problem is not None:
                    raise SandboxUnavailable(f"the docker sandbox cannot run here: {problem}")
                self._client = self._factory()
            found = self._containers.get(workspace)
            if found is not None:
                found.reload()
                if found.status == "running":
                    return found
                self._drop(workspace)
            options = container_options(self.image, workspace, limits, network=self.network)
            try:
                made = self._client.containers.run(**options)
            except Exception as exc:
                raise SandboxUnavailable(
                    f"the docker sandbox cannot start a container of {self.image}: {exc}"
                ) from exc
            self._containers[workspace] = made
            return made

    def _drop(self, workspace: Path) -> None:
        container = self._containers.pop(workspace, None)
        if container is not None:
            with contextlib.suppress(Exception):
                container.remove(force=True)

    async def run(
        self,
        argv: Sequence[str],
        *,
        workspace: Path,
        cwd: Path,
        env: Mapping[str, str],
        limits: SandboxLimits,
        stdin: bytes | None = None,
        max_output_chars: int = 100_000,
        on_output: Callable[[str], None] | None = None,
    ) -> SandboxResult:
        if stdin is not None:
            raise SandboxUnavailable("the docker sandbox gives commands no stdin")
        if self.network == "proxy":
            raise SandboxUnavailable(PROXY_REFUSED)
        from promptline.core.output_capture import OutputCapture

        loop = asyncio.get_running_loop()
        capture = OutputCapture(max_output_chars)
        room = [limits.max_output_bytes]
        cut = threading.Event()

        def emit(text: str) -> None:
            capture.add(text)
            if on_output is not None:
                on_output(text)

        def execute() -> int | None:
            import codecs

            container = self._container(workspace, limits)
            api = self._client.api
            command = ["/bin/sh", "-c", ulimit_prefix(limits), "sh", *argv]
            created = api.exec_create(
                container.id, command, workdir=str(cwd), environment=dict(env)
            )
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            for chunk in api.exec_start(created["Id"], stream=True):
                if room[0] is not None:
                    chunk = chunk[: room[0]]
                    room[0] -= len(chunk)
                    if room[0] <= 0:
                        cut.set()
                loop.call_soon_threadsafe(emit, decoder.decode(chunk))
                if cut.is_set():
                    return None
            loop.call_soon_threadsafe(emit, decoder.decode(b"", final=True))
            code = api.exec_inspect(created["Id"]).get("ExitCode")
            return code if isinstance(code, int) else None

        worker = asyncio.ensure_future(asyncio.to_thread(execute))
        timed_out = False
        try:
            async with asyncio.timeout(limits.time_secs):
                exit_code = await asyncio.shield(worker)
        except TimeoutError:
            timed_out = True
            exit_code = None
        finally:
            if not worker.done():
                # Killing the container ends the exec and everything it started.
                await asyncio.to_thread(self._drop, workspace)
                await asyncio.wait({worker})
        if cut.is_set():
            await asyncio.to_thread(self._drop, workspace)
        await asyncio.sleep(0)  # let the last output reach the capture
        output = capture.text()
        output_cut_at = limits.max_output_bytes if cut.is_set() else None
        return SandboxResult(
            exit_code=exit_code,
            output=output,
            omitted_chars=capture.omitted,
            timed_out=timed_out and not cut.is_set(),
            sandbox=self.kind,
            limit=limit_hit(
                limits,
                exit_code=exit_code,
                output=output,
                timed_out=timed_out,
                output_cut_at=output_cut_at,
            ),
            output_cut_at=output_cut_at,
        )

    async def aclose(self) -> None:
        """Remove every container this sandbox made."""
        for workspace in list(self._containers):
            await asyncio.to_thread(self._drop, workspace)
