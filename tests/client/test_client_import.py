"""Importing the client library loads neither the server (FastAPI, uvicorn, the gateway) nor
the database (SQLAlchemy) nor the runtime: a program that only talks to a gateway stays
light."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "sqlalchemy",
    "fastapi",
    "uvicorn",
    "starlette",
    "alembic",
    "redis",
    "promptline.gateway",
    "promptline.runtime",
    "promptline.storage",
    "promptline.sessions",
    "promptline.app",
)


def test_importing_the_client_loads_no_server_or_database_code() -> None:
    code = (
        "import json, sys\n"
        "import promptline.client\n"
        "from promptline.client import AsyncPromptLine, PromptLine\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy"
        " or m.startswith(heavy))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []
