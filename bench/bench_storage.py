"""What a conversation costs on disk: SQLite bytes per message as one session grows.

One session gets short chat messages one after another (each answered by the offline
``scripted/demo`` model before the next is sent), through the in-process intake
(``runtime.submit``, then ``runtime.wait``), in two setups:

- ``chat``: an agent without tools;
- ``assistant``: the default assistant with its default tools.

At each mark (the 10th, 100th, 1,000th, 10,000th message) the database is checkpointed
(``PRAGMA wal_checkpoint(TRUNCATE)``) and measured: the file's size, and the bytes of the
event bodies by type (plus the ``event_content`` table where there is one). A row shows
what the messages between the previous mark and this one added, per message, so a flat
column is a log whose growth does not depend on how long the conversation already is.

Each setup runs twice, in fresh homes and fresh processes: with ``--before`` (a git
revision, exported with ``git archive`` to a temporary folder) and with this tree; the two
alternate mark by mark (a worker process per tree, driven in lock step), so both see the
same load on the machine.

    python bench/bench_storage.py [--quick] [--before REV] [--setups chat,assistant]

``--quick`` stops at the 1,000th message; the full run goes to the 10,000th, the before tree
to the 1,000th only (``--before-upto``): it stores every prompt whole, so what a message adds
grows with the conversation (at 10,000 messages it would write gigabytes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

BEFORE = "8f94a7e"
"""The revision measured as "before": the last one that stored every prompt whole."""
MARKS = (10, 100, 1_000, 10_000)
QUICK_MARKS = (10, 100, 1_000)
TARGET = 5 * 1024
"""Bytes per message a short chat may add (the goal)."""

CONFIG = """\
models:
  default: scripted/demo
agent:
  default_mode: act
  stream_enabled: false
{agents}"""

CHAT_AGENT = """\
agents:
  chat:
    model: scripted/demo
    tools: []
"""

TEXTS = (
    "Can you remind me what we said about the budget?",
    "What time works for the call tomorrow?",
    "Thanks, and could you shorten that a little?",
    "Please list the three open questions again.",
    "OK. What should I send to Maria first?",
)


# --- the worker: one tree, one home, one session ----------------------------------------------


def _measure(home: Path) -> dict[str, Any]:
    path = home / "state.db"  # the home's database (events, sessions, state)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        by_type = {
            str(kind): [int(count), int(size)]
            for kind, count, size in conn.execute(
                "SELECT type, count(*), sum(length(body)) FROM events GROUP BY type"
            )
        }
        try:
            objects = {
                str(name): int(size)
                for name, size in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")
            }
        except sqlite3.Error:  # a SQLite built without the dbstat table
            objects = {}
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        if "event_content" in tables:
            row = conn.execute("SELECT count(*), coalesce(sum(length(body)), 0) FROM event_content")
            count, size = row.fetchone()
            by_type["(event_content)"] = [int(count), int(size)]
    finally:
        conn.close()
    wal = path.with_name(path.name + "-wal")
    return {
        "file": path.stat().st_size + (wal.stat().st_size if wal.exists() else 0),
        "used": (pages - free) * page_size,
        "by_type": by_type,
        "objects": objects,
    }


async def _work(setup: str, home: Path) -> None:
    """Read marks from stdin, one per line; answer each with a JSON line once the session has
    that many messages."""
    from promptline.app import build_app
    from promptline.config import load_settings
    from promptline.sessions.models import Principal

    config = home / "config.yaml"
    agents = CHAT_AGENT if setup == "chat" else ""
    config.write_text(CONFIG.format(agents=agents), encoding="utf-8")
    settings = load_settings(config, environ={"PROMPTLINE_HOME": str(home)})
    async with build_app(settings) as app:
        runtime = await app.start_runtime()
        principal = Principal(user_id="bench")
        session = (await app.sessions.create(principal, channel="bench")).id
        agent = "chat" if setup == "chat" else None
        sent = 0
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                break
            mark = int(line)
            while sent < mark:
                text = f"{TEXTS[sent % len(TEXTS)]} (#{sent + 1})"
                accepted = await runtime.submit(
                    text, session_id=session, principal=principal, agent=agent
                )
                await runtime.wait(accepted.run_id)
                sent += 1
            print(json.dumps({"mark": mark, **_measure(home)}), flush=True)


# --- the driver -------------------------------------------------------------------------------


class Worker:
    """One worker process (a tree's ``src`` on its path) answering marks."""

    def __init__(self, src: Path, setup: str) -> None:
        self.home = Path(tempfile.mkdtemp(prefix=f"bench-storage-{setup}-"))
        env = {**os.environ, "PYTHONPATH": str(src), "PROMPTLINE_HOME": str(self.home)}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--work", setup, "--home", str(self.home)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=self.home,
        )

    def measure(self, mark: int) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{mark}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker stopped (exit {self.process.wait()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        self.process.wait(timeout=120)


def _export(rev: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def _kb(value: float) -> str:
    return f"{value / 1024:,.1f}"


def _report(setup: str, marks: list[int], results: dict[str, list[dict[str, Any]]]) -> None:
    print(f"\n## {setup}: bytes added per message (KiB), between the previous mark and this one")
    print()
    print("| message | before: file | before: events | after: file | after: events |")
    print("|---:|---:|---:|---:|---:|")
    trees = list(results)
    for i, mark in enumerate(marks):
        cells = []
        for tree in trees:
            if i + 1 >= len(results[tree]):
                cells += ["-", "-"]
                continue
            now = results[tree][i + 1]
            was = results[tree][i]
            span = mark - (marks[i - 1] if i else 1)
            events_now = sum(size for _, size in now["by_type"].values())
            events_was = sum(size for _, size in was["by_type"].values())
            cells += [
                _kb((now["file"] - was["file"]) / span),
                _kb((events_now - events_was) / span),
            ]
        print(f"| {mark:,} | " + " | ".join(cells) + " |")
    print()
    print("llm_command records (average bytes of one):")
    for tree in trees:
        count, size = results[tree][-1]["by_type"].get("llm_command", [0, 0])
        print(f"  {tree}: {size / max(count, 1):,.0f} bytes over {count:,} commands")
    print()
    reached = {tree: results[tree][-1]["mark"] for tree in trees}
    print("Where the bytes go at the last mark (event bodies by type, bytes per message):")
    print("  " + ", ".join(f"{tree}: message {reached[tree]:,}" for tree in trees))
    last = {tree: results[tree][-1]["by_type"] for tree in trees}
    kinds = sorted(
        set().union(*last.values()),
        key=lambda k: -max(last[t].get(k, [0, 0])[1] for t in trees),
    )
    print("| type | " + " | ".join(f"{t}: count, bytes/msg" for t in trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for kind in kinds[:10]:
        cells = []
        for tree in trees:
            count, size = last[tree].get(kind, [0, 0])
            cells.append(f"{count:,}, {size / reached[tree]:,.0f}")
        print(f"| {kind} | " + " | ".join(cells) + " |")
    print()
    print(
        "The file by table and index (dbstat), bytes per message from message 1 to the last mark:"
    )
    grown = {
        tree: {
            name: size - results[tree][0]["objects"].get(name, 0)
            for name, size in results[tree][-1]["objects"].items()
        }
        for tree in trees
    }
    names = sorted(
        set().union(*grown.values()), key=lambda n: -max(g.get(n, 0) for g in grown.values())
    )
    print("| table or index | " + " | ".join(trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for name in names[:12]:
        cells = [f"{grown[t].get(name, 0) / max(reached[t] - 1, 1):,.0f}" for t in trees]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="stop at the 1,000th message")
    parser.add_argument("--before", default=BEFORE, help="git revision to compare with")
    parser.add_argument("--setups", default="chat,assistant")
    parser.add_argument("--marks", default=None, help="comma-separated message counts")
    parser.add_argument(
        "--before-upto",
        type=int,
        default=1_000,
        help="stop the before tree at this many messages (it grows quadratically)",
    )
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--home", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.work is not None:
        asyncio.run(_work(args.work, Path(args.home)))
        return 0

    if args.marks:
        marks = [int(m) for m in args.marks.split(",")]
    else:
        marks = list(QUICK_MARKS if args.quick else MARKS)
    with tempfile.TemporaryDirectory(prefix="bench-storage-before-") as tmp:
        trees = {f"before ({args.before})": _export(args.before, Path(tmp)), "after": ROOT / "src"}
        for setup in args.setups.split(","):
            workers = {name: Worker(src, setup) for name, src in trees.items()}
            results: dict[str, list[dict[str, Any]]] = {name: [] for name in workers}
            try:
                for mark in [1, *marks]:
                    for name, worker in workers.items():  # in lock step: the same load
                        if name.startswith("before") and mark > args.before_upto:
                            continue
                        results[name].append(worker.measure(mark))
                    print(f"  {setup}: {mark:,} messages", file=sys.stderr, flush=True)
            finally:
                for worker in workers.values():
                    worker.close()
            _report(setup, marks, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
