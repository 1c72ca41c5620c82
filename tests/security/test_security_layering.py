"""The security layer sits beside the tools, not above them: nothing in ``security/`` imports
``promptline.tools`` when it runs (a type named only for the type checker aside), and loading
the permission gate loads no tool module. The tools import security (their sandbox, the
egress policy), never the other way round."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import promptline.security

SECURITY = Path(promptline.security.__file__).parent


def runtime_imports(source: Path) -> set[str]:
    """The modules a file imports when it runs: at its top or in a function, but not in an
    ``if TYPE_CHECKING:`` block."""
    tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
    skipped: set[int] = set()
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
        elif isinstance(node, ast.ImportFrom) and node.module is not None and not node.level:
            found.add(node.module)
    return found


def test_no_security_source_imports_the_tools_when_it_runs() -> None:
    sources = sorted(SECURITY.rglob("*.py"))
    assert len(sources) > 10

    offending = {
        f"{source.relative_to(SECURITY)}: {module}"
        for source in sources
        for module in runtime_imports(source)
        if module == "promptline.tools" or module.startswith("promptline.tools.")
    }

    assert not offending


def test_loading_the_permission_gate_loads_no_tool_module() -> None:
    code = (
        "import sys\n"
        "import promptline.security.gate, promptline.security.policy\n"
        "import promptline.security.approvals, promptline.security.permissions\n"
        "print('\\n'.join(m for m in sys.modules if m.startswith('promptline.')))\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    loaded = done.stdout.split()
    assert "promptline.security.gate" in loaded
    assert [m for m in loaded if m.startswith("promptline.tools")] == []
