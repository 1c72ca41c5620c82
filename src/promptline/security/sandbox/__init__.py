"""Sandboxes for the commands tools run (``security.sandbox``): ``none``, ``process`` (kernel
limits and a killed process tree), ``bubblewrap`` (namespaces on top: only the workspace
writable, no network) and ``docker`` (a container per session), one file per backend;
`resolve_sandbox` says which one ``auto`` is, `Sandboxes` which one a call runs in."""

from __future__ import annotations

from promptline.security.sandbox.base import (
    LimitHit,
    Sandbox,
    SandboxKind,
    SandboxLimits,
    SandboxResult,
    SandboxUnavailable,
)
from promptline.security.sandbox.bubblewrap import BubblewrapSandbox, bwrap_problem
from promptline.security.sandbox.choice import (
    SANDBOX_STRENGTH,
    SandboxChoice,
    Sandboxes,
    make_sandbox,
    resolve_sandbox,
    strongest,
)
from promptline.security.sandbox.container import DockerSandbox, docker_problem
from promptline.security.sandbox.process import NoSandbox, ProcessSandbox

__all__ = [
    "SANDBOX_STRENGTH",
    "BubblewrapSandbox",
    "DockerSandbox",
    "LimitHit",
    "NoSandbox",
    "ProcessSandbox",
    "Sandbox",
    "SandboxChoice",
    "SandboxKind",
    "SandboxLimits",
    "SandboxResult",
    "SandboxUnavailable",
    "Sandboxes",
    "bwrap_problem",
    "docker_problem",
    "make_sandbox",
    "resolve_sandbox",
    "strongest",
]
