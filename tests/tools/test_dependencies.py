"""Load order of tool packages and skills: dependencies first; missing ones and cycles reported."""

from __future__ import annotations

from promptline.tools.dependencies import resolve


def test_dependencies_come_before_what_needs_them() -> None:
    result = resolve({"app": ["db", "http"], "http": ["core"], "db": ["core"], "core": []})

    order = result.order
    assert sorted(order) == ["app", "core", "db", "http"]
    assert order.index("core") < order.index("db") < order.index("app")
    assert order.index("http") < order.index("app")
    assert result.problems == {}


def test_a_missing_dependency_blocks_its_dependents_only() -> None:
    result = resolve({"a": ["ghost"], "b": ["a"], "c": []})

    assert result.order == ["c"]
    assert result.problems["a"].kind == "missing"
    assert "ghost" in str(result.problems["a"])
    assert result.problems["b"].kind == "blocked"
    assert result.problems["b"].detail == "a"


def test_a_cycle_is_reported_with_its_path_and_the_rest_still_loads() -> None:
    result = resolve({"a": ["b"], "b": ["c"], "c": ["a"], "d": [], "self": ["self"]})

    assert result.order == ["d"]
    assert {n for n, p in result.problems.items() if p.kind == "cycle"} == {"a", "b", "c", "self"}
    assert result.problems["a"].detail == "a -> b -> c -> a"
    assert result.problems["self"].detail == "self -> self"


def test_the_order_does_not_depend_on_the_mappings_order() -> None:
    forward = resolve({"x": [], "y": [], "z": ["x"]})
    backward = resolve({"z": ["x"], "y": [], "x": []})

    assert forward.order == backward.order
