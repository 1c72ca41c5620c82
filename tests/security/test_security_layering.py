"""The security layer sits beside the tools, not above them: nothing in ``security/`` imports
``promptline.tools`` when it runs (a type named only for the type checker aside; the sandbox
names none at all), and loading the permission gate or the sandbox loads no tool module. The
tools import security (their sandbox, the egress policy), never the other way round."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import promptline.security

SECURITY = Path(promptline.security.__file__).parent
SRC = SECURITY.parent.parent


def imported_modules(source: Path, *, type_only: bool) -> set[str]:
    """The modules a file imports, at its top or in a function; with ``type_only`` False,
    not those of an ``if TYPE_CHECKING:`` block. Relative imports are resolved."""
    tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
    skipped: set[int] = set()
    if not type_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and ast.unparse(node.test) in (
                "TYPE_CHECKING",
                "typing.TYPE_CHECKING",
            ):
                for inner in node.body:
                    skipped.update(id(n) for n in ast.walk(inner))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.level:
                parts = source.relative_to(SRC).with_suffix("").parts
                found.add(".".join([*parts[: len(parts) - node.level], node.module]))
            else:
                found.add(node.module)
    return found


@pytest.mark.parametrize(
    ("folder", "type_only"),
    [(SECURITY, False), (SECURITY / "sandbox", True)],
    ids=["security, when it runs", "sandbox, even for types"],
)
def test_no_security_source_imports_the_tools(folder: Path, type_only: bool) -> None:
    sources = sorted(folder.rglob("*.py"))
    assert len(sources) > 5

    offending = {
        f"{source.relative_to(SECURITY)}: {module}"
        for source in sources
        for module in imported_modules(source, type_only=type_only)
        if module == "promptline.tools" or module.startswith("promptline.tools.")
    }

    assert not offending


@pytest.mark.parametrize(
    ("modules", "expected"),
    [
        (
            [
                "promptline.security.gate",
                "promptline.security.policy",
                "promptline.security.approvals",
                "promptline.security.permissions",
            ],
            "promptline.security.gate",
        ),
        (
            ["promptline.security.sandbox", "promptline.security.sandbox.run"],
            "promptline.security.sandbox.process",
        ),
    ],
    ids=["the permission gate", "the sandbox"],
)
def test_loading_security_loads_no_tool_module(modules: list[str], expected: str) -> None:
    code = (
        "import sys\n"
        + "".join(f"import {module}\n" for module in modules)
        + "print('\\n'.join(m for m in sys.modules if m.startswith('promptline.')))\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    loaded = done.stdout.split()
    assert expected in loaded
    assert [m for m in loaded if m.startswith("promptline.tools")] == []
