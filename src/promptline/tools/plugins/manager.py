"""Loads tool packages into a `ToolRegistry`, follows their on/off switches at run time, and
unloads or reloads one without touching the others or taking the app down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from promptline.core.errors import NotFoundError
from promptline.storage.files import private_dir
from promptline.tools.dependencies import resolve
from promptline.tools.plugins.discovery import Origin, PackageSpec, discover, skills_present
from promptline.tools.plugins.loader import ImportedPackage, collect_tools, import_package, purge
from promptline.tools.plugins.manifest import missing_distributions
from promptline.tools.registry import ToolRegistry, qualified_name
from promptline.tools.switches import SWITCHES_FILE, Switches

if TYPE_CHECKING:
    from promptline.config.plugins import PluginsSettings
    from promptline.config.settings import Settings

__all__ = ["PackageState", "PackageStatus", "PluginManager"]

log = logging.getLogger(__name__)

PackageState = Literal["loaded", "failed", "disabled", "blocked", "unloaded"]


@dataclass(frozen=True, slots=True)
class PackageStatus:
    """Where one tool package stands.

    ``loaded``: its ``tools`` are registered. ``failed``: ``error`` says why (import error,
    registration error, name conflict, missing Python distribution, broken manifest).
    ``disabled``: switched off (or listed in ``plugins.disabled``). ``blocked``: a dependency
    is missing, disabled, failed, or part of a cycle (``error`` says which). ``unloaded``:
    unloaded at run time by `PluginManager.unload` until loaded again.
    """

    name: str
    origin: Origin
    target: str
    state: PackageState
    version: str | None = None
    tools: tuple[str, ...] = ()
    error: str | None = None
    requires: tuple[str, ...] = ()
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``promptline tools packages --json``)."""
        return {
            "name": self.name,
            "origin": self.origin,
            "target": self.target,
            "state": self.state,
            "version": self.version,
            "tools": list(self.tools),
            "error": self.error,
            "requires": list(self.requires),
            "description": self.description,
        }


@dataclass(slots=True)
class _Loaded:
    spec: PackageSpec
    imported: ImportedPackage
    version: str | None
    requires: tuple[str, ...]
    tools: list[str] = field(default_factory=list)


class PluginManager:
    """Tool packages of one process, registered into ``registry``.

    Packages come from entry points (group ``promptline.tools``), ``plugins.modules`` and the
    folders installed into ``plugins.dir``; the first two are on by default, installed ones
    are off until switched on in the switches file (kind ``plugins``). `refresh` brings the
    registry in line with the switches; `start_watching` does it whenever the file changes.
    Every method runs on one thread at a time (the event loop's, or a command's).
    """

    def __init__(
        self,
        registry: ToolRegistry,
        *,
        plugins: PluginsSettings,
        home: Path,
        skill_paths: Sequence[Path] = (),
        disabled_skills: Iterable[str] = (),
    ) -> None:
        self.registry = registry
        self.settings = plugins
        self.home = home
        self.switches = Switches(home / SWITCHES_FILE)
        self.skill_folders = [home / "skills", *skill_paths]
        self._disabled_skills = set(disabled_skills)
        self._specs: dict[str, PackageSpec] = {}
        self._loaded: dict[str, _Loaded] = {}
        self._statuses: dict[str, PackageStatus] = {}
        self._held: set[str] = set()
        self._lock = threading.RLock()
        self._listeners: list[Callable[[], None]] = []
        self._watch_task: asyncio.Task[None] | None = None
        self._stop_watching: asyncio.Event | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, registry: ToolRegistry, *, home: Path | None = None
    ) -> PluginManager:
        """A manager configured by ``settings.plugins`` (and the skill folders it may need)."""
        from promptline.config.home import promptline_home

        return cls(
            registry,
            plugins=settings.plugins,
            home=home or promptline_home(),
            skill_paths=settings.skills.paths,
            disabled_skills=settings.skills.disabled,
        )

    # -- what is there ----------------------------------------------------------------------

    def statuses(self) -> list[PackageStatus]:
        """The status of every package found, by name."""
        with self._lock:
            return [self._statuses[name] for name in sorted(self._statuses)]

    def status(self, name: str) -> PackageStatus:
        """The status of package ``name``; `NotFoundError` when there is no such package."""
        with self._lock:
            found = self._statuses.get(name)
        if found is None:
            raise NotFoundError(
                f"no tool package named {name!r}",
                hint="list them with `promptline tools packages`",
                package=name,
            )
        return found

    def owner(self, tool_name: str) -> str | None:
        """The package that registered ``tool_name``, or None."""
        with self._lock:
            for name, loaded in self._loaded.items():
                if tool_name in loaded.tools:
                    return name
        return None

    def discover(self) -> list[PackageSpec]:
        """Every package found now (no code is run)."""
        return discover(
            entry_points=self.settings.entry_points,
            modules=self.settings.modules,
            plugins_dir=self.settings.dir,
        )

    def is_enabled(self, spec: PackageSpec, switches: dict[str, bool] | None = None) -> bool:
        """Whether ``spec`` should be loaded: its switch (or its default), unless
        ``plugins.disabled`` lists it. ``switches`` is the ``plugins`` switches read once
        (read from the file when omitted)."""
        if spec.name in self.settings.disabled:
            return False
        if switches is None:
            switches = self.switches.all("plugins")
        return switches.get(spec.name, spec.default_enabled)

    # -- changes ----------------------------------------------------------------------------

    def load_all(self) -> list[PackageStatus]:
        """Load every enabled package (what the app does at start); same as `refresh`."""
        return self.refresh()

    def refresh(self) -> list[PackageStatus]:
        """Find the packages again and follow the switches: load what was switched on (or
        appeared), unload what was switched off (or disappeared) and what lost a dependency."""
        with self._lock:
            self._refresh()
            statuses = [self._statuses[name] for name in sorted(self._statuses)]
        self._notify()
        return statuses

    def load(self, name: str) -> PackageStatus:
        """Load ``name`` again after `unload` (a package that is switched off stays off:
        switch it on with `enable`)."""
        with self._lock:
            self._held.discard(name)
            self._refresh()
        self._notify()
        return self.status(name)

    def unload(self, name: str) -> PackageStatus:
        """Unregister exactly the tools of ``name`` (and of the loaded packages that need it)
        and forget its modules; it stays unloaded until `load` or a restart."""
        self.status(name)
        with self._lock:
            self._held.add(name)
            self._refresh()
        self._notify()
        return self.status(name)

    def reload(self, name: str | None = None) -> list[PackageStatus]:
        """Re-import package ``name`` (its changed code takes effect); without a name,
        re-check the switches and re-import every loaded package."""
        with self._lock:
            names = [name] if name is not None else list(self._loaded)
            if name is not None and name not in self._loaded and name not in self._statuses:
                raise NotFoundError(
                    f"no tool package named {name!r}",
                    hint="list them with `promptline tools packages`",
                    package=name,
                )
            for each in names:
                if each in self._loaded:
                    self._unload(each, drop_bytecode=True)
            self._refresh()
            statuses = [self._statuses[n] for n in sorted(self._statuses)]
        self._notify()
        return statuses

    def enable(self, name: str) -> PackageStatus:
        """Switch ``name`` on (in the switches file, so it stays on) and load it."""
        self.switches.set("plugins", name, True)
        return self.load(name)

    def disable(self, name: str) -> PackageStatus:
        """Switch ``name`` off (in the switches file) and unload it."""
        self.switches.set("plugins", name, False)
        with self._lock:
            self._refresh()
        self._notify()
        return self.status(name)

    # -- listeners and watching -------------------------------------------------------------

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` after every load, unload, reload or refresh; returns a function
        that removes it."""
        self._listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    async def wait_until(self, predicate: Callable[[PluginManager], bool]) -> None:
        """Return once ``predicate(self)`` holds (checked now and after every change); bound
        it with `asyncio.timeout`."""
        changed = asyncio.Event()
        loop = asyncio.get_running_loop()

        def wake() -> None:
            loop.call_soon_threadsafe(changed.set)

        remove = self.on_change(wake)
        try:
            while not predicate(self):
                await changed.wait()
                changed.clear()
        finally:
            remove()

    async def start(self, *, watch: bool | None = None) -> list[PackageStatus]:
        """Load every enabled package, then follow the switches file while the app runs
        (unless ``watch`` is False), so a package installed and enabled while PromptLine runs
        is loaded without a restart even when there was none at start."""
        statuses = self.load_all()
        if watch is not False:
            await self.start_watching()
        return statuses

    @property
    def watching(self) -> bool:
        """True while the switches file is followed."""
        return self._watch_task is not None and not self._watch_task.done()

    async def start_watching(self) -> None:
        """Follow the switches file: a package switched on or off (by `promptline tools
        enable|disable` in another process) is loaded or unloaded at once."""
        if self._watch_task is not None:
            return
        from watchfiles import awatch

        folder = private_dir(self.switches.path.parent)
        file_name = self.switches.path.name
        self._stop_watching = asyncio.Event()
        changes = awatch(
            folder,
            watch_filter=lambda _change, path: Path(path).name == file_name,
            stop_event=self._stop_watching,
            recursive=False,
            debounce=400,
            step=30,
        )
        self._watch_task = asyncio.create_task(self._follow(changes), name="tool-packages-watch")
        # The task's first step starts the OS watch (synchronously, before its first wait);
        # one turn of the loop lets it run, then a refresh catches what changed before that.
        await asyncio.sleep(0)
        self.refresh()

    async def _follow(self, changes: Any) -> None:
        async for _batch in changes:
            try:
                self.refresh()
            except Exception:  # a broken switches file: keep watching, say why
                log.exception("tool packages: cannot follow the switches file")

    async def close(self) -> None:
        """Stop watching the switches file (the tools stay registered)."""
        task, self._watch_task = self._watch_task, None
        if task is None:
            return
        if self._stop_watching is not None:
            self._stop_watching.set()
        try:
            async with asyncio.timeout(5):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        except Exception:
            log.exception("tool packages: the switches watcher failed")

    # -- internals --------------------------------------------------------------------------

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:
                log.exception("tool packages: a change listener failed")

    def _refresh(self) -> None:
        statuses: dict[str, PackageStatus] = {}
        specs: dict[str, PackageSpec] = {}
        for spec in self.discover():
            if spec.name in specs:
                first = specs[spec.name]
                statuses.setdefault(
                    f"{spec.name} ({spec.origin}: {spec.target})",
                    _status(
                        spec,
                        "failed",
                        error=f"another package is named {spec.name!r} ({first.origin}: "
                        f"{first.target}); this one is skipped",
                    ),
                )
                continue
            specs[spec.name] = spec
        self._specs = specs
        switched = self.switches.all("plugins")

        # Loaded packages that vanished, moved, broke or were switched off go first.
        for name in list(self._loaded):
            found = specs.get(name)
            current = self._loaded[name].spec
            if (
                found is None
                or found.error is not None
                or (found.origin, found.target) != (current.origin, current.target)
                or not self.is_enabled(found, switched)
                or name in self._held
            ):
                self._unload(name)

        # Candidates: enabled, not loaded. Those whose needs are unknown until imported
        # (entry points, modules, files) are imported now; installed ones only once their
        # dependencies are known to be met.
        candidates: dict[str, tuple[PackageSpec, ImportedPackage | None, tuple[str, ...]]] = {}
        for name, spec in specs.items():
            if spec.error is not None:
                statuses[name] = _status(spec, "failed", error=spec.error)
                continue
            if name in self._loaded:
                continue
            if name in self._held:
                statuses[name] = _status(spec, "unloaded")
                continue
            if not self.is_enabled(spec, switched):
                statuses[name] = _status(spec, "disabled")
                continue
            if spec.requires is not None:
                candidates[name] = (spec, None, spec.requires)
                continue
            try:
                imported = import_package(spec)
                requires = imported.requires
            except (Exception, SystemExit) as exc:  # sys.exit() in a package is its failure
                statuses[name] = _status(spec, "failed", error=_describe(exc, "import"))
                log.warning("tool package %s failed to import: %s", name, exc)
                continue
            candidates[name] = (spec, imported, requires)

        graph: dict[str, list[str]] = {n: list(each.requires) for n, each in self._loaded.items()}
        graph.update({n: list(c[2]) for n, c in candidates.items()})
        skills = self._skills()
        for skill in skills:
            graph.setdefault(skill, [])
        resolution = resolve(graph)

        def blocked_reason(name: str) -> str:
            problem = resolution.problems[name]
            if problem.kind == "cycle":
                return str(problem)
            return self._needs(problem.detail.split(", "), statuses)

        for name in list(self._loaded):
            if name in resolution.problems:
                loaded = self._loaded[name]
                self._unload(name)
                statuses[name] = _status(
                    loaded.spec, "blocked", error=blocked_reason(name), requires=loaded.requires
                )
        for name, (spec, maybe_imported, requires) in candidates.items():
            if name in resolution.problems:
                if maybe_imported is not None:
                    purge(maybe_imported)
                statuses[name] = _status(
                    spec, "blocked", error=blocked_reason(name), requires=requires
                )

        for name in resolution.order:
            if name not in candidates:
                continue
            spec, maybe_imported, requires = candidates[name]
            unmet = [d for d in requires if d not in self._loaded and d not in skills]
            if unmet:
                if maybe_imported is not None:
                    purge(maybe_imported)
                statuses[name] = _status(
                    spec,
                    "blocked",
                    error=self._needs(unmet, statuses),
                    requires=requires,
                )
                continue
            statuses[name] = self._register(spec, maybe_imported, requires)

        for name, loaded in self._loaded.items():
            statuses[name] = _status(
                loaded.spec,
                "loaded",
                version=loaded.version,
                tools=tuple(loaded.tools),
                requires=loaded.requires,
            )
        self._statuses = statuses

    def _register(
        self, spec: PackageSpec, imported: ImportedPackage | None, requires: tuple[str, ...]
    ) -> PackageStatus:
        """Import (if not yet), collect and register the tools of ``spec``: all or none."""
        if spec.manifest is not None and spec.manifest.python:
            missing = missing_distributions(spec.manifest.python)
            if missing:
                return _status(
                    spec,
                    "failed",
                    error=f"needs the Python distribution {', '.join(missing)}, not installed",
                    requires=requires,
                )
        stage = "import"
        registered: list[str] = []
        try:
            if imported is None:
                imported = import_package(spec)
            stage = "registration"
            tools = collect_tools(spec.name, imported)
            namespace = imported.namespace
            if spec.manifest is not None and spec.manifest.namespace is not None:
                namespace = spec.manifest.namespace
            if namespace is None:
                namespace = spec.name
            names = [qualified_name(t.name, namespace) for t in tools]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise _Conflict(f"it declares {', '.join(duplicates)} more than once")
            for full in names:
                if full in self.registry:
                    holder = self.owner(full)
                    by = f"the package {holder}" if holder else "a built-in or another tool"
                    raise _Conflict(f"its tool {full} conflicts with {by} of that name")
            for item in tools:
                registered.append(self.registry.register(item, namespace=namespace or None))
        except BaseException as exc:
            for done in registered:
                with contextlib.suppress(Exception):
                    self.registry.unregister(done)
            if imported is not None:
                purge(imported)
            if not isinstance(exc, (Exception, SystemExit)):
                raise
            error = str(exc) if isinstance(exc, _Conflict) else _describe(exc, stage)
            log.warning("tool package %s failed: %s", spec.name, error)
            return _status(spec, "failed", error=error, requires=requires)
        version = spec.version or imported.version
        self._loaded[spec.name] = _Loaded(spec, imported, version, requires, registered)
        log.info("tool package %s %s loaded: %s", spec.name, version or "", ", ".join(registered))
        return _status(spec, "loaded", version=version, tools=tuple(registered), requires=requires)

    def _unload(self, name: str, *, drop_bytecode: bool = False) -> None:
        loaded = self._loaded.pop(name)
        for tool_name in loaded.tools:
            with contextlib.suppress(Exception):
                self.registry.unregister(tool_name)
        purge(loaded.imported, drop_bytecode=drop_bytecode)

    def _skills(self) -> set[str]:
        found = skills_present(self.skill_folders)
        switched = self.switches.all("skills") if found else {}
        return {s for s in found if s not in self._disabled_skills and switched.get(s, True)}

    def _needs(self, deps: Iterable[str], statuses: dict[str, PackageStatus]) -> str:
        """Why a package is blocked: each dependency it lacks, and why that one is absent."""
        return "; ".join(f"needs {d}, which {self._why_absent(d, statuses)}" for d in deps)

    def _why_absent(self, dep: str, statuses: dict[str, PackageStatus]) -> str:
        status = statuses.get(dep)
        if status is not None and status.state == "failed":
            return "failed to load"
        if status is not None and status.state in ("disabled", "unloaded"):
            return f"is {status.state}"
        if status is not None and status.state == "blocked":
            return "cannot be loaded"
        if dep in self._specs:
            return "cannot be loaded"
        if dep in skills_present(self.skill_folders):
            return "is a disabled skill"
        return "is not installed"


class _Conflict(Exception):
    """A package's tool names clash (among themselves or with registered tools)."""


def _describe(exc: BaseException, stage: str) -> str:
    detail = getattr(exc, "message", None) or str(exc) or ""
    what = type(exc).__name__
    where = "failed to import" if stage == "import" else "raised while registering its tools"
    return f"{where}: {what}: {detail}" if detail else f"{where}: {what}"


def _status(
    spec: PackageSpec,
    state: PackageState,
    *,
    version: str | None = None,
    tools: tuple[str, ...] = (),
    error: str | None = None,
    requires: tuple[str, ...] | None = None,
) -> PackageStatus:
    return PackageStatus(
        name=spec.name,
        origin=spec.origin,
        target=spec.target,
        state=state,
        version=version or spec.version,
        tools=tools,
        error=error,
        requires=requires if requires is not None else (spec.requires or ()),
        description=spec.description,
    )
