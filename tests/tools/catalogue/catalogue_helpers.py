"""Helpers of the catalogue tests: skills, tool packages, archives and index files written
into a temporary source folder, and a catalogue over them."""

from __future__ import annotations

import io
import subprocess
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import yaml

from promptline.config.plugins import CatalogueSource, PluginsSettings
from promptline.tools.catalogue import Catalogue, checksum
from promptline.tools.plugins import MANIFEST_FILE


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def skill(folder: Path, name: str, *, body: str = "Do the thing.") -> Path:
    """A skill folder: ``SKILL.md`` and a helper script."""
    write(folder / "SKILL.md", f"---\nname: {name}\ndescription: {name} skill\n---\n{body}\n")
    write(folder / "scripts" / "run.sh", "echo hi\n")
    return folder


def package(folder: Path, name: str, version: str, *, answer: str = "hi") -> Path:
    """A tool package folder: its manifest and a module with one tool, ``<name>.greet``."""
    module = f"{name.replace('-', '_')}_tools"
    write(
        folder / MANIFEST_FILE,
        f"""
        name: {name}
        version: "{version}"
        description: Greets people.
        module: {module}
        """,
    )
    write(
        folder / f"{module}.py",
        f'''
        from promptline.tools import tool

        @tool(read_only=True, inline=True)
        def greet(who: str) -> str:
            """Greet someone."""
            return "{answer} " + who

        tools = [greet]
        ''',
    )
    return folder


def tar_folder(folder: Path, archive: Path, *, top: str | None = None) -> Path:
    """``folder`` packed as a .tar.gz (inside the folder ``top`` when given)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=top or ".")
    return archive


def tar_members(archive: Path, members: list[tuple[str, str, bytes | str]]) -> Path:
    """A .tar.gz of hand-made members: ``(kind, name, data)`` with kind ``file``, ``dir``,
    ``symlink`` or ``hardlink`` (data is the content or the link target)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                content = data if isinstance(data, bytes) else data.encode()
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}.get(
                kind, tarfile.LNKTYPE
            )
            if kind != "dir":
                info.linkname = str(data)
            tar.addfile(info)
    return archive


def entry(root: Path, name: str, kind: str, version: str, path: str, **more: Any) -> dict[str, Any]:
    """An index entry for ``root/path`` with its real checksum (unless ``sha256`` is given)."""
    found: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "version": version,
        "description": more.pop("description", f"{name}, version {version}"),
        "tags": more.pop("tags", []),
        "requires": more.pop("requires", []),
        "path": path,
        "sha256": more.pop("sha256", None) or checksum(root / path),
    }
    found.update(more)
    return found


def index(
    root: Path, entries: list[dict[str, Any]], *, name: str = "promptline-index.yaml"
) -> Path:
    """Write the index file of the source ``root``."""
    path = root / name
    path.write_text(yaml.safe_dump({"format": 1, "entries": entries}, sort_keys=False))
    return path


def catalogue(home: Path, **sources: dict[str, Any]) -> Catalogue:
    """A catalogue over ``sources`` (name -> source settings), installing into ``home``."""
    return Catalogue(
        sources={name: CatalogueSource(**s) for name, s in sources.items()},
        cache_dir=home / "cache" / "catalogue",
        home=home,
        plugins=PluginsSettings(entry_points=False, dir=home / "plugins"),
    )


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` with a fixed identity; its output."""
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def listing(folder: Path) -> list[str]:
    """Every path under ``folder``, relative, sorted (empty when it does not exist)."""
    if not folder.exists():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
