"""`promptline demo`, run as a user would: the installed script, in a clean environment, with
its home, the user's home and the temporary folder pointed at folders the test watches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "promptline"


def demo(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Path]]:
    places = {
        "promptline home": tmp_path / "promptline-home",
        "user home": tmp_path / "user-home",
        "temp": tmp_path / "temp",
    }
    places["temp"].mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(places["user home"]),
        "PROMPTLINE_HOME": str(places["promptline home"]),
        "TMPDIR": str(places["temp"]),
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        [str(SCRIPT), "demo", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    return done, places


def test_demo_shows_the_tool_call_the_approval_the_answer_and_the_timeline(
    tmp_path: Path,
) -> None:
    done, _ = demo(tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "-> add(a=2, b=3)" in out
    assert "add needs your approval" in out
    assert "approving automatically" in out
    assert "approved add for this call by demo" in out
    assert "<- add: 5" in out
    assert "The result is 5." in out
    assert "timeline of run_" in out
    # The timeline is read from the log, which keeps no streamed deltas (they are live only).
    for kind in ("run_started", "llm_result", "tool_command", "permission_request"):
        assert kind in out
    assert "permission_granted" in out
    assert "run_completed" in out
    assert out.index("-> add(") < out.index("needs your approval") < out.index("The result is 5.")
    assert "Traceback" not in done.stderr


def test_demo_writes_nothing_outside_its_temporary_home(tmp_path: Path) -> None:
    done, places = demo(tmp_path)
    assert done.returncode == 0, done.stderr
    assert not places["promptline home"].exists()
    assert not places["user home"].exists()
    assert list(places["temp"].iterdir()) == []


def test_demo_keep_leaves_its_home_under_the_promptline_home(tmp_path: Path) -> None:
    done, places = demo(tmp_path, "--keep")
    assert done.returncode == 0, done.stderr
    kept = places["promptline home"] / "demo"
    assert (kept / "state.db").exists()
    assert sorted(p.name for p in places["promptline home"].iterdir()) == ["demo"]
    assert f"PROMPTLINE_HOME={kept} promptline runs show run_" in done.stdout
    listed = subprocess.run(
        [str(SCRIPT), "runs", "list", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PROMPTLINE_HOME": str(kept)},
        check=True,
    )
    assert '"status": "completed"' in listed.stdout


@pytest.mark.parametrize("flag", ["--interactive", "-i"])
def test_demo_interactive_needs_a_terminal(tmp_path: Path, flag: str) -> None:
    done, places = demo(tmp_path, flag)
    assert done.returncode == 1
    assert "needs a terminal" in done.stderr
    assert not places["promptline home"].exists()
