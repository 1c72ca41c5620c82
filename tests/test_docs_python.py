"""Every Python block of the docs (and of the README) runs, as written: the blocks of a page,
in order, make one program (a block may use what one above it defined, as a reader would), run
against a live gateway (`promptline serve` on a free port, standing for http://localhost:8080,
with its admin key standing for ``pl_key_...``), a fake OpenAI-compatible server (named by
OPENAI_API_KEY and OPENAI_BASE_URL, as the official SDK reads them), in a home of its own.

What a block does is pinned by the docs tests of its page; this one makes sure none of them is
left unrun, and none is a fragment that could not run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fakes.openai_server import FakeOpenAI, TextReply, running_fake_openai
from served_gateway import served_gateway

pytestmark = pytest.mark.slow

DOCS = Path(__file__).parents[1] / "docs"
GATEWAY = "http://localhost:8080"
KEY = "pl_key_..."


def _pages() -> dict[str, list[str]]:
    found = {}
    for page in [DOCS.parent / "README.md", *sorted(DOCS.rglob("*.md"))]:
        blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
        if blocks:
            found[str(page.relative_to(DOCS.parent))] = blocks
    return found


PAGES = _pages()

RUNNER = """\
import sys

namespace = {"__name__": "__main__"}
for number, path in enumerate(sys.argv[1:]):
    code = open(path, encoding="utf-8").read()
    try:
        exec(compile(code, path, "exec"), namespace)
    except BaseException:
        print(f"python block {number} of the page failed", file=sys.stderr)
        raise
"""


@dataclass
class World:
    home: Path
    url: str
    key: str
    fake: FakeOpenAI


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("docs-home")
    (home / "config.yaml").write_text(
        "models:\n  default: scripted/demo\nagent:\n  default_mode: act\n", encoding="utf-8"
    )
    with served_gateway(home, user="docs") as (url, key), running_fake_openai() as fake:
        yield World(home, url, key, fake)


def test_the_docs_have_python_blocks() -> None:
    assert sum(len(blocks) for blocks in PAGES.values()) > 20
    assert "docs/quickstart.md" in PAGES
    assert "README.md" in PAGES


@pytest.mark.parametrize("page", list(PAGES))
def test_every_python_block_runs_as_written(world: World, page: str, tmp_path: Path) -> None:
    world.fake.script(*(TextReply("ok") for _ in range(50)))
    paths = []
    for number, code in enumerate(PAGES[page]):
        path = tmp_path / f"{Path(page).stem}-{number}.py"
        path.write_text(
            code.replace(GATEWAY, world.url)
            .replace(GATEWAY.replace("http", "ws"), world.url.replace("http", "ws"))
            .replace(KEY, world.key),
            encoding="utf-8",
        )
        paths.append(str(path))
    runner = tmp_path / "run_page.py"
    runner.write_text(RUNNER, encoding="utf-8")
    env = {
        **os.environ,
        "PROMPTLINE_HOME": str(world.home),
        "PROMPTLINE_URL": world.url,
        "PROMPTLINE_API_KEY": world.key,
        "OPENAI_API_KEY": "sk-docs",
        "OPENAI_BASE_URL": world.fake.base_url,
    }
    done = subprocess.run(
        [sys.executable, str(runner), *paths],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{page} failed:\n{done.stderr[-3000:]}"
