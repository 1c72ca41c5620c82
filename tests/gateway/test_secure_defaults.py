"""The gateway's secure defaults: loopback unless told otherwise, no plain-HTTP public bind
unless forced, no CORS, bodies bounded, security headers on every response (a CSP that lets
/docs run and nothing else), and `promptline doctor` naming an unsafe setup."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from gateway_support import gateway_app, settings_for

from promptline.cli.main import app as cli
from promptline.config.settings import Settings
from promptline.core.errors import ConfigError
from promptline.gateway.headers import DEFAULT_CSP
from promptline.gateway.server import ServeInfo, serve


def test_the_gateway_binds_loopback_and_refuses_a_public_bind_by_default() -> None:
    settings = Settings()
    assert settings.gateway.host == "127.0.0.1"
    assert settings.gateway.allow_insecure_public_bind is False


async def test_a_public_bind_without_the_switch_is_refused_with_a_clear_message(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path / "home", "gateway:\n  host: 0.0.0.0\n")

    with pytest.raises(ConfigError) as refused:
        await serve(settings, port=0)

    assert "refusing to listen on 0.0.0.0: the gateway speaks plain HTTP" in refused.value.message
    assert "gateway.allow_insecure_public_bind: true" in (refused.value.hint or "")


def _an_address_beyond_loopback() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: it only picks a route
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


async def test_with_the_switch_a_public_address_is_served(tmp_path: Path) -> None:
    address = _an_address_beyond_loopback()
    if address is None:
        pytest.skip("this machine has no address beyond loopback")
    settings = settings_for(
        tmp_path / "home",
        f"gateway:\n  host: {address}\n  allow_insecure_public_bind: true\n",
    )
    ready: asyncio.Future[ServeInfo] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, port=0, on_ready=ready.set_result))
    try:
        info = await asyncio.wait_for(asyncio.shield(ready), 30)
        async with httpx.AsyncClient() as client:
            health = await client.get(f"http://{address}:{info.port}/healthz")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert info.host == address
    assert health.status_code == 200


async def test_every_response_carries_the_security_headers(tmp_path: Path) -> None:
    async with gateway_app(settings_for(tmp_path / "home")) as (_app, client):
        answers = [
            await client.get("/healthz"),
            await client.get("/v1/sessions"),  # refused: no key
            await client.get("/openapi.json"),
            await client.get("/docs/assets/swagger-ui.css"),
            await client.post("/v1/sessions", content=b"x" * 2_000_000),  # refused: too big
        ]
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff", answer.url
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["content-security-policy"] == DEFAULT_CSP
    assert answers[-1].status_code == 413


async def test_the_docs_page_has_a_policy_that_allows_only_its_own_files_and_script(
    tmp_path: Path,
) -> None:
    import base64
    import hashlib
    import re

    async with gateway_app(settings_for(tmp_path / "home")) as (_app, client):
        page = await client.get("/docs")

    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    policy = dict(
        part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";")
    )
    [inline] = re.findall(r"<script>(.*?)</script>", page.text, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert policy["script-src"] == f"'self' 'sha256-{digest}'"
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["connect-src"] == "'self'"


async def test_cors_is_off_no_origin_is_granted(tmp_path: Path) -> None:
    async with gateway_app(settings_for(tmp_path / "home")) as (_app, client):
        preflight = await client.options(
            "/v1/sessions",
            headers={
                "Origin": "https://elsewhere.example",
                "Access-Control-Request-Method": "POST",
            },
        )
        simple = await client.get("/healthz", headers={"Origin": "https://elsewhere.example"})

    for answer in (preflight, simple):
        assert not any(h.startswith("access-control-") for h in answer.headers)


APP = "https://app.example.com"


async def test_an_origin_in_cors_origins_may_call_the_api_and_no_other(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home", f"gateway:\n  cors_origins: ['{APP}']\n")
    asking = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }
    async with gateway_app(settings) as (_app, client):
        granted = await client.options("/v1/sessions", headers={"Origin": APP, **asking})
        other = await client.options(
            "/v1/sessions", headers={"Origin": "https://elsewhere.example", **asking}
        )
        unauthenticated = await client.get("/v1/sessions", headers={"Origin": APP})
        simple = await client.get("/healthz", headers={"Origin": APP})
        stranger = await client.get("/healthz", headers={"Origin": "https://elsewhere.example"})

    assert granted.status_code == 200
    assert granted.headers["access-control-allow-origin"] == APP
    allowed = granted.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "idempotency-key"):
        assert header in allowed
    assert "access-control-allow-credentials" not in granted.headers
    assert granted.headers["x-content-type-options"] == "nosniff"  # security headers too
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    # The credential is still required: CORS lets the page read the answer, nothing more.
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["access-control-allow-origin"] == APP
    assert "retry-after" in unauthenticated.headers["access-control-expose-headers"].lower()
    assert simple.headers["access-control-allow-origin"] == APP
    assert "access-control-allow-origin" not in stranger.headers


@pytest.mark.parametrize("origin", ["app.example.com", "https://app.example.com/path", "ftp://x"])
def test_a_cors_origin_that_is_not_an_origin_is_refused(tmp_path: Path, origin: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"gateway:\n  cors_origins: ['{origin}']\n", encoding="utf-8")

    result = CliRunner().invoke(cli, ["config", "validate", str(path)], catch_exceptions=False)

    assert result.exit_code == 1
    assert "is not an origin: write scheme://host[:port]" in " ".join(result.output.split())


# -- promptline doctor ------------------------------------------------------------------------


def doctor(tmp_path: Path, config: str) -> Result:
    path = tmp_path / "config.yaml"
    path.write_text(config, encoding="utf-8")
    return CliRunner().invoke(cli, ["--config", str(path), "doctor"], catch_exceptions=False)


def test_doctor_is_quiet_about_the_defaults(tmp_path: Path) -> None:
    result = doctor(tmp_path, "models:\n  default: scripted/demo\n")

    assert "✓ gateway bind: 127.0.0.1 (this machine only)" in result.output
    assert "permissions:" not in result.output


def test_doctor_fails_a_public_bind_and_warns_when_it_is_forced(tmp_path: Path) -> None:
    refused = doctor(tmp_path, "gateway:\n  host: 0.0.0.0\n")
    forced = doctor(tmp_path, "gateway:\n  host: 0.0.0.0\n  allow_insecure_public_bind: true\n")

    assert refused.exit_code == 1
    assert "✗ gateway bind: gateway.host is 0.0.0.0: the gateway refuses to start" in (
        refused.output
    )
    assert "gateway.allow_insecure_public_bind: true" in refused.output
    assert "! gateway bind: gateway.host is 0.0.0.0 with gateway.allow_insecure_public_bind" in (
        forced.output
    )


@pytest.mark.parametrize(
    ("rules", "warning"),
    [
        ('tools:\n  "*": allow\n', "tools.*: allow lets every tool run without asking"),
        (
            "permissions:\n  agents:\n    coder:\n      '*': allow\n",
            "permissions.agents.coder.*: allow lets every tool run",
        ),
        (
            "tools:\n  shell_execute: allow\n",
            "tools.shell_execute: allow lets shell_execute run any command without approval",
        ),
        (
            "permissions:\n  users:\n    bob:\n      'shell_*': allow\n",
            "permissions.users.bob.shell_*: allow lets shell_execute run any command",
        ),
        (
            "tools:\n  shell_execute: {mode: ask, when: {command: ['ls*']}, otherwise: allow}\n",
            "tools.shell_execute: allow lets shell_execute run",
        ),
        (
            "security:\n  require_approval: false\n",
            "security.require_approval is false and no rule covers shell_execute",
        ),
    ],
)
def test_doctor_warns_about_rules_that_let_tools_run_unasked(
    tmp_path: Path, rules: str, warning: str
) -> None:
    result = doctor(tmp_path, rules)

    assert f"! permissions: {warning}" in result.output


def test_doctor_leaves_narrow_allows_alone(tmp_path: Path) -> None:
    result = doctor(
        tmp_path,
        "tools:\n  file_read: allow\n"
        "  shell_execute: {mode: allow, when: {command: ['ls *', 'git status']}}\n",
    )

    assert "permissions:" not in result.output


async def test_the_deploy_page_quotes_the_refusal_and_the_policy(tmp_path: Path) -> None:
    page = (Path(__file__).parents[2] / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = page.split("## Secure defaults\n", 1)[1].split("\n## ", 1)[0]
    settings = settings_for(tmp_path / "home", "gateway:\n  host: 0.0.0.0\n")
    with pytest.raises(ConfigError) as refused:
        await serve(settings, port=0)

    assert f"error: {refused.value.message}\n" in section
    assert f"`{DEFAULT_CSP}`" in " ".join(section.split())
    assert "`X-Content-Type-Options: nosniff`" in section
    assert "`gateway.max_body_bytes` (1 MiB)" in section
    assert Settings().gateway.max_body_bytes == 1_048_576


def test_doctor_warns_about_any_origin_and_fails_a_key_file_others_may_read(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "signing_keys.json"
    keys.write_text("{}", encoding="utf-8")
    keys.chmod(0o644)

    result = doctor(
        tmp_path,
        f"gateway:\n  cors_origins: ['*']\nsecurity:\n  tokens:\n    signing_keys_file: {keys}\n",
    )

    out = " ".join(result.output.split())
    assert "! gateway cors: gateway.cors_origins has *" in out
    assert f"✗ key files: {keys} may be read by others than its owner (mode 0644)" in out
    assert f"chmod 600 {keys}" in out
    keys.chmod(0o600)
    kept = doctor(tmp_path, f"security:\n  tokens:\n    signing_keys_file: {keys}\n")
    assert "key files" not in kept.output
