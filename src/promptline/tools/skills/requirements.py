"""Whether a skill's requirements are met: environment variables, programs, Python
distributions (checked when skills are scanned), tools (checked against the tools a run is
offered) and other skills (ordered and checked for cycles with `resolve`)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Collection, Iterable, Mapping
from functools import lru_cache

from promptline.tools.dependencies import resolve
from promptline.tools.registry import matches
from promptline.tools.skills.parsing import Requirements

__all__ = [
    "RequirementChecker",
    "missing_tools",
    "skill_dependency_problems",
]

_DIST_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class RequirementChecker:
    """Checks the requirements that do not depend on the run: environment variables, programs
    on PATH, installed Python distributions. Results of lookups are kept for the checker's life
    (make one per scan, so a program installed meanwhile is seen at the next scan)."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        which: Callable[[str], str | None] | None = None,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._which = which or shutil.which
        self._programs: dict[str, bool] = {}
        self._dists: dict[str, str | None] = {}

    def problems(self, requires: Requirements) -> list[str]:
        """Why ``requires`` is not met (empty when it is), one reason per missing thing."""
        reasons: list[str] = []
        for name in requires.env:
            if not self._environ.get(name):
                reasons.append(f"needs ${name}")
        for program in requires.bins:
            found = self._programs.get(program)
            if found is None:
                found = self._programs[program] = self._which(program) is not None
            if not found:
                reasons.append(f"needs the program `{program}` on PATH")
        for requirement in requires.python:
            problem = self._python_problem(requirement)
            if problem:
                reasons.append(problem)
        return reasons

    def _python_problem(self, requirement: str) -> str | None:
        parsed = _parse_requirement(requirement)
        if parsed is None:
            return f"has a Python requirement that cannot be read: `{requirement}`"
        name, specifier = parsed
        key = _canonical(name)
        if key not in self._dists:
            self._dists[key] = _installed_version(name)
        installed = self._dists[key]
        if installed is None:
            return f"needs the Python package `{requirement}`"
        if specifier is not None and not _satisfies(specifier, installed):
            return f"needs the Python package `{requirement}` ({installed} is installed)"
        return None


def missing_tools(requires: Requirements, tool_names: Collection[str]) -> list[str]:
    """The required tool names or patterns that match none of ``tool_names``, as reasons."""
    return [
        f"needs tool `{pattern}`"
        for pattern in requires.tools
        if not any(matches(pattern, name) for name in tool_names)
    ]


def skill_dependency_problems(
    requires: Mapping[str, Iterable[str]], states: Mapping[str, str]
) -> dict[str, str]:
    """Why skills cannot be used because of the skills they need.

    ``requires`` maps each skill that is switched on and readable to the skills it needs;
    ``states`` gives the state of every skill found before its skill dependencies are looked
    at (``available``, ``unavailable``, ``disabled``, ``broken``). A skill is reported when a
    skill it needs is not found or not usable (directly or further down), or when it is on a
    dependency cycle.
    """
    requires = {name: tuple(sorted(set(deps))) for name, deps in requires.items()}
    resolution = resolve(requires)
    usable: dict[str, bool] = dict.fromkeys(resolution.problems, False)
    for name in resolution.order:  # dependencies come first
        usable[name] = states.get(name) == "available" and all(
            usable.get(d, False) for d in requires[name]
        )
    reasons: dict[str, str] = {}
    for name, deps in requires.items():
        problem = resolution.problems.get(name)
        if problem is not None and problem.kind == "cycle":
            reasons[name] = f"is part of a skill dependency cycle: {problem.detail}"
            continue
        found = [
            _needs(d, states.get(d)) if d not in requires else _needs(d, "unavailable")
            for d in deps
            if not usable.get(d, False)
        ]
        if found:
            reasons[name] = "; ".join(found)
    return reasons


def _needs(dependency: str, state: str | None) -> str:
    if state is None:
        return f"needs skill `{dependency}`"
    return f"needs skill `{dependency}`, which is {state}"


def _parse_requirement(text: str) -> tuple[str, object | None] | None:
    """``(distribution name, specifier or None)``; None when ``text`` is not a requirement."""
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:  # packaging is almost always there; without it only presence is checked
        found = _DIST_NAME.match(text)
        return (found.group(1), None) if found else None
    try:
        parsed = Requirement(text)
    except InvalidRequirement:
        return None
    return parsed.name, (parsed.specifier if str(parsed.specifier) else None)


def _satisfies(specifier: object, version: str) -> bool:
    try:
        return bool(specifier.contains(version, prereleases=True))  # type: ignore[attr-defined]
    except Exception:  # an unparsable installed version: do not block the skill on it
        return True


@lru_cache(maxsize=256)
def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
