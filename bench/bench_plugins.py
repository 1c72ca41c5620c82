"""Tool packages and the catalogue: time to load 50 small tool packages, to reload one, to
follow the switches when nothing changed, and to verify and install a 5 MB archive.

One run of each, in a temporary home; bounded (well under a minute).

    python bench/bench_plugins.py
"""

from __future__ import annotations

import os
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PACKAGES = 50
ARCHIVE_BYTES = 5 * 1024 * 1024
DEADLINE_SECS = 60.0

MODULE = '''
from promptline.tools import tool

__version__ = "1.0.{n}"


@tool(read_only=True, inline=True)
def count_{n}(text: str) -> int:
    """Count the words of a text."""
    return len(text.split())


@tool(inline=True)
def echo_{n}(text: str, times: int = 1) -> str:
    """Repeat a text."""
    return text * times


tools = [count_{n}, echo_{n}]
'''


def write_package(folder: Path, name: str, n: int) -> None:
    module = f"bench_pkg_{n:02d}"
    folder.mkdir(parents=True)
    (folder / "promptline-plugin.yaml").write_text(
        f'name: {name}\nversion: "1.0.{n}"\nmodule: {module}\n'
    )
    (folder / f"{module}.py").write_text(MODULE.format(n=n))


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def main() -> int:
    began = time.perf_counter()
    from promptline.config.plugins import CatalogueSource, PluginsSettings
    from promptline.tools.builtin import builtin_tools
    from promptline.tools.catalogue import Catalogue, checksum
    from promptline.tools.plugins import PluginManager
    from promptline.tools.registry import ToolRegistry
    from promptline.tools.switches import SWITCHES_FILE, Switches

    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        plugins = home / "plugins"
        switches = Switches(home / SWITCHES_FILE)
        for n in range(PACKAGES):
            name = f"bench-{n:02d}"
            write_package(plugins / name, name, n)
            switches.set("plugins", name, True)
        registry = ToolRegistry(builtin_tools())
        manager = PluginManager(
            registry, plugins=PluginsSettings(entry_points=False, dir=plugins), home=home
        )

        ms = timed(manager.load_all)
        loaded = [s for s in manager.statuses() if s.state == "loaded"]
        assert len(loaded) == PACKAGES, [s.error for s in manager.statuses() if s.error]
        rows.append(
            (f"load {PACKAGES} packages ({2 * PACKAGES} tools)", ms, f"{ms / PACKAGES:.2f} ms each")
        )
        rows.append(
            ("follow the switches, nothing changed", timed(manager.refresh), "a watcher's tick")
        )
        rows.append(("reload one package", timed(lambda: manager.reload("bench-07")), "re-import"))
        rows.append(("unload one package", timed(lambda: manager.unload("bench-08")), ""))

        source = Path(tmp) / "source"
        folder = source / "big"
        write_package(folder, "big", 99)
        (folder / "data.bin").write_bytes(os.urandom(ARCHIVE_BYTES))
        archive = source / "big-1.0.99.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder, arcname="big")
        digest = checksum(archive)
        (source / "promptline-index.yaml").write_text(
            "format: 1\nentries:\n"
            f"  - {{name: big, kind: tools, version: '1.0.99', path: {archive.name}, "
            f"sha256: {digest}}}\n"
        )
        catalogue = Catalogue(
            sources={"bench": CatalogueSource(path=source)},
            cache_dir=home / "cache",
            home=home,
            plugins=PluginsSettings(entry_points=False, dir=plugins),
        )
        size_mb = archive.stat().st_size / 1024 / 1024
        rows.append(
            ("checksum of the archive alone", timed(lambda: checksum(archive)), f"{size_mb:.1f} MB")
        )
        rows.append(
            (
                "verify + install the archive",
                timed(lambda: catalogue.install("big")),
                "copy, sha256, unpack, move, record",
            )
        )
        assert (plugins / "big" / "data.bin").stat().st_size == ARCHIVE_BYTES
        folder_ms = timed(lambda: checksum(folder))
        rows.append(("tree checksum of the same folder", folder_ms, "what a publisher runs"))
        elapsed = time.perf_counter() - began
        for name in list(sys.modules):
            if name.startswith("bench_pkg_"):
                del sys.modules[name]

    width = max(len(r[0]) for r in rows)
    print(f"{'operation':<{width}}  {'ms':>9}  note")
    print(f"{'-' * width}  {'-' * 9}  ----")
    for name, ms, note in rows:
        print(f"{name:<{width}}  {ms:>9.1f}  {note}")
    print(f"\ntotal {elapsed:.1f} s (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    return 0 if elapsed < DEADLINE_SECS else 1


if __name__ == "__main__":
    raise SystemExit(main())
