"""Layer 5: the gateway. The ASGI app (REST ``/v1``, the WebSocket control plane, SSE, the
OpenAI-compatible API) over the services of one `promptline.app.App`."""

from promptline.gateway.app import create_gateway

__all__ = ["create_gateway"]
