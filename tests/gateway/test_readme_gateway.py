"""The README's gateway examples, run as written (bash, curl, jq) against a real gateway on a
free port of a fresh home, ``~/.promptline`` (``HOME`` is the test's folder): only the port is
put in; the admin key is the one the first start kept in ``~/.promptline/admin.key``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from gateway_support import live_gateway

from promptline.config import load_settings

README = Path(__file__).parents[2] / "README.md"
KEY_LINE = re.compile(
    r"^export PROMPTLINE_API_KEY=\$\(cat ~/\.promptline/admin\.key\)", re.MULTILINE
)
SCRIPT_SECS = 60.0

# Every curl fails the script on an HTTP error and still shows the error's body; each answer
# ends its own line.
PRELUDE = """\
set -euo pipefail
curl() { command curl --fail-with-body --silent --show-error "$@"; echo; }
"""


def readme_curl_block() -> str:
    """The README's shell block that starts with ``export PROMPTLINE_API_KEY=...``."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    found = [block for block in blocks if KEY_LINE.search(block)]
    assert len(found) == 1, "the README has one block of curl examples"
    return found[0]


def substituted(block: str, *, port: int) -> str:
    assert "localhost:8080" in block
    return block.replace("localhost:8080", f"localhost:{port}")


@pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("curl") and shutil.which("jq")),
    reason="the README's examples need bash, curl and jq",
)
async def test_the_readme_curl_examples_work_as_written_with_the_kept_admin_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / ".promptline"  # no config file: a fresh install
    monkeypatch.setenv("PROMPTLINE_HOME", str(home))
    settings = load_settings(environ={"PROMPTLINE_HOME": str(home)})
    async with live_gateway(settings) as info:
        assert info.admin_key is not None
        assert info.admin_key_file == home / "admin.key"
        script = PRELUDE + substituted(readme_curl_block(), port=info.port)
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            script,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)},
        )
        out, err = await asyncio.wait_for(process.communicate(), SCRIPT_SECS)

    assert process.returncode == 0, f"stdout:\n{out.decode()}\nstderr:\n{err.decode()}"
    ready, agents, run, session = [json.loads(line) for line in out.decode().splitlines() if line]
    assert ready["status"] == "ready"
    assert "assistant" in [agent["name"] for agent in agents["items"]]
    assert run["status"] == "completed"
    assert run["session_id"] == session["id"]
    assert "What is the capital of France?" in run["output"]
    assert [m["role"] for m in session["history"]] == ["user", "assistant"]
