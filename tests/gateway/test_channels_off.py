"""A channel switched off takes no message over the network: the HTTP channel answers 404
``channel_off`` and ``/v1/ws`` closes the handshake with 4404, while the REST API still
serves."""

from __future__ import annotations

from pathlib import Path

import httpx
from ws_support import refused_with, served, ws_settings

from promptline.app import build_app
from promptline.config import load_settings
from promptline.config.channels import WebSocketChannelSettings
from promptline.gateway.app import create_gateway
from promptline.security.auth import KeyStore


async def test_the_http_channel_switched_off_answers_404_channel_off(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text(
        "models:\n  default: scripted/demo\nchannels:\n  http:\n    enabled: false\n",
        encoding="utf-8",
    )
    settings = load_settings(home / "config.yaml", environ={"PROMPTLINE_HOME": str(home)})
    async with build_app(settings) as app:
        _, key = await KeyStore(app.state).create("alice", tenant_id="default")
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_gateway(app)), base_url="http://gw"
        ) as client:
            refused = await client.post(
                "/v1/channels/http/messages", json={"text": "hi"}, headers=headers
            )
            sessions = await client.get("/v1/sessions", headers=headers)

    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "channel_off"
    assert refused.json()["error"]["message"] == (
        "the http channel is off: channels.http.enabled is false"
    )
    assert sessions.status_code == 200


async def test_the_websocket_channel_switched_off_closes_the_handshake_with_4404(
    tmp_path: Path,
) -> None:
    settings = ws_settings(tmp_path / "home")
    off = settings.channels.model_copy(
        update={"websocket": WebSocketChannelSettings(enabled=False)}
    )
    settings = settings.model_copy(update={"channels": off})

    async with served(settings) as gw:
        assert await refused_with(gw.url, gw.keys.alice) == 4404
