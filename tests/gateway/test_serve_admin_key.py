"""What `serve` keeps in the home on a first start: the admin key it made, in ``admin.key``
(0600), whichever way it was started; a later start makes none and leaves the file."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from gateway_support import auth, live_gateway, settings_for

from promptline.app import build_app
from promptline.events import EventFilter


async def test_a_first_start_keeps_the_admin_key_and_a_later_start_makes_none(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"  # the test's PROMPTLINE_HOME
    settings = settings_for(home)

    async with live_gateway(settings) as first:
        assert first.admin_key is not None
        assert first.admin_key_file == home / "admin.key"
        kept = first.admin_key_file.read_text(encoding="ascii")
        assert kept == first.admin_key + "\n"
        assert first.admin_key_file.stat().st_mode & 0o777 == 0o600
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{first.port}") as client:
            answer = await client.get("/v1/agents", headers=auth(kept.strip()))
            assert answer.status_code == 200

    async with live_gateway(settings) as second:
        assert (second.admin_key, second.admin_key_file) == (None, None)
    assert (home / "admin.key").read_text(encoding="ascii") == kept
    # The key made on the first start is on the audit trail (the later start made none).
    async with build_app(settings) as app:
        audit = await app.events.read_all(EventFilter(types=frozenset({"audit"})))
    [made] = [(e.data.action, e.data.actor, e.data.source, e.data.target) for e in audit]
    assert made == ("key.created", "system", "first start", "_".join(kept.split("_")[1:3]))


async def test_a_key_that_cannot_be_kept_is_still_made_and_the_log_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    settings = settings_for(home)
    (home / "admin.key").mkdir()  # in the way of the file

    with caplog.at_level(logging.WARNING, logger="promptline.gateway"):
        async with live_gateway(settings) as info:
            assert info.admin_key is not None
            assert info.admin_key_file is None

    assert f"the admin key could not be kept in {home / 'admin.key'}" in caplog.text
    assert info.admin_key not in caplog.text


async def test_serve_closes_the_home_folder_of_an_older_version_to_others(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    settings = settings_for(home)
    home.chmod(0o755)

    async with live_gateway(settings):
        assert home.stat().st_mode & 0o777 == 0o700
