"""The fixed prompt: what ``promptline run "hi"`` sends to a model before the user says anything,
the default assistant's system prompt plus every tool schema it is offered, in cl100k_base
tokens, on the first request a fake OpenAI server on 127.0.0.1 receives. Target: <= 1,000 for
the default assistant in a fresh workspace. The other rows show what opting in adds.

    python bench/bench_prompt.py

Tools are counted as the JSON of the request's ``tools`` array with json.dumps' spaces (a few
percent above the compact JSON sent): see tests/fakes/prompt_tokens.py, which the test that
pins the target (tests/runtime/test_fixed_prompt.py) uses as well.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    from click.testing import CliRunner

    from fakes.openai_server import running_fake_openai
    from fakes.prompt_tokens import (
        FIXED_PROMPT_TARGET,
        count_tokens,
        first_request_of_promptline_run,
        fixed_prompt_tokens,
    )
    from promptline.cli.main import app

    scratch = Path(tempfile.mkdtemp(prefix="bench-prompt-"))
    repository = scratch / "repository"
    (repository / ".git").mkdir(parents=True)
    skills = scratch / "skills" / "notes"
    skills.mkdir(parents=True)
    (skills / "SKILL.md").write_text(
        "---\nname: notes\ndescription: Keep notes in notes.md.\n---\nAppend to notes.md.\n"
    )
    git = f"agent:\n  workspace: {repository}\n"
    skill = f"skills:\n  paths: [{skills.parent}]\n"
    reasoning = "agent:\n  use_chain_of_thought: true\n"
    cases = [
        ("default: act mode, a fresh workspace", (), "", True),
        ("a git workspace (+ git_status, git_commit)", (), git, False),
        ("one skill (+ use_skill, read_skill_file, the list)", (), skill, False),
        ("--mode plan (+ submit_plan, its instruction)", ("--mode", "plan"), "", False),
        ("use_chain_of_thought (+ its instruction)", (), reasoning, False),
    ]
    rows: list[tuple[str, int, int, int, int, int, str, str]] = []
    default_total = 0
    with running_fake_openai() as fake:
        for index, (name, args, config, targeted) in enumerate(cases):
            home = scratch / f"home{index}"
            body = first_request_of_promptline_run(fake, home, *args, config=config)
            fixed = fixed_prompt_tokens(body)
            met = ("yes" if fixed.total <= FIXED_PROMPT_TARGET else "NO") if targeted else "-"
            target = f"<= {FIXED_PROMPT_TARGET:,}" if targeted else "-"
            sent = fixed.system + fixed.tools_sent
            rows.append(
                (
                    name,
                    len(fixed.tool_names),
                    fixed.system,
                    fixed.tools,
                    fixed.total,
                    sent,
                    target,
                    met,
                )
            )
            if targeted:
                default_total = fixed.total
                default_home = home
    demo = CliRunner().invoke(
        app,
        ["run", "hi", "--model", "scripted/demo", "--json"],
        env={"PROMPTLINE_HOME": str(default_home)},
        catch_exceptions=False,
    )
    reported = json.loads(demo.stdout)["usage"]["input_tokens"]

    print('The fixed prompt of `promptline run "hi"` (cl100k_base tokens, first request)\n')
    print("| case | tools | system prompt | tool schemas | total | (as sent) | target | met |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for name, tools, system, schemas, total, sent, target, met in rows:
        print(
            f"| {name} | {tools} | {system:,} | {schemas:,} | {total:,} | ({sent:,}) | {target} "
            f"| {met} |"
        )
    actual = default_total + count_tokens("hi")
    print(
        f"\nscripted/demo reports {reported:,} input tokens for the default request "
        f"(cl100k_base: {actual:,} with the user's message; the demo estimates four "
        "characters a token)"
    )
    return 0 if default_total <= FIXED_PROMPT_TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
