"""docs/plugins.md stays true: its example package loads through a real entry point and its
tools run, its index and manifest examples parse, every index field is documented, and its
configuration examples load."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from package_helpers import ManagerFactory, distribution

from promptline.config import load_settings
from promptline.core.messages import ToolCall
from promptline.events.bus import InProcessEventBus
from promptline.tools.catalogue import read_index
from promptline.tools.catalogue.index import ENTRY_FIELDS
from promptline.tools.executor import CallScope, ToolExecutor
from promptline.tools.plugins.manifest import MANIFEST_FIELDS, parse_manifest

DOC = Path(__file__).parents[3] / "docs" / "plugins.md"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def block_after(doc: str, caption: str) -> str:
    """The fenced block that follows the line ``caption``."""
    match = re.search(rf"^{re.escape(caption)}\n\n```\w*\n(.*?)^```", doc, flags=re.S | re.M)
    assert match, caption
    return match.group(1)


def yaml_blocks(doc: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", doc, flags=re.S | re.M)


async def test_the_example_package_loads_through_its_entry_point_and_its_tools_run(
    doc: str, site: Path, make_manager: ManagerFactory, bus: InProcessEventBus, workspace: Path
) -> None:
    project = tomllib.loads(block_after(doc, "`pyproject.toml`:"))
    module = site / "acme_tools" / "__init__.py"
    module.parent.mkdir()
    module.write_text(block_after(doc, "`acme_tools/__init__.py`:"))
    distribution(
        site,
        project["project"]["name"],
        project["project"]["version"],
        project["project"]["entry-points"]["promptline.tools"],
    )
    manager = make_manager(entry_points=True)

    manager.load_all()

    status = manager.status("acme")
    assert (status.state, status.version) == ("loaded", "1.0.0")
    assert status.tools == ("acme.word_count", "acme.slugify")
    assert f"acme     loaded  1.0.0    entry point acme_tools   {', '.join(status.tools)}" in doc
    executor = ToolExecutor(manager.registry, bus)
    scope = CallScope(workspace=workspace)
    count = await executor.execute(
        ToolCall(name="acme.word_count", arguments={"text": "to be or not"}), scope
    )
    slug = await executor.execute(
        ToolCall(name="acme.slugify", arguments={"title": "Hello, Tool Packages!"}), scope
    )
    assert (count.text, slug.text) == ("4", "hello-tool-packages")


def test_the_index_example_parses_and_every_field_is_documented(doc: str, tmp_path: Path) -> None:
    (index,) = [b for b in yaml_blocks(doc) if b.startswith("format:")]
    path = tmp_path / "promptline-index.yaml"
    path.write_text(index)

    entries = read_index(path, source="doc")

    assert [e.spec for e in entries] == ["pdf-forms@1.2.0", "weather@1.2.0"]
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \| (?:yes|no) \|", doc, flags=re.M))
    assert documented == ENTRY_FIELDS | {"format", "entries"}


def test_the_manifest_example_parses_with_every_field(doc: str) -> None:
    (manifest,) = [b for b in yaml_blocks(doc) if b.startswith("name: weather")]
    data = yaml.safe_load(manifest)

    parsed = parse_manifest(data, where="docs")

    assert set(data) == MANIFEST_FIELDS
    assert (parsed.name, parsed.module, parsed.python) == (
        "weather",
        "weather_tools",
        ("httpx>=0.27",),
    )


def test_the_configuration_examples_load(doc: str, tmp_path: Path) -> None:
    configs = [b for b in yaml_blocks(doc) if b.split(":")[0] in ("plugins", "tools", "catalogue")]
    assert len(configs) == 3
    for number, block in enumerate(configs):
        path = tmp_path / f"config{number}.yaml"
        path.write_text(block)
        load_settings(path, environ={"PROMPTLINE_HOME": str(tmp_path)})
