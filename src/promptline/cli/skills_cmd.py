"""`promptline skills`: the skills agents are offered, and their switches.

Command bodies import what they need inside, so `promptline --help` stays fast."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from promptline.cli.runtime import CliOptions

if TYPE_CHECKING:
    from promptline.tools.skills import SkillLibrary, SkillStatus

pass_options = click.make_pass_decorator(CliOptions, ensure=True)

_STATE_STYLE = {
    "available": "green",
    "unavailable": "yellow",
    "disabled": "dim",
    "broken": "red",
    "shadowed": "dim",
}


@click.group("skills")
def skills_group() -> None:
    """Skills: list, show, enable and disable them."""


@skills_group.command("list", short_help="Every skill found, and its state.")
@click.option("--json", "as_json", is_flag=True, help="Print the skills as JSON.")
@pass_options
def skills_list(options: CliOptions, as_json: bool) -> None:
    """Every skill found, with its state: available, unavailable (why), disabled, broken (the
    error) or shadowed (by a skill of the same name found first)."""
    from rich.markup import escape

    from promptline.cli.runtime import console, friendly_errors, print_table, write_json

    with friendly_errors():
        library = _library(options)
        statuses = library.statuses()
        problems = library.problems
    if as_json:
        write_json([_status_json(s) for s in statuses])
        return
    out = console()
    if not statuses:
        out.print("No skills found. Looked in:", markup=False)
        for source in library.sources:
            out.print(f"  {source.path} ({source.origin})", markup=False)
        out.print("A skill is a folder with a SKILL.md: see `promptline skills --help`.")
    else:
        print_table(
            ("name", "version", "state", "source folder"),
            (
                (
                    escape(s.name),
                    escape(s.version or "-"),
                    f"[{_STATE_STYLE[s.state]}]{s.state}[/]",
                    escape(f"{s.source.path} ({s.source.origin})"),
                )
                for s in statuses
            ),
        )
        # Reasons go below the table, one line each: they are long and should not fold.
        for s in statuses:
            if s.reason:
                out.print(f"{s.name} is {s.state}: {s.reason}", markup=False)
    for problem in problems:
        console(stderr=True).print(f"[yellow]warning:[/] {escape(problem)}")


@skills_group.command("show", short_help="One skill: front matter, requirements, files.")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the skill as JSON.")
@pass_options
def skills_show(options: CliOptions, name: str, as_json: bool) -> None:
    """One skill: its front matter, requirements and whether they are met, its files and its
    instructions."""
    from promptline.cli.runtime import friendly_errors, write_json

    with friendly_errors():
        library = _library(options)
        status = library.require(name)
        shadowed = [
            s for s in library.statuses() if s.state == "shadowed" and s.name == status.name
        ]
    if as_json:
        data = _status_json(status)
        if status.skill is not None:
            data["front_matter"] = status.skill.front_matter()
            data["requirements"] = _requirement_rows(status, library)
            data["files"] = list(status.skill.files)
            data["instructions"] = status.skill.body
        data["shadows"] = [str(s.path) for s in shadowed]
        write_json(data)
        return
    _print_skill(status, shadowed, library)


@skills_group.command("enable")
@click.argument("name")
@pass_options
def skills_enable(options: CliOptions, name: str) -> None:
    """Switch a skill on (agents are offered it again)."""
    _switch(options, name, True)


@skills_group.command("disable", short_help="Switch a skill off.")
@click.argument("name")
@pass_options
def skills_disable(options: CliOptions, name: str) -> None:
    """Switch a skill off (agents are no longer offered it; a running gateway notices)."""
    _switch(options, name, False)


# -- helpers ------------------------------------------------------------------------------------


def _library(options: CliOptions) -> SkillLibrary:
    import logging

    from promptline.cli.runtime import load_settings
    from promptline.tools.skills import SkillLibrary

    # Broken skills are shown in the output; their log lines would only repeat them.
    logging.getLogger("promptline.skills").addHandler(logging.NullHandler())

    # No tool registry: a skill's tools may come from MCP servers and tool packages that only
    # a running PromptLine has, so tool requirements are checked per run, not here.
    return SkillLibrary.from_settings(load_settings(options))


def _switch(options: CliOptions, name: str, enabled: bool) -> None:
    from rich.markup import escape

    from promptline.cli.runtime import console, friendly_errors

    with friendly_errors():
        library = _library(options)
        status = library.set_enabled(name, enabled)
    out = console()
    word = "on" if enabled else "off"
    out.print(f"skill [bold]{escape(status.name)}[/] switched {word}: now {status.state}", end="")
    out.print(f" ({escape(status.reason)})" if status.reason else "", markup=False)
    if enabled and status.name in library.disabled:
        console(stderr=True).print(
            "[yellow]warning:[/] skills.disabled in the configuration still lists it; "
            "remove it there to offer the skill"
        )


def _status_json(status: SkillStatus) -> dict[str, Any]:
    skill = status.skill
    return {
        "name": status.name,
        "version": status.version,
        "state": status.state,
        "reason": status.reason,
        "reasons": list(status.reasons),
        "description": skill.summary if skill else None,
        "path": str(status.path),
        "source": str(status.source.path),
        "origin": status.source.origin,
    }


def _requirement_rows(status: SkillStatus, library: SkillLibrary) -> list[dict[str, Any]]:
    """Each requirement with whether it is met (``None``: decided per run)."""
    from promptline.tools.builtin import BUILTIN_TOOL_NAMES
    from promptline.tools.registry import matches
    from promptline.tools.skills import RequirementChecker

    skill = status.skill
    if skill is None:
        return []
    checker = RequirementChecker()
    rows: list[dict[str, Any]] = []
    for kind in ("env", "bins", "python"):
        for item in getattr(skill.requires, kind):
            single = _single(kind, item)
            problems = checker.problems(single)
            rows.append(
                {"kind": kind, "name": item, "met": not problems, "note": "; ".join(problems)}
            )
    for pattern in skill.requires.tools:
        built_in = any(matches(pattern, n) for n in BUILTIN_TOOL_NAMES)
        rows.append(
            {
                "kind": "tools",
                "name": pattern,
                "met": True if built_in else None,
                "note": "built in"
                if built_in
                else "checked per run against the tools the agent is offered "
                "(MCP servers, tool packages)",
            }
        )
    for dependency in skill.requires.skills:
        found = library.get(dependency)
        if found is None:
            met, note = False, "not found"
        elif found.available:
            met, note = True, ""
        else:
            met, note = False, f"{found.state}" + (f": {found.reason}" if found.reason else "")
        rows.append({"kind": "skills", "name": dependency, "met": met, "note": note})
    return rows


def _single(kind: str, item: str) -> Any:
    from promptline.tools.skills import Requirements

    return Requirements(**{kind: (item,)})


def _print_skill(status: SkillStatus, shadowed: list[SkillStatus], library: SkillLibrary) -> None:
    import yaml
    from rich.markup import escape

    from promptline.cli.runtime import console

    out = console()
    style = _STATE_STYLE[status.state]
    out.print(f"[bold]{escape(status.name)}[/]  [{style}]{status.state}[/]", end="")
    out.print(f" ({status.reason})" if status.reason else "", markup=False)
    out.print(
        f"folder: {status.path}  ({status.source.origin}: {status.source.path})", markup=False
    )
    for copy in shadowed:
        out.print(f"shadows: {copy.path}", markup=False)
    skill = status.skill
    if skill is None:
        return
    out.print("\n[bold]front matter[/]")
    dumped = yaml.safe_dump(
        skill.front_matter(), sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    out.print(dumped.rstrip(), markup=False)
    rows = _requirement_rows(status, library)
    if rows:
        out.print("\n[bold]requirements[/]")
        for row in rows:
            mark = {True: "[green]ok[/]", False: "[red]missing[/]", None: "[dim]?[/]"}[row["met"]]
            note = f"  [dim]{escape(row['note'])}[/]" if row["note"] else ""
            out.print(f"  {mark} {row['kind']}: {escape(row['name'])}{note}")
    out.print("\n[bold]files[/]")
    if skill.files:
        for name in skill.files:
            out.print(f"  {name}", markup=False)
    else:
        out.print("  (none besides SKILL.md)")
    out.print("\n[bold]instructions[/]")
    out.print(skill.body or "(none)", markup=False)
