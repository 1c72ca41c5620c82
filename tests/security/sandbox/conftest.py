"""Fixtures of the sandbox tests: a workspace with a folder beside it, and each backend that
runs on this machine."""

from __future__ import annotations

from pathlib import Path

import pytest
from sandbox_support import needs_bwrap

from promptline.security.sandbox import BubblewrapSandbox, ProcessSandbox, Sandbox


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty workspace folder, with ``outside`` (standing for PromptLine's home) beside it."""
    folder = tmp_path / "workspace"
    folder.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("top secret\n")
    return folder


@pytest.fixture(
    params=[
        "process",
        pytest.param("bubblewrap", marks=needs_bwrap),
        pytest.param("bubblewrap-proxy", marks=needs_bwrap),
    ]
)
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    """Each backend that runs here (bubblewrap also with the egress proxy, whose bridge
    stands between the launcher and the command)."""
    if request.param == "bubblewrap":
        return BubblewrapSandbox()
    if request.param == "bubblewrap-proxy":
        return BubblewrapSandbox(network="proxy", egress=lambda host, addresses: None)
    return ProcessSandbox()
