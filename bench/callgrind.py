"""CPU instructions counted by valgrind's callgrind, shared by the benchmark scripts.

A script runs its work in a child process under callgrind with counting off (`count`); the
child sets up and warms up, then calls `start_counting`, so imports and set-up are not counted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["count", "record", "start_counting"]

_ON = "PROMPTLINE_CALLGRIND"


def start_counting() -> None:
    """Switch callgrind's counter on for this process (nothing when it is not under
    `count`). Blocking on purpose: nothing else runs while the counter is switched on."""
    if os.environ.get(_ON) == "1":
        subprocess.run(
            ["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True
        )


def record(
    script: str | Path,
    args: Sequence[str],
    out: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> None:
    """Run ``python script *args`` under callgrind, counting from its `start_counting` on,
    and write callgrind's profile to ``out`` (for `callgrind_annotate`)."""
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(script),
            *args,
        ],
        check=True,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {}), "PYTHONHASHSEED": "0", _ON: "1"},
    )


def count(
    script: str | Path,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> int:
    """Instructions that ``python script *args`` runs after it calls `start_counting`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        record(script, args, out, env=env, timeout=timeout)
        match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        assert match, "no totals in callgrind output"
        return int(match.group(1))
