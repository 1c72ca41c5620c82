"""What the gateway says about skills, tool packages and MCP servers, and a skill added to the
folder of a running gateway: offered on the next run, without a restart, and gone once removed."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import httpx
from gateway_support import Keys, auth, gateway_app, live_gateway, make_keys
from rest_support import keys_for, live_client, new_session, send

from promptline.config import load_settings
from promptline.config.home import promptline_home
from promptline.config.settings import Settings

FORMS_SCRIPT = """\
- expect: fill the form
  tool_calls:
    - name: use_skill
      arguments: {name: pdf-forms}
- expect: Run scripts/fill.py
  reply: The form is filled.
"""
"""Loads the pdf-forms skill, then answers only if the skill's instructions reached it."""

PLAIN_SCRIPT = "- reply: Noted.\n"

WITHIN = 30.0


def write_skill(root: Path, name: str, description: str, body: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "SKILL.md").write_text(
        f"---\nname: {name}\ndescription: {description}\nversion: 1.0.0\n---\n{body}\n",
        encoding="utf-8",
    )
    return folder


def settings_with_skills(home: Path, extra: str = "") -> Settings:
    scripts = home / "scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    (scripts / "forms.yaml").write_text(FORMS_SCRIPT, encoding="utf-8")
    (scripts / "plain.yaml").write_text(PLAIN_SCRIPT, encoding="utf-8")
    config = home / "config.yaml"
    config.write_text(
        "models:\n"
        "  default: scripted/plain\n"
        f"  providers:\n    scripted:\n      scripts_dir: '{scripts}'\n"
        "agent:\n"
        "  default_mode: act\n"
        f"  workspace: '{home / 'project'}'\n" + extra,
        encoding="utf-8",
    )
    return load_settings(config, environ={"PROMPTLINE_HOME": str(home)})


async def skill_names(client: httpx.AsyncClient, key: str) -> dict[str, str]:
    response = await client.get("/v1/skills", headers=auth(key))
    assert response.status_code == 200, response.text
    return {item["name"]: item["state"] for item in response.json()["items"]}


async def until(client: httpx.AsyncClient, key: str, check: Any) -> dict[str, str]:
    """Ask the gateway for its skills until ``check(names)`` holds (the watcher is another
    thread: nothing to wait on from outside but the gateway's own answer)."""
    async with asyncio.timeout(WITHIN):
        while True:
            names = await skill_names(client, key)
            if check(names):
                return names
            await asyncio.sleep(0.05)


async def system_prompt_of(client: httpx.AsyncClient, key: str, run_id: str) -> str:
    response = await client.get(
        "/v1/events",
        params={"run_id": run_id, "types": "llm_command", "expand": "true"},
        headers=auth(key),
    )
    assert response.status_code == 200, response.text
    command = response.json()["items"][0]
    system = command["data"]["messages"][0]
    assert system["role"] == "system"
    content = system["content"]
    return content if isinstance(content, str) else " ".join(p["text"] for p in content)


async def test_a_skill_added_to_a_running_gateway_is_used_on_the_next_run_and_gone_once_removed(
    tmp_path: Path,
) -> None:
    home = promptline_home()
    settings = settings_with_skills(home)
    keys = await keys_for(settings)
    skills = home / "skills"
    write_skill(skills, "notes", "Keep notes.", "Write everything down.")

    async with live_gateway(settings) as info, live_client(info) as client:
        assert await skill_names(client, keys.alice) == {"notes": "available"}
        session = (await new_session(client, keys.alice))["id"]

        write_skill(skills, "pdf-forms", "Fill in PDF forms.", "Run scripts/fill.py.")
        await until(client, keys.alice, lambda names: "pdf-forms" in names)

        run = await send(
            client, keys.alice, session, "please fill the form", model="scripted/forms"
        )
        assert run["status"] == "completed", run
        assert run["output"] == "The form is filled."
        prompt = await system_prompt_of(client, keys.alice, run["run_id"])
        assert "- pdf-forms: Fill in PDF forms." in prompt

        shutil.rmtree(skills / "pdf-forms")
        await until(client, keys.alice, lambda names: "pdf-forms" not in names)

        fresh = (await new_session(client, keys.alice))["id"]  # the script's first turn again
        after = await send(client, keys.alice, fresh, "hello again")
        assert after["status"] == "completed", after.get("error")
        prompt = await system_prompt_of(client, keys.alice, after["run_id"])
        assert "pdf-forms" not in prompt
        assert "- notes: Keep notes." in prompt


async def test_skills_are_listed_with_their_state_and_one_is_read_with_its_instructions(
    tmp_path: Path,
) -> None:
    home = promptline_home()
    skills = home / "skills"
    write_skill(skills, "notes", "Keep notes.", "Write everything down.")
    (skills / "broken").mkdir(parents=True)
    (skills / "broken" / "SKILL.md").write_text("---\nname: [oops\n---\n", encoding="utf-8")
    needy = write_skill(skills, "needy", "Needs a token.", "Use the token.")
    text = (needy / "SKILL.md").read_text(encoding="utf-8")
    (needy / "SKILL.md").write_text(
        text.replace("version: 1.0.0\n", "version: 1.0.0\nrequires:\n  env: [NO_SUCH_TOKEN_VAR]\n"),
        encoding="utf-8",
    )
    settings = settings_with_skills(home, "skills:\n  watch: false\n")

    async with gateway_app(settings) as (app, client):
        keys = await make_keys(app)
        listed = (await client.get("/v1/skills", headers=auth(keys.alice))).json()["items"]
        by_name = {item["name"]: item for item in listed}
        assert by_name["notes"]["state"] == "available"
        assert by_name["notes"]["version"] == "1.0.0"
        assert by_name["broken"]["state"] == "broken"
        assert by_name["needy"]["state"] == "unavailable"
        assert "NO_SUCH_TOKEN_VAR" in by_name["needy"]["reason"]
        assert all("path" not in item for item in listed)  # a host path: admins only

        admin = (await client.get("/v1/skills", headers=auth(keys.acme_admin))).json()["items"]
        assert {i["name"]: i["path"] for i in admin}["notes"] == str(skills / "notes")

        one = await client.get("/v1/skills/notes", headers=auth(keys.alice))
        assert one.status_code == 200
        assert one.json()["instructions"] == "Write everything down."

        unknown = await client.get("/v1/skills/nots", headers=auth(keys.alice))
        assert unknown.status_code == 404
        assert "did you mean notes?" in unknown.text


async def test_tool_packages_and_mcp_servers_are_shown_to_admins_only(tmp_path: Path) -> None:
    home = promptline_home()
    module = home / "extra" / "weather_tools.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "from promptline.tools.function import tool\n\n"
        "__version__ = '2.1'\n\n"
        "@tool\n"
        "def forecast(city: str) -> str:\n"
        "    '''The weather of a city.'''\n"
        "    return f'sunny in {city}'\n\n"
        "tools = [forecast]\n",
        encoding="utf-8",
    )
    settings = settings_with_skills(
        home, f"plugins:\n  entry_points: false\n  modules: ['weather={module}']\n"
    )

    async with gateway_app(settings) as (app, client):
        keys: Keys = await make_keys(app)
        refused = await client.get("/v1/tools/packages", headers=auth(keys.alice))
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "permission_denied"

        packages = await client.get("/v1/tools/packages", headers=auth(keys.acme_admin))
        assert packages.status_code == 200
        (weather,) = packages.json()["items"]
        assert (weather["name"], weather["state"], weather["version"]) == (
            "weather",
            "loaded",
            "2.1",
        )
        assert weather["tools"] == ["weather.forecast"]

        tools = (await client.get("/v1/tools", headers=auth(keys.alice))).json()["items"]
        assert "weather.forecast" in {t["name"] for t in tools}

        assert (await client.get("/v1/mcp/servers", headers=auth(keys.alice))).status_code == 403
        servers = await client.get("/v1/mcp/servers", headers=auth(keys.acme_admin))
        assert servers.json() == {"items": [], "next_cursor": None}
