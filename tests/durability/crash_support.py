"""The crash suite's pieces: a model server whose answers follow from the conversation (so a
run resumed in another process gets the same ones), the real gateway as a subprocess that a
test kills, REST and WebSocket clients that keep a ledger of what was acknowledged, and the
checks that nothing acknowledged was lost or answered twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from websockets.asyncio.client import ClientConnection, connect

from fakes.serving import serve_app
from promptline.app import build_app
from promptline.config import load_settings
from promptline.core.events import Event
from promptline.events.protocols import EventFilter
from promptline.security.auth import KeyStore

WAIT = 60.0
"""Longest wait for the gateway to get somewhere (a bound, not a pace)."""

TOOL = "#tool"
"""A message with this runs ``shell_execute`` (not idempotent) before its answer."""
READ = "#read"
"""A message with this runs ``file_read`` (read-only, so idempotent) before its answer."""
ASK = "#ask"
"""A message with this asks to write a file (``file_write`` is ``ask``): it waits for a person."""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class EchoModel:
    """An OpenAI-compatible model that answers ``answer: <message>`` to a message, first
    calling a tool for the tagged ones (then ``done: <message>``). A test may hold every call
    (`hold` / `release`) to kill the gateway while calls are in flight; all methods are
    safe to call from the test's thread while the server runs in its own."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self.calls = 0
        self.waiting = 0
        self.app = Starlette(
            routes=[Route("/v1/chat/completions", self._complete, methods=["POST"])]
        )

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def _complete(self, request: Request) -> Response:
        body = await request.json()
        with self._lock:
            self.calls += 1
            self.waiting += 1
        try:
            if not self._open.is_set():
                await asyncio.to_thread(self._open.wait)
        finally:
            with self._lock:
                self.waiting -= 1
        messages = body["messages"]
        user = next(_text(m.get("content")) for m in reversed(messages) if m["role"] == "user")
        message: dict[str, Any] = {"role": "assistant", "content": f"answer: {user}"}
        finish = "stop"
        if messages[-1]["role"] == "tool":
            message["content"] = f"done: {user}"
        elif any(tag in user for tag in (TOOL, READ, ASK)):
            if TOOL in user:
                name, arguments = "shell_execute", {"command": "sleep 0.3; echo ran"}
            elif READ in user:
                name, arguments = "file_read", {"path": "notes.txt"}
            else:
                name = "file_write"
                arguments = {"path": f"{uuid.uuid4().hex}.txt", "content": user}
            call = {
                "id": f"call_{uuid.uuid4().hex[:12]}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )


@contextlib.contextmanager
def echo_model() -> Iterator[tuple[EchoModel, int]]:
    """An `EchoModel` served on 127.0.0.1 (its port) for the length of a test."""
    model = EchoModel()
    with serve_app(model.app, name="echo-model") as port:
        try:
            yield model, port
        finally:
            model.release()


CONFIG = """\
models:
  default: echo/echo
  providers:
    echo:
      type: openai
      base_url: "http://127.0.0.1:{model_port}/v1"
      api_key: test
      models: ["echo"]
      timeout_secs: 30
agent:
  default_mode: act
  stream_enabled: false
  use_chain_of_thought: false
  shutdown_timeout_secs: {grace}
  workspace: "{home}/workspace"
tools:
  file_write: ask
  shell_execute: allow
  file_read: allow
gateway:
  rate_limit_per_minute: 100000
{state}"""


def write_config(home: Path, model_port: int, database: str | None, *, grace: float = 2) -> Path:
    """A home whose gateway answers with the echo model, on SQLite (``database`` None) or
    the PostgreSQL database ``database``."""
    (home / "workspace").mkdir(parents=True, exist_ok=True)
    (home / "workspace" / "notes.txt").write_text("the notes\n", encoding="utf-8")
    state = ""
    if database is not None:
        state = f'state:\n  backend: postgres\n  postgres_url: "{database}"\n'
    config = home / "config.yaml"
    config.write_text(
        CONFIG.format(model_port=model_port, home=home, grace=grace, state=state),
        encoding="utf-8",
    )
    return config


async def make_key(home: Path) -> str:
    """An API key of user alice (tenant acme), made before the gateway first starts."""
    settings = load_settings(home / "config.yaml", environ={"PROMPTLINE_HOME": str(home)})
    async with build_app(settings) as app:
        _, key = await KeyStore(app.state, clock=app.clock).create("alice", tenant_id="acme")
    return key


class Gateway:
    """`promptline serve` in a subprocess on a fixed port, started and killed by the test."""

    def __init__(self, home: Path) -> None:
        self.home = home
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.log = home / "serve.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {**os.environ, "PROMPTLINE_HOME": str(self.home)}
        self.starts += 1
        with self.log.open("a", encoding="utf-8") as log:
            log.write(f"--- start {self.starts}\n")
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "promptline.cli.main",
                "serve",
                "--port",
                str(self.port),
                env=env,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + WAIT
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                assert self.process.returncode is None, self.log.read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                assert time.monotonic() < deadline, "the gateway did not get ready"
                await asyncio.sleep(0.05)

    async def stop(self, sig: signal.Signals = signal.SIGKILL) -> int:
        """Send ``sig`` and wait for the process to end; its exit code."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(sig)
        code = await asyncio.wait_for(self.process.wait(), WAIT)
        self.process = None
        return code

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@dataclass
class Sent:
    """A message a client sent: its idempotency key and session, and, once acknowledged,
    its run and the answer it must get."""

    key: str
    session_id: str
    text: str
    via: str
    run_id: str | None = None
    missed: int = 0
    """Sends that got no answer (the gateway died first); the client sent it again."""

    @property
    def acknowledged(self) -> bool:
        return self.run_id is not None

    @property
    def answer(self) -> str:
        tagged = any(tag in self.text for tag in (TOOL, READ, ASK))
        return f"{'done' if tagged else 'answer'}: {self.text}"


@dataclass
class Ledger:
    """Everything the clients sent, and the kill points the test went through."""

    sent: list[Sent] = field(default_factory=list)
    kills: list[str] = field(default_factory=list)

    @property
    def acknowledged(self) -> list[Sent]:
        return [s for s in self.sent if s.acknowledged]


class Clients:
    """alice's REST and WebSocket clients of one gateway; every send goes in the ledger."""

    def __init__(self, gateway: Gateway, key: str, ledger: Ledger) -> None:
        self.gateway = gateway
        self.key = key
        self.ledger = ledger
        self.headers = {"Authorization": f"Bearer {key}"}
        self.http = httpx.AsyncClient(base_url=gateway.url, headers=self.headers, timeout=WAIT)
        self._ws: ClientConnection | None = None
        self._ws_lock = asyncio.Lock()
        self._ids = 0

    async def aclose(self) -> None:
        await self.http.aclose()
        await self._drop_ws()

    async def _drop_ws(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
            self._ws = None

    async def new_session(self) -> str:
        answer = await self.http.post("/v1/sessions", json={"channel": "crash"})
        answer.raise_for_status()
        return str(answer.json()["id"])

    async def send(self, session_id: str, text: str, *, via: str = "rest") -> Sent:
        """Send ``text`` (REST or WebSocket) with a fresh idempotency key; the entry is
        acknowledged only when the gateway answered with a run id."""
        entry = Sent(uuid.uuid4().hex, session_id, text, via)
        self.ledger.sent.append(entry)
        await self.resend(entry)
        return entry

    async def resend(self, entry: Sent) -> str | None:
        """Send ``entry`` (again) with its key; the run id answered, None if no answer came
        (the gateway died first). A second answer must name the same run."""
        try:
            if entry.via == "ws":
                run_id = await self._send_ws(entry)
            else:
                answer = await self.http.post(
                    f"/v1/sessions/{entry.session_id}/messages",
                    json={"content": entry.text},
                    headers={"Idempotency-Key": entry.key},
                )
                assert answer.status_code == 202, answer.text
                run_id = str(answer.json()["run_id"])
        except (httpx.TransportError, OSError, ConnectionError, TimeoutError):
            entry.missed += 1
            return None
        except Exception as exc:  # the WebSocket library's own connection errors
            if type(exc).__module__.startswith("websockets"):
                await self._drop_ws()
                entry.missed += 1
                return None
            raise
        if entry.run_id is not None:
            assert run_id == entry.run_id, f"a retry of {entry.key} got another run"
        entry.run_id = run_id
        return run_id

    async def _send_ws(self, entry: Sent) -> str:
        async with self._ws_lock:
            if self._ws is None:
                url = f"ws://127.0.0.1:{self.gateway.port}/v1/ws"
                self._ws = await connect(url, additional_headers=self.headers)
            self._ids += 1
            request = {
                "jsonrpc": "2.0",
                "id": self._ids,
                "method": "session.send",
                "params": {
                    "session_id": entry.session_id,
                    "content": entry.text,
                    "client_msg_id": entry.key,
                },
            }
            await self._ws.send(json.dumps(request))
            while True:
                frame = json.loads(await asyncio.wait_for(self._ws.recv(), WAIT))
                if frame.get("id") == self._ids:
                    break
            assert "result" in frame, frame
            return str(frame["result"]["run_id"])

    async def approve_pending(self) -> int:
        """Approve every pending permission request; how many there were."""
        answer = await self.http.get("/v1/approvals")
        answer.raise_for_status()
        pending = answer.json()["items"]
        for request in pending:
            decided = await self.http.post(
                f"/v1/approvals/{request['request_id']}", json={"approve": True}
            )
            assert decided.status_code == 200, decided.text
        return len(pending)

    async def wait_ended(self, run_ids: list[str], *, approve: bool = False) -> None:
        """Until every run in ``run_ids`` has ended (approving what waits, with ``approve``)."""
        deadline = time.monotonic() + WAIT * 2
        waiting = list(run_ids)
        while waiting:
            assert time.monotonic() < deadline, f"runs never ended: {waiting[:5]}"
            if approve:
                await self.approve_pending()
            still = []
            for run_id in waiting:
                answer = await self.http.get(f"/v1/runs/{run_id}")
                assert answer.status_code == 200, answer.text
                if answer.json()["status"] in ("queued", "running", "waiting_approval"):
                    still.append(run_id)
            waiting = still
            if waiting:
                await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def clients(gateway: Gateway, key: str, ledger: Ledger) -> AsyncIterator[Clients]:
    made = Clients(gateway, key, ledger)
    try:
        yield made
    finally:
        await made.aclose()


async def wait_for_log(home: Path, wanted: EventFilter, count: int = 1) -> list[Event]:
    """Until the log holds ``count`` events matching ``wanted`` (read in this process, the
    way any other process sharing the database would)."""
    settings = load_settings(home / "config.yaml", environ={"PROMPTLINE_HOME": str(home)})
    deadline = time.monotonic() + WAIT
    async with build_app(settings, migrate=False) as app:
        while True:
            found = await app.events.read_all(wanted)
            if len(found) >= count:
                return found
            assert time.monotonic() < deadline, f"the log never held {count} of {wanted}"
            await asyncio.sleep(0.02)


async def check_ledger(home: Path, ledger: Ledger) -> dict[str, int]:
    """Nothing acknowledged was lost or answered twice; returns what was counted.

    Every acknowledged message has exactly one ``message_received`` and one run, which
    completed once with the answer the message asked for, and the message and its answer
    are once each in its session's history. A message sent but never acknowledged (the
    gateway died first) is there at most once, and if it is there, it was answered once.
    Every stream's seqs go 1, 2, 3... with no gap and no repeat.
    """
    settings = load_settings(home / "config.yaml", environ={"PROMPTLINE_HOME": str(home)})
    async with build_app(settings, migrate=False) as app:
        events = await app.events.read_all()
        by_stream: dict[str, list[int]] = {}
        for event in events:
            by_stream.setdefault(event.stream_name, []).append(event.seq)
        for stream, seqs in by_stream.items():
            assert seqs == list(range(1, len(seqs) + 1)), f"stream {stream} has a seq gap"
        received = Counter(
            (e.session_id, e.data.message.text) for e in events if e.type == "message_received"
        )
        queued = Counter(e.run_id for e in events if e.type == "run_queued")
        completed = {e.run_id: e for e in events if e.type == "run_completed"}
        endings = Counter(
            e.run_id
            for e in events
            if e.type in ("run_completed", "run_failed", "run_cancelled", "run_steered")
        )
        histories: dict[str, list[tuple[str, str]]] = {}
        for sid in {s.session_id for s in ledger.sent}:
            session = await app.sessions.get(sid, _admin())
            histories[sid] = [(m.role, m.text) for m in session.history]
        lost = twice = 0
        for sent in ledger.sent:
            history = histories[sent.session_id]
            asked = history.count(("user", sent.text))
            answered = history.count(("assistant", sent.answer))
            times = received[(sent.session_id, sent.text)]
            if not sent.acknowledged:
                assert times <= 1, sent
                assert asked <= 1, sent
                assert answered == asked, sent
                continue
            run = sent.run_id
            if times != 1 or run not in completed or asked != 1:
                lost += 1
            if queued[run] != 1 or endings[run] != 1 or answered != 1:
                twice += 1
            assert times == 1, f"{sent} was received {times} times"
            assert queued[run] == 1, f"{sent} has {queued[run]} runs queued"
            assert endings[run] == 1, f"{sent}'s run ended {endings[run]} times"
            assert run in completed, f"{sent}'s run did not complete"
            output = completed[run].data.output
            assert output is not None, sent
            assert output.text == sent.answer, (sent, output)
            assert asked == 1, f"{sent} is {asked} times in the history"
            assert answered == 1, f"{sent}'s answer is {answered} times in the history"
        return {
            "acknowledged": len(ledger.acknowledged),
            "acknowledged_on_a_retry": sum(1 for s in ledger.acknowledged if s.missed),
            "never_acknowledged": len(ledger.sent) - len(ledger.acknowledged),
            "lost": lost,
            "answered_twice": twice,
            "kill_points": len(ledger.kills),
        }


def _admin() -> Any:
    from promptline.sessions.models import Principal

    return Principal(user_id="crash-check", admin=True)
