"""The manifest of a tool package installed into the plugins folder (``promptline-plugin.yaml``):
its name, version, module, dependencies and required Python distributions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptline.core.errors import InvalidInputError

__all__ = [
    "MANIFEST_FIELDS",
    "MANIFEST_FILE",
    "NAME_PATTERN",
    "PackageManifest",
    "check_name",
    "missing_distributions",
    "read_manifest",
]

MANIFEST_FILE = "promptline-plugin.yaml"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
"""Names of tool packages and catalogue entries: no dots, so ``<package>.<tool>`` stays clear."""
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_DISTRIBUTION = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
MANIFEST_FIELDS = {"name", "version", "description", "module", "requires", "python", "namespace"}


def check_name(name: str, *, what: str = "tool package") -> str:
    """``name`` when it is a valid package or entry name; `InvalidInputError` otherwise."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidInputError(
            f"{what} name {name!r} is not valid",
            hint="use letters, digits, '-' and '_' (at most 64), starting with a letter or digit",
        )
    return name


@dataclass(frozen=True, slots=True)
class PackageManifest:
    """What ``promptline-plugin.yaml`` says about a tool package."""

    name: str
    version: str
    module: str
    description: str = ""
    requires: tuple[str, ...] = ()
    """Other tool packages or skills, by name, that must be loaded first."""
    python: tuple[str, ...] = ()
    """Python distributions the code imports (``requests>=2``); only their presence is checked."""
    namespace: str | None = None
    """Prefix of the tool names; None: the package name; "": no prefix."""


def read_manifest(folder: Path) -> PackageManifest:
    """The manifest in ``folder``; `InvalidInputError` naming the file and the field at fault."""
    import yaml

    path = folder / MANIFEST_FILE
    try:
        # The C loader when PyYAML has it: a refresh reads every manifest.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    except FileNotFoundError:
        raise InvalidInputError(
            f"{folder} has no {MANIFEST_FILE}",
            hint=f"a tool package folder holds a {MANIFEST_FILE} naming its module",
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from exc
    return parse_manifest(data, where=str(path))


def parse_manifest(data: Any, *, where: str) -> PackageManifest:
    """A manifest from its parsed YAML ``data``; errors name ``where``."""
    if not isinstance(data, dict):
        raise InvalidInputError(f"{where}: must be a mapping of name, version, module, ...")
    unknown = sorted(set(map(str, data)) - MANIFEST_FIELDS)
    if unknown:
        raise InvalidInputError(
            f"{where}: unknown field {', '.join(unknown)}",
            hint=f"the fields are {', '.join(sorted(MANIFEST_FIELDS))}",
        )

    def text(key: str, *, required: bool) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                raise InvalidInputError(f"{where}: {key} is required")
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            hint = "write it as a quoted string ('1.10')" if isinstance(value, float) else None
            raise InvalidInputError(f"{where}: {key} must be a string", hint=hint)
        return str(value)

    def names(key: str) -> tuple[str, ...]:
        value = data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidInputError(f"{where}: {key} must be a list of strings")
        return tuple(value)

    name = text("name", required=True) or ""
    try:
        check_name(name)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {exc.message}", hint=exc.hint) from None
    module = text("module", required=True) or ""
    if not _MODULE.match(module):
        raise InvalidInputError(f"{where}: module {module!r} is not a module path (pkg.mod)")
    python = names("python")
    for requirement in python:
        if not _DISTRIBUTION.match(requirement):
            raise InvalidInputError(f"{where}: python: {requirement!r} is not a distribution")
    return PackageManifest(
        name=name,
        version=text("version", required=True) or "",
        module=module,
        description=text("description", required=False) or "",
        requires=names("requires"),
        python=python,
        namespace=text("namespace", required=False),
    )


def missing_distributions(requirements: tuple[str, ...]) -> list[str]:
    """The requirements (``requests>=2``) whose distribution is not installed at all."""
    from importlib import metadata

    missing = []
    for requirement in requirements:
        match = _DISTRIBUTION.match(requirement)
        if match is None:
            missing.append(requirement)
            continue
        try:
            metadata.version(match.group(1))
        except metadata.PackageNotFoundError:
            missing.append(requirement)
    return missing
