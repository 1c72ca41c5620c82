"""The WebSocket control plane at ``/v1/ws``: JSON-RPC 2.0 requests and answers, and a
session's events as notifications, resumable from the last ``seq`` a client received."""

from promptline.gateway.ws.connection import serve_connection
from promptline.gateway.ws.methods import METHODS

__all__ = ["METHODS", "serve_connection"]
