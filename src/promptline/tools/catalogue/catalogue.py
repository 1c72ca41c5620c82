"""The catalogue: search the configured sources, show an entry, install a skill or a tool
package (checksum first, unpacked safely, switched off until enabled) and uninstall it."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from promptline.core.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PromptLineError,
)
from promptline.storage.files import private_dir
from promptline.tools.catalogue.checksum import file_checksum, tree_checksum
from promptline.tools.catalogue.index import CatalogueEntry, EntryKind, read_index, version_key
from promptline.tools.catalogue.installed import INSTALLED_FILE, InstalledItem, InstalledRecords
from promptline.tools.catalogue.sources import Source
from promptline.tools.catalogue.unpack import (
    ArchiveLimits,
    UnsafeArchiveError,
    archive_kind,
    copy_tree,
    unpack_archive,
)
from promptline.tools.dependencies import resolve
from promptline.tools.switches import SWITCHES_FILE, Switches, SwitchKind

if TYPE_CHECKING:
    from promptline.config.plugins import CatalogueSource, PluginsSettings
    from promptline.config.settings import Settings

__all__ = [
    "Catalogue",
    "ChecksumMismatchError",
    "InstallReport",
    "SearchHit",
    "SourceProblem",
    "parse_spec",
]

SKILL_FILE = "SKILL.md"


class ChecksumMismatchError(PromptLineError):
    """What a source holds is not what its index vouches for."""

    code = "checksum_mismatch"


@dataclass(frozen=True, slots=True)
class SourceProblem:
    """A source that could not be read (the others are still used)."""

    source: str
    message: str
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A name found by a search: its newest entry and the other versions offered."""

    entry: CatalogueEntry
    versions: tuple[str, ...]
    """Every version offered (newest first), across the sources searched."""
    installed: str | None = None
    """The installed version, if any."""


@dataclass(slots=True)
class InstallReport:
    """What `Catalogue.install` did."""

    installed: list[InstalledItem] = field(default_factory=list)
    """Put in place now (dependencies first), each switched off."""
    already: list[InstalledItem] = field(default_factory=list)
    """Asked for (or needed) but installed before."""
    missing: list[str] = field(default_factory=list)
    """Requirements still absent (install them with ``with_deps``)."""
    missing_python: dict[str, list[str]] = field(default_factory=dict)
    """Tool package -> Python distributions it needs that are not installed."""


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``name`` or ``name@version`` -> (name, version or None)."""
    name, sep, version = spec.strip().partition("@")
    if not name or (sep and not version):
        raise InvalidInputError(f"{spec!r} is not NAME or NAME@VERSION")
    return name, (version if sep else None)


class Catalogue:
    """The configured sources and what was installed from them into ``home``."""

    def __init__(
        self,
        *,
        sources: dict[str, CatalogueSource],
        cache_dir: Path,
        home: Path,
        plugins: PluginsSettings,
        skill_paths: Sequence[Path] = (),
        limits: ArchiveLimits | None = None,
    ) -> None:
        self._sources = [Source(name, s, cache_dir) for name, s in sources.items()]
        self.home = home
        self.plugins = plugins
        self.skills_dir = home / "skills"
        self.skill_folders = [self.skills_dir, *skill_paths]
        self.limits = limits or ArchiveLimits()
        self.records = InstalledRecords(home / INSTALLED_FILE)
        self.switches = Switches(home / SWITCHES_FILE)
        self._entries: list[CatalogueEntry] | None = None
        self._problems: list[SourceProblem] = []

    @classmethod
    def from_settings(cls, settings: Settings, *, home: Path | None = None) -> Catalogue:
        """The catalogue of ``settings.catalogue``, installing into ``home``."""
        from promptline.config.home import promptline_home

        return cls(
            sources=settings.catalogue.sources,
            cache_dir=settings.catalogue.cache_dir,
            home=home or promptline_home(),
            plugins=settings.plugins,
            skill_paths=settings.skills.paths,
        )

    # -- reading the sources ----------------------------------------------------------------

    @property
    def sources(self) -> list[Source]:
        """The configured sources, in configuration order."""
        return list(self._sources)

    def load(self, *, refresh: bool = False) -> tuple[list[CatalogueEntry], list[SourceProblem]]:
        """Every entry of every source, and the sources that could not be read. Git sources
        are cloned when missing and fetched again with ``refresh``."""
        if self._entries is not None and not refresh:
            return list(self._entries), list(self._problems)
        if not self._sources:
            raise NotFoundError(
                "no catalogue sources are configured",
                hint="add one under catalogue.sources in the configuration (a path or a git "
                "repository; see docs/plugins.md)",
            )
        entries: list[CatalogueEntry] = []
        problems: list[SourceProblem] = []
        for source in self._sources:
            try:
                index = source.index_file(refresh=refresh)
                entries.extend(read_index(index, source=source.name))
            except PromptLineError as exc:
                problems.append(SourceProblem(source.name, exc.message, exc.hint))
        self._entries, self._problems = entries, problems
        return list(entries), list(problems)

    def _source(self, name: str | None) -> str | None:
        if name is None:
            return None
        known = [s.name for s in self._sources]
        if name not in known:
            raise NotFoundError(
                f"no catalogue source named {name!r}",
                hint=f"the sources are: {', '.join(known) or 'none'}",
            )
        return name

    def search(
        self, words: Iterable[str] = (), *, source: str | None = None, refresh: bool = False
    ) -> tuple[list[SearchHit], list[SourceProblem]]:
        """Names whose name, description or tags hold every word (all names without words),
        each with its newest version; and the sources that could not be read."""
        wanted = [w for w in words if w.strip()]
        only = self._source(source)
        entries, problems = self.load(refresh=refresh)
        by_name: dict[str, list[CatalogueEntry]] = {}
        for entry in entries:
            if only is None or entry.source == only:
                by_name.setdefault(entry.name, []).append(entry)
        installed = {i.name: i.version for i in self.records.all()}
        hits = []
        for name in sorted(by_name):
            versions = _newest_first(by_name[name])
            newest = versions[0]
            if wanted and not newest.matches(wanted):
                continue
            offered = tuple(dict.fromkeys(e.version for e in versions))
            hits.append(SearchHit(newest, offered, installed.get(name)))
        return hits, problems

    def versions(self, name: str, *, source: str | None = None) -> list[CatalogueEntry]:
        """Every entry named ``name``, newest first (the first source wins a tie)."""
        only = self._source(source)
        entries, _ = self.load()
        return _newest_first(
            [e for e in entries if e.name == name and (only is None or e.source == only)]
        )

    def find(self, spec: str, *, source: str | None = None) -> CatalogueEntry:
        """The entry ``name`` (newest) or ``name@version``; `NotFoundError` saying what there
        is instead."""
        name, version = parse_spec(spec)
        found = self.versions(name, source=source)
        if version is not None:
            exact = [e for e in found if e.version == version]
            if exact:
                return exact[0]
            if found:
                raise NotFoundError(
                    f"{name} has no version {version}",
                    hint=f"versions offered: {', '.join(dict.fromkeys(e.version for e in found))}",
                )
        elif found:
            return found[0]
        entries, problems = self.load()
        import difflib

        close = difflib.get_close_matches(name, sorted({e.name for e in entries}), n=3)
        hint = (
            f"did you mean {', '.join(close)}?"
            if close
            else "search with `promptline tools search`"
        )
        if problems:
            hint += f" (unreadable sources: {', '.join(p.source for p in problems)})"
        where = f" in the source {source}" if source else ""
        raise NotFoundError(f"no catalogue entry named {name!r}{where}", hint=hint)

    # -- installing -------------------------------------------------------------------------

    def installed(self) -> list[InstalledItem]:
        """What was installed from a catalogue."""
        return self.records.all()

    def present(self) -> set[str]:
        """Names that satisfy a requirement here: installed from a catalogue, a skill folder,
        or a tool package found by the plugin manager (entry point, module, plugins folder)."""
        from promptline.tools.plugins.discovery import discover, skills_present

        names = {item.name for item in self.records.all()}
        names |= skills_present(self.skill_folders)
        names |= {
            spec.name
            for spec in discover(
                entry_points=self.plugins.entry_points,
                modules=self.plugins.modules,
                plugins_dir=self.plugins.dir,
            )
        }
        return names

    def missing_requirements(self, entry: CatalogueEntry) -> list[str]:
        """The requirements of ``entry`` that are not here."""
        present = self.present()
        return [name for name in entry.requires if name not in present]

    def install(
        self, spec: str, *, source: str | None = None, with_deps: bool = False
    ) -> InstallReport:
        """Install ``name[@version]`` (from ``source``, or the first source offering it), and
        with ``with_deps`` every missing requirement first. Each thing installed is checked
        against its checksum before it is unpacked, and lands switched off."""
        entry = self.find(spec, source=source)
        report = InstallReport()
        plan = self._plan(entry, source=source) if with_deps else [entry]
        for item in plan:
            existing = self.records.get(item.name, item.kind)
            if existing:
                if item is entry and existing[0].version != entry.version:
                    raise ConflictError(
                        f"{entry.name} {existing[0].version} is installed, not {entry.version}",
                        hint=f"uninstall it first: `promptline tools uninstall {entry.name}`",
                    )
                report.already.append(existing[0])
                continue
            report.installed.append(self._install_one(item))
        present = self.present()
        report.missing = [r for r in _requirements(plan) if r not in present]
        for done in report.installed:
            if done.kind == "tools":
                python = self._python_missing(Path(done.path))
                if python:
                    report.missing_python[done.name] = python
        return report

    def _plan(self, entry: CatalogueEntry, *, source: str | None) -> list[CatalogueEntry]:
        """``entry`` and the entries of its missing requirements, dependencies first."""
        present = self.present()
        chosen: dict[str, CatalogueEntry] = {entry.name: entry}
        queue = [entry]
        while queue:
            current = queue.pop(0)
            for requirement in current.requires:
                if requirement in present or requirement in chosen:
                    continue
                offered = self.versions(requirement)
                if not offered:
                    raise NotFoundError(
                        f"{current.name} needs {requirement}, which is not installed and no "
                        "catalogue source offers",
                        hint="install it some other way, or add a source that has it",
                    )
                # Prefer the source the asked-for entry came from.
                same = [e for e in offered if e.source == (source or entry.source)]
                chosen[requirement] = (same or offered)[0]
                queue.append(chosen[requirement])
        graph = {name: [r for r in item.requires if r in chosen] for name, item in chosen.items()}
        resolution = resolve(graph)
        if resolution.problems:
            problem = next(iter(resolution.problems.values()))
            raise ConflictError(
                f"cannot install {entry.spec} with its dependencies: {problem}",
                hint="the catalogue's requires form a cycle; tell its publisher",
            )
        return [chosen[name] for name in resolution.order]

    def _target(self, kind: EntryKind, name: str) -> Path:
        return (self.skills_dir if kind == "skill" else Path(self.plugins.dir)) / name

    def _check_free(self, entry: CatalogueEntry, target: Path) -> None:
        if target.exists() or target.is_symlink():
            raise ConflictError(
                f"{target} already exists and was not installed from a catalogue",
                hint="move it away, or uninstall what is there",
            )
        if entry.kind == "skill":
            for folder in self.skill_folders:
                if (folder / entry.name / SKILL_FILE).is_file():
                    raise ConflictError(
                        f"a skill named {entry.name!r} already exists in {folder}",
                        hint="rename or remove that skill first",
                    )
            return
        from promptline.tools.plugins.discovery import discover

        for spec in discover(
            entry_points=self.plugins.entry_points, modules=self.plugins.modules, plugins_dir=None
        ):
            if spec.name == entry.name:
                raise ConflictError(
                    f"a tool package named {entry.name!r} already exists ({spec.origin}: "
                    f"{spec.target})",
                    hint="remove it from the configuration or uninstall its distribution first",
                )

    def _install_one(self, entry: CatalogueEntry) -> InstalledItem:
        target = self._target(entry.kind, entry.name)
        self._check_free(entry, target)
        if not entry.location.exists():
            raise NotFoundError(
                f"{entry.spec}: {entry.path} is not in the source {entry.source!r}",
                hint="the index lists a file the source does not hold; tell its publisher",
            )
        private_dir(target.parent)
        # Staged next to the target (same file system, so the final step is one rename);
        # the dot keeps skill and package scanners from taking it for an entry.
        staging = Path(tempfile.mkdtemp(prefix=f".installing-{entry.name}-", dir=target.parent))
        kind: SwitchKind = "skills" if entry.kind == "skill" else "plugins"
        switched = False
        try:
            content = self._stage(entry, staging)
            self._validate(entry, content)
            if self.switches.state(kind, entry.name) is None:
                switched = True
            # Off before it appears: a running app never sees it on.
            self.switches.set(kind, entry.name, False)
            os.rename(content, target)
        except BaseException:
            if switched:
                with contextlib.suppress(Exception):
                    self.switches.forget(kind, entry.name)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        item = InstalledItem(
            name=entry.name,
            kind=entry.kind,
            version=entry.version,
            source=entry.source,
            sha256=entry.sha256,
            path=str(target),
            installed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            requires=entry.requires,
        )
        self.records.add(item)
        return item

    def _stage(self, entry: CatalogueEntry, staging: Path) -> Path:
        """The entry's files, checked, in a folder under ``staging``."""
        location = entry.location
        origin = f"{entry.spec} ({entry.source}: {entry.path})"
        if location.is_dir():
            content = staging / "content"
            copy_tree(location, content, self.limits, origin=origin)
            # The copy is what gets installed, so the copy is what is checked.
            self._verify(entry, tree_checksum(content))
            return content
        if archive_kind(location) is None:
            raise InvalidInputError(
                f"{origin} is neither a folder nor a .tar.gz, .tgz, .tar or .zip archive"
            )
        size = location.stat().st_size
        if size > self.limits.max_archive_bytes:
            raise UnsafeArchiveError(
                f"{origin} is {size} bytes, more than the {self.limits.max_archive_bytes} "
                "allowed; nothing was installed"
            )
        # Copied first, then checked, then unpacked from the copy: the bytes unpacked are
        # the bytes checked, whatever happens to the source meanwhile.
        copy = staging / location.name
        shutil.copyfile(location, copy)
        self._verify(entry, file_checksum(copy))
        unpacked = staging / "unpacked"
        unpack_archive(copy, unpacked, self.limits, origin=origin)
        children = list(unpacked.iterdir())
        # An archive may hold its files inside one top folder (name-1.0/...): that is the entry.
        if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
            return children[0]
        return unpacked

    def _verify(self, entry: CatalogueEntry, actual: str) -> None:
        if actual != entry.sha256:
            raise ChecksumMismatchError(
                f"{entry.spec} from {entry.source!r} does not match its checksum "
                f"(index: {entry.sha256}, actual: {actual}); nothing was installed",
                hint="the source changed after its index was written, or was tampered with; "
                "tell its publisher",
                expected=entry.sha256,
                actual=actual,
            )

    def _validate(self, entry: CatalogueEntry, content: Path) -> None:
        if entry.kind == "skill":
            if not (content / SKILL_FILE).is_file():
                raise InvalidInputError(
                    f"{entry.spec} is listed as a skill but has no {SKILL_FILE}; nothing was "
                    "installed"
                )
            return
        from promptline.tools.plugins.manifest import read_manifest

        manifest = read_manifest(content)
        if (manifest.name, manifest.version) != (entry.name, entry.version):
            raise InvalidInputError(
                f"{entry.spec}: its manifest says {manifest.name}@{manifest.version}; nothing "
                "was installed",
                hint="the index and the package's manifest must agree; tell its publisher",
            )

    def _python_missing(self, folder: Path) -> list[str]:
        from promptline.tools.plugins.manifest import missing_distributions, read_manifest

        try:
            return missing_distributions(read_manifest(folder).python)
        except PromptLineError:
            return []

    # -- uninstalling -----------------------------------------------------------------------

    def uninstall(self, name: str, *, kind: EntryKind | None = None) -> InstalledItem:
        """Remove what `install` put in place for ``name`` (its folder, switch and record);
        refuse anything it did not install."""
        found = self.records.get(name, kind)
        if not found:
            raise NotFoundError(
                f"{name} was not installed from a catalogue",
                hint="uninstall removes only what `promptline tools install` put in place",
            )
        if len(found) > 1:
            raise InvalidInputError(
                f"both a skill and a tool package named {name} are installed",
                hint="say which with --kind skill or --kind tools",
            )
        item = found[0]
        expected = self._target(item.kind, item.name)
        if Path(item.path) != expected:
            raise ConflictError(
                f"the record of {name} points at {item.path}, not at {expected}; nothing removed",
                hint=f"remove it by hand and delete its record from {self.records.path}",
            )
        if expected.is_symlink():
            expected.unlink()
        elif expected.exists():
            # Renamed aside first, so a running app sees it gone at once, never half-deleted.
            aside = expected.with_name(f".removing-{expected.name}-{os.getpid()}")
            os.rename(expected, aside)
            shutil.rmtree(aside, ignore_errors=True)
        self.records.remove(item)
        self.switches.forget("skills" if item.kind == "skill" else "plugins", item.name)
        return item

    def dependents(self, name: str) -> list[str]:
        """Installed things that require ``name``."""
        return [i.name for i in self.records.all() if name in i.requires]


def _newest_first(entries: list[CatalogueEntry]) -> list[CatalogueEntry]:
    # sorted() is stable: among equal versions the first source (config order) stays first.
    return sorted(entries, key=lambda e: version_key(e.version), reverse=True)


def _requirements(plan: list[CatalogueEntry]) -> list[str]:
    return list(dict.fromkeys(r for item in plan for r in item.requires))
