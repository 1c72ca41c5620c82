"""Reading a skill: its folder, the YAML front matter of its ``SKILL.md`` and the Markdown
instructions after it. Every mistake is a `SkillFormatError` naming the file and the line."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptline.core.errors import ConfigError

if TYPE_CHECKING:
    import yaml

__all__ = [
    "MAX_LISTED_FILES",
    "NAME_PATTERN",
    "REQUIREMENT_KINDS",
    "SKILL_FILE",
    "Requirements",
    "Skill",
    "SkillFormatError",
    "list_skill_files",
    "parse_skill",
    "parse_skill_text",
]

SKILL_FILE = "SKILL.md"
"""The file that makes a folder a skill."""

NAME_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")
"""A skill's name: lowercase letters, digits, ``-`` and ``_``, at most 64 characters, starting
and ending with a letter or digit (``pdf-forms``, ``release_notes``)."""

REQUIREMENT_KINDS = ("tools", "env", "bins", "python", "skills")
"""The keys ``requires:`` may hold."""

MAX_LISTED_FILES = 200
"""A skill's file list stops here (a skill is instructions plus a few scripts, not a tree)."""

_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", ".git", ".venv", "venv"})
_KNOWN_KEYS = frozenset({"name", "description", "version", "requires"})


class SkillFormatError(ConfigError):
    """A ``SKILL.md`` that cannot be read as a skill; the message starts with ``file:line:``."""

    code = "skill_format"

    def __init__(self, path: Path, line: int | None, problem: str, *, hint: str | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(
            f"{where}: {problem}",
            hint=hint or "see docs/skills.md for the SKILL.md format",
            path=str(path),
            line=line,
        )
        self.path = path
        self.line = line
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Requirements:
    """What a skill needs before it is offered: tool names or patterns (``git_*``), environment
    variables, programs on PATH, Python distributions (``pypdf>=4``) and other skills."""

    tools: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    bins: tuple[str, ...] = ()
    python: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return any((self.tools, self.env, self.bins, self.python, self.skills))

    def as_dict(self) -> dict[str, list[str]]:
        """The non-empty kinds, as the front matter writes them."""
        return {
            kind: list(getattr(self, kind)) for kind in REQUIREMENT_KINDS if getattr(self, kind)
        }


@dataclass(frozen=True, slots=True)
class Skill:
    """One parsed skill.

    ``path`` is the skill's folder, ``body`` the Markdown instructions after the front matter,
    ``files`` the other files of the folder (relative POSIX paths, sorted; hidden files and
    caches left out), ``extra`` the front-matter keys PromptLine does not use itself (kept so
    skills written for other agents, with ``license`` or ``metadata``, load as they are).
    """

    name: str
    description: str
    path: Path
    body: str
    version: str | None = None
    requires: Requirements = field(default_factory=Requirements)
    files: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """The description on one line (what the model sees in the skill list)."""
        return " ".join(self.description.split())

    def front_matter(self) -> dict[str, Any]:
        """The front matter as it was understood (for ``promptline skills show``)."""
        data: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.version is not None:
            data["version"] = self.version
        if self.requires:
            data["requires"] = self.requires.as_dict()
        data.update(self.extra)
        return data


def parse_skill(folder: Path, *, list_files: bool = True) -> Skill:
    """Read the skill in ``folder`` (its ``SKILL.md``); `SkillFormatError` if it is not one."""
    path = folder / SKILL_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SkillFormatError(
            path, None, "there is no SKILL.md here", hint="a skill is a folder with a SKILL.md"
        ) from None
    except OSError as exc:
        raise SkillFormatError(path, None, f"cannot be read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SkillFormatError(path, line, "is not UTF-8 text", hint="save it as UTF-8") from exc
    files = list_skill_files(folder) if list_files else ()
    return parse_skill_text(text, path, files=files)


def parse_skill_text(text: str, path: Path, *, files: tuple[str, ...] = ()) -> Skill:
    """Parse the text of a ``SKILL.md`` found at ``path`` (its folder gives the fallback name
    and the skill's location)."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        raise SkillFormatError(
            path,
            1,
            "has no front matter: the file must start with a line '---', then YAML "
            "(name, description, ...), then another '---'",
        )
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        raise SkillFormatError(
            path,
            len(lines),
            "the front matter is not closed: add a line '---' after it",
        )
    node, data = _load_yaml("\n".join(lines[1:end]), path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SkillFormatError(
            path, 2, f"the front matter must be a mapping of keys, not {_kind(data)}"
        )
    line_of = _key_lines(node)

    def at(key: str) -> int:
        return line_of.get(key, 1)

    folder = path.parent
    name_value = data.get("name")
    if name_value is None:
        name = folder.name
        if not NAME_PATTERN.match(name):
            raise SkillFormatError(
                path,
                1,
                f"has no name, and its folder name {name!r} is not a valid skill name",
                hint="add 'name: my-skill' (lowercase letters, digits, '-' and '_')",
            )
    elif not isinstance(name_value, str):
        raise SkillFormatError(path, at("name"), f"name must be text, not {_kind(name_value)}")
    elif not NAME_PATTERN.match(name_value):
        raise SkillFormatError(
            path,
            at("name"),
            f"name {name_value!r} is not valid: use lowercase letters, digits, '-' and '_' "
            "(at most 64, starting and ending with a letter or digit)",
            hint="for example 'name: pdf-forms'",
        )
    else:
        name = name_value

    description = data.get("description")
    if description is None:
        raise SkillFormatError(
            path,
            1,
            "has no description",
            hint="add 'description: ...': one sentence saying when to use the skill "
            "(it is what the model chooses by)",
        )
    if not isinstance(description, str):
        raise SkillFormatError(
            path, at("description"), f"description must be text, not {_kind(description)}"
        )
    if not description.strip():
        raise SkillFormatError(path, at("description"), "description is empty")

    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, str | int | type(None)):
        raise SkillFormatError(
            path,
            at("version"),
            f"version must be text, not {_kind(version)}",
            hint='quote it: version: "1.0"',
        )
    requires = _requirements(
        data.get("requires"), path, at("requires"), _key_lines(node, "requires")
    )
    extra = {k: v for k, v in data.items() if k not in _KNOWN_KEYS}
    body = "\n".join(lines[end + 1 :]).strip()
    return Skill(
        name=name,
        description=description.strip(),
        path=folder,
        body=body,
        version=None if version is None else str(version),
        requires=requires,
        files=files,
        extra=extra,
    )


def list_skill_files(folder: Path) -> tuple[str, ...]:
    """The files of a skill besides ``SKILL.md``, as sorted relative POSIX paths: hidden
    files and folders, caches and virtualenvs left out; at most `MAX_LISTED_FILES`."""
    found: list[str] = []
    stack = [(folder, "")]
    while stack and len(found) < MAX_LISTED_FILES:
        current, prefix = stack.pop()
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            relative = f"{prefix}{entry.name}"
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in _SKIPPED_DIRS:
                        stack.append((Path(entry.path), relative + "/"))
                    continue
            except OSError:
                continue
            if relative != SKILL_FILE:
                found.append(relative)
    return tuple(sorted(found)[:MAX_LISTED_FILES])


# -- YAML ---------------------------------------------------------------------------------------


def _load_yaml(source: str, path: Path) -> tuple[yaml.Node | None, Any]:
    """The front matter's node tree (for line numbers) and its value."""
    import yaml

    loader_class: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_class(source)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        last = source.count("\n") + 2  # the last line of the front matter
        # +1: marks count from 0, +1: the opening '---' line.
        line = min(mark.line + 2, last) if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.context_mark is not None and exc.problem:
            problem += f" ({exc.context} that starts on line {exc.context_mark.line + 2})"
        raise SkillFormatError(
            path, line, f"the front matter is not valid YAML: {problem}"
        ) from exc
    except yaml.YAMLError as exc:
        raise SkillFormatError(path, None, f"the front matter is not valid YAML: {exc}") from exc
    finally:
        loader.dispose()
    return node, data


def _key_lines(node: yaml.Node | None, *inside: str) -> dict[str, int]:
    """Line (in the file) of each key of the mapping at ``node`` (or of its ``inside`` key)."""
    import yaml

    for key in inside:
        if not isinstance(node, yaml.MappingNode):
            return {}
        node = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {
        str(k.value): k.start_mark.line + 2 for k, _ in node.value if isinstance(k, yaml.ScalarNode)
    }


def _requirements(value: Any, path: Path, line: int, lines: dict[str, int]) -> Requirements:
    if value is None:
        return Requirements()
    if not isinstance(value, dict):
        raise SkillFormatError(
            path,
            line,
            f"requires must be a mapping ({', '.join(REQUIREMENT_KINDS)}), not {_kind(value)}",
            hint="for example:\nrequires:\n  bins: [pdftotext]\n  env: [GITHUB_TOKEN]",
        )
    found: dict[str, tuple[str, ...]] = {}
    for kind, items in value.items():
        where = lines.get(str(kind), line)
        if kind not in REQUIREMENT_KINDS:
            raise SkillFormatError(
                path,
                where,
                f"requires.{kind} is not a kind of requirement",
                hint=f"use {', '.join(REQUIREMENT_KINDS)}",
            )
        if items is None:
            items = []
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
            raise SkillFormatError(
                path, where, f"requires.{kind} must be a list of names, not {_kind(items)}"
            )
        found[kind] = tuple(i.strip() for i in items)
    for dependency in found.get("skills", ()):
        if not NAME_PATTERN.match(dependency):
            raise SkillFormatError(
                path,
                lines.get("skills", line),
                f"requires.skills: {dependency!r} is not a skill name",
            )
    return Requirements(**found)


def _kind(value: Any) -> str:
    """What a YAML value is, in words."""
    match value:
        case None:
            return "nothing"
        case bool():
            return f"true/false ({str(value).lower()})"
        case int() | float():
            return f"a number ({value})"
        case str():
            return "text"
        case list():
            return "a list"
        case dict():
            return "a mapping"
        case _:
            return type(value).__name__
