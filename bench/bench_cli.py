"""How long the CLI's local commands take, and ``import promptline`` with an agent built.

Each command runs in a fresh process on a prepared home (a config with the offline demo model,
two sessions with a few messages, one recorded run), 10 times; the table shows the median.
Commands are timed round-robin, so a burst of load elsewhere on the machine lands on all of
them alike. With ``--before REV`` the same commands also run on that git revision's ``src/``
(exported to a temporary folder), interleaved with this tree's:

    python bench/bench_cli.py [--runs N] [--before REV]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 10
COMMAND_TARGET_MS = 300.0
AGENT_TARGET_MS = 200.0

CONFIG = """\
models:
  default: scripted/demo
"""

LAUNCH = "import sys; from promptline.cli.main import main; sys.argv[0] = 'promptline'; main()"
"""The `promptline` script's body, run with ``-c`` so that PYTHONPATH picks the tree."""

FRONT_DOOR = "from promptline import Agent; Agent('openai/gpt-4o-mini', instructions='Be brief.')"
RUNTIME_AGENT = (
    "import promptline; from promptline.runtime.agent import Agent; Agent(name='assistant')"
)


def promptline(src: Path, home: Path, *args: str) -> str:
    """Run one command on ``home`` with the package of ``src``; its standard output."""
    done = subprocess.run(
        [sys.executable, "-c", LAUNCH, *args],
        env=_env(src, home),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise SystemExit(f"`promptline {' '.join(args)}` failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def _env(src: Path, home: Path) -> dict[str, str]:
    """The environment of a user's shell: bytecode is cached as Python does by default.

    ``PYTHONDONTWRITEBYTECODE`` (set on some build machines) is dropped: without cached
    bytecode every run compiles every module it imports again, which doubles a command's time
    and is not what anyone who installed the package meets.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PROMPTLINE") and k != "PYTHONDONTWRITEBYTECODE"
    }
    return {**env, "PYTHONPATH": str(src), "PROMPTLINE_HOME": str(home)}


def prepare(home: Path) -> dict[str, str]:
    """A home with something to show: sessions, messages, a run. Returns ids to use."""
    home.mkdir(parents=True)
    (home / "config.yaml").write_text(CONFIG)
    src = ROOT / "src"
    session = promptline(src, home, "sessions", "new", "--user", "alice").strip()
    for text in ("Where is the invoice for March?", "It was sent on the 2nd.", "Thanks!"):
        promptline(src, home, "sessions", "add", session, text)
    promptline(src, home, "sessions", "new", "--user", "bob")
    record = json.loads(promptline(src, home, "run", "hello there", "--json"))
    return {"session": session, "run": record["run_id"]}


def commands(ids: dict[str, str]) -> list[tuple[str, list[str]]]:
    """(row label, arguments) of every command timed."""
    session, run = ids["session"], ids["run"]
    return [
        ("sessions new", ["sessions", "new"]),
        ("sessions add", ["sessions", "add", session, "one more message"]),
        ("sessions show", ["sessions", "show", session]),
        ("sessions search", ["sessions", "search", "invoice"]),
        ("models list", ["models", "list"]),
        ("runs list", ["runs", "list"]),
        ("runs show", ["runs", "show", run]),
        ("events tail", ["events", "tail"]),
        ("config show", ["config", "show"]),
    ]


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Milliseconds from start to exit of one fresh process."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, check=False, timeout=300)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed:\n{done.stdout.decode()}{done.stderr.decode()}")
    return elapsed


def measure(builds: dict[str, Path], home: Path, runs: int) -> dict[tuple[str, str], float]:
    """(row, build) -> median milliseconds."""
    ids = prepare(home)
    rows: list[tuple[str, list[str]]] = [
        (f"promptline {label}", [sys.executable, "-c", LAUNCH, *args])
        for label, args in commands(ids)
    ]
    rows.append(("import promptline + Agent(...) (front door)", [sys.executable, "-c", FRONT_DOOR]))
    rows.append(("import promptline + runtime Agent", [sys.executable, "-c", RUNTIME_AGENT]))
    samples: dict[tuple[str, str], list[float]] = {}
    for name, src in builds.items():  # a warm-up round: .pyc files, the page cache
        for label, argv in rows:
            if _supported(argv, _env(src, home)):
                samples[label, name] = []
    for _ in range(runs):
        for label, argv in rows:
            for name, src in builds.items():
                if (label, name) in samples:
                    samples[label, name].append(timed(argv, _env(src, home)))
    return {key: statistics.median(values) for key, values in samples.items()}


def _supported(argv: list[str], env: dict[str, str]) -> bool:
    """Runs ``argv`` once; False when that build has no such thing (an older revision)."""
    done = subprocess.run(argv, env=env, capture_output=True, check=False, timeout=300)
    return done.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS, help="runs per command (median)")
    parser.add_argument("--before", help="a git revision to compare against")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        builds = {"this tree": ROOT / "src"}
        if args.before:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.before, "src"],
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            builds = {f"before ({args.before})": Path(tmp) / "src", **builds}
        medians = measure(builds, Path(tmp) / "home", args.runs)
    names = list(builds)
    floor = statistics.median(
        timed([sys.executable, "-c", "pass"], _env(ROOT / "src", ROOT)) for _ in range(args.runs)
    )
    print(
        f"Median of {args.runs} runs per command, each in a fresh process, in ms "
        f"(`python -c pass`, the floor: {floor:.0f} ms)\n"
    )
    print("| command | " + " | ".join(names) + " | target | met |")
    print("|---|" + "---:|" * len(names) + "---:|---|")
    labels = list(dict.fromkeys(label for label, _ in medians))
    failed = 0
    for label in labels:
        target = AGENT_TARGET_MS if label.startswith("import") else COMMAND_TARGET_MS
        cells = [
            f"{medians[label, name]:.0f}" if (label, name) in medians else "-" for name in names
        ]
        now = medians.get((label, names[-1]))
        met = now is not None and now <= target
        failed += not met
        verdict = "yes" if met else "no"
        print(f"| `{label}` | " + " | ".join(cells) + f" | <= {target:.0f} | {verdict} |")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
