"""`Auditor`: audit records, security alerts, the webhook (a real HTTP server on 127.0.0.1),
failed logins counted per address, and ``security.audit_log: false``."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import pytest
from gateway_support import auth, gateway_app, settings_for
from webhook_support import WebhookServer

from promptline.config.settings import Settings
from promptline.core.events import AuditEvent, SecurityAlertEvent, encode_event
from promptline.events import EventFilter, InProcessEventBus
from promptline.events.memory import InMemoryEventStore
from promptline.security.audit import AUTH_WINDOW_SECS, Auditor


def settings(**alerts: Any) -> Settings:
    audit_log = alerts.pop("audit_log", True)
    return Settings.model_validate({"security": {"audit_log": audit_log, "alerts": alerts}})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


async def logged(store: InMemoryEventStore, kind: str) -> list[Any]:
    return await store.read_all(EventFilter(types=frozenset({kind})))


async def test_a_sensitive_action_is_recorded_with_an_alert_that_reaches_the_webhook(
    store: InMemoryEventStore,
) -> None:
    with WebhookServer() as hook:
        auditor = Auditor(settings(webhook_url=hook.url), InProcessEventBus(store))
        await auditor.record(
            "key.revoked", actor="os:ops", tenant_id="acme", target="key_1", source="cli"
        )
        await auditor.record("key.listed", actor="os:ops", source="cli")
        await auditor.close()

    [first, second] = await logged(store, "audit")
    assert isinstance(first, AuditEvent)
    assert (first.data.action, first.data.actor, first.data.target) == (
        "key.revoked",
        "os:ops",
        "key_1",
    )
    assert (first.tenant_id, first.stream, first.data.outcome) == ("acme", "audit", "success")
    assert second.data.action == "key.listed"
    [alert] = await logged(store, "security_alert")
    assert isinstance(alert, SecurityAlertEvent)
    assert alert.data.kind == "key.revoked"
    assert alert.causation_id == first.id
    assert alert.tenant_id == "acme"
    # The webhook received the alert's JSON, as the log keeps it.
    assert [b["id"] for b in hook.bodies] == [alert.id]
    assert hook.bodies[0]["data"]["message"] == alert.data.message


async def test_a_failing_webhook_is_retried_a_bounded_number_of_times(
    store: InMemoryEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    with WebhookServer(fail_first=2) as hook:
        auditor = Auditor(
            settings(webhook_url=hook.url, webhook_retries=2), InProcessEventBus(store)
        )
        await auditor.alert("probe", "delivered on the third attempt")
        await auditor.close()
    assert hook.requests == 3
    assert [b["data"]["message"] for b in hook.bodies] == ["delivered on the third attempt"]

    with WebhookServer(fail_first=10) as hook, caplog.at_level(logging.WARNING):
        auditor = Auditor(
            settings(webhook_url=hook.url, webhook_retries=1), InProcessEventBus(store)
        )
        await auditor.alert("probe", "never delivered")
        await auditor.close()
    assert hook.requests == 2
    assert hook.bodies == []
    assert "failed after 2 attempt(s): HTTP 500" in caplog.text
    # The alert is in the log all the same.
    assert len(await logged(store, "security_alert")) == 2


async def test_a_slow_webhook_never_holds_up_the_caller(
    store: InMemoryEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    with WebhookServer(delay=1.5) as hook:
        auditor = Auditor(
            settings(webhook_url=hook.url, webhook_timeout_secs=0.2, webhook_retries=0),
            InProcessEventBus(store),
        )
        started = time.monotonic()
        await auditor.alert("probe", "slow")
        raised_in = time.monotonic() - started
        with caplog.at_level(logging.WARNING):
            await auditor.close()
    assert raised_in < 0.1
    assert "ReadTimeout" in caplog.text


async def test_an_unreachable_webhook_is_logged(
    store: InMemoryEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    with WebhookServer() as hook:
        url = hook.url  # closed at the end of the block: nothing listens there any more
    auditor = Auditor(settings(webhook_url=url, webhook_retries=0), InProcessEventBus(store))
    with caplog.at_level(logging.WARNING):
        await auditor.alert("probe", "nobody listens")
        await auditor.close()
    assert "ConnectError" in caplog.text
    assert url not in caplog.text  # the URL may hold a token


async def test_failed_logins_write_one_event_per_address_and_minute_with_a_count(
    store: InMemoryEventStore,
) -> None:
    clock = Clock()
    auditor = Auditor(
        settings(auth_failures_per_minute=50), InProcessEventBus(store), monotonic=clock
    )
    for _ in range(200):
        await auditor.failed_login("10.0.0.9", key_id=None, reason="bad key")
    await auditor.failed_login("10.0.0.7", key_id="key_X", reason="bad key")
    clock.now += AUTH_WINDOW_SECS
    await auditor.failed_login("10.0.0.9", key_id=None, reason="bad key")

    records = [(e.data.source, e.data.count) for e in await logged(store, "audit")]
    # The 199 failures after the first record of 10.0.0.9 ride on its next record.
    assert records == [("10.0.0.9", 1), ("10.0.0.7", 1), ("10.0.0.9", 200)]
    [alert] = await logged(store, "security_alert")
    assert alert.data.kind == "auth.repeated_failures"
    assert alert.data.details == {"source": "10.0.0.9", "count": 50, "key_id": None}


async def test_with_audit_log_off_nothing_is_recorded_and_nothing_sent(
    store: InMemoryEventStore,
) -> None:
    with WebhookServer() as hook:
        auditor = Auditor(settings(audit_log=False, webhook_url=hook.url), InProcessEventBus(store))
        await auditor.record("key.created", actor="os:ops")
        await auditor.failed_login("10.0.0.9", key_id=None, reason="bad key")
        await auditor.alert("probe", "off")
        await auditor.close()
    assert await store.count() == 0
    assert hook.requests == 0


@pytest.mark.parametrize("audit_log", [True, False])
async def test_a_request_with_a_bad_key_is_an_audit_event(tmp_path: Any, audit_log: bool) -> None:
    config = f"security:\n  audit_log: {str(audit_log).lower()}\n"
    async with gateway_app(settings_for(tmp_path / "home", config)) as (app, client):
        missing = await client.get("/v1/sessions")
        wrong = await client.get("/v1/sessions", headers=auth("not-a-key"))
        found = await app.events.read_all(EventFilter(types=frozenset({"audit"})))

    assert (missing.status_code, wrong.status_code) == (401, 401)
    if not audit_log:
        assert found == []
        return
    [record] = found
    assert record.data.action == "auth.failed"
    assert record.data.outcome == "failure"
    assert record.data.source == "127.0.0.1"
    assert record.data.details["reason"] == "this call needs an API key"


def test_the_webhook_server_helper_answers(tmp_path: Any) -> None:
    with WebhookServer() as hook:
        response = httpx.post(hook.url, json={"a": 1})
    assert response.status_code == 204
    assert hook.bodies == [{"a": 1}]


async def test_a_bad_key_at_the_mcp_endpoint_is_an_audit_event(tmp_path: Any) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "probe", "version": "0"},
        },
    }
    wrong = "pl_key_01M9925NZBSZXXBFZREKQ24XS5_XWfOLPrO2jqBEWp_tdfv0mSl0AXpYbOR2EkeMenhBsE"
    headers = {**auth(wrong), "Accept": "application/json, text/event-stream"}
    async with gateway_app(settings_for(tmp_path / "home")) as (app, client):
        refused = await client.post("/mcp", json=initialize, headers=headers)
        found = await app.events.read_all(EventFilter(types=frozenset({"audit"})))

    assert refused.status_code == 401
    [record] = found
    assert (record.data.action, record.data.outcome) == ("auth.failed", "failure")
    assert record.data.source == "127.0.0.1"
    assert record.data.key_id == "key_01M9925NZBSZXXBFZREKQ24XS5"  # the id, never the secret
    assert "XWfOLPrO2jqBEWp" not in encode_event(record).decode()
