"""Sandboxes for the commands tools run (``security.sandbox``): ``none``, ``process`` (kernel
limits and a killed process tree), ``bubblewrap`` (namespaces on top: only the workspace
writable, the network none, through the egress proxy, or the host's) and ``docker`` (a
container per session), one file per backend; `resolve_sandbox` says which one ``auto`` is,
`Sandboxes` which one a call runs in."""

from __future__ import annotations

from promptline.security.sandbox.base import (
    LimitHit,
    Sandbox,
    SandboxKind,
    SandboxLimits,
    SandboxNetwork,
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
from promptline.security.sandbox.egress import EgressProxy, Refuse
from promptline.security.sandbox.process import NoSandbox, ProcessSandbox

__all__ = [
    "SANDBOX_STRENGTH",
    "BubblewrapSandbox",
    "DockerSandbox",
    "EgressProxy",
    "LimitHit",
    "NoSandbox",
    "ProcessSandbox",
    "Refuse",
    "Sandbox",
    "SandboxChoice",
    "SandboxKind",
    "SandboxLimits",
    "SandboxNetwork",
    "SandboxResult",
    "SandboxUnavailable",
    "Sandboxes",
    "bwrap_problem",
    "docker_problem",
    "make_sandbox",
    "resolve_sandbox",
    "strongest",
]
