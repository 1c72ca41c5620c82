"""`promptline tools list|packages|enable|disable`: what is registered and where from, each
package's status, and switching packages with clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner, Result
from package_helpers import tool_module, write

from promptline.cli.main import app
from promptline.tools.plugins import MANIFEST_FILE
from promptline.tools.switches import SWITCHES_FILE, Switches


def home() -> Path:
    return Path(os.environ["PROMPTLINE_HOME"])


def run(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def configure(tmp_path: Path) -> None:
    module = write(tmp_path / "extra" / "cli_notes.py", tool_module(tool="note", version="4.2"))
    broken = write(tmp_path / "extra" / "cli_broken.py", "raise ImportError('half written')\n")
    write(home() / "config.yaml", f"plugins:\n  modules: ['{module}', '{broken}']\n")
    folder = home() / "plugins" / "cli-greeter"
    write(folder / MANIFEST_FILE, "name: cli-greeter\nversion: '0.5'\nmodule: cli_greeter_m\n")
    write(folder / "cli_greeter_m.py", tool_module())


def test_tools_list_shows_every_tool_with_its_source_and_read_only_flag(
    tmp_path: Path, site: Path
) -> None:
    configure(tmp_path)
    write(
        home() / "config.yaml",
        (home() / "config.yaml").read_text() + "mcp_servers:\n  github:\n    command: github-mcp\n",
    )

    rows = {r["name"]: r for r in json.loads(run("tools", "list", "--json").output)}

    assert rows["file_read"]["source"] == "built-in"
    assert rows["file_read"]["read_only"] is True
    assert rows["shell_execute"]["read_only"] is False
    assert rows["cli_notes.note"]["source"] == "package cli_notes"
    assert rows["cli_notes.note"]["read_only"] is True
    assert rows["mcp.github.*"]["source"] == "mcp github"  # listed without connecting
    assert "cli-greeter.hello" not in rows  # installed packages are off until enabled
    table = run("tools", "list").output
    assert "cli_notes.note" in table
    assert "package cli_notes" in table


def test_tools_packages_reports_loaded_failed_and_disabled(tmp_path: Path, site: Path) -> None:
    configure(tmp_path)

    statuses = {s["name"]: s for s in json.loads(run("tools", "packages", "--json").output)}

    assert statuses["cli_notes"]["state"] == "loaded"
    assert statuses["cli_notes"]["version"] == "4.2"
    assert statuses["cli_notes"]["tools"] == ["cli_notes.note"]
    assert statuses["cli_broken"]["state"] == "failed"
    assert statuses["cli_broken"]["error"] == "failed to import: ImportError: half written"
    assert statuses["cli-greeter"]["state"] == "disabled"
    table = run("tools", "packages").output
    assert "half written" in table
    assert "disabled" in table


def test_enable_and_disable_switch_an_installed_package(tmp_path: Path, site: Path) -> None:
    configure(tmp_path)
    switches = Switches(home() / SWITCHES_FILE)

    enabled = run("tools", "enable", "cli-greeter").output
    assert "cli-greeter 0.5: switched on; its tools: cli-greeter.hello" in enabled
    assert switches.state("plugins", "cli-greeter") is True

    disabled = run("tools", "disable", "cli-greeter").output
    assert "switched off" in disabled
    assert switches.state("plugins", "cli-greeter") is False


def test_enabling_an_unknown_or_broken_package_is_an_error(tmp_path: Path, site: Path) -> None:
    configure(tmp_path)

    unknown = run("tools", "enable", "nope", code=1).output
    assert "no tool package named 'nope'" in unknown
    assert "cli-greeter" in unknown  # the hint lists what there is

    broken = run("tools", "enable", "cli_broken", code=1).output
    assert "switched on, but it is failed: failed to import" in broken


def test_packages_with_none_found_says_how_to_get_one() -> None:
    assert "No tool packages" in run("tools", "packages").output
