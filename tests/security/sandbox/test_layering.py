"""The sandbox sits below the tools that use it: nothing in it imports ``promptline.tools``,
neither in its source nor when it is loaded."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import promptline.security.sandbox

SANDBOX = Path(promptline.security.sandbox.__file__).parent


def imported_modules(source: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"), str(source))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.level:
                # A relative import, resolved against the file's own package.
                parts = source.relative_to(SANDBOX.parent.parent.parent).with_suffix("").parts
                base = ".".join(parts[: len(parts) - node.level])
                found.add(f"{base}.{node.module}")
            else:
                found.add(node.module)
    return found


def test_no_sandbox_source_imports_the_tools() -> None:
    sources = sorted(SANDBOX.rglob("*.py"))
    assert sources, "the sandbox package has no sources"

    offending = {
        f"{source.relative_to(SANDBOX)}: {module}"
        for source in sources
        for module in imported_modules(source)
        if module == "promptline.tools" or module.startswith("promptline.tools.")
    }

    assert not offending


def test_loading_the_sandbox_loads_no_tool_module() -> None:
    code = (
        "import sys\n"
        "import promptline.security.sandbox\n"
        "import promptline.security.sandbox.run\n"
        "print('\\n'.join(m for m in sys.modules if m.startswith('promptline.')))\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    loaded = done.stdout.split()
    assert "promptline.security.sandbox.process" in loaded
    assert [name for name in loaded if name.startswith("promptline.tools")] == []
