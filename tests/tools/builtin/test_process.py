"""The pieces under shell_execute and the git tools: bounded output capture, limits from the
configuration, and a missing program reported as such."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from promptline.tools.builtin.process import (
    OutputCapture,
    ProcessLimits,
    minimal_env,
    run_process,
)


def test_capture_keeps_everything_under_the_limit() -> None:
    capture = OutputCapture(100)
    capture.add("hello ")
    capture.add("world")

    assert capture.text() == "hello world"
    assert capture.omitted == 0


def test_capture_keeps_head_and_tail_of_a_flood() -> None:
    capture = OutputCapture(8)  # 6 characters of head, 2 of tail
    for piece in ("abc", "def", "ghi", "jkl"):
        capture.add(piece)

    assert capture.text() == "abcdef\n[... 4 characters omitted ...]\nkl"
    assert (capture.total, capture.omitted) == (12, 4)


def test_limits_derive_cpu_seconds_from_the_time_limit_and_cpu_share() -> None:
    limits = ProcessLimits.from_config({"memory_mb": 512, "cpu_percent": 80}, 300)

    assert limits == ProcessLimits(memory_mb=512, cpu_secs=240)
    assert ProcessLimits.from_config({}, 0.2) == ProcessLimits(memory_mb=None, cpu_secs=1)
    assert ProcessLimits.from_config({"cpu_percent": 50}, None).cpu_secs is None


def test_the_shell_prefix_sets_only_the_limits_it_has() -> None:
    assert ProcessLimits().shell_prefix() == 'exec /bin/sh -c "$1"'
    prefix = ProcessLimits(memory_mb=64, cpu_secs=5).shell_prefix()

    assert prefix.startswith("ulimit -v 65536 && ulimit -S -t 5 && ulimit -H -t 6")


def test_limits_never_ask_for_more_than_the_servers_own_hard_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hard = {resource.RLIMIT_AS: 32 * 1024 * 1024, resource.RLIMIT_CPU: 3}
    monkeypatch.setattr(resource, "getrlimit", lambda which: (hard[which], hard[which]))

    prefix = ProcessLimits(memory_mb=64, cpu_secs=5).shell_prefix()

    assert prefix.startswith("ulimit -v 32768 && ulimit -S -t 3 && ulimit -H -t 3")


def test_the_minimal_environment_adds_only_what_is_given(tmp_path: Path) -> None:
    env = minimal_env(tmp_path, {"PROJECT": "x"})

    assert set(env) == {"PATH", "HOME", "LANG", "PROJECT"}
    assert env["HOME"] == str(tmp_path)


async def test_a_missing_program_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await run_process(["no-such-program-here"], cwd=tmp_path, env=minimal_env(tmp_path))


async def test_output_split_inside_a_utf8_character_is_decoded_whole(tmp_path: Path) -> None:
    # printf writes the two bytes of 'é' in separate writes.
    seen: list[str] = []

    result = await run_process(
        ["/bin/sh", "-c", "printf '\\303'; sleep 0.01; printf '\\251'"],
        cwd=tmp_path,
        env=minimal_env(tmp_path),
        on_output=seen.append,
    )

    assert result.output == "é"
    assert "".join(seen) == "é"
