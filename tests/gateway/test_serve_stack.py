"""The event loop and HTTP parser the gateway is served with: uvloop and httptools when they
import, asyncio and h11 otherwise (each on its own), as `promptline serve` and `serve` report."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from gateway_support import live_gateway, settings_for

from promptline.cli.main import app
from promptline.gateway import server
from promptline.gateway.server import ServeInfo, ServerStack, run_serving, server_stack

pytest.importorskip("uvloop")
pytest.importorskip("httptools")


def _without(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``modules`` fail to import, as where they are not installed."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_and_httptools_are_chosen_when_they_import() -> None:
    assert server_stack() == ServerStack(loop="uvloop", http="httptools")
    assert str(server_stack()) == "event loop uvloop, HTTP httptools"


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        (("uvloop",), ServerStack(loop="asyncio", http="httptools")),
        (("httptools",), ServerStack(loop="uvloop", http="h11")),
        (("uvloop", "httptools"), ServerStack(loop="asyncio", http="h11")),
    ],
)
def test_each_falls_back_on_its_own_when_it_does_not_import(
    monkeypatch: pytest.MonkeyPatch, missing: tuple[str, ...], expected: ServerStack
) -> None:
    _without(monkeypatch, *missing)
    assert server_stack() == expected


def test_run_serving_runs_on_uvloop_and_without_it_on_asyncio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run_serving(_loop_module).startswith("uvloop")
    assert run_serving(_loop_module, stack=ServerStack("asyncio", "h11")).startswith("asyncio")
    _without(monkeypatch, "uvloop")
    assert run_serving(_loop_module).startswith("asyncio")


@pytest.fixture
def kept_logging() -> Iterator[None]:
    """`promptline serve` sets up the process's logging; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    ours = logging.getLogger("promptline")
    our_level = ours.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        ours.setLevel(our_level)
        logging.captureWarnings(False)


def _serve_cli(monkeypatch: pytest.MonkeyPatch, home: Path) -> tuple[str, list[str]]:
    """``promptline serve`` with the gateway replaced by one that notes the event loop it
    runs on and reports ready at once; (its output, the loops seen)."""
    seen: list[str] = []

    async def fake_serve(
        settings: Any, *, on_ready: Callable[[ServeInfo], None] | None = None, **_: Any
    ) -> None:
        seen.append(await _loop_module())
        stack = ServerStack(loop=server._running_loop_kind(), http=server_stack().http)
        info = ServeInfo(host="127.0.0.1", port=8080, urls=["http://localhost:8080"], stack=stack)
        if on_ready is not None:
            on_ready(info)

    monkeypatch.setattr(server, "serve", fake_serve)
    env = {"PROMPTLINE_HOME": str(home), "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["serve"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output, seen


def test_promptline_serve_runs_on_uvloop_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kept_logging: None
) -> None:
    output, seen = _serve_cli(monkeypatch, tmp_path / "home")
    assert [module.partition(".")[0] for module in seen] == ["uvloop"]
    assert "server    event loop uvloop, HTTP httptools" in output


def test_promptline_serve_falls_back_to_asyncio_and_h11(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kept_logging: None
) -> None:
    _without(monkeypatch, "uvloop", "httptools")
    output, seen = _serve_cli(monkeypatch, tmp_path / "home")
    assert [module.partition(".")[0] for module in seen] == ["asyncio"]
    assert "server    event loop asyncio, HTTP h11" in output


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_the_gateway_serves_with_the_parser_it_reports(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    http: str,
) -> None:
    if http == "h11":
        _without(monkeypatch, "httptools")
    settings = settings_for(tmp_path / "home")
    with caplog.at_level(logging.INFO, logger="promptline.gateway"):
        async with live_gateway(settings) as info:
            assert info.stack == ServerStack(loop="asyncio", http=http)  # type: ignore[arg-type]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{info.port}") as client:
                assert (await client.get("/healthz")).status_code == 200
    assert f"serving with event loop asyncio, HTTP {http}" in caplog.text


def test_doctor_names_the_event_loop_and_http_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    from promptline.cli.doctor import _server_stack

    check = _server_stack()
    assert (check.name, check.status, check.detail) == (
        "server",
        "ok",
        "event loop uvloop, HTTP httptools",
    )
    assert check.hint is None
    _without(monkeypatch, "uvloop", "httptools")
    check = _server_stack()
    assert (check.status, check.detail) == ("ok", "event loop asyncio, HTTP h11")
    assert check.hint is not None
    assert "uvloop" in check.hint
