"""`promptline tools search|info|install|uninstall|checksum` against a configured folder
source: output, JSON, clear errors and exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from catalogue_helpers import entry, index, package, skill, write
from click.testing import CliRunner, Result

from promptline.cli.main import app
from promptline.tools.catalogue import tree_checksum
from promptline.tools.switches import SWITCHES_FILE, Switches


def home() -> Path:
    return Path(os.environ["PROMPTLINE_HOME"])


def run(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    skill(root / "pdf-forms", "pdf-forms")
    package(root / "greeter", "greeter", "1.0")
    index(
        root,
        [
            entry(root, "pdf-forms", "skill", "1.0", "pdf-forms", tags=["pdf"]),
            entry(root, "greeter", "tools", "1.0", "greeter", requires=["pdf-forms"]),
        ],
    )
    write(home() / "config.yaml", f"catalogue:\n  sources:\n    local:\n      path: {root}\n")
    return root


def test_search_lists_matches_and_json_gives_every_field(source: Path) -> None:
    table = run("tools", "search", "pdf").output
    assert "pdf-forms" in table
    assert "greeter" not in table

    rows = json.loads(run("tools", "search", "--json").output)
    assert [r["name"] for r in rows] == ["greeter", "pdf-forms"]
    assert rows[0]["requires"] == ["pdf-forms"]
    assert rows[0]["versions"] == ["1.0"]
    assert rows[0]["installed"] is None
    assert "Nothing found." in run("tools", "search", "zebra").output


def test_info_shows_an_entry_and_its_missing_requirements(source: Path) -> None:
    out = run("tools", "info", "greeter@1.0").output

    assert "greeter 1.0  (tools, source local)" in out
    assert "requires: pdf-forms (missing)" in out
    assert run("tools", "info", "nothing-like-it", code=1).output.startswith(
        "error: no catalogue entry named 'nothing-like-it'"
    )


def test_install_with_deps_then_uninstall(source: Path) -> None:
    out = run("tools", "install", "greeter", "--with-deps").output

    assert "installed pdf-forms 1.0 (skill)" in out
    assert "`promptline skills enable pdf-forms`" in out
    assert "installed greeter 1.0 (tools)" in out
    assert "`promptline tools enable greeter`" in out
    switches = Switches(home() / SWITCHES_FILE)
    assert switches.state("plugins", "greeter") is False
    assert switches.state("skills", "pdf-forms") is False

    out = run("tools", "uninstall", "pdf-forms").output
    assert "uninstalled pdf-forms 1.0 (skill)" in out
    assert "still installed and needing it: greeter" in out
    assert (
        "was not installed from a catalogue"
        in run("tools", "uninstall", "pdf-forms", code=1).output
    )


def test_install_without_deps_says_what_is_missing(source: Path) -> None:
    out = run("tools", "install", "greeter").output

    assert "missing requirements: pdf-forms" in out
    assert "--with-deps" in out


def test_a_checksum_mismatch_is_an_error_exit(source: Path) -> None:
    write(source / "pdf-forms" / "SKILL.md", "changed\n")

    out = run("tools", "install", "pdf-forms", code=1).output

    assert "does not match its checksum" in out
    assert not (home() / "skills" / "pdf-forms").exists()


def test_a_broken_source_is_a_warning_when_others_answer_and_an_error_alone(
    source: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    write(broken / "promptline-index.yaml", "format: [\n")
    config = home() / "config.yaml"
    config.write_text(config.read_text() + f"    broken:\n      path: {broken}\n")

    result = CliRunner().invoke(app, ["tools", "search"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "pdf-forms" in result.stdout
    assert f"warning: source broken: cannot read the index file {broken}" in result.stderr

    config.write_text(f"catalogue:\n  sources:\n    broken:\n      path: {broken}\n")
    assert "no catalogue source could be read" in run("tools", "search", code=1).output


def test_checksum_prints_what_the_index_needs(source: Path) -> None:
    assert run("tools", "checksum", str(source / "pdf-forms")).output.strip() == (
        tree_checksum(source / "pdf-forms")
    )


def test_without_sources_the_catalogue_commands_say_how_to_add_one() -> None:
    out = run("tools", "search", code=1).output

    assert "no catalogue sources are configured" in out
    assert "catalogue.sources" in out
