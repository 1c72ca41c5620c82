"""The process runner under every sandbox: a missing program reported as such, and output
decoded whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptline.security.sandbox import ProcessSandbox
from promptline.security.sandbox.run import run_process


def test_the_process_environment_adds_only_what_is_given(tmp_path: Path) -> None:
    env = ProcessSandbox().environment(tmp_path, {"PROJECT": "x"})

    assert set(env) == {"PATH", "HOME", "LANG", "PROJECT"}
    assert env["HOME"] == str(tmp_path)


async def test_a_missing_program_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await run_process(
            ["no-such-program-here"], cwd=tmp_path, env=ProcessSandbox().environment(tmp_path)
        )


async def test_output_split_inside_a_utf8_character_is_decoded_whole(tmp_path: Path) -> None:
    # printf writes the two bytes of 'é' in separate writes.
    seen: list[str] = []

    result = await run_process(
        ["/bin/sh", "-c", "printf '\\303'; sleep 0.01; printf '\\251'"],
        cwd=tmp_path,
        env=ProcessSandbox().environment(tmp_path),
        on_output=seen.append,
    )

    assert result.output == "é"
    assert "".join(seen) == "é"
