"""A package that cannot be loaded is reported with the reason and skipped; the others load:
import errors, registration errors, name conflicts, dependency cycles, missing, disabled and
failed dependencies, missing Python distributions, broken manifests."""

from __future__ import annotations

from pathlib import Path

from package_helpers import ManagerFactory, tool_module, write

from promptline.tools.plugins import MANIFEST_FILE, PluginManager


def states(manager: PluginManager) -> dict[str, str]:
    return {s.name: s.state for s in manager.statuses()}


def test_a_package_raising_on_import_is_reported_and_the_others_load(
    site: Path, make_manager: ManagerFactory
) -> None:
    write(site / "boom_on_import.py", "raise RuntimeError('no database here')\n")
    write(site / "exits_on_import.py", "import sys\nsys.exit(3)\n")
    write(site / "fine_pkg.py", tool_module())
    manager = make_manager(
        modules=["boom_on_import", "exits_on_import", "fine_pkg", "not_there_at_all"]
    )

    manager.load_all()

    boom = manager.status("boom_on_import")
    assert boom.state == "failed"
    assert boom.error == "failed to import: RuntimeError: no database here"
    assert manager.status("exits_on_import").error == "failed to import: SystemExit: 3"
    missing = manager.status("not_there_at_all")
    assert missing.state == "failed"
    assert "ModuleNotFoundError" in (missing.error or "")
    assert manager.status("fine_pkg").state == "loaded"


def test_a_package_raising_in_registration_adds_none_of_its_tools(
    site: Path, make_manager: ManagerFactory
) -> None:
    write(
        site / "half_registered.py",
        """
        from promptline.tools import tool

        @tool
        def first() -> str:
            \"\"\"Would be registered first.\"\"\"
            return "1"

        def register(registry):
            registry.register(first)
            raise ValueError("second tool misconfigured")
        """,
    )
    write(site / "fine_too.py", tool_module())
    manager = make_manager(modules=["half_registered", "fine_too"])
    before = set(manager.registry.names())

    manager.load_all()

    status = manager.status("half_registered")
    assert status.state == "failed"
    assert status.error == (
        "raised while registering its tools: ValueError: second tool misconfigured"
    )
    assert set(manager.registry.names()) - before == {"fine_too.hello"}


def test_a_tool_name_conflict_fails_the_later_package_only(
    site: Path, make_manager: ManagerFactory
) -> None:
    write(site / "claims_ping.py", tool_module(tool="ping", extra='namespace = ""'))
    write(site / "claims_ping_too.py", tool_module(tool="ping", extra='namespace = ""'))
    write(site / "claims_file_read.py", tool_module(tool="file_read", extra='namespace = ""'))
    manager = make_manager(modules=["claims_ping", "claims_ping_too", "claims_file_read"])

    manager.load_all()

    assert manager.status("claims_ping").state == "loaded"
    second = manager.status("claims_ping_too")
    assert second.state == "failed"
    assert second.error == "its tool ping conflicts with the package claims_ping of that name"
    builtin = manager.status("claims_file_read")
    assert builtin.state == "failed"
    assert "file_read conflicts with a built-in" in (builtin.error or "")
    assert manager.owner("ping") == "claims_ping"


def test_a_tool_declared_twice_in_one_package_fails_it(
    site: Path, make_manager: ManagerFactory
) -> None:
    write(
        site / "twice_pkg.py",
        """
        from promptline.tools import tool

        @tool
        def echo() -> str:
            \"\"\"Echo.\"\"\"
            return ""

        tools = [echo, echo]
        """,
    )
    manager = make_manager(modules=["twice_pkg"])

    manager.load_all()

    assert manager.status("twice_pkg").error == "it declares twice_pkg.echo more than once"


def test_a_dependency_cycle_and_a_missing_dependency_block_only_those_packages(
    site: Path, make_manager: ManagerFactory
) -> None:
    write(site / "cycle_a.py", tool_module(extra="requires = ['cycle_b']"))
    write(site / "cycle_b.py", tool_module(extra="requires = ['cycle_a']"))
    write(site / "needs_ghost.py", tool_module(extra="requires = ['ghost']"))
    write(site / "base_pkg.py", tool_module())
    write(site / "needs_base.py", tool_module(extra="requires = ['base_pkg']"))
    manager = make_manager(modules=["cycle_a", "cycle_b", "needs_ghost", "needs_base", "base_pkg"])

    manager.load_all()

    assert states(manager) == {
        "base_pkg": "loaded",
        "cycle_a": "blocked",
        "cycle_b": "blocked",
        "needs_base": "loaded",
        "needs_ghost": "blocked",
    }
    assert manager.status("cycle_a").error == (
        "cycle_a is part of a dependency cycle: cycle_a -> cycle_b -> cycle_a"
    )
    assert manager.status("needs_ghost").error == "needs ghost, which is not installed"
    assert "cycle_a.hello" not in manager.registry


def test_a_package_needing_a_failed_or_disabled_package_is_blocked_and_says_why(
    site: Path, make_manager: ManagerFactory
) -> None:
    write(site / "broken_dep.py", "import nothing_of_that_name\n")
    write(site / "off_dep.py", tool_module())
    write(site / "needs_broken.py", tool_module(extra="requires = ['broken_dep']"))
    write(site / "needs_off.py", tool_module(extra="requires = ['off_dep']"))
    manager = make_manager(
        modules=["broken_dep", "off_dep", "needs_broken", "needs_off"], disabled=["off_dep"]
    )

    manager.load_all()

    assert manager.status("needs_broken").state == "blocked"
    assert manager.status("needs_broken").error == "needs broken_dep, which failed to load"
    assert manager.status("needs_off").error == "needs off_dep, which is disabled"
    assert manager.status("off_dep").state == "disabled"


def test_disabling_a_dependency_unloads_the_packages_that_need_it(
    site: Path, make_manager: ManagerFactory
) -> None:
    write(site / "core_dep.py", tool_module())
    write(site / "uses_core.py", tool_module(extra="requires = ['core_dep']"))
    manager = make_manager(modules=["core_dep", "uses_core"])
    manager.load_all()
    assert manager.status("uses_core").state == "loaded"

    manager.disable("core_dep")

    assert manager.status("uses_core").state == "blocked"
    assert "uses_core.hello" not in manager.registry
    manager.enable("core_dep")
    assert manager.status("uses_core").state == "loaded"


def test_a_skill_requirement_is_met_by_a_skill_folder(
    tmp_path: Path, site: Path, make_manager: ManagerFactory
) -> None:
    write(site / "needs_skill.py", tool_module(extra="requires = ['pdf-forms']"))
    manager = make_manager(modules=["needs_skill"], skill_paths=[tmp_path / "skills"])

    manager.load_all()
    assert manager.status("needs_skill").error == "needs pdf-forms, which is not installed"

    write(tmp_path / "skills" / "pdf-forms" / "SKILL.md", "---\nname: pdf-forms\n---\n")
    manager.refresh()
    assert manager.status("needs_skill").state == "loaded"


def test_an_installed_package_needing_a_missing_python_distribution_fails_with_the_name(
    tmp_path: Path, site: Path, make_manager: ManagerFactory
) -> None:
    folder = tmp_path / "home" / "plugins" / "needy"
    write(
        folder / MANIFEST_FILE,
        """
        name: needy
        version: "1.0"
        module: needy_impl
        python: ["pydantic>=2", "no-such-distribution-xyz>=1"]
        """,
    )
    write(folder / "needy_impl.py", tool_module())
    manager = make_manager()

    status = manager.enable("needy")

    assert status.state == "failed"
    assert status.error == (
        "needs the Python distribution no-such-distribution-xyz>=1, not installed"
    )


def test_a_broken_manifest_is_reported_and_does_not_stop_the_others(
    tmp_path: Path, site: Path, make_manager: ManagerFactory
) -> None:
    plugins = tmp_path / "home" / "plugins"
    write(plugins / "bad-manifest" / MANIFEST_FILE, "name: bad-manifest\nversion: 1\n")
    write(site / "still_fine.py", tool_module())
    manager = make_manager(modules=["still_fine"])

    manager.load_all()

    bad = manager.status("bad-manifest")
    assert bad.state == "failed"
    assert "module is required" in (bad.error or "")
    assert manager.status("still_fine").state == "loaded"


def test_a_loaded_package_whose_manifest_breaks_is_unloaded_and_reported(
    tmp_path: Path, site: Path, make_manager: ManagerFactory
) -> None:
    folder = tmp_path / "home" / "plugins" / "fragile"
    write(folder / MANIFEST_FILE, "name: fragile\nversion: '1'\nmodule: fragile_m\n")
    write(folder / "fragile_m.py", tool_module())
    manager = make_manager()
    assert manager.enable("fragile").state == "loaded"

    write(folder / MANIFEST_FILE, "name: fragile\nversion: '1'\nmodule: 'not a module'\n")
    manager.refresh()

    assert manager.status("fragile").state == "failed"
    assert "fragile.hello" not in manager.registry


def test_two_packages_of_one_name_keep_the_first(
    tmp_path: Path, site: Path, make_manager: ManagerFactory
) -> None:
    write(site / "dup_name.py", tool_module())
    path = write(tmp_path / "other" / "dup_name.py", tool_module(tool="other"))
    manager = make_manager(modules=["dup_name", str(path)])

    statuses = manager.load_all()

    assert [(s.name, s.origin, s.state) for s in statuses] == [
        ("dup_name", "module", "loaded"),
        ("dup_name", "file", "failed"),
    ]
    assert "another package is named 'dup_name'" in (statuses[1].error or "")
