"""What every sandbox offers: run a program (or a shell command line) in a workspace under
limits, its output streamed and collected, everything it started killed when it ends, times
out or is cancelled; and how the limit it hit, if any, is told."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

__all__ = [
    "SHELL",
    "LimitHit",
    "Sandbox",
    "SandboxKind",
    "SandboxLimits",
    "SandboxNetwork",
    "SandboxResult",
    "SandboxUnavailable",
    "limit_hit",
]

SandboxKind = Literal["none", "process", "bubblewrap", "docker"]
"""The backends; ``security.sandbox`` also accepts ``auto`` (see `resolve_sandbox`)."""

SandboxNetwork = Literal["none", "proxy", "host"]
"""What a sandboxed command reaches (``security.sandbox_network``): nothing, what the egress
policy allows through the egress proxy, or everything the host reaches."""

SHELL = "/bin/sh"

MiB = 1024 * 1024

# What a program prints when an allocation failed (RLIMIT_AS makes it fail, never kills).
_OUT_OF_MEMORY = re.compile(
    r"MemoryError|Cannot allocate memory|std::bad_alloc|[Oo]ut of memory|memory exhausted"
)


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """The limits of one command (None: not limited)."""

    cpu_secs: int | None = None
    memory_mb: int | None = None
    max_processes: int | None = None
    max_open_files: int | None = None
    max_file_size_mb: int | None = None
    max_output_bytes: int | None = None
    time_secs: float | None = None

    @classmethod
    def from_config(cls, limits: Mapping[str, Any], wall_secs: float | None) -> SandboxLimits:
        """Limits from ``security.resource_limits`` and the call's time limit.

        RLIMIT_CPU is a budget of CPU seconds, not a share, so ``cpu_percent`` becomes that
        share of the wall-clock limit: 80 % of 300 s is 240 CPU seconds per process.
        """
        percent = limits.get("cpu_percent")
        cpu: int | None = None
        if wall_secs is not None and math.isfinite(wall_secs):
            share = 100.0 if percent is None else float(percent)
            cpu = max(1, math.ceil(wall_secs * share / 100.0))
        output = limits.get("max_output_mb")
        return cls(
            cpu_secs=cpu,
            memory_mb=_count(limits.get("memory_mb")),
            max_processes=_count(limits.get("max_processes")),
            max_open_files=_count(limits.get("max_open_files")),
            max_file_size_mb=_count(limits.get("max_file_size_mb")),
            max_output_bytes=int(output * MiB) if output else None,
            time_secs=wall_secs,
        )

    def rlimits(self) -> dict[str, int]:
        """The kernel limits to set in the command's process, by `resource` name."""
        found: dict[str, int] = {}
        if self.cpu_secs is not None:
            found["RLIMIT_CPU"] = self.cpu_secs
        if self.memory_mb is not None:
            found["RLIMIT_AS"] = self.memory_mb * MiB
        if self.max_open_files is not None:
            found["RLIMIT_NOFILE"] = self.max_open_files
        if self.max_file_size_mb is not None:
            found["RLIMIT_FSIZE"] = self.max_file_size_mb * MiB
        return found


def _count(value: Any) -> int | None:
    return int(value) if value else None


@dataclass(frozen=True, slots=True)
class LimitHit:
    """A limit a command reached: ``limit`` is processes, cpu, memory, file_size, output or
    time; ``message`` says it for people and models."""

    limit: str
    message: str


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """How a command ended: its exit code (negative: killed by that signal; None when it ran
    out of time), its combined output (head and tail when huge), the limit it hit, and why
    each destination the egress proxy refused it was refused."""

    exit_code: int | None
    output: str
    omitted_chars: int
    timed_out: bool
    sandbox: SandboxKind
    limit: LimitHit | None = None
    output_cut_at: int | None = None
    egress_refused: tuple[str, ...] = ()


class Sandbox(Protocol):
    """Runs commands for tools. ``run`` starts ``argv`` in ``cwd`` (a folder of
    ``workspace``) with exactly ``env``, ``stdin`` (or none), under ``limits``; ``on_output``
    receives the output as it comes; the result keeps its head and tail
    (``max_output_chars``). Cancelling the calling task kills everything the command started
    and re-raises `asyncio.CancelledError`. `SandboxUnavailable` says the sandbox cannot run
    here; `OSError` that the program could not be started."""

    kind: SandboxKind

    def environment(
        self, workspace: Path, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The environment a command gets: the allow-list, HOME set to the workspace."""
        ...

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
        """Run ``argv``; see the class docstring."""
        ...


def limit_hit(
    limits: SandboxLimits,
    *,
    exit_code: int | None,
    output: str,
    timed_out: bool,
    output_cut_at: int | None,
    processes: int | None = None,
) -> LimitHit | None:
    """Which limit ended a command, from how it ended: killed for its processes or its output,
    out of time, a signal of a kernel limit (directly, or as the shell's 128 + signal), or an
    allocation that failed under the memory limit (told by what the program printed)."""
    if processes is not None:
        return LimitHit("processes", f"killed: more than {limits.max_processes} processes")
    if output_cut_at is not None:
        return LimitHit("output", f"killed: output cut at {output_cut_at} bytes")
    if timed_out:
        return LimitHit("time", f"wall-clock time limit of {limits.time_secs:g} s reached")
    if exit_code is None or exit_code == 0:
        return None
    signal_number = -exit_code if exit_code < 0 else exit_code - 128 if exit_code > 128 else 0
    if signal_number == 24 and limits.cpu_secs is not None:  # SIGXCPU
        return LimitHit("cpu", f"CPU time limit of {limits.cpu_secs} s reached")
    if signal_number == 25 and limits.max_file_size_mb is not None:  # SIGXFSZ
        return LimitHit("file_size", f"file size limit of {limits.max_file_size_mb} MiB reached")
    if limits.memory_mb is not None and _OUT_OF_MEMORY.search(output[-4000:]):
        return LimitHit(
            "memory", f"memory limit of {limits.memory_mb} MiB reached (an allocation failed)"
        )
    return None


class SandboxUnavailable(Exception):
    """The configured sandbox cannot run on this machine; the message says why."""
