"""Load order of things that depend on each other (tool packages, skills): a topological sort
that reports every missing dependency and every cycle instead of stopping at the first."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["DependencyProblem", "Resolution", "resolve"]


@dataclass(frozen=True, slots=True)
class DependencyProblem:
    """Why ``name`` cannot be loaded: a dependency that is not there, or a cycle."""

    name: str
    kind: str
    """``missing`` (``detail`` names the absent dependency), ``cycle`` (``detail`` is the cycle,
    ``a -> b -> a``) or ``blocked`` (a dependency of it cannot be loaded)."""
    detail: str

    def __str__(self) -> str:
        match self.kind:
            case "missing":
                return f"{self.name} needs {self.detail}, which is not installed or not enabled"
            case "cycle":
                return f"{self.name} is part of a dependency cycle: {self.detail}"
            case _:
                return f"{self.name} needs {self.detail}, which cannot be loaded"


@dataclass(frozen=True, slots=True)
class Resolution:
    """The names that can be loaded, dependencies first, and the problems of the rest."""

    order: list[str] = field(default_factory=list)
    problems: dict[str, DependencyProblem] = field(default_factory=dict)


def resolve(requires: Mapping[str, Iterable[str]]) -> Resolution:
    """Order ``requires`` (name -> names it needs) so each name comes after its dependencies.

    A name that needs an unknown name, that is on a cycle, or that needs such a name is left
    out with its problem; the others still load. Ties keep the names' sorted order, so the
    result does not depend on the mapping's order.
    """
    graph = {name: sorted(set(deps)) for name, deps in requires.items()}
    problems: dict[str, DependencyProblem] = {}
    for name in sorted(graph):
        missing = [d for d in graph[name] if d not in graph]
        if missing:
            problems[name] = DependencyProblem(name, "missing", ", ".join(missing))

    # Cycles: Tarjan's strongly connected components (iterative), plus self-loops.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            deps = [d for d in graph[node] if d in graph]
            if i < len(deps):
                work.append((node, i + 1))
                child = deps[i]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    cycle = _cycle_path(sorted(component), graph)
                    for member in component:
                        problems.setdefault(member, DependencyProblem(member, "cycle", cycle))

    order: list[str] = []
    state: dict[str, bool] = {}  # name -> loadable

    def loadable(name: str, path: tuple[str, ...] = ()) -> bool:
        if name in state:
            return state[name]
        if name in problems:
            state[name] = False
            return False
        ok = True
        for dep in graph[name]:
            if dep in path:
                continue
            if not loadable(dep, (*path, name)):
                problems.setdefault(name, DependencyProblem(name, "blocked", dep))
                ok = False
        state[name] = ok
        if ok:
            order.append(name)
        return ok

    for name in sorted(graph):
        loadable(name)
    return Resolution(order=order, problems=problems)


def _cycle_path(component: list[str], graph: Mapping[str, list[str]]) -> str:
    """The shortest cycle through the component's first name, written ``a -> b -> a``."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for dep in graph[node]:
                if dep == start:
                    path = [start]
                    while node != start:
                        path.append(node)
                        node = previous[node]
                    return " -> ".join([start, *reversed(path[1:]), start])
                if dep in members and dep not in previous:
                    previous[dep] = node
                    following.append(dep)
        frontier = following
    return " -> ".join([*component, start])
