"""Finding tool packages without running them: entry points, configured modules and files, and
the packages installed into the plugins folder; and which skills are present."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from promptline.core.errors import InvalidInputError
from promptline.tools.plugins.manifest import (
    MANIFEST_FILE,
    PackageManifest,
    check_name,
    read_manifest,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Origin",
    "PackageSpec",
    "discover",
    "skills_present",
]

ENTRY_POINT_GROUP = "promptline.tools"
SKILL_FILE = "SKILL.md"
Origin = Literal["entry_point", "module", "file", "installed"]


@dataclass(frozen=True, slots=True)
class PackageSpec:
    """A tool package found somewhere, before any of its code ran.

    ``target`` is what to import: ``module`` or ``module:callable`` for an entry point, a
    module path, a ``.py`` file, or the installed package's folder. ``version`` and
    ``requires`` are known up front only for entry points (the distribution's version) and
    installed packages (the manifest); the others are read from the module once imported.
    """

    name: str
    origin: Origin
    target: str
    default_enabled: bool
    version: str | None = None
    requires: tuple[str, ...] | None = None
    description: str = ""
    folder: Path | None = None
    manifest: PackageManifest | None = None
    error: str | None = None
    """Why it cannot be loaded at all (a broken manifest, an invalid name)."""


def discover(
    *, entry_points: bool, modules: Iterable[str], plugins_dir: Path | None
) -> list[PackageSpec]:
    """Every package found, in the order entry points, configured modules, installed folders.

    Entry-point and configured packages are on by default; installed ones are off until
    switched on. A name found twice is kept twice: the caller reports the later one.
    """
    found: list[PackageSpec] = []
    if entry_points:
        found.extend(_entry_points())
    found.extend(_configured(entry) for entry in modules)
    if plugins_dir is not None:
        found.extend(_installed(plugins_dir))
    return found


def _entry_points() -> list[PackageSpec]:
    from importlib import metadata

    specs = []
    for point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        dist = getattr(point, "dist", None)
        version = getattr(dist, "version", None) if dist is not None else None
        error = _name_error(point.name)
        specs.append(
            PackageSpec(
                name=point.name,
                origin="entry_point",
                target=point.value,
                default_enabled=True,
                version=version,
                error=error,
            )
        )
    return specs


def _configured(entry: str) -> PackageSpec:
    """``NAME=TARGET`` or ``TARGET``: a module path (``acme.tools``) or a ``.py`` file."""
    name, sep, target = entry.partition("=")
    if not sep:
        name, target = "", entry
    name, target = name.strip(), target.strip()
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser().absolute()
        return PackageSpec(
            name=name or path.stem,
            origin="file",
            target=str(path),
            default_enabled=True,
            error=_name_error(name or path.stem),
        )
    name = name or target.replace(".", "_")
    return PackageSpec(
        name=name,
        origin="module",
        target=target,
        default_enabled=True,
        error=_name_error(name),
    )


def _installed(plugins_dir: Path) -> list[PackageSpec]:
    try:
        folders = sorted(p for p in plugins_dir.iterdir() if p.is_dir())
    except OSError:
        return []
    specs = []
    for folder in folders:
        if folder.name.startswith(".") or not (folder / MANIFEST_FILE).is_file():
            continue
        try:
            manifest = read_manifest(folder)
        except InvalidInputError as exc:
            specs.append(_broken(folder, exc.message))
            continue
        if manifest.name != folder.name:
            specs.append(
                _broken(folder, f"{folder / MANIFEST_FILE} names {manifest.name!r}, not the folder")
            )
            continue
        specs.append(
            PackageSpec(
                name=manifest.name,
                origin="installed",
                target=str(folder),
                default_enabled=False,
                version=manifest.version,
                requires=manifest.requires,
                description=manifest.description,
                folder=folder,
                manifest=manifest,
            )
        )
    return specs


def _broken(folder: Path, error: str) -> PackageSpec:
    return PackageSpec(
        name=folder.name,
        origin="installed",
        target=str(folder),
        default_enabled=False,
        folder=folder,
        error=error,
    )


def _name_error(name: str) -> str | None:
    try:
        check_name(name)
    except InvalidInputError as exc:
        return exc.message
    return None


def skills_present(folders: Iterable[Path]) -> set[str]:
    """Names of the skills found in ``folders``: sub-folders holding a ``SKILL.md``."""
    names: set[str] = set()
    for folder in folders:
        try:
            children = list(folder.iterdir())
        except OSError:
            continue
        names.update(child.name for child in children if (child / SKILL_FILE).is_file())
    return names
