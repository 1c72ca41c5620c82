"""A real HTTP server on 127.0.0.1 that receives alert webhooks: it keeps the JSON bodies
POSTed to it, and can answer the first few requests with an error or late."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class WebhookServer:
    """``with WebhookServer() as hook:`` serves at ``hook.url`` until the block ends.

    ``fail_first`` requests are answered 500; each request waits ``delay`` seconds first.
    """

    def __init__(self, *, fail_first: int = 0, delay: float = 0.0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.requests = 0
        self.fail_first = fail_first
        self.delay = delay
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with server.lock:
                    server.requests += 1
                    failing = server.requests <= server.fail_first
                time.sleep(server.delay)
                if not failing:
                    with server.lock:
                        server.bodies.append(json.loads(body))
                self.send_response(500 if failing else 204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._http.shutdown()
        self._http.server_close()
