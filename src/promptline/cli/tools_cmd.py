"""`promptline tools`: the registered tools, tool packages and the catalogue.

Command bodies import what they need inside, so `promptline --help` stays fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from promptline.cli.runtime import CliOptions

if TYPE_CHECKING:
    from promptline.app import App
    from promptline.tools.catalogue import Catalogue, InstallReport
    from promptline.tools.plugins import PackageStatus

pass_options = click.make_pass_decorator(CliOptions, ensure=True)

KIND = click.Choice(["skill", "tools"])


@click.group("tools", short_help="Tools: list, manage packages, search and install.")
def tools_group() -> None:
    """Tools: list them, manage tool packages, search and install from catalogues."""


# -- registered tools and packages -------------------------------------------------------------


@tools_group.command("list", short_help="Every tool agents may use, and where it comes from.")
@click.option("--json", "as_json", is_flag=True, help="Print the tools as JSON.")
@pass_options
def tools_list(options: CliOptions, as_json: bool) -> None:
    """Every tool agents may use: built-in, from tool packages, from MCP servers; where each
    comes from and whether it is read-only. MCP servers are not connected to list them."""
    from promptline.cli.runtime import run, services

    async def main() -> list[dict[str, Any]]:
        async with services(options) as app:
            app.plugins.load_all()
            return _tool_rows(app)

    rows = run(main)
    if as_json:
        from promptline.cli.runtime import write_json

        write_json(rows)
        return
    from promptline.cli.runtime import print_table

    read_only = {True: "yes", False: "", None: "?"}
    print_table(
        ("tool", "source", "read-only", "description"),
        (
            (r["name"], r["source"], read_only[r["read_only"]], _first_line(r["description"]))
            for r in rows
        ),
    )


def _tool_rows(app: App) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for tool in app.tools:
        owner = app.plugins.owner(tool.name)
        if owner is not None:
            source = f"package {owner}"
        elif tool.name.startswith("mcp."):
            source = f"mcp {tool.name.split('.')[1]}"
        else:
            source = "built-in"
        rows.append(
            {
                "name": tool.name,
                "source": source,
                "read_only": tool.read_only,
                "destructive": tool.destructive,
                "description": tool.description,
            }
        )
    connected = {row["source"] for row in rows if row["source"].startswith("mcp ")}
    for server, config in sorted(app.settings.mcp_servers.items()):
        if config.enabled and f"mcp {server}" not in connected:
            rows.append(
                {
                    "name": f"mcp.{server}.*",
                    "source": f"mcp {server}",
                    "read_only": None,
                    "destructive": None,
                    "description": "tools of this MCP server (listed once it is connected)",
                }
            )
    return rows


@tools_group.command("packages", short_help="Every tool package found, and its state.")
@click.option("--json", "as_json", is_flag=True, help="Print the statuses as JSON.")
@pass_options
def tools_packages(options: CliOptions, as_json: bool) -> None:
    """Every tool package found: loaded (version and tools), failed (why), disabled, or
    blocked by a dependency."""
    from promptline.cli.runtime import run, services

    async def main() -> list[PackageStatus]:
        async with services(options) as app:
            return app.plugins.load_all()

    statuses = run(main)
    if as_json:
        from promptline.cli.runtime import write_json

        write_json([s.to_dict() for s in statuses])
        return
    from promptline.cli.runtime import console, print_table

    if not statuses:
        console().print(
            "No tool packages. Install one with `promptline tools install NAME`, or see "
            "docs/plugins.md to write one."
        )
        return
    print_table(
        ("package", "state", "version", "from", "tools / problem"),
        (
            (
                s.name,
                _state(s.state),
                s.version or "",
                _origin(s),
                ", ".join(s.tools) if s.state == "loaded" else s.error or "",
            )
            for s in statuses
        ),
    )


def _state(state: str) -> str:
    colour = {"loaded": "green", "failed": "red", "blocked": "yellow"}.get(state)
    return f"[{colour}]{state}[/]" if colour else state


def _origin(status: PackageStatus) -> str:
    match status.origin:
        case "entry_point":
            return f"entry point {status.target}"
        case "installed":
            return "installed"
        case _:
            return status.target


@tools_group.command("enable", short_help="Switch a tool package on.")
@click.argument("name")
@pass_options
def tools_enable(options: CliOptions, name: str) -> None:
    """Switch the tool package NAME on (a running PromptLine loads it at once)."""
    _switch(options, name, True)


@tools_group.command("disable", short_help="Switch a tool package off.")
@click.argument("name")
@pass_options
def tools_disable(options: CliOptions, name: str) -> None:
    """Switch the tool package NAME off (a running PromptLine unloads it at once)."""
    _switch(options, name, False)


def _switch(options: CliOptions, name: str, enabled: bool) -> None:
    from promptline.cli.runtime import console, fail, run, services

    async def main() -> PackageStatus | None:
        async with services(options) as app:
            manager = app.plugins
            names = {spec.name for spec in manager.discover()}
            if name not in names:
                from promptline.core.errors import NotFoundError

                raise NotFoundError(
                    f"no tool package named {name!r}",
                    hint="list them with `promptline tools packages`"
                    + (f" (found: {', '.join(sorted(names))})" if names else ""),
                )
            manager.switches.set("plugins", name, enabled)
            if not enabled:
                return None
            # Loaded here too, so a package that cannot load says so now.
            manager.load_all()
            return manager.status(name)

    status = run(main)
    out = console()
    settings_disabled = _configured_off(options, name)
    if not enabled:
        out.print(f"{name}: switched off (a running PromptLine unloads it now).")
        return
    if settings_disabled:
        fail(
            f"{name} is switched on, but plugins.disabled in the configuration keeps it off",
            hint="remove it from plugins.disabled",
        )
    assert status is not None
    if status.state == "loaded":
        tools = ", ".join(status.tools)
        version = f" {status.version}" if status.version else ""
        out.print(f"{name}{version}: switched on; its tools: {tools}")
        out.print("A running PromptLine loads it now.")
        return
    fail(
        f"{name} is switched on, but it is {status.state}: {status.error}",
        hint="see `promptline tools packages`",
    )


def _configured_off(options: CliOptions, name: str) -> bool:
    from promptline.cli.runtime import friendly_errors, load_settings

    with friendly_errors():
        return name in load_settings(options).plugins.disabled
    return False  # pragma: no cover - friendly_errors exits


# -- catalogue ---------------------------------------------------------------------------------


def _catalogue(options: CliOptions) -> Catalogue:
    from promptline.cli.runtime import load_settings
    from promptline.tools.catalogue import Catalogue

    return Catalogue.from_settings(load_settings(options))


def _warn_problems(problems: list[Any]) -> None:
    from promptline.cli.runtime import console

    err = console(stderr=True)
    for problem in problems:
        err.print(f"[yellow]warning:[/] source {problem.source}: {problem.message}", markup=True)
        if problem.hint:
            err.print(f"  [yellow]hint:[/] {problem.hint}", markup=True)


@tools_group.command("search", short_help="Search the catalogues for skills and tool packages.")
@click.argument("words", nargs=-1)
@click.option("--source", help="Search only this source.")
@click.option("--refresh", is_flag=True, help="Fetch git sources again first.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@pass_options
def tools_search(
    options: CliOptions, words: tuple[str, ...], source: str | None, refresh: bool, as_json: bool
) -> None:
    """Search the catalogue sources for skills and tool packages whose name, description or
    tags hold every one of WORDS (everything without words)."""
    from promptline.cli.runtime import console, fail, friendly_errors

    with friendly_errors():
        catalogue = _catalogue(options)
        hits, problems = catalogue.search(words, source=source, refresh=refresh)
    _warn_problems(problems)
    if as_json:
        from promptline.cli.runtime import write_json

        write_json(
            [
                {**h.entry.to_dict(), "versions": list(h.versions), "installed": h.installed}
                for h in hits
            ]
        )
    elif hits:
        from promptline.cli.runtime import print_table

        print_table(
            ("name", "version", "kind", "source", "installed", "description"),
            (
                (
                    h.entry.name,
                    h.entry.version + (f" (+{len(h.versions) - 1})" if len(h.versions) > 1 else ""),
                    h.entry.kind,
                    h.entry.source,
                    h.installed or "",
                    _first_line(h.entry.description),
                )
                for h in hits
            ),
        )
    else:
        console().print("Nothing found." if words else "The catalogue is empty.")
    if problems and len(problems) == len(catalogue.sources):
        fail("no catalogue source could be read", hint="see the warnings above")


@tools_group.command("info", short_help="Show a catalogue entry.")
@click.argument("spec", metavar="NAME[@VERSION]")
@click.option("--source", help="Look only in this source.")
@click.option("--json", "as_json", is_flag=True, help="Print the entry as JSON.")
@pass_options
def tools_info(options: CliOptions, spec: str, source: str | None, as_json: bool) -> None:
    """Show a catalogue entry: versions, sources, requirements, checksum, install state."""
    from promptline.cli.runtime import console, friendly_errors

    with friendly_errors():
        catalogue = _catalogue(options)
        entry = catalogue.find(spec, source=source)
        versions = catalogue.versions(entry.name, source=source)
        installed = catalogue.records.get(entry.name)
        missing = catalogue.missing_requirements(entry)
        _, problems = catalogue.load()
    _warn_problems(problems)
    if as_json:
        from promptline.cli.runtime import write_json

        write_json(
            {
                **entry.to_dict(),
                "versions": [{"version": v.version, "source": v.source} for v in versions],
                "installed": [i.to_dict() for i in installed],
                "missing": missing,
            }
        )
        return
    out = console()
    out.print(f"[bold]{entry.name}[/] {entry.version}  ({entry.kind}, source {entry.source})")
    if entry.description:
        out.print(entry.description)
    if entry.tags:
        out.print(f"tags: {', '.join(entry.tags)}")
    needs = ", ".join(f"{r} (missing)" if r in missing else r for r in entry.requires)
    out.print(f"requires: {needs or 'nothing'}")
    out.print(f"path: {entry.path}")
    out.print(f"sha256: {entry.sha256}")
    out.print("versions: " + ", ".join(f"{v.version} ({v.source})" for v in versions))
    for item in installed:
        out.print(f"installed: {item.version} from {item.source} at {item.path}")
    if not installed:
        out.print(f"not installed: `promptline tools install {entry.spec}`")


@tools_group.command("install")
@click.argument("spec", metavar="NAME[@VERSION]")
@click.option("--source", help="Install from this source.")
@click.option("--with-deps", is_flag=True, help="Also install missing requirements.")
@click.option("--refresh", is_flag=True, help="Fetch git sources again first.")
@pass_options
def tools_install(
    options: CliOptions, spec: str, source: str | None, with_deps: bool, refresh: bool
) -> None:
    """Install a skill or tool package from a catalogue. Its checksum is verified before
    anything is unpacked, and it lands switched off: enable it to use it."""
    from promptline.cli.runtime import friendly_errors

    with friendly_errors():
        catalogue = _catalogue(options)
        if refresh:
            catalogue.load(refresh=True)
        entry = catalogue.find(spec, source=source)
        if not with_deps and sys.stdin.isatty() and catalogue.missing_requirements(entry):
            missing = ", ".join(catalogue.missing_requirements(entry))
            with_deps = click.confirm(
                f"{entry.name} needs {missing}, not installed. Install them too?", default=True
            )
        report = catalogue.install(entry.spec, source=entry.source, with_deps=with_deps)
    _print_install(report, entry.name)


def _print_install(report: InstallReport, name: str) -> None:
    from promptline.cli.runtime import console

    out = console()
    for item in report.installed:
        command = "skills enable" if item.kind == "skill" else "tools enable"
        out.print(
            f"installed {item.name} {item.version} ({item.kind}) from {item.source} into "
            f"{item.path}; it is off: `promptline {command} {item.name}`"
        )
    for item in report.already:
        out.print(f"{item.name} {item.version} was already installed")
    if report.missing:
        out.print(
            f"[yellow]missing requirements:[/] {', '.join(report.missing)}; install them with "
            f"`promptline tools install {name} --with-deps`"
        )
    for package, python in report.missing_python.items():
        out.print(
            f"[yellow]{package} needs Python distributions that are not installed:[/] "
            f"{', '.join(python)} (`pip install {' '.join(python)}`)"
        )


@tools_group.command("uninstall", short_help="Remove what `promptline tools install` installed.")
@click.argument("name")
@click.option("--kind", type=KIND, help="skill or tools, when both are installed by that name.")
@pass_options
def tools_uninstall(options: CliOptions, name: str, kind: str | None) -> None:
    """Remove a skill or tool package that `promptline tools install` put in place."""
    from promptline.cli.runtime import console, friendly_errors

    with friendly_errors():
        catalogue = _catalogue(options)
        item = catalogue.uninstall(name, kind=kind)  # type: ignore[arg-type]  # click.Choice
        dependents = catalogue.dependents(name)
    out = console()
    out.print(f"uninstalled {item.name} {item.version} ({item.kind}); removed {item.path}")
    if dependents:
        out.print(f"[yellow]still installed and needing it:[/] {', '.join(dependents)}")


@tools_group.command("checksum", short_help="Print the catalogue checksum of a file or folder.")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
def tools_checksum(path: Path) -> None:
    """Print the catalogue checksum of PATH (a folder's tree, or an archive's bytes): the
    sha256 to write in an index file."""
    from promptline.cli.runtime import friendly_errors
    from promptline.tools.catalogue import checksum

    with friendly_errors():
        click.echo(checksum(path))


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 80 else line[:77] + "..."
