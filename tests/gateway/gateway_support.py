"""Shared pieces of the gateway tests: an app on a temporary home, API keys, clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from promptline.app import App, build_app
from promptline.config import load_settings
from promptline.config.settings import Settings
from promptline.gateway.app import create_gateway
from promptline.gateway.server import ServeInfo, serve
from promptline.security.auth import KeyStore

BASE_CONFIG = """\
models:
  default: scripted/demo
agent:
  default_mode: act
  stream_enabled: true
"""


def settings_for(home: Path, extra: str = "") -> Settings:
    """Settings of a PromptLine home at ``home`` (its config is `BASE_CONFIG` + ``extra``)."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "config.yaml"
    config.write_text(BASE_CONFIG + extra, encoding="utf-8")
    return load_settings(config, environ={"PROMPTLINE_HOME": str(home)})


@dataclass
class Keys:
    """API keys of the test tenants: acme's alice, bob and admin, and globex's carol."""

    alice: str
    bob: str
    acme_admin: str
    carol: str


async def make_keys(app: App) -> Keys:
    store = KeyStore(app.state, clock=app.clock)
    _, alice = await store.create("alice", tenant_id="acme")
    _, bob = await store.create("bob", tenant_id="acme")
    _, admin = await store.create("ops", tenant_id="acme", role="admin")
    _, carol = await store.create("carol", tenant_id="globex")
    return Keys(alice=alice, bob=bob, acme_admin=admin, carol=carol)


def auth(key: str) -> dict[str, str]:
    """The header that carries ``key``."""
    return {"Authorization": f"Bearer {key}"}


@contextlib.asynccontextmanager
async def gateway_app(settings: Settings) -> AsyncIterator[tuple[App, httpx.AsyncClient]]:
    """The app, its runtime started, and an in-process HTTP client of its gateway."""
    async with build_app(settings) as app:
        await app.start_runtime()
        api = create_gateway(app)
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield app, client


@contextlib.asynccontextmanager
async def live_gateway(settings: Settings, **options: Any) -> AsyncIterator[ServeInfo]:
    """`promptline serve` on a free port of 127.0.0.1, stopped (gracefully) on exit."""
    ready: asyncio.Future[ServeInfo] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(settings, host="127.0.0.1", port=0, on_ready=ready.set_result, **options)
    )
    try:
        done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises what stopped it
        yield ready.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
