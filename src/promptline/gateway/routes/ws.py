"""``/v1/ws``: the WebSocket control plane (JSON-RPC 2.0; see `promptline.gateway.ws`)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from promptline.gateway.ws import serve_connection
from promptline.gateway.ws.log_redaction import install_secret_redaction

router = APIRouter(tags=["websocket"])

# The server logs a handshake (its path, and at debug level its headers) before the app is
# called, so the filter must be on the loggers before the first connection.
install_secret_redaction()


@router.websocket("/v1/ws")
async def control_plane(websocket: WebSocket) -> None:
    """The control plane: authenticate, then answer JSON-RPC requests until either side
    closes."""
    await serve_connection(websocket)
