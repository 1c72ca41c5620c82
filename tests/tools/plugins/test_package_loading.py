"""Tool packages are found through entry points, module paths and .py files; their tools are
registered under the package's name, run through the executor, and carry its version."""

from __future__ import annotations

from pathlib import Path

from package_helpers import ManagerFactory, distribution, tool_module, write

from promptline.core.messages import ToolCall
from promptline.events.bus import InProcessEventBus
from promptline.tools.executor import CallScope, ToolExecutor
from promptline.tools.registry import ToolRegistry


async def call(registry: ToolRegistry, bus: InProcessEventBus, workspace: Path, name: str) -> str:
    executor = ToolExecutor(registry, bus)
    result = await executor.execute(
        ToolCall(name=name, arguments={"who": "Ada"}), CallScope(workspace=workspace)
    )
    assert not result.is_error, result.text
    return result.text


async def test_an_entry_point_package_loads_with_its_distribution_version(
    site: Path, make_manager: ManagerFactory, bus: InProcessEventBus, workspace: Path
) -> None:
    write(site / "ep_greeter.py", tool_module(answer="hello from an entry point"))
    distribution(site, "acme-greeter", "1.2.0", {"acme": "ep_greeter"})
    manager = make_manager(entry_points=True)

    manager.load_all()

    status = manager.status("acme")
    assert (status.state, status.origin, status.version) == ("loaded", "entry_point", "1.2.0")
    assert status.tools == ("acme.hello",)
    assert manager.registry.get("acme.hello") is not None
    assert await call(manager.registry, bus, workspace, "acme.hello") == (
        "hello from an entry point Ada"
    )


async def test_an_entry_point_may_name_a_register_function(
    site: Path, make_manager: ManagerFactory, bus: InProcessEventBus, workspace: Path
) -> None:
    write(
        site / "ep_registering.py",
        """
        from promptline.tools import tool

        @tool(inline=True)
        def shout(who: str) -> str:
            \"\"\"Shout a name.\"\"\"
            return who.upper()

        def setup(registry):
            registry.register(shout)
        """,
    )
    distribution(site, "acme-shout", "0.9", {"loud": "ep_registering:setup"})
    manager = make_manager(entry_points=True)

    manager.load_all()

    assert manager.status("loud").tools == ("loud.shout",)
    assert await call(manager.registry, bus, workspace, "loud.shout") == "ADA"


async def test_a_module_path_package_is_named_after_its_path_and_versioned_by_the_module(
    site: Path, make_manager: ManagerFactory, bus: InProcessEventBus, workspace: Path
) -> None:
    write(site / "acme_pkg" / "__init__.py", "")
    write(site / "acme_pkg" / "tools.py", tool_module(version="2.0.1"))
    manager = make_manager(modules=["acme_pkg.tools", "short=acme_pkg.tools"])

    manager.load_all()

    status = manager.status("acme_pkg_tools")
    assert (status.state, status.origin, status.version) == ("loaded", "module", "2.0.1")
    assert status.tools == ("acme_pkg_tools.hello",)
    # The same module under a name of its own is a second package with its own namespace.
    assert manager.status("short").tools == ("short.hello",)
    assert await call(manager.registry, bus, workspace, "short.hello") == "hi Ada"


async def test_a_py_file_package_is_named_after_the_file(
    tmp_path: Path, make_manager: ManagerFactory, bus: InProcessEventBus, workspace: Path
) -> None:
    path = write(tmp_path / "scripts" / "weather.py", tool_module(answer="sunny for"))
    manager = make_manager(modules=[str(path)])

    manager.load_all()

    status = manager.status("weather")
    assert (status.state, status.origin, status.target) == ("loaded", "file", str(path))
    assert await call(manager.registry, bus, workspace, "weather.hello") == "sunny for Ada"


def test_a_register_function_and_a_tools_list_both_contribute(
    site: Path, make_manager: ManagerFactory
) -> None:
    write(
        site / "both_ways.py",
        """
        from promptline.tools import tool

        @tool
        def listed() -> str:
            \"\"\"In the list.\"\"\"
            return "a"

        @tool
        def registered() -> str:
            \"\"\"Registered by the function.\"\"\"
            return "b"

        tools = [listed]

        def register(registry):
            registry.register(registered)
        """,
    )
    manager = make_manager(modules=["both=both_ways"])

    manager.load_all()

    assert manager.status("both").tools == ("both.listed", "both.registered")


def test_a_package_may_choose_its_namespace_or_none(
    site: Path, make_manager: ManagerFactory
) -> None:
    write(site / "named_ns.py", tool_module(tool="ping", extra='namespace = "net"'))
    write(site / "no_ns.py", tool_module(tool="pong", extra='namespace = ""'))
    manager = make_manager(modules=["named_ns", "no_ns"])

    manager.load_all()

    assert manager.status("named_ns").tools == ("net.ping",)
    assert manager.status("no_ns").tools == ("pong",)
    assert manager.owner("pong") == "no_ns"
    assert manager.owner("file_read") is None


def test_no_package_means_only_the_built_in_tools(make_manager: ManagerFactory) -> None:
    manager = make_manager()
    before = manager.registry.names()

    assert manager.load_all() == []
    assert manager.registry.names() == before
