"""What skills cost: scanning 200 skill folders, rendering the prompt section (cached and not),
and the time the skills hook adds to an agent run with the scripted model.

    python bench/bench_skills.py            # one run, well under a minute

Runs alternate between skills on and off in small blocks, so drift of a shared machine hits
both sides alike; each figure is a median.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SKILLS = 200
SCAN_REPEATS = 15
RENDER_REPEATS = 200
RUNS_PER_SIDE = 300
BLOCK = 25


def _write_skills(root: Path, count: int) -> None:
    for i in range(count):
        folder = root / f"skill-{i:03d}"
        (folder / "scripts").mkdir(parents=True)
        (folder / "SKILL.md").write_text(
            "---\n"
            f"name: skill-{i:03d}\n"
            f"description: Does task number {i} of the benchmark, when the user asks for it by "
            "name or describes it well enough.\n"
            'version: "1.0"\n'
            "requires:\n  bins: [sh]\n  env: [PATH]\n  tools: ['file_*']\n"
            "---\n" + "# Steps\n\n1. Do the thing.\n2. Check the thing.\n" * 20,
            encoding="utf-8",
        )
        (folder / "scripts" / "run.py").write_text("print('hi')\n")
        (folder / "reference.md").write_text("# Reference\n")


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _scan_and_render(root: Path) -> list[tuple[str, str]]:
    from promptline.tools.skills import SkillLibrary

    rows: list[tuple[str, str]] = []

    def cold() -> None:
        SkillLibrary([root]).reload()

    rows.append(
        (f"scan {SKILLS} skills, first time (parse every SKILL.md)", _ms(cold, SCAN_REPEATS))
    )
    library = SkillLibrary([root])
    library.reload()
    rows.append((f"rescan {SKILLS} skills, nothing changed", _ms(library.reload, SCAN_REPEATS)))
    (root / "skill-007" / "SKILL.md").touch()

    def one_changed() -> None:
        (root / "skill-007" / "SKILL.md").write_text(
            (root / "skill-007" / "SKILL.md").read_text() + "\n"
        )
        library.reload()

    rows.append((f"rescan {SKILLS} skills, one changed", _ms(one_changed, SCAN_REPEATS)))

    tools = frozenset({"use_skill", "read_skill_file", "file_read", "file_write"})
    counter = iter(range(10**9))

    def uncached() -> None:
        # A tool set never seen before: states worked out and the list rendered again.
        library.prompt_section(tools | {f"tool_{next(counter)}"})

    rows.append(
        ("prompt section, uncached (states + render, 4000 chars)", _ms(uncached, RENDER_REPEATS))
    )
    library.prompt_section(tools)
    rows.append(
        ("prompt section, cached", _ms(lambda: library.prompt_section(tools), RENDER_REPEATS * 10))
    )
    return rows


def _ms(fn: Callable[[], Any], repeats: int) -> str:
    value = _median_ms(fn, repeats)
    return f"{value * 1000:.1f} us" if value < 1 else f"{value:.2f} ms"


async def _run_cost(root: Path) -> tuple[float, float, int]:
    from promptline.events.bus import InProcessEventBus
    from promptline.events.memory import InMemoryEventStore
    from promptline.models.scripted import Script, ScriptedProvider
    from promptline.runtime import Agent, RunServices, Runtime
    from promptline.tools.builtin import builtin_tools
    from promptline.tools.executor import ToolExecutor
    from promptline.tools.registry import ToolRegistry
    from promptline.tools.skills import SkillLibrary, register_skill_tools
    from promptline.tools.skills.prompt import SKILLS_HEADER

    registry = ToolRegistry(builtin_tools())
    library = SkillLibrary([root], tools=registry)
    register_skill_tools(registry, library)
    library.reload()
    model = ScriptedProvider(scripts={"bench": Script.from_data([{"reply": "done"}], name="bench")})
    agent = Agent(name="assistant", model="bench", mode="act", use_chain_of_thought=False)
    runtimes = {}
    closers = []
    with tempfile.TemporaryDirectory() as workspaces:
        for side, hook in (("on", library.prompt_section), ("off", None)):
            store = InMemoryEventStore()
            bus = InProcessEventBus(store)
            services = RunServices(
                bus=bus,
                store=store,
                models=model,
                executor=ToolExecutor(registry, bus, max_timeout=10),
                workspaces_dir=Path(workspaces),
                skills=hook,
            )
            runtimes[side] = Runtime(services, {agent.name: agent})
            closers.append(bus)
        times: dict[str, list[float]] = {"on": [], "off": []}
        prompt_chars = 0
        for side in ("on", "off"):  # warm up both, and check the list is (not) there
            for _ in range(5):
                result = await runtimes[side].run("hello")
            events = await runtimes[side].services.store.read_stream(result.run_id)
            command = next(e for e in events if e.type == "llm_command")
            listed = SKILLS_HEADER in command.data.messages[0].text  # type: ignore[attr-defined]
            assert listed == (side == "on"), side
        for _ in range(RUNS_PER_SIDE // BLOCK):
            for side in ("on", "off"):
                for _ in range(BLOCK):
                    started = time.perf_counter()
                    result = await runtimes[side].run("hello")
                    times[side].append((time.perf_counter() - started) * 1000)
                    assert result.ok, result.error
        section = library.prompt_section(frozenset(registry.names()))
        prompt_chars = len(section or "")
        for runtime in runtimes.values():
            await runtime.shutdown()
        for bus in closers:
            await bus.close()
    return statistics.median(times["on"]), statistics.median(times["off"]), prompt_chars


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "skills"
        _write_skills(root, SKILLS)
        rows = _scan_and_render(root)
        on, off, chars = asyncio.run(_run_cost(root))
    rows.append(
        (f"agent run, skills on ({SKILLS} listed in {chars} chars), median", f"{on:.2f} ms")
    )
    rows.append(("agent run, skills off, median", f"{off:.2f} ms"))
    rows.append(("added per run by the skills hook", f"{(on - off) * 1000:+.0f} us"))
    width = max(len(name) for name, _ in rows)
    size = max(len(value) for _, value in rows)
    print(f"| {'measure'.ljust(width)} | {'value'.rjust(size)} |")
    print(f"|{'-' * (width + 2)}|{'-' * (size + 1)}:|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value.rjust(size)} |")
    print(f"\n({RUNS_PER_SIDE} runs per side, {time.perf_counter() - started:.1f} s in all)")


if __name__ == "__main__":
    main()
