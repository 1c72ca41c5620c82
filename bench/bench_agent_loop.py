"""PromptLine's rows of the agent benchmark, BEFORE and AFTER: CPU instructions per run and
peak RSS, with the in-memory and the SQLite event log, and where the instructions go.

The task is ``bench/agent_task_promptline.py`` (two model calls and one tool call against the
zero-latency fake OpenAI server of ``bench_agents.py``). Each measurement runs in a fresh
process, once with ``--before`` (a git revision whose ``src/`` is exported to a temporary
folder) and once with this tree's ``src/``, interleaved:

- instructions per run: callgrind, (I(N2) - I(N1)) / (N2 - N1), as ``bench_intake.py``;
- peak RSS: VmHWM of a process doing ``--runs`` runs (``bench_agents.py --rss``);
- where the instructions go (this tree): callgrind's instructions by library (the
  interpreter, pydantic-core, SQLite, orjson, ...), and the PromptLine functions by
  inclusive share of a deterministic profile (cProfile: CPython 3.11 shows no Python
  frames to callgrind).

Needs only the project's environment (not ``.venv-bench``)::

    python bench/bench_agent_loop.py [--before REV] [--quick] [--no-callgrind]
    python bench/bench_agents.py --before REV      # the same
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_agents  # noqa: E402 - beside this script
import bench_intake  # noqa: E402
import callgrind  # noqa: E402

BEFORE = "8f94a7e"
STORES = ("memory", "sqlite")


def export(rev: str, into: Path) -> Path:
    """``rev``'s ``src/`` in ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def peak_rss_mb(src: Path, store: str, runs: int, base_url: str) -> float:
    """Peak RSS (MB) of a fresh process doing ``runs`` runs with ``src``'s code."""
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "bench_agents.py"),
            "--rss",
            f"promptline-{store}",
            str(runs),
            base_url,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{HERE}"},
    )
    return int(proc.stdout.split()[-1]) / 1024


def callgrind_by_library(store: str, runs: int, base_url: str) -> list[tuple[int, str]]:
    """Instructions per run by the shared object that ran them (callgrind's self cost), for
    this tree over ``runs`` runs after the warm-up."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        callgrind.record(
            HERE / "bench_intake.py",
            ["--work", store, str(runs), base_url],
            out,
            env={"PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{HERE}"},
            timeout=1800,
        )
        text = subprocess.run(
            ["callgrind_annotate", "--threshold=100", str(out)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    totals: dict[str, int] = {}
    for line in text.splitlines():
        match = re.match(r"\s*([\d,]+) \([^)]*\)\s+\S+(?: \[(.*)\])?$", line)
        if not match or "PROGRAM TOTALS" in line:
            continue
        # No object named: code callgrind could not place (the interpreter's inlined parts).
        obj = Path(match.group(2) or "(unnamed)").name
        obj = re.sub(r"\.cpython-.*|\.so.*", "", obj)
        totals[obj] = totals.get(obj, 0) + int(match.group(1).replace(",", ""))
    # The counted part still holds the runner's close and the interpreter's exit.
    return sorted(((n // runs, obj) for obj, n in totals.items()), reverse=True)


def profile_top(store: str, runs: int, base_url: str, top: int) -> list[tuple[float, str]]:
    """PromptLine functions by inclusive share of a run (cProfile, deterministic)."""
    from agent_task_promptline import make_runner

    async def go() -> cProfile.Profile:
        run, aclose = await make_runner(base_url, store=store)
        for _ in range(5):
            await run()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(runs):
            await run()
        profiler.disable()
        await aclose()
        return profiler

    stats = pstats.Stats(asyncio.run(go()))
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _cc, _nc, tt, _ct, _callers in entries.values())
    rows = []
    for (file, line, name), (_cc, _nc, _tt, ct, _callers) in entries.items():
        if "/promptline/" not in file or name.startswith("<"):
            continue
        short = file.split("/promptline/", 1)[1]
        rows.append((ct / total * 100, f"{short}:{line} {name}"))
    rows.sort(reverse=True)
    # Leave out the wrappers every run passes through whole (the entry point, its task).
    return [row for row in rows if row[0] < 95][:top]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help="the revision to compare against")
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke run)")
    parser.add_argument("--no-callgrind", action="store_true", help="skip the instructions")
    parser.add_argument("--runs", type=int, default=None, help="runs for the peak RSS")
    args = parser.parse_args(argv)
    runs = args.runs or (300 if args.quick else 1000)
    ns = (2, 7) if args.quick else (5, 25)
    use_callgrind = not args.no_callgrind and shutil.which("valgrind") is not None
    if not args.no_callgrind and not use_callgrind:
        print("valgrind not found: instructions skipped (apt-get install valgrind)")

    server = bench_agents.Server()
    instr: dict[tuple[str, str], float] = {}
    rss: dict[tuple[str, str], float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-loop-before-") as tmp:
            builds = {"before": export(args.before, Path(tmp)), "after": ROOT / "src"}
            for store in STORES:
                for build, src in builds.items():  # interleaved: before, after, per store
                    rss[build, store] = peak_rss_mb(src, store, runs, server.base_url)
                    if use_callgrind:
                        low, high = (
                            bench_intake._instructions(src, store, n, server.base_url) for n in ns
                        )
                        instr[build, store] = (high - low) / (ns[1] - ns[0])
                    print(f"  {build} {store} done", flush=True)
        print(f"\nPromptLine agent loop, before ({args.before}) and after (this tree)\n")
        print("| store | instr/run before | after | change | peak RSS MB before | after |")
        print("|---|---:|---:|---:|---:|---:|")
        for store in STORES:
            b, a = instr.get(("before", store)), instr.get(("after", store))
            change = f"{a / b - 1:+.1%}" if a and b else "-"
            print(
                f"| {store} | {b or 0:,.0f} | {a or 0:,.0f} | {change} "
                f"| {rss['before', store]:.1f} | {rss['after', store]:.1f} |"
            )
        print(
            f"\ninstructions: callgrind, (I({ns[1]}) - I({ns[0]})) / {ns[1] - ns[0]} runs;"
            f" RSS: VmHWM of a fresh process doing {runs} runs"
        )
        for store in STORES:
            if use_callgrind:
                runs_counted = ns[1]
                print(
                    f"\nAfter, {store}: instructions per run by library (callgrind self cost,"
                    f" {runs_counted} runs, their close and the exit included)\n"
                )
                for count, name in callgrind_by_library(store, runs_counted, server.base_url)[:8]:
                    print(f"  {count:>10,}  {name}")
            print(f"\nAfter, {store}: PromptLine functions, inclusive share of a run (cProfile)\n")
            for share, name in profile_top(store, 100 if args.quick else 300, server.base_url, 10):
                print(f"  {share:5.1f}%  {name}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
