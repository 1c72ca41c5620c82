"""The gateway's log: one access line per request (method, path, status, ms, key id) and an
open and a close line per WebSocket connection, as text or JSON lines; never a key."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from gateway_support import auth, gateway_app, live_gateway, make_keys, settings_for
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from promptline.config.settings import LoggingSettings
from promptline.gateway.logs import configure_logging

WAIT = 10.0
TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d{4} INFO promptline\.access: "
    r"(?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3}) (?P<ms>\d+\.\d) ms (?P<key>\S+)$"
)


class Lines(io.StringIO):
    """What the log handler writes, with an event for each write (so a test waits for a line
    instead of sleeping)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = asyncio.Event()

    def write(self, text: str) -> int:
        self.written.set()
        return super().write(text)

    def lines(self) -> list[str]:
        return self.getvalue().splitlines()

    async def until(self, found: Callable[[list[str]], bool]) -> list[str]:
        async with asyncio.timeout(WAIT):
            while not found(self.lines()):
                self.written.clear()
                await self.written.wait()
        return self.lines()


@contextlib.contextmanager
def gateway_log(**settings: str) -> Iterator[Lines]:
    """The process's logging as `promptline serve` sets it up, into a string; put back after."""
    root = logging.getLogger()
    ours = logging.getLogger("promptline")
    saved = (list(root.handlers), root.level, ours.level)
    stream = Lines()
    configure_logging(LoggingSettings.model_validate(settings), stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        ours.setLevel(saved[2])
        logging.captureWarnings(False)


def key_id(key: str) -> str:
    found = re.match(r"pl_(key_[0-9A-Z]{26})_", key)
    assert found is not None
    return found.group(1)


def secret_of(key: str) -> str:
    return key[len("pl_") + len(key_id(key)) + 1 :]


async def test_each_request_has_one_access_line_naming_its_key_id_and_never_the_key(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path / "home", "gateway:\n  max_body_bytes: 1000\n")
    with gateway_log() as log:
        async with gateway_app(settings) as (app, client):
            keys = await make_keys(app)
            assert (await client.get("/v1/agents", headers=auth(keys.alice))).status_code == 200
            missing = await client.get("/v1/sessions/nope", headers={"X-API-Key": keys.bob})
            assert missing.status_code == 404
            # A key in the query is no credential over HTTP, and the query is never logged.
            assert (await client.get(f"/v1/agents?token={keys.carol}")).status_code == 401
            assert (
                await client.get("/v1/agents", headers=auth(keys.carol + "x"))
            ).status_code == 401
            big = await client.post("/v1/sessions", headers=auth(keys.alice), content=b"x" * 2000)
            assert big.status_code == 413
            assert (await client.get("/healthz")).status_code == 200

    lines = log.lines()
    parsed = [TEXT_LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [(m["method"], m["path"], m["status"], m["key"]) for m in parsed if m] == [
        ("GET", "/v1/agents", "200", key_id(keys.alice)),
        ("GET", "/v1/sessions/nope", "404", key_id(keys.bob)),
        ("GET", "/v1/agents", "401", "-"),
        ("GET", "/v1/agents", "401", "-"),
        ("POST", "/v1/sessions", "413", "-"),  # refused before any key was checked
        ("GET", "/healthz", "200", "-"),
    ]
    text = log.getvalue()
    for key in (keys.alice, keys.bob, keys.carol):
        assert secret_of(key) not in text
    assert "token" not in text


async def test_a_path_cannot_split_or_fake_a_line(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home")
    with gateway_log() as log:
        async with gateway_app(settings) as (_app, client):
            forged = "/v1/x%0A2025-01-01 00:00:00+0000 INFO promptline.access: GET /v1/agents"
            assert (await client.get(forged)).status_code == 404

    [line] = log.lines()
    assert TEXT_LINE.match(line)
    assert "/v1/x%0A2025-01-01%2000:00:00+0000%20INFO" in line


async def test_json_lines_parse_and_carry_the_access_fields(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home")
    with gateway_log(format="json") as log:
        async with gateway_app(settings) as (app, client):
            keys = await make_keys(app)
            await client.get("/v1/agents", headers=auth(keys.alice))
            await client.get("/v1/agents")
        logging.getLogger("promptline.gateway").warning('a warning, with "quotes"\nand a break')

    entries = [json.loads(line) for line in log.lines()]
    for entry in entries:
        assert datetime.fromisoformat(entry["time"]).tzinfo is not None
    first, second, warning = entries
    assert first["level"] == "info"
    assert first["logger"] == "promptline.access"
    assert {k: first[k] for k in ("kind", "method", "path", "status", "key_id")} == {
        "kind": "http",
        "method": "GET",
        "path": "/v1/agents",
        "status": 200,
        "key_id": key_id(keys.alice),
    }
    assert isinstance(first["ms"], float)
    assert first["message"].startswith("GET /v1/agents 200 ")
    assert (second["status"], second["key_id"]) == (401, "-")
    assert warning["level"] == "warning"
    assert warning["message"] == 'a warning, with "quotes"\nand a break'
    assert secret_of(keys.alice) not in log.getvalue()


async def test_at_level_warning_no_access_line_is_written(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home")
    with gateway_log(level="warning") as log:
        async with gateway_app(settings) as (_app, client):
            assert (await client.get("/healthz")).status_code == 200

    assert log.getvalue() == ""


async def test_a_websocket_connection_has_an_open_and_a_close_line(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home")
    with gateway_log() as log:
        async with live_gateway(settings) as info:
            assert info.admin_key is not None
            url = f"ws://127.0.0.1:{info.port}/v1/ws"
            async with connect(url, additional_headers=auth(info.admin_key)) as ws:
                await log.until(lambda lines: any(" open " in line for line in lines))
                await ws.close(1000)
            lines = await log.until(lambda lines: any(" close " in line for line in lines))
            # A refused key: accepted, then closed with 4401.
            with pytest.raises(ConnectionClosed):
                async with connect(url, additional_headers=auth("pl_nope")) as ws:
                    await ws.recv()
            lines = await log.until(lambda lines: sum(" close " in line for line in lines) == 2)

    admin = key_id(info.admin_key)
    ws_lines = [line.split("promptline.access: ", 1)[1] for line in lines if " WS " in line]
    assert ws_lines[0] == f"WS /v1/ws open {admin}"
    assert re.fullmatch(rf"WS /v1/ws close 1000 after \d+\.\d s {admin}", ws_lines[1])
    assert len(ws_lines) == 4, ws_lines
    assert ws_lines[2] == "WS /v1/ws open -"
    assert re.fullmatch(r"WS /v1/ws close 4401 after \d+\.\d s -", ws_lines[3])
    assert secret_of(info.admin_key) not in log.getvalue()


DEPLOY_DOC = Path(__file__).parents[2] / "docs" / "deploy.md"
WS_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d{4} INFO promptline\.access: "
    r"WS (?P<path>\S+) (open|close (?P<code>\d+) after \d+\.\d s) (?P<key>\S+)$"
)


def documented_log() -> tuple[list[str], dict[str, object]]:
    """The example lines of deploy.md's "Its log": the text ones, and the JSON one."""
    section = DEPLOY_DOC.read_text(encoding="utf-8").split("## Its log", 1)[1].split("\n## ")[0]
    [text] = re.findall(r"```text\n(.*?)```", section, re.DOTALL)
    [entry] = re.findall(r"```json\n(.*?)```", section, re.DOTALL)
    return text.splitlines(), json.loads(entry)


async def test_the_log_lines_shown_in_the_deploy_guide_are_the_ones_written(
    tmp_path: Path,
) -> None:
    lines, entry = documented_log()
    with gateway_log(format="json") as log:
        async with gateway_app(settings_for(tmp_path / "home")) as (app, client):
            keys = await make_keys(app)
            await client.get("/v1/agents", headers=auth(keys.alice))
    [written] = [json.loads(line) for line in log.lines()]

    assert all(TEXT_LINE.match(line) or WS_LINE.match(line) for line in lines), lines
    assert sorted(entry) == sorted(written)
    assert {k: entry[k] for k in ("kind", "method", "path", "status")} == {
        k: written[k] for k in ("kind", "method", "path", "status")
    }


async def test_a_key_sent_in_a_path_is_masked_in_its_line(tmp_path: Path) -> None:
    with gateway_log() as log:
        async with gateway_app(settings_for(tmp_path / "home")) as (app, client):
            keys = await make_keys(app)
            answer = await client.get(f"/v1/sessions/{keys.alice}", headers=auth(keys.bob))
            assert answer.status_code == 404

    [line] = log.lines()
    assert f"GET /v1/sessions/pl_{key_id(keys.alice)}_[redacted] 404 " in line
    assert secret_of(keys.alice) not in line
