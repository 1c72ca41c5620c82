"""Importing a tool package's code and collecting the tools it provides.

A package provides its tools by a module-level ``tools`` list (``TOOLS`` works too), by a
``register(registry)`` function, or both; an entry point may also name that function directly.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from promptline.core.errors import InvalidInputError
from promptline.tools.base import Tool
from promptline.tools.plugins.discovery import PackageSpec

__all__ = ["ImportedPackage", "ToolCollector", "collect_tools", "import_package", "purge"]

_FILE_MODULE_PREFIX = "promptline_tool_package_"


class ToolCollector:
    """What a package's ``register(registry)`` function receives.

    It collects the tools; the manager registers them, under the package's namespace, only
    once the whole registration succeeded, so a package that fails halfway adds nothing.
    """

    def __init__(self, package: str) -> None:
        self.package = package
        self._tools: list[Tool] = []

    def register(self, tool: Tool) -> None:
        """Add ``tool`` to the package's tools."""
        if not isinstance(tool, Tool):
            raise InvalidInputError(
                f"{tool!r} is not a tool", hint="decorate a function with @tool, or implement Tool"
            )
        self._tools.append(tool)

    @property
    def tools(self) -> list[Tool]:
        """The tools collected so far, in registration order."""
        return list(self._tools)


@dataclass(slots=True)
class ImportedPackage:
    """A package's imported code: its module, and the callable its entry point names."""

    module: ModuleType
    entry: Callable[..., Any] | None = None
    modules: list[str] = field(default_factory=list)
    """Names in ``sys.modules`` that belong to the package (dropped on unload)."""
    sys_path: str | None = None
    """The folder added to ``sys.path`` for it (installed packages)."""

    @property
    def version(self) -> str | None:
        """``__version__`` of the module, when it has a string one."""
        value = getattr(self.module, "__version__", None)
        return value if isinstance(value, str) else None

    @property
    def requires(self) -> tuple[str, ...]:
        """The module's ``requires`` list: packages or skills it needs, by name."""
        value = getattr(self.module, "requires", None)
        if value is None:
            value = getattr(self.module, "REQUIRES", None)
        if value is None:
            return ()
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise InvalidInputError(
                f"{self.module.__name__}.requires must be a list of names",
                hint="requires = ['other-package', 'some-skill']",
            )
        return tuple(value)

    @property
    def namespace(self) -> str | None:
        """The module's ``namespace`` string, when it sets one ("" for none)."""
        value = getattr(self.module, "namespace", None)
        return value if isinstance(value, str) else None


def import_package(spec: PackageSpec) -> ImportedPackage:
    """Import the code of ``spec``; whatever it raises propagates (the caller reports it)."""
    importlib.invalidate_caches()
    match spec.origin:
        case "entry_point":
            module_name, _, attr = spec.target.partition(":")
            module_name = module_name.strip()
            module = importlib.import_module(module_name)
            entry = None
            if attr.strip():
                obj: Any = module
                for part in attr.strip().split("."):
                    obj = getattr(obj, part)
                if isinstance(obj, ModuleType):
                    module = obj
                elif callable(obj):
                    entry = obj
                else:
                    raise InvalidInputError(
                        f"entry point {spec.name} = {spec.target} is neither a module nor a "
                        "callable"
                    )
            return ImportedPackage(module, entry, _family(module.__name__))
        case "module":
            module = importlib.import_module(spec.target)
            return ImportedPackage(module, None, _family(spec.target))
        case "file":
            return _import_file(spec)
        case "installed":
            return _import_installed(spec)
    raise AssertionError(spec.origin)  # pragma: no cover


def _import_file(spec: PackageSpec) -> ImportedPackage:
    path = Path(spec.target)
    if not path.is_file():
        raise InvalidInputError(f"{path} does not exist", hint="fix plugins.modules")
    name = _FILE_MODULE_PREFIX + spec.name.replace("-", "_")
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise InvalidInputError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    # In sys.modules before it runs, as an import would: dataclasses and pickling need it.
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return ImportedPackage(module, None, [name])


def _import_installed(spec: PackageSpec) -> ImportedPackage:
    assert spec.folder is not None
    assert spec.manifest is not None
    folder = str(spec.folder)
    dotted = spec.manifest.module
    top = dotted.split(".")[0]
    existing = sys.modules.get(top)
    if existing is not None and not _inside(existing, spec.folder):
        raise InvalidInputError(
            f"module {top!r} of {spec.name} is already imported from elsewhere "
            f"({getattr(existing, '__file__', None) or 'built in'})",
            hint="give the package's module a name of its own",
        )
    # Appended, not prepended: a package's file must not shadow the standard library or the
    # app's own modules for the whole process. Its own module is imported from its folder
    # explicitly below, so a same-named module elsewhere on the path cannot be picked instead.
    added = None
    if folder not in sys.path:
        sys.path.append(folder)
        added = folder
    try:
        if existing is None:
            found = importlib.machinery.PathFinder.find_spec(top, [folder])
            if found is None or found.loader is None:
                raise InvalidInputError(
                    f"module {top!r} is not in {folder}",
                    hint="the manifest's module must be importable from the package folder",
                )
            module = importlib.util.module_from_spec(found)
            sys.modules[top] = module
            try:
                found.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(top, None)
                raise
        module = importlib.import_module(dotted)
    except BaseException:
        for name in _modules_under(spec.folder):
            sys.modules.pop(name, None)
        if added is not None:
            with contextlib.suppress(ValueError):
                sys.path.remove(added)
        raise
    return ImportedPackage(module, None, sorted({top, *_modules_under(spec.folder)}), added)


def _inside(module: ModuleType, folder: Path) -> bool:
    return _location_inside(module, _prefixes(folder))


def _prefixes(folder: Path) -> tuple[str, ...]:
    """The folder as written and as resolved, each ending with a separator: a module's file
    is compared as text (resolving the path of every loaded module would be slow)."""
    written = os.path.abspath(folder)
    real = os.path.realpath(folder)
    return tuple({written.rstrip(os.sep) + os.sep, real.rstrip(os.sep) + os.sep})


def _location_inside(module: ModuleType, prefixes: tuple[str, ...]) -> bool:
    location = getattr(module, "__file__", None)
    if not location:
        paths = list(getattr(module, "__path__", None) or [])
        location = paths[0] if paths else None
    if not isinstance(location, str) or not location:
        return False
    return location.startswith(prefixes)


def _modules_under(folder: Path) -> list[str]:
    prefixes = _prefixes(folder)
    return [
        name
        for name, mod in list(sys.modules.items())
        if mod is not None and _location_inside(mod, prefixes)
    ]


def _family(name: str) -> list[str]:
    """``name`` and its submodules currently imported."""
    prefix = name + "."
    return [n for n in list(sys.modules) if n == name or n.startswith(prefix)]


def collect_tools(package: str, imported: ImportedPackage) -> list[Tool]:
    """The tools ``imported`` provides: its entry callable's or its module's ``register``
    function's, then its module-level ``tools`` list; an error when it provides none."""
    collector = ToolCollector(package)
    module = imported.module
    if imported.entry is not None:
        imported.entry(collector)
    else:
        listed = getattr(module, "tools", None)
        if listed is None or isinstance(listed, ModuleType):
            listed = getattr(module, "TOOLS", None)
        if listed is not None and not isinstance(listed, ModuleType):
            if not isinstance(listed, (list, tuple)):
                raise InvalidInputError(
                    f"{module.__name__}.tools must be a list of tools, not {type(listed).__name__}"
                )
            for item in listed:
                collector.register(item)
        register = getattr(module, "register", None)
        if callable(register):
            register(collector)
    if not collector.tools:
        raise InvalidInputError(
            f"{package} provides no tools",
            hint="define a module-level `tools = [...]` list or a `register(registry)` function",
        )
    return collector.tools


def purge(imported: ImportedPackage, *, drop_bytecode: bool = False) -> None:
    """Forget the package's modules (and its ``sys.path`` entry) so the next import runs its
    code again. With ``drop_bytecode`` their cached bytecode is deleted too: an edit made in
    the same second that keeps the file's size would otherwise be taken for unchanged."""
    for name in _purgeable(imported):
        module = sys.modules.pop(name, None)
        if drop_bytecode and module is not None:
            _drop_bytecode(module)
    if imported.sys_path is not None:
        with contextlib.suppress(ValueError):
            sys.path.remove(imported.sys_path)
    importlib.invalidate_caches()


def _purgeable(imported: ImportedPackage) -> Iterator[str]:
    seen = set(imported.modules)
    if imported.sys_path is not None:
        seen.update(_modules_under(Path(imported.sys_path)))
    else:
        for name in list(imported.modules):
            seen.update(_family(name))
    yield from sorted(seen)


def _drop_bytecode(module: ModuleType) -> None:
    source = getattr(module, "__file__", None)
    if not source or not source.endswith(".py"):
        return
    with contextlib.suppress(OSError, ValueError, NotImplementedError):
        os.unlink(importlib.util.cache_from_source(source))
