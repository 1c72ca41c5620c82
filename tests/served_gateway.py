"""`promptline serve` in a process of its own, for tests that need a real gateway on a port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served_gateway(home: Path, *, user: str) -> Iterator[tuple[str, str]]:
    """The gateway of ``home`` (its config.yaml already written) on a free port, ready, and an
    admin key made for ``user``: ``(url, key)``. Its log goes to ``home/serve.log``: a pipe
    nobody reads would fill with access lines and stall it."""
    env = {**os.environ, "PROMPTLINE_HOME": str(home)}
    promptline = [sys.executable, "-m", "promptline.cli.main"]
    made = subprocess.run(
        [*promptline, "keys", "create", "--user", user, "--role", "admin", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    key = json.loads(made.stdout)["key"]
    port = free_port()
    log = home / "serve.log"
    with log.open("wb") as stderr:
        server = subprocess.Popen(
            [*promptline, "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start: {log.read_text()!r}")
            time.sleep(0.05)  # polling a process's start-up, not timing a race
        yield url, key
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
