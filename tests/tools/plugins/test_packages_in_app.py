"""The app loads tool packages when its runtime starts, follows their switches while it runs,
and stops following them when it closes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from package_helpers import STUCK, tool_module, write

from promptline.app import build_app
from promptline.config import load_settings
from promptline.tools.plugins import MANIFEST_FILE
from promptline.tools.switches import SWITCHES_FILE, Switches


async def test_start_runtime_loads_packages_and_follows_their_switches(
    tmp_path: Path, site: Path
) -> None:
    home = tmp_path / "home"
    module = write(tmp_path / "extra" / "app_weather.py", tool_module(tool="forecast"))
    write(home / "config.yaml", f"plugins:\n  modules: ['{module}']\n")
    write(
        home / "plugins" / "later" / MANIFEST_FILE, "name: later\nversion: '1'\nmodule: later_m\n"
    )
    write(home / "plugins" / "later" / "later_m.py", tool_module())
    settings = load_settings(None, environ={"PROMPTLINE_HOME": str(home)})

    async with build_app(settings) as app:
        assert "app_weather.forecast" not in app.tools  # nothing runs before the runtime starts
        await app.start_runtime()
        assert "app_weather.forecast" in app.tools
        assert app.plugins.status("later").state == "disabled"
        assert app.plugins.watching

        Switches(home / SWITCHES_FILE).set("plugins", "later", True)
        async with asyncio.timeout(STUCK):
            await app.plugins.wait_until(lambda m: m.status("later").state == "loaded")
        assert "later.hello" in app.tools
        manager = app.plugins
    assert not manager.watching
