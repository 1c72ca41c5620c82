"""Tool packages change while the app runs: unload removes exactly one package's tools,
reload picks up changed code, and switching a package on or off in the switches file (by the
CLI in another process too) loads or unloads it without a restart."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from package_helpers import STUCK, ManagerFactory, tool_module, write

from promptline.tools.plugins import MANIFEST_FILE, PluginManager
from promptline.tools.switches import SWITCHES_FILE, Switches
from tools.support import context


def installed_package(plugins_dir: Path, name: str, *, answer: str = "hi") -> Path:
    """A package folder as the catalogue installs it: a manifest and its module."""
    folder = plugins_dir / name
    module = f"{name.replace('-', '_')}_impl"
    write(
        folder / MANIFEST_FILE,
        f"""
        name: {name}
        version: "3.1.0"
        description: Greets.
        module: {module}
        """,
    )
    write(folder / f"{module}.py", tool_module(answer=answer))
    return folder


def state(manager: PluginManager, name: str) -> str:
    return manager.status(name).state


def test_unload_removes_exactly_that_packages_tools_and_load_brings_them_back(
    site: Path, make_manager: ManagerFactory
) -> None:
    write(site / "first_pkg.py", tool_module(tool="one"))
    write(site / "second_pkg.py", tool_module(tool="two"))
    manager = make_manager(modules=["first_pkg", "second_pkg"])
    manager.load_all()
    before = manager.registry.names()

    status = manager.unload("first_pkg")

    assert status.state == "unloaded"
    assert manager.registry.names() == [n for n in before if n != "first_pkg.one"]
    assert "first_pkg" not in sys.modules
    manager.refresh()
    assert state(manager, "first_pkg") == "unloaded"  # a refresh does not bring it back
    assert manager.load("first_pkg").state == "loaded"
    assert manager.registry.names() == before


async def test_reload_picks_up_the_changed_module(
    site: Path, make_manager: ManagerFactory, workspace: Path
) -> None:
    path = write(site / "changing_pkg.py", tool_module(answer="old", version="1.0"))
    manager = make_manager(modules=["changing_pkg"])
    manager.load_all()
    # Same size and same second as the first version: only the content differs.
    write(path, tool_module(answer="new", version="1.1"))

    manager.reload("changing_pkg")

    status = manager.status("changing_pkg")
    assert (status.state, status.version) == ("loaded", "1.1")
    tool = manager.registry.require("changing_pkg.hello")
    assert await tool.run({"who": "Ada"}, context(workspace)) == "new Ada"


def test_installed_packages_are_off_until_switched_on_and_their_folder_joins_sys_path_then(
    tmp_path: Path, make_manager: ManagerFactory, site: Path
) -> None:
    plugins = tmp_path / "home" / "plugins"
    folder = installed_package(plugins, "greeter")
    manager = make_manager()

    manager.load_all()
    assert state(manager, "greeter") == "disabled"
    assert str(folder) not in sys.path

    status = manager.enable("greeter")
    assert (status.state, status.version, status.tools) == ("loaded", "3.1.0", ("greeter.hello",))
    assert str(folder) in sys.path

    assert manager.disable("greeter").state == "disabled"
    assert "greeter.hello" not in manager.registry
    assert str(folder) not in sys.path
    assert Switches(tmp_path / "home" / SWITCHES_FILE).all("plugins") == {"greeter": False}


async def test_a_switch_changed_in_the_file_loads_and_unloads_a_running_package(
    tmp_path: Path, make_manager: ManagerFactory, site: Path
) -> None:
    installed_package(tmp_path / "home" / "plugins", "live-greeter")
    manager = make_manager()
    await manager.start(watch=True)
    switches = Switches(tmp_path / "home" / SWITCHES_FILE)
    try:
        assert state(manager, "live-greeter") == "disabled"

        switches.set("plugins", "live-greeter", True)
        async with asyncio.timeout(STUCK):
            await manager.wait_until(lambda m: state(m, "live-greeter") == "loaded")
        assert "live-greeter.hello" in manager.registry

        switches.set("plugins", "live-greeter", False)
        async with asyncio.timeout(STUCK):
            await manager.wait_until(lambda m: state(m, "live-greeter") == "disabled")
        assert "live-greeter.hello" not in manager.registry
    finally:
        await manager.close()


async def test_the_enable_command_of_another_process_reaches_a_running_manager(
    tmp_path: Path, make_manager: ManagerFactory, site: Path
) -> None:
    installed_package(tmp_path / "home" / "plugins", "remote-greeter")
    manager = make_manager()
    await manager.start(watch=True)
    env = {**os.environ, "PROMPTLINE_HOME": str(tmp_path / "home")}
    try:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "promptline"),
            "tools",
            "enable",
            "remote-greeter",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, output.decode()
        assert b"remote-greeter.hello" in output
        async with asyncio.timeout(STUCK):
            await manager.wait_until(lambda m: state(m, "remote-greeter") == "loaded")
    finally:
        await manager.close()


async def test_reload_without_a_name_rechecks_the_switches(
    tmp_path: Path, make_manager: ManagerFactory, site: Path
) -> None:
    installed_package(tmp_path / "home" / "plugins", "quiet-greeter")
    manager = make_manager()
    manager.load_all()
    Switches(tmp_path / "home" / SWITCHES_FILE).set("plugins", "quiet-greeter", True)

    manager.reload()

    assert state(manager, "quiet-greeter") == "loaded"
