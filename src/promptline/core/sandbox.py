"""The words that choose a sandbox, which the settings, the session records and the sandboxes
all speak: a backend's name, or ``auto``."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["SANDBOX_CHOICES", "SandboxChoice"]

SandboxChoice = Literal["auto", "none", "process", "bubblewrap", "docker"]
"""``auto`` is bubblewrap where it runs, else process (`promptline.security.sandbox`)."""

SANDBOX_CHOICES: tuple[SandboxChoice, ...] = get_args(SandboxChoice)
"""Every choice, in the order of `SandboxChoice`."""
