"""One tool-calling agent run in each framework, against a bare-HTTP floor and the `openai` SDK.

The task: the user asks "What is 2+3? Use the add tool" with one tool, ``add(a: int, b: int)``.
A zero-latency fake OpenAI-compatible server (raw asyncio HTTP/1.1 in a subprocess on
127.0.0.1) answers ``POST /v1/chat/completions`` without streaming: a request with no ``tool``
message gets an assistant message calling ``add`` with ``{"a":2,"b":3}``; a request holding the
tool result ``5`` gets the final text "2 + 3 = 5." (both with usage). So one run is two model
calls and one tool call, and the figures are each framework's own cost around them.

Rows: a hand-written floor (asyncio streams + orjson, keep-alive), the bare ``AsyncOpenAI``
loop, Agno, the OpenAI Agents SDK, Pydantic AI, LangGraph, and PromptLine when
``bench/agent_task_promptline.py`` exists. The frameworks live in their own environment,
never in the project's dependencies:

    make bench-agents                        # builds .venv-bench, then runs this script
    .venv-bench/bin/python bench/bench_agents.py [--quick] [--no-callgrind]

Run with a Python that lacks the frameworks, the script re-executes itself under
``.venv-bench`` when that exists, and otherwise runs the floor, SDK and PromptLine rows.

``--before REV`` runs ``bench_agent_loop.py`` instead: PromptLine's rows only, that revision
against this tree (instructions per run, peak RSS, where the instructions go).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import inspect
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

import callgrind  # beside this script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
PROMPTLINE_TASK = HERE / "agent_task_promptline.py"

MODEL = "gpt-4o-mini"
PROMPT = "What is 2+3? Use the add tool"
FINAL = "2 + 3 = 5."
PATH = "/v1/chat/completions"

# Telemetry and tracing off everywhere; only the fake server on 127.0.0.1 is ever contacted.
QUIET_ENV = {
    "AGNO_TELEMETRY": "false",
    "OPENAI_AGENTS_DISABLE_TRACING": "1",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "OPENAI_API_KEY": "bench-dummy-key",
    "NO_PROXY": "127.0.0.1,localhost",
}


@dataclass(frozen=True)
class Budget:
    warmup: int = 20  # runs per row before anything is measured
    seq: int = 200  # sequential rounds (each round: one run of every row)
    seq_seconds: float = 120.0  # the sequential phase stops early past this
    concurrent: int = 200  # runs per burst
    conc_rounds: int = 3  # bursts per row, after one unmeasured burst
    burst_timeout: float = 60.0
    imports: int = 5  # fresh interpreters per row
    rss_runs: int = 1000
    callgrind: tuple[int, int] = (5, 25)


QUICK = Budget(
    warmup=5,
    seq=50,
    seq_seconds=30.0,
    conc_rounds=2,
    imports=3,
    rss_runs=300,
    callgrind=(2, 7),
)


# --- the task ------------------------------------------------------------------------------------

TOOL_CALLS = [0]


def add(a: int, b: int) -> int:
    """Add two integers and return the sum."""
    TOOL_CALLS[0] += 1
    return a + b


TOOL_SCHEMA = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers and return the sum.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}


# --- the fake OpenAI-compatible server (runs in its own process) ---------------------------------

USAGE_1 = {"prompt_tokens": 61, "completion_tokens": 18, "total_tokens": 79}
USAGE_2 = {"prompt_tokens": 88, "completion_tokens": 8, "total_tokens": 96}


def _completion(message: dict[str, Any], finish: str, usage: dict[str, int]) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": MODEL,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            ],
            "usage": usage,
            "system_fingerprint": "fp_bench",
        }
    )


TOOL_CALL_BODY = _completion(
    {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "call_add_1",
                "type": "function",
                "function": {"name": "add", "arguments": '{"a":2,"b":3}'},
            }
        ],
    },
    "tool_calls",
    USAGE_1,
)
FINAL_BODY = _completion({"role": "assistant", "content": FINAL, "refusal": None}, "stop", USAGE_2)


def _response(status: str, body: bytes, ctype: bytes = b"application/json") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        status.encode(),
        ctype,
        len(body),
        body,
    )


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


def answer(body: bytes, stats: dict[str, int]) -> bytes:
    """The reply to one chat-completions request body."""
    try:
        doc = orjson.loads(body)
        messages = doc["messages"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return _response("400 Bad Request", b'{"error":{"message":"bad request body"}}')
    if doc.get("stream"):
        return _response(
            "400 Bad Request", b'{"error":{"message":"this fake server does not stream"}}'
        )
    stats["calls"] += 1
    results = [_text(m.get("content")) for m in messages if m.get("role") == "tool"]
    if not results:
        return _response("200 OK", TOOL_CALL_BODY)
    stats["tool_results"] += 1
    if results[-1].strip() == "5":
        return _response("200 OK", FINAL_BODY)
    # A wrong tool result must fail the run's check, not pass silently.
    wrong = {"role": "assistant", "content": f"tool said {results[-1]!r}"}
    return _response("200 OK", _completion(wrong, "stop", USAGE_2))


class FakeOpenAI(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, Content-Length or chunked request bodies."""

    stats = {"calls": 0, "tool_results": 0}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            start = end + 4
            match = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
            if match:
                stop = start + int(match.group(1))
                if len(self.buf) < stop:
                    return
                body, rest = self.buf[start:stop], self.buf[stop:]
            elif b"\r\ntransfer-encoding: chunked" in head:
                parsed = _dechunk(self.buf, start)
                if parsed is None:
                    return
                body, rest = parsed
            else:
                body, rest = b"", self.buf[start:]
            self.buf = rest
            line = head.split(b"\r\n", 1)[0]
            if line.startswith(b"post " + PATH.encode()):
                reply = answer(body, self.stats)
            elif line.startswith(b"get /stats"):
                reply = _response("200 OK", orjson.dumps(self.stats))
            else:
                reply = _response("404 Not Found", b'{"error":{"message":"not found"}}')
            self.transport.write(reply)
            if b"\r\nconnection: close" in head:
                self.transport.close()
                return


def _dechunk(buf: bytes, pos: int) -> tuple[bytes, bytes] | None:
    parts = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(buf[pos:eol].split(b";")[0], 16)
        if len(buf) < eol + 2 + size + 2:
            return None
        if size == 0:
            trailer = buf.find(b"\r\n\r\n", eol)  # chunked ends with an empty line
            if trailer < 0:
                return None
            return b"".join(parts), buf[trailer + 4 :]
        parts.append(buf[eol + 2 : eol + 2 + size])
        pos = eol + 2 + size + 2


def serve(fd: int) -> None:
    """Answer on the already listening socket ``fd`` until killed."""

    async def main() -> None:
        sock = socket.socket(fileno=fd)  # keeps AF_INET, so asyncio turns Nagle off
        server = await asyncio.get_running_loop().create_server(FakeOpenAI, sock=sock)
        await server.serve_forever()

    asyncio.run(main())


class Server:
    """The server subprocess; the socket listens before the process starts, so no polling."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port: int = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        fd = self.sock.fileno()
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(fd)], pass_fds=[fd])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.sock.close()


async def server_stats(base_url: str) -> tuple[int, int]:
    """(chat completions answered, of which carried a tool result) so far."""
    host, port = base_url.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /stats HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    stats = orjson.loads(raw.split(b"\r\n\r\n", 1)[1])
    return int(stats["calls"]), int(stats["tool_results"])


# --- the rows: each builds (run_once, aclose) for a base_url -------------------------------------

Run = Callable[[], Awaitable[str]]
Close = Callable[[], Awaitable[None]]
Runner = tuple[Run, Close]


class _Floor:
    """Two HTTP/1.1 round trips by hand over asyncio streams, orjson, a keep-alive pool."""

    def __init__(self, base_url: str) -> None:
        hostport, _, prefix = base_url.split("//", 1)[1].partition("/")
        host, port = hostport.split(":")
        self.host, self.port = host, int(port)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.head = (
            f"POST /{prefix}/chat/completions HTTP/1.1\r\nHost: {hostport}\r\n"
            "Authorization: Bearer bench-dummy-key\r\nContent-Type: application/json\r\n"
        ).encode()

    async def post(self, payload: dict[str, Any]) -> Any:
        conn = self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
        reader, writer = conn
        body = orjson.dumps(payload)
        writer.write(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            writer.close()
            raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
        match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        assert match, "the fake server always sends Content-Length"
        doc = orjson.loads(await reader.readexactly(int(match.group(1))))
        self.idle.append(conn)
        return doc

    async def run(self) -> str:
        messages: list[dict[str, Any]] = [{"role": "user", "content": PROMPT}]
        tools = [TOOL_SCHEMA]
        doc = await self.post({"model": MODEL, "messages": messages, "tools": tools})
        message = doc["choices"][0]["message"]
        messages.append(message)
        for call in message.get("tool_calls") or ():
            args = orjson.loads(call["function"]["arguments"])
            result = add(**args)
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": str(result)})
        doc = await self.post({"model": MODEL, "messages": messages, "tools": tools})
        return str(doc["choices"][0]["message"]["content"])

    async def aclose(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def make_floor(base_url: str) -> Runner:
    floor = _Floor(base_url)
    return floor.run, floor.aclose


async def make_openai_sdk(base_url: str) -> Runner:
    import json

    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench-dummy-key", max_retries=0)

    async def run() -> str:
        messages: list[Any] = [{"role": "user", "content": PROMPT}]
        r = await client.chat.completions.create(
            model=MODEL,
            messages=messages,
            tools=[TOOL_SCHEMA],  # type: ignore[list-item]
        )
        message = r.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls or ():
            args = json.loads(call.function.arguments)  # type: ignore[union-attr]
            messages.append({"role": "tool", "tool_call_id": call.id, "content": str(add(**args))})
        r = await client.chat.completions.create(
            model=MODEL,
            messages=messages,
            tools=[TOOL_SCHEMA],  # type: ignore[list-item]
        )
        return r.choices[0].message.content or ""

    return run, client.close


async def make_agno(base_url: str) -> Runner:
    from agno.agent import Agent
    from agno.models.openai import OpenAIChat

    model = OpenAIChat(id=MODEL, base_url=base_url, api_key="bench-dummy-key", max_retries=0)
    agent = Agent(model=model, tools=[add], telemetry=False)

    async def run() -> str:
        return str((await agent.arun(PROMPT)).content)

    async def aclose() -> None:
        if model.async_client is not None:
            await model.async_client.close()

    return run, aclose


async def make_openai_agents(base_url: str) -> Runner:
    import openai
    from agents import (
        Agent,
        OpenAIChatCompletionsModel,
        RunConfig,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench-dummy-key", max_retries=0)
    model = OpenAIChatCompletionsModel(model=MODEL, openai_client=client)
    agent = Agent(name="bench", model=model, tools=[function_tool(add)])
    config = RunConfig(tracing_disabled=True)

    async def run() -> str:
        return str((await Runner.run(agent, PROMPT, run_config=config)).final_output)

    return run, client.close


async def make_pydantic_ai(base_url: str) -> Runner:
    import openai
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench-dummy-key", max_retries=0)
    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client))
    agent = Agent(model, tools=[add])

    async def run() -> str:
        return str((await agent.run(PROMPT)).output)

    return run, client.close


async def make_langgraph(base_url: str) -> Runner:
    from langchain_openai import ChatOpenAI
    from langgraph.prebuilt import create_react_agent

    llm = ChatOpenAI(
        model=MODEL,
        base_url=base_url,
        api_key="bench-dummy-key",  # type: ignore[arg-type]
        max_retries=0,
        use_responses_api=False,
    )
    with warnings.catch_warnings():  # create_react_agent is deprecated for langchain's own
        warnings.simplefilter("ignore")
        graph = create_react_agent(llm, [add])

    async def run() -> str:
        out = await graph.ainvoke({"messages": [{"role": "user", "content": PROMPT}]})
        return str(out["messages"][-1].content)

    async def aclose() -> None:
        await llm.root_async_client.close()  # type: ignore[union-attr]

    return run, aclose


# --- PromptLine: pluggable ------------------------------------------------------------------------
# ``bench/agent_task_promptline.py`` (written separately) provides
#     async def make_runner(base_url: str, *, store: str) -> tuple[run_once, aclose]
# with ``store`` "memory" or "sqlite"; ``run_promptline_task`` is accepted as the same function
# under another name. Its import time is that of the module's top-level imports.


def _promptline_factory() -> Callable[..., Awaitable[Runner]] | None:
    if not PROMPTLINE_TASK.exists():
        return None
    sys.path.insert(0, str(HERE))
    import agent_task_promptline as task  # type: ignore[import-not-found]

    return getattr(task, "make_runner", None) or task.run_promptline_task  # type: ignore[no-any-return]


async def _make_promptline(base_url: str, store: str) -> Runner:
    factory = _promptline_factory()
    assert factory is not None
    # The module may take the tool's function, so that this script counts the tool calls.
    extra = {"add": add} if "add" in inspect.signature(factory).parameters else {}
    return await factory(base_url, store=store, **extra)  # type: ignore[no-any-return]


async def make_promptline_memory(base_url: str) -> Runner:
    return await _make_promptline(base_url, "memory")


async def make_promptline_sqlite(base_url: str) -> Runner:
    return await _make_promptline(base_url, "sqlite")


@dataclass(frozen=True)
class Row:
    name: str
    make: Callable[[str], Awaitable[Runner]]
    modules: tuple[str, ...]  # what must be importable for the row to run
    imports: str  # what ``python -c`` imports for the import-time column


_PL_IMPORT = f"import sys; sys.path.insert(0, {str(HERE)!r}); import agent_task_promptline"
ROWS = {
    "floor": Row("floor (http + orjson)", make_floor, ("orjson",), "import asyncio, orjson, json"),
    "openai": Row("openai SDK by hand", make_openai_sdk, ("openai",), "import openai"),
    "agno": Row(
        "Agno",
        make_agno,
        ("agno",),
        "from agno.agent import Agent; from agno.models.openai import OpenAIChat",
    ),
    "openai-agents": Row(
        "OpenAI Agents SDK",
        make_openai_agents,
        ("agents",),
        "from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool",
    ),
    "pydantic-ai": Row(
        "Pydantic AI",
        make_pydantic_ai,
        ("pydantic_ai",),
        "from pydantic_ai import Agent; from pydantic_ai.models.openai import OpenAIChatModel;"
        " from pydantic_ai.providers.openai import OpenAIProvider",
    ),
    "langgraph": Row(
        "LangGraph",
        make_langgraph,
        ("langgraph", "langchain_openai"),
        "from langgraph.prebuilt import create_react_agent;"
        " from langchain_openai import ChatOpenAI",
    ),
    "promptline-memory": Row(
        "PromptLine (memory store)", make_promptline_memory, ("promptline",), _PL_IMPORT
    ),
    "promptline-sqlite": Row(
        "PromptLine (sqlite store)", make_promptline_sqlite, ("promptline",), _PL_IMPORT
    ),
}
FRAMEWORK_MODULES = ("agno", "agents", "pydantic_ai", "langgraph", "langchain_openai")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available_rows() -> tuple[dict[str, Row], list[str]]:
    rows, notes = {}, []
    for key, row in ROWS.items():
        if key.startswith("promptline") and not PROMPTLINE_TASK.exists():
            continue
        missing = [m for m in row.modules if not _importable(m)]
        if missing:
            notes.append(f"{row.name}: skipped, {', '.join(missing)} not importable")
        else:
            rows[key] = row
    if not PROMPTLINE_TASK.exists():
        notes.append("PromptLine rows: pending, bench/agent_task_promptline.py does not exist yet")
    return rows, notes


# --- measurements ---------------------------------------------------------------------------------


async def _checked(run: Run) -> None:
    text = await run()
    if text.strip() != FINAL:
        raise AssertionError(f"final text {text!r}, expected {FINAL!r}")


async def _ready(row: Row, base_url: str, warmup: int) -> Runner:
    """Set ``row`` up and warm it, checking each run: two model calls, one tool result."""
    run, aclose = await row.make(base_url)
    try:
        (calls, results), tools = await server_stats(base_url), TOOL_CALLS[0]
        for _ in range(warmup):
            await _checked(run)
        (calls2, results2), tools2 = await server_stats(base_url), TOOL_CALLS[0]
        got = (calls2 - calls, results2 - results, tools2 - tools)
        want = (2 * warmup, warmup, warmup)
        if got != want:
            raise AssertionError(
                f"(model calls, tool results sent, add() calls) {got}, expected {want}"
            )
    except BaseException:
        await aclose()
        raise
    return run, aclose


async def session(
    rows: dict[str, Row], base_url: str, budget: Budget, failed: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Sequential and concurrent runs of every row in one event loop, interleaved by round.
    A row other than the floor that fails its set-up or warm-up is dropped into ``failed``."""
    runners: dict[str, Runner] = {}
    out: dict[str, dict[str, Any]] = {}
    try:
        for key, row in rows.items():
            try:
                runners[key] = await asyncio.wait_for(_ready(row, base_url, budget.warmup), 120)
            except Exception as exc:
                if key == "floor":
                    raise
                failed[key] = f"{type(exc).__name__}: {exc}"[:200]
        out = {key: {} for key in runners}
        keys = list(runners)
        seq: dict[str, list[float]] = {key: [] for key in keys}
        deadline = time.perf_counter() + budget.seq_seconds
        for i in range(budget.seq):
            if time.perf_counter() > deadline:
                break
            for key in keys[i % len(keys) :] + keys[: i % len(keys)]:  # rotate who goes first
                t0 = time.perf_counter()
                await _checked(runners[key][0])
                seq[key].append(time.perf_counter() - t0)
        for key, times in seq.items():
            times.sort()
            out[key]["p50"] = statistics.median(times) * 1e3
            out[key]["p95"] = times[min(len(times) - 1, int(len(times) * 0.95))] * 1e3
            out[key]["seq_n"] = len(times)

        async def burst(run: Run) -> float:
            t0 = time.perf_counter()
            jobs = asyncio.gather(*(_checked(run) for _ in range(budget.concurrent)))
            await asyncio.wait_for(jobs, budget.burst_timeout)
            return time.perf_counter() - t0

        conc: dict[str, list[float]] = {key: [] for key in keys}
        for key in keys:  # one unmeasured burst each: pools grow, caches fill
            await burst(runners[key][0])
        for i in range(budget.conc_rounds):
            for key in keys[i % len(keys) :] + keys[: i % len(keys)]:
                conc[key].append(budget.concurrent / await burst(runners[key][0]))
        for key, rates in conc.items():
            out[key]["rate"] = statistics.median(rates)
    finally:
        for _, aclose in runners.values():
            with contextlib.suppress(Exception):
                await aclose()
    return out


def import_times(rows: dict[str, Row], runs: int) -> dict[str, float]:
    """Median wall time of ``python -c "<imports>"`` per row, fresh interpreters, interleaved."""
    snippets = {"python -c pass": "pass"} | {key: row.imports for key, row in rows.items()}
    times: dict[str, list[float]] = {key: [] for key in snippets}
    for _ in range(runs):
        for key, snippet in snippets.items():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", snippet], check=True, timeout=120)
            times[key].append(time.perf_counter() - t0)
    return {key: statistics.median(t) * 1e3 for key, t in times.items()}


def rss_child(key: str, n: int, base_url: str) -> None:
    """In a fresh process: set up ``key``, do ``n`` sequential runs, print peak RSS in KiB."""

    async def go() -> None:
        run, aclose = await ROWS[key].make(base_url)
        deadline = time.perf_counter() + 300
        for _ in range(n):
            await _checked(run)
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{key}: {n} runs took over 300 s")
        await aclose()

    asyncio.run(go())
    print(peak_rss_kib())


def peak_rss_kib() -> int:
    """This process's peak RSS. Linux's ru_maxrss also counts the parent that forked it (the
    bench process, frameworks loaded), so read the high-water mark of this image instead."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss(rows: dict[str, Row], n: int, base_url: str) -> dict[str, float]:
    out = {}
    for key in rows:
        try:
            proc = subprocess.run(
                [sys.executable, __file__, "--rss", key, str(n), base_url],
                check=True,
                capture_output=True,
                text=True,
                timeout=360,
            )
            out[key] = int(proc.stdout.split()[-1]) / 1024
        except (subprocess.SubprocessError, ValueError, IndexError) as exc:
            print(f"  {rows[key].name}: peak RSS failed: {_why(exc)}")
    return out


def _why(exc: Exception) -> str:
    if isinstance(exc, subprocess.CalledProcessError) and exc.stderr:
        tail = exc.stderr if isinstance(exc.stderr, str) else exc.stderr.decode(errors="replace")
        return tail.strip().splitlines()[-1][:200]
    return f"{type(exc).__name__}: {exc}"[:200]


def work(key: str, n: int, base_url: str) -> None:
    """Under callgrind: set up and warm ``key``, switch counting on, then do ``n`` runs."""

    async def go() -> None:
        run, aclose = await ROWS[key].make(base_url)
        for _ in range(3):
            await _checked(run)
        callgrind.start_counting()
        for _ in range(n):
            await _checked(run)
        await aclose()

    asyncio.run(go())


def instructions(key: str, n: int, base_url: str) -> int:
    return callgrind.count(__file__, ["--work", key, str(n), base_url], timeout=900)


def instructions_per_run(
    rows: dict[str, Row], ns: tuple[int, int], base_url: str
) -> dict[str, float]:
    """(I(N2) - I(N1)) / (N2 - N1) per row; two valgrind processes at a time."""
    n1, n2 = ns

    def count(job: tuple[str, int]) -> int | None:
        try:
            return instructions(job[0], job[1], base_url)
        except (subprocess.SubprocessError, AssertionError, OSError) as exc:
            print(f"  {rows[job[0]].name}: callgrind with {job[1]} runs failed: {_why(exc)}")
            return None

    jobs = [(key, n) for key in rows for n in ns]
    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = dict(zip(jobs, pool.map(count, jobs), strict=True))
    out = {}
    for key in rows:
        i1, i2 = counts[key, n1], counts[key, n2]
        if i1 is not None and i2 is not None:
            out[key] = (i2 - i1) / (n2 - n1)
    return out


# --- the report -----------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: dict[str, Row], cols: dict[str, dict[str, float]]) -> None:
    floor = {name: col.get("floor") for name, col in cols.items()}

    def ratio(name: str, key: str) -> float | None:
        """How many times the floor's cost: for runs/s, the floor's rate over the row's."""
        value, base = cols[name].get(key), floor[name]
        if value is None or not base:
            return None
        return base / value if name == "rate" else value / base

    header = (
        f"{'row':<27}{'p50 ms':>8}{'p95 ms':>8}{'x':>6}{'runs/s':>8}{'x':>6}"
        f"{'import ms':>10}{'x':>6}{'RSS MB':>8}{'x':>6}{'instr/run':>12}{'x':>7}"
    )
    print(header)
    print("-" * len(header))
    for key, row in rows.items():
        c = {name: col.get(key) for name, col in cols.items()}
        print(
            f"{row.name:<27}{_fmt(c['p50'], '.2f'):>8}{_fmt(c['p95'], '.2f'):>8}"
            f"{_fmt(ratio('p50', key), '.1f'):>6}{_fmt(c['rate'], ',.0f'):>8}"
            f"{_fmt(ratio('rate', key), '.0f'):>6}{_fmt(c['import'], ',.0f'):>10}"
            f"{_fmt(ratio('import', key), '.1f'):>6}{_fmt(c['rss'], ',.0f'):>8}"
            f"{_fmt(ratio('rss', key), '.1f'):>6}{_fmt(c['instr'], ',.0f'):>12}"
            f"{_fmt(ratio('instr', key), '.1f'):>7}"
        )


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for dist in ("openai", "agno", "openai-agents", "pydantic-ai-slim", "langgraph"):
        with contextlib.suppress(PackageNotFoundError):
            found.append(f"{dist} {version(dist)}")
    return ", ".join(found)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, for a smoke test")
    parser.add_argument("--no-callgrind", action="store_true", help="skip instruction counts")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else Budget()

    rows, notes = available_rows()
    if any(not _importable(m) for m in FRAMEWORK_MODULES):
        print(
            "agent frameworks are not installed here: run `make bench-agents` for every row"
            " (running the rows that can run)"
        )
    for note in notes:
        print(note)
    print(f"Python {sys.version.split()[0]}; {_versions()}")
    print(
        f"non-streaming chat completions; {budget.seq} sequential rounds after {budget.warmup}"
        f" warm-up runs; {budget.concurrent} concurrent runs x {budget.conc_rounds} bursts",
        flush=True,
    )

    server = Server()
    started = time.perf_counter()
    try:
        cols: dict[str, dict[str, float]] = {
            name: {} for name in ("p50", "p95", "rate", "import", "rss", "instr")
        }
        failed: dict[str, str] = {}
        timeout = budget.seq_seconds + 60 * budget.conc_rounds + 300
        done = asyncio.run(
            asyncio.wait_for(session(rows, server.base_url, budget, failed), timeout)
        )
        for key, result in done.items():
            for name in ("p50", "p95", "rate"):
                cols[name][key] = result[name]
        for key, why in failed.items():
            print(f"  {rows[key].name}: failed, left out: {why}")
            del rows[key]
        print(f"  runs done ({time.perf_counter() - started:.0f} s)", flush=True)
        imports = import_times(rows, budget.imports)
        cols["import"] = {key: imports[key] for key in rows}
        print(f"  imports done ({time.perf_counter() - started:.0f} s)", flush=True)
        cols["rss"] = peak_rss(rows, budget.rss_runs, server.base_url)
        print(f"  peak RSS done ({time.perf_counter() - started:.0f} s)", flush=True)
        n1, n2 = budget.callgrind
        if args.no_callgrind:
            instr_note = "instructions: skipped (--no-callgrind)"
        elif shutil.which("valgrind") is None:
            instr_note = "instructions: valgrind not found (apt-get install valgrind)"
        else:
            cols["instr"] = instructions_per_run(rows, budget.callgrind, server.base_url)
            instr_note = f"instructions: callgrind, (I({n2}) - I({n1})) / {n2 - n1} runs"
    finally:
        server.stop()

    print()
    print_table(rows, cols)
    print(
        f"\np50/p95: one sequential run, ms. runs/s: {budget.concurrent} concurrent runs, median"
        f" of {budget.conc_rounds} bursts (x = the floor's rate over the row's). import: python -c"
        f" of the row's imports, median of {budget.imports} (python -c pass:"
        f" {imports['python -c pass']:.0f} ms). RSS: peak of a fresh process doing"
        f" {budget.rss_runs} runs. {instr_note}. Elapsed {time.perf_counter() - started:.0f} s."
    )


def _reexec_under_bench_venv() -> None:
    """Run under .venv-bench when this Python lacks the frameworks and that venv exists."""
    if all(_importable(m) for m in FRAMEWORK_MODULES) or not BENCH_PYTHON.exists():
        return
    if Path(sys.prefix).resolve() == BENCH_PYTHON.parent.parent.resolve():
        return
    print(f"re-running under {BENCH_PYTHON.relative_to(ROOT)}", flush=True)
    os.execv(BENCH_PYTHON, [str(BENCH_PYTHON), __file__, *sys.argv[1:]])


if __name__ == "__main__":
    os.environ.update(QUIET_ENV)
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    elif len(sys.argv) == 5 and sys.argv[1] == "--work":
        work(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) == 5 and sys.argv[1] == "--rss":
        rss_child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif "--before" in sys.argv:
        # PromptLine's rows only, before and after (needs no .venv-bench).
        import bench_agent_loop

        raise SystemExit(bench_agent_loop.main(sys.argv[1:]))
    else:
        _reexec_under_bench_venv()
        main(sys.argv[1:])
