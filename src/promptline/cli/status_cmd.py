"""``promptline status``: whether a gateway runs and how it is (its process, health, readiness,
sessions, active runs, providers), on this machine or, with ``--url``, anywhere.

Locally the URL comes from the running gateway's ``gateway.json`` (else the config) and the
key from ``--key``/``PROMPTLINE_API_KEY``, else ``<home>/admin.key``. That file is never sent
to a ``--url`` given explicitly: a remote gateway gets only a key given for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from promptline.cli.runtime import CliOptions, console, friendly_errors, load_settings, write_json

if TYPE_CHECKING:
    import httpx

__all__ = ["EXIT_NOT_READY", "EXIT_NOT_RUNNING", "Count", "StatusReport", "status"]

EXIT_NOT_READY = 1
EXIT_NOT_RUNNING = 3  # as `systemctl status` says of a stopped unit
REQUEST_TIMEOUT = 5.0
PAGE_LIMIT = 1000
MAX_PAGES = 20
REFUSED = "the API key was refused"


@dataclass
class Count:
    """A number the gateway was asked for, or None with why it is unknown."""

    value: int | None = None
    unknown_because: str | None = None
    at_least: bool = False

    def text(self) -> str:
        if self.value is None:
            return f"unknown ({self.unknown_because})"
        return f"{self.value}+" if self.at_least else str(self.value)


@dataclass
class StatusReport:
    """What `status` found."""

    url: str
    local: bool
    pid: int | None = None
    started_at: str | None = None
    log_file: str | None = None
    running: bool = False
    version: str | None = None
    ready: bool | None = None
    checks: dict[str, Any] = field(default_factory=dict)
    key_source: str | None = None
    sessions: Count = field(default_factory=Count)
    active_runs: Count = field(default_factory=Count)
    providers: list[str] | None = None
    providers_unknown_because: str | None = None
    hint: str | None = None

    @property
    def exit_code(self) -> int:
        if not self.running:
            return EXIT_NOT_READY if self.pid is not None else EXIT_NOT_RUNNING
        return 0 if self.ready else EXIT_NOT_READY


def status(options: CliOptions, *, url: str | None, key: str | None, as_json: bool) -> None:
    """Print the report; exit 0 when ready, 1 when it answers but is not ready (or its process
    lives but does not answer), 3 when no gateway runs there."""
    with friendly_errors():
        report = gather(options, url=url, key=key)
    if as_json:
        data = asdict(report)
        data["exit_code"] = report.exit_code
        write_json(data)
    else:
        _print(report)
    raise SystemExit(report.exit_code)


def gather(options: CliOptions, *, url: str | None, key: str | None) -> StatusReport:
    """Ask the gateway (and, locally, the daemon's files) how it is."""
    import httpx

    from promptline.cli.daemon import gateway_files
    from promptline.cli.daemon_files import health_url

    files = gateway_files()
    report = StatusReport(url=(url or "").rstrip("/"), local=url is None)
    if key:
        report.key_source = "--key or PROMPTLINE_API_KEY"
    if report.local:
        report.pid = files.running_pid()
        state = files.read_state() if report.pid is not None else None
        if state and state.get("url"):
            report.url = str(state["url"])
            report.started_at = state.get("started_at")
            report.log_file = str(files.log_file)
        else:
            gw = load_settings(options).gateway
            report.url = f"http://{_url_host(gw.host)}:{gw.port}"
        if not key:
            key = files.read_admin_key()
            if key:
                report.key_source = str(files.admin_key_file)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(
        base_url=health_url(report.url), headers=headers, timeout=REQUEST_TIMEOUT
    ) as client:
        _health(client, report)
        if report.running:
            _details(client, report, has_key=bool(key))
    return report


def _url_host(host: str) -> str:
    if host in ("127.0.0.1", "::1"):
        return "localhost"  # as `promptline serve` shows it
    return f"[{host}]" if ":" in host else host


def _health(client: httpx.Client, report: StatusReport) -> None:
    import httpx

    try:
        health = client.get("/healthz")
    except httpx.HTTPError:
        return
    if health.status_code != 200:
        return
    report.running = True
    report.version = _json(health).get("version")
    try:
        ready = client.get("/readyz")
    except httpx.HTTPError as exc:
        report.ready = False
        report.checks = {"readyz": {"ok": False, "error": str(exc)}}
        return
    body = _json(ready)
    report.ready = ready.status_code == 200
    report.checks = body.get("checks", {}) if isinstance(body.get("checks"), dict) else {}


def _details(client: httpx.Client, report: StatusReport, *, has_key: bool) -> None:
    from promptline.config.home import make_key_hint

    if not has_key:
        why = "no API key: pass --key or set PROMPTLINE_API_KEY"
        report.sessions = Count(unknown_because=why)
        report.active_runs = Count(unknown_because=why)
        report.providers_unknown_because = why
        report.hint = make_key_hint()
        return
    report.sessions = _count(client, "/v1/sessions", {})
    report.active_runs = _count(client, "/v1/runs", {"active": "true"})
    report.providers, report.providers_unknown_because = _providers(client)
    if REFUSED in (report.sessions.unknown_because, report.providers_unknown_because):
        report.hint = make_key_hint()


def _count(client: httpx.Client, path: str, params: dict[str, str]) -> Count:
    import httpx

    total = 0
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        query = {**params, "limit": str(PAGE_LIMIT)}
        if cursor:
            query["cursor"] = cursor
        try:
            response = client.get(path, params=query)
        except httpx.HTTPError as exc:
            return Count(unknown_because=f"{path}: {exc}")
        if response.status_code != 200:
            return Count(unknown_because=_why(response, path))
        items = _json(response).get("items")
        if not isinstance(items, list):
            return Count(unknown_because=f"{path} did not answer a page of items")
        total += len(items)
        cursor = _json(response).get("next_cursor")
        if not cursor:
            return Count(total)
    return Count(total, at_least=True)


def _providers(client: httpx.Client) -> tuple[list[str] | None, str | None]:
    import httpx

    path = "/v1/models/catalogue"
    try:
        response = client.get(path)
    except httpx.HTTPError as exc:
        return None, f"{path}: {exc}"
    if response.status_code != 200:
        return None, _why(response, path)
    names: list[str] = []
    for item in _json(response).get("items", []):
        if isinstance(item, dict) and item.get("configured"):
            name = str(item.get("id", "")).partition("/")[0]
            if name and name not in names:
                names.append(name)
    return names, None


def _why(response: httpx.Response, path: str) -> str:
    if response.status_code == 404:
        return f"this gateway has no {path}"
    if response.status_code == 401:
        return REFUSED
    error = _json(response).get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return f"{path} answered HTTP {response.status_code}" + (f": {message}" if message else "")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _print(report: StatusReport) -> None:
    out = console()

    def row(name: str, value: str) -> None:
        out.print(f"  {name:<12}{value}", markup=False, highlight=False)

    out.print(f"PromptLine gateway at {report.url}", markup=False, highlight=False)
    if report.local:
        if report.pid is None:
            row("process", "none started by `promptline start`")
        else:
            up = _uptime(report.started_at)
            row("process", f"pid {report.pid}" + (f", up {up}" if up else ""))
            if report.log_file:
                row("log", report.log_file)
    if not report.running:
        what = "not answering" if report.pid is not None else "not running"
        row("health", what)
        return
    row("health", f"ok (version {report.version or '?'})")
    checks = ", ".join(_check(name, check) for name, check in report.checks.items())
    row("readiness", ("ready" if report.ready else "NOT READY") + (f": {checks}" if checks else ""))
    row("sessions", report.sessions.text())
    row("active runs", report.active_runs.text())
    if report.providers is None:
        row("providers", f"unknown ({report.providers_unknown_because})")
    else:
        row("providers", ", ".join(report.providers) or "none configured")
    if report.key_source:
        row("key", f"from {report.key_source}")
    if report.hint:
        row("hint", report.hint)


def _check(name: str, check: Any) -> str:
    if not isinstance(check, dict):
        return name
    if check.get("ok"):
        return f"{name} ok"
    return f"{name} FAILED ({check.get('error', 'no detail')})"


def _uptime(started_at: str | None) -> str | None:
    if not started_at:
        return None
    try:
        began = datetime.fromisoformat(started_at)
    except ValueError:
        return None
    seconds = int((datetime.now(UTC) - began).total_seconds())
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"
