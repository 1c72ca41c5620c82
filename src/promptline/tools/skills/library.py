"""The skills an installation has: found in folders in order of precedence, switched on and off,
checked against their requirements, and kept up to date while PromptLine runs.

A scan reads every ``SKILL.md`` (reparsing only those whose file changed) and replaces the
library's snapshot in one step, so readers never see half a scan. A skill that cannot be read
is listed as broken with its error; the others are not affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import os
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from promptline.core.errors import ConfigError, NotFoundError
from promptline.storage.files import private_dir
from promptline.tools.skills.parsing import SKILL_FILE, Skill, SkillFormatError, parse_skill
from promptline.tools.skills.prompt import render_skill_list
from promptline.tools.skills.requirements import (
    RequirementChecker,
    missing_tools,
    skill_dependency_problems,
)
from promptline.tools.switches import SWITCHES_FILE, Switches

if TYPE_CHECKING:
    from promptline.config.settings import Settings
    from promptline.tools.registry import ToolRegistry

__all__ = [
    "READ_SKILL_FILE",
    "USE_SKILL",
    "SkillLibrary",
    "SkillOrigin",
    "SkillSource",
    "SkillState",
    "SkillStatus",
    "skill_sources",
]

_log = logging.getLogger("promptline.skills")

USE_SKILL = "use_skill"
"""The tool that returns a skill's instructions; a run is shown the skill list only if it is
offered this tool."""
READ_SKILL_FILE = "read_skill_file"
"""The tool that returns one file of a skill."""

SkillState = Literal["available", "unavailable", "disabled", "broken", "shadowed"]
SkillOrigin = Literal["workspace", "home", "config"]

_WATCH_FAILED = object()
_STOP = object()


@dataclass(frozen=True, slots=True)
class SkillSource:
    """A folder skills are found in: each sub-folder with a ``SKILL.md`` is a skill (or the
    folder itself is one when it holds a ``SKILL.md``)."""

    path: Path
    origin: SkillOrigin


@dataclass(frozen=True, slots=True)
class SkillStatus:
    """A skill as the library sees it: its state and, when it is not available, why.

    ``skill`` is None only for a broken skill. ``reasons`` lists every unmet requirement of an
    unavailable skill; ``reason`` is them (or the error, the shadowing folder, the switch) in
    one sentence.
    """

    name: str
    state: SkillState
    path: Path
    source: SkillSource
    skill: Skill | None = None
    reasons: tuple[str, ...] = ()

    @property
    def reason(self) -> str | None:
        """Why the skill is not available, in one sentence (None when it is)."""
        return "; ".join(self.reasons) if self.reasons else None

    @property
    def version(self) -> str | None:
        """The skill's version, if it declares one."""
        return self.skill.version if self.skill else None

    @property
    def available(self) -> bool:
        """True when agents are offered this skill."""
        return self.state == "available"


@dataclass(frozen=True, slots=True)
class _Found:
    """One skill folder found by a scan, before the run-dependent checks."""

    name: str
    folder: Path
    source: SkillSource
    skill: Skill | None
    error: str | None = None
    shadowed_by: Path | None = None
    disabled: str | None = None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Snapshot:
    found: tuple[_Found, ...]
    problems: tuple[str, ...] = ()


@dataclass(slots=True)
class _View:
    """The snapshot in force with the views derived from it (replaced as a whole)."""

    snapshot: _Snapshot
    version: int
    statuses: dict[frozenset[str] | None, dict[str, SkillStatus]] = field(default_factory=dict)
    sections: dict[frozenset[str], str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _CachedParse:
    stamp: tuple[int, int, int]
    skill: Skill | None
    error: SkillFormatError | None


def skill_sources(settings: Settings, *, cwd: Path | None = None) -> list[SkillSource]:
    """Where skills are looked for, first wins: the workspace's ``skills/`` (``agent.workspace``
    when set, else the current folder), ``<home>/skills``, then ``skills.paths`` in order.
    The same folder named twice counts once."""
    from promptline.config.home import promptline_home

    workspace = settings.agent.workspace or cwd or Path.cwd()
    sources = [
        SkillSource(Path(workspace) / "skills", "workspace"),
        SkillSource(promptline_home() / "skills", "home"),
        *(SkillSource(Path(p), "config") for p in settings.skills.paths),
    ]
    seen: set[Path] = set()
    unique: list[SkillSource] = []
    for source in sources:
        key = Path(os.path.abspath(source.path))
        if key not in seen:
            seen.add(key)
            unique.append(SkillSource(key, source.origin))
    return unique


class SkillLibrary:
    """Every skill found in ``sources``, with its state, the prompt section listing the usable
    ones, and (once `watch` is called) updates as folders change.

    ``disabled`` names skills never offered; ``switches`` holds the on/off switches (skills are
    on unless switched off). ``tools`` is the registry whose tools a skill's ``requires.tools``
    are checked against in listings (None: those are only checked per run). Nothing is read
    until the library is first used or `reload` is called.
    """

    def __init__(
        self,
        sources: Sequence[SkillSource | Path],
        *,
        disabled: Iterable[str] = (),
        switches: Switches | None = None,
        tools: ToolRegistry | None = None,
        max_prompt_chars: int = 4000,
        checker_factory: type[RequirementChecker] = RequirementChecker,
    ) -> None:
        self.sources = [
            s if isinstance(s, SkillSource) else SkillSource(Path(s), "config") for s in sources
        ]
        self.disabled = frozenset(disabled)
        self.switches = switches
        self.tools = tools
        self.max_prompt_chars = max_prompt_chars
        self._checker_factory = checker_factory
        self._view: _View | None = None
        self._scan_lock = threading.Lock()
        self._parsed: dict[Path, _CachedParse] = {}
        self._switch_state: dict[str, bool] = {}
        self._logged: set[tuple[Path, str]] = set()
        self._reported: set[tuple[Path, str]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._watch_task: asyncio.Task[None] | None = None
        self._watch_queue: asyncio.Queue[object] | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, tools: ToolRegistry | None = None, cwd: Path | None = None
    ) -> SkillLibrary:
        """The library ``settings`` describe (``skills.*``, the switches file in the home)."""
        from promptline.config.home import promptline_home

        return cls(
            skill_sources(settings, cwd=cwd),
            disabled=settings.skills.disabled,
            switches=Switches(promptline_home() / SWITCHES_FILE),
            tools=tools,
            max_prompt_chars=settings.skills.max_prompt_chars,
        )

    # -- reading ----------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Grows each time a scan finds something changed (0 before the first scan)."""
        return self._view.version if self._view is not None else 0

    @property
    def problems(self) -> list[str]:
        """Problems of the last scan that are not a single skill's (an unreadable switches
        file, a source that is not a folder)."""
        return list(self._current().snapshot.problems)

    def statuses(self, tool_names: Collection[str] | None = None) -> list[SkillStatus]:
        """Every skill found, shadowed ones included, in precedence order. Tool requirements
        are checked against ``tool_names`` (default: the registry's, if there is one)."""
        return list(self._statuses(self._current(), self._tool_key(tool_names)).values())

    def get(self, name: str, tool_names: Collection[str] | None = None) -> SkillStatus | None:
        """The skill ``name`` in force (not a shadowed copy), or None."""
        return self._statuses(self._current(), self._tool_key(tool_names)).get(name)

    def require(self, name: str, tool_names: Collection[str] | None = None) -> SkillStatus:
        """The skill ``name``; `NotFoundError` naming close matches when there is none."""
        found = self.get(name, tool_names)
        if found is None:
            names = [s.name for s in self.statuses(tool_names) if s.state != "shadowed"]
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
            raise NotFoundError(
                f"there is no skill named {name!r}",
                hint=(
                    f"did you mean {', '.join(close)}?"
                    if close
                    else "`promptline skills list` shows the skills found"
                ),
                skill=name,
            )
        return found

    def available(self, tool_names: Collection[str] | None = None) -> list[Skill]:
        """The skills agents are offered, by name."""
        found = self._statuses(self._current(), self._tool_key(tool_names))
        return sorted(
            (s.skill for s in found.values() if s.state == "available" and s.skill is not None),
            key=lambda skill: skill.name,
        )

    def prompt_section(self, tool_names: Collection[str]) -> str | None:
        """The system-prompt section listing the skills a run offered ``tool_names`` can use
        (None when it cannot call `USE_SKILL` or there is none). Cached per library version
        and tool set: no file is read here once the library is loaded."""
        if USE_SKILL not in tool_names:
            return None
        try:
            return self._section(tool_names)
        except Exception:  # a run goes on without the skill list rather than fail on it
            _log.exception("the skill list could not be made")
            return None

    def _section(self, tool_names: Collection[str]) -> str | None:
        view = self._current()
        key = tool_names if isinstance(tool_names, frozenset) else frozenset(tool_names)
        try:
            return view.sections[key]
        except KeyError:
            pass
        skills = self.available(key)
        section = render_skill_list([(s.name, s.summary) for s in skills], self.max_prompt_chars)
        if len(view.sections) >= 256:  # many distinct tool sets: start over rather than grow
            view.sections.clear()
        view.sections[key] = section
        return section

    # -- switches ---------------------------------------------------------------------------

    def set_enabled(self, name: str, enabled: bool) -> SkillStatus:
        """Switch the skill ``name`` on or off (in the switches file, which a running
        gateway watches) and rescan; its new status. `NotFoundError` for an unknown name,
        `ConfigError` when there is no switches file to write."""
        self.require(name)
        if self.switches is None:
            raise ConfigError("this skill library has no switches file to write")
        self.switches.set("skills", name, enabled)
        self.reload()
        return self.require(name)

    # -- scanning ---------------------------------------------------------------------------

    def reload(self) -> bool:
        """Scan the folders again now; True when something changed."""
        with self._scan_lock:
            return self._install(self._scan())

    def _current(self) -> _View:
        view = self._view
        if view is None:
            self.reload()
            view = self._view
            assert view is not None
        return view

    def _scan(self) -> _Snapshot:
        checker = self._checker_factory()
        self._reported = set()
        problems: list[str] = []
        switch_state = self._read_switches(problems)
        found: list[_Found] = []
        winners: dict[str, Path] = {}
        seen_stamps: set[Path] = set()
        for source in self.sources:
            for folder in self._skill_folders(source, problems):
                item = self._read_one(folder, source, seen_stamps)
                if item.name in winners:
                    item = _replace(item, shadowed_by=winners[item.name])
                else:
                    winners[item.name] = folder
                    skill = item.skill
                    if skill is not None:
                        if item.name in self.disabled:
                            item = _replace(
                                item, disabled="disabled in the configuration (skills.disabled)"
                            )
                        elif not switch_state.get(item.name, True):
                            item = _replace(
                                item,
                                disabled=f"switched off (`promptline skills enable {item.name}` "
                                "switches it on)",
                            )
                        else:
                            reasons = checker.problems(skill.requires)
                            if reasons:
                                item = _replace(item, problems=tuple(reasons))
                found.append(item)
        # Forget parses of files that are gone, so the cache does not outgrow the folders, and
        # errors that are fixed, so they are logged again if they come back.
        for path in [p for p in self._parsed if p not in seen_stamps]:
            del self._parsed[path]
        self._logged &= self._reported
        return _Snapshot(tuple(found), tuple(problems))

    def _read_switches(self, problems: list[str]) -> dict[str, bool]:
        if self.switches is None:
            return {}
        try:
            self._switch_state = self.switches.all("skills")
        except ConfigError as exc:
            # Keep the last switches read: a half-edited file must not switch skills back on.
            problems.append(f"{exc.message} (the switches read before are kept)")
            self._log_once(self.switches.path, exc.message)
        return self._switch_state

    def _skill_folders(self, source: SkillSource, problems: list[str]) -> list[Path]:
        root = source.path
        if (root / SKILL_FILE).is_file():
            return [root]
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            problems.append(f"{root} is not a folder ({source.origin} skills)")
            return []
        except OSError as exc:
            problems.append(f"cannot read {root}: {exc.strerror or exc}")
            return []
        folders: list[Path] = []
        for entry in entries:
            if entry.name.startswith(".") or entry.name == "__pycache__":
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir() and _has_skill_file(Path(entry.path)):
                    folders.append(Path(entry.path))
        return folders

    def _read_one(self, folder: Path, source: SkillSource, seen: set[Path]) -> _Found:
        path = folder / SKILL_FILE
        seen.add(path)
        try:
            info = path.stat()
        except OSError:
            info = None
        if info is None or not path.is_file():
            misnamed = next((p.name for p in _skill_file_candidates(folder)), SKILL_FILE)
            error = SkillFormatError(
                folder / misnamed,
                None,
                f"the file must be named {SKILL_FILE} (upper case) to be read",
                hint=f"rename it to {SKILL_FILE}",
            )
            return self._broken(folder, source, error)
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        cached = self._parsed.get(path)
        if cached is None or cached.stamp != stamp:
            try:
                cached = _CachedParse(stamp, parse_skill(folder, list_files=False), None)
            except SkillFormatError as exc:
                cached = _CachedParse(stamp, None, exc)
            self._parsed[path] = cached
        if cached.error is not None:
            return self._broken(folder, source, cached.error)
        assert cached.skill is not None
        from promptline.tools.skills.parsing import list_skill_files

        skill = cached.skill
        files = list_skill_files(folder)
        if files != skill.files:
            skill = _replace_skill(skill, files)
        return _Found(skill.name, folder, source, skill)

    def _broken(self, folder: Path, source: SkillSource, error: SkillFormatError) -> _Found:
        self._log_once(error.path, error.message)
        return _Found(folder.name, folder, source, None, error=error.message)

    def _log_once(self, path: Path, message: str) -> None:
        key = (path, message)
        self._reported.add(key)
        if key not in self._logged:
            self._logged.add(key)
            _log.warning("skill not loaded: %s", message)

    def _install(self, snapshot: _Snapshot) -> bool:
        current = self._view
        if current is not None and current.snapshot == snapshot:
            return False
        self._view = _View(snapshot, (current.version if current else 0) + 1)
        self._notify()
        return True

    # -- run-dependent states ---------------------------------------------------------------

    def _tool_key(self, tool_names: Collection[str] | None) -> frozenset[str] | None:
        if tool_names is not None:
            return tool_names if isinstance(tool_names, frozenset) else frozenset(tool_names)
        return frozenset(self.tools.names()) if self.tools is not None else None

    def _statuses(self, view: _View, tools: frozenset[str] | None) -> dict[str, SkillStatus]:
        """Statuses by name (the skill in force; shadowed copies under ``name@folder``)."""
        cached = view.statuses.get(tools)
        if cached is not None:
            return cached
        result: dict[str, SkillStatus] = {}
        own: dict[str, tuple[str, ...]] = {}  # unmet requirements other than skills
        requires: dict[str, tuple[str, ...]] = {}
        for item in view.snapshot.found:
            if item.shadowed_by is not None or item.skill is None or item.disabled:
                continue
            problems = list(item.problems)
            if tools is not None:
                problems.extend(missing_tools(item.skill.requires, tools))
            own[item.name] = tuple(problems)
            requires[item.name] = item.skill.requires.skills
        states = {i.name: _plain_state(i) for i in view.snapshot.found if i.shadowed_by is None}
        states.update({n: "unavailable" if p else "available" for n, p in own.items()})
        blocked = skill_dependency_problems(requires, states)
        for item in view.snapshot.found:
            if item.shadowed_by is not None:
                status = SkillStatus(
                    item.name,
                    "shadowed",
                    item.folder,
                    item.source,
                    item.skill,
                    (f"shadowed by {item.shadowed_by}",),
                )
                result[f"{item.name}@{item.folder}"] = status
                continue
            if item.skill is None:
                state: SkillState = "broken"
                reasons: tuple[str, ...] = (item.error or "cannot be read",)
            elif item.disabled:
                state, reasons = "disabled", (item.disabled,)
            elif own.get(item.name) or item.name in blocked:
                state = "unavailable"
                reasons = own.get(item.name, ()) + (
                    (blocked[item.name],) if item.name in blocked else ()
                )
            else:
                state, reasons = "available", ()
            result[item.name] = SkillStatus(
                item.name, state, item.folder, item.source, item.skill, reasons
            )
        if len(view.statuses) >= 64:
            view.statuses.clear()
        view.statuses[tools] = result
        return result

    # -- change notification ----------------------------------------------------------------

    async def wait_for_change(self, since: int | None = None) -> int:
        """Wait until the version is above ``since`` (default: the version now); the new
        version. Bound it with ``asyncio.timeout``."""
        self._loop = asyncio.get_running_loop()
        since = self.version if since is None else since
        while self.version <= since:
            await self._changed.wait()
        return self.version

    def _notify(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            self._changed = asyncio.Event()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._fire()
        else:
            loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        fired, self._changed = self._changed, asyncio.Event()
        fired.set()

    # -- watching ---------------------------------------------------------------------------

    @property
    def watching(self) -> bool:
        """True while the watcher runs."""
        return self._watch_task is not None and not self._watch_task.done()

    def watch(self) -> None:
        """Start watching the folders and the switches file (in the running event loop): a
        skill added, changed, broken or removed is seen at the next run. Idempotent."""
        if self.watching:
            return
        self._loop = asyncio.get_running_loop()
        self._watch_queue = asyncio.Queue()
        self._watch_task = self._loop.create_task(self._watch_loop(), name="skills-watch")

    async def close(self) -> None:
        """Stop watching (waits for the watcher threads to let go)."""
        task, self._watch_task = self._watch_task, None
        if task is None:
            return
        if self._watch_queue is not None:
            self._watch_queue.put_nowait(_STOP)
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=10)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except asyncio.CancelledError:
            task.cancel()
            raise

    async def _rescan(self) -> bool:
        def scan() -> bool:
            with self._scan_lock:
                return self._install(self._scan())

        return await asyncio.to_thread(scan)

    def _watch_plan(self) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
        """Folders to watch recursively (those that exist) and folders to watch without their
        sub-folders (the home, for the switches file, and the nearest existing parent of each
        missing folder, to see it appear)."""
        deep = tuple(sorted({s.path for s in self.sources if s.path.is_dir()}))
        flat: set[Path] = set()
        missing = [s.path for s in self.sources if not s.path.is_dir()]
        if self.switches is not None:
            missing.append(self.switches.path.parent)
        for path in missing:
            ancestor = path if path.is_dir() else path.parent
            while not ancestor.is_dir() and ancestor != ancestor.parent:
                ancestor = ancestor.parent
            flat.add(ancestor)
        return deep, tuple(sorted(flat))

    def _flat_filter(self) -> Any:
        interesting = [s.path for s in self.sources]
        switches = str(self.switches.path) if self.switches is not None else None

        def accept(change: object, raw: str) -> bool:
            if raw == switches:
                return True
            path = Path(raw)
            return any(p == path or p.is_relative_to(path) for p in interesting)

        return accept

    async def _watch_loop(self) -> None:
        from watchfiles import DefaultFilter, awatch

        queue = self._watch_queue
        assert queue is not None
        for source in self.sources:
            if source.origin == "home":
                with contextlib.suppress(OSError):
                    private_dir(source.path)

        async def pump(paths: tuple[Path, ...], recursive: bool, stop: asyncio.Event) -> None:
            try:
                async for _changes in awatch(
                    *paths,
                    watch_filter=DefaultFilter() if recursive else self._flat_filter(),
                    recursive=recursive,
                    stop_event=stop,
                    debounce=800,
                    step=50,
                    rust_timeout=1000,
                ):
                    queue.put_nowait(_changes)
            except Exception as exc:  # a watched folder vanished as the watcher started, ...
                _log.debug("skill watcher stopped: %s", exc)
                queue.put_nowait(_WATCH_FAILED)

        while True:
            plan = self._watch_plan()
            stop = asyncio.Event()
            pumps = [
                asyncio.create_task(pump(paths, recursive, stop))
                for paths, recursive in ((plan[0], True), (plan[1], False))
                if paths
            ]
            failed = False
            try:
                # One turn of the loop lets each watcher set up its watches (awatch does that
                # before it first waits); only then does the catch-up scan read the folders,
                # so nothing written in between is missed.
                await asyncio.sleep(0)
                await self._safe_rescan()
                while True:
                    items = [await queue.get()]
                    while not queue.empty():  # one rescan for a burst of changes
                        items.append(queue.get_nowait())
                    if any(item is _STOP for item in items):
                        return
                    failed = any(item is _WATCH_FAILED for item in items)
                    await self._safe_rescan()
                    if failed or self._watch_plan() != plan:
                        break  # a folder appeared or went: watch the new set
            finally:
                stop.set()
                await asyncio.gather(*pumps, return_exceptions=True)
            if failed:
                # Give a folder that keeps failing a moment instead of spinning.
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=1.0)
                except TimeoutError:
                    item = None
                if item is _STOP:
                    return

    async def _safe_rescan(self) -> None:
        try:
            await self._rescan()
        except Exception:  # the watcher must outlive any one bad scan
            _log.exception("rescanning the skill folders failed")


def _has_skill_file(folder: Path) -> bool:
    return (folder / SKILL_FILE).is_file() or any(True for _ in _skill_file_candidates(folder))


def _skill_file_candidates(folder: Path) -> Iterable[Path]:
    """Files named like ``SKILL.md`` in another case (``skill.md``): reported, not ignored."""
    try:
        for entry in os.scandir(folder):
            if entry.name != SKILL_FILE and entry.name.lower() == SKILL_FILE.lower():
                yield Path(entry.path)
    except OSError:
        return


def _plain_state(item: _Found) -> str:
    if item.skill is None:
        return "broken"
    return "disabled" if item.disabled else "unavailable" if item.problems else "available"


def _replace(item: _Found, **changes: Any) -> _Found:
    import dataclasses

    return dataclasses.replace(item, **changes)


def _replace_skill(skill: Skill, files: tuple[str, ...]) -> Skill:
    import dataclasses

    return dataclasses.replace(skill, files=files)
