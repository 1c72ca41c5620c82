"""Every key of the settings model is read by some code, and the keys of features that do not
exist yet are refused or warned about: a setting nobody reads is a promise nobody keeps.

"Read" is found in the source's syntax tree, not run: an attribute access naming the key
(``x.port``; a field's declaration is not one, nor is a comment), or its name as a string
given to ``getattr`` / ``.get`` / ``[...]``. A section counts as read when its keys are. A
name that several models use (``enabled``, ``port``, ``mode``) only counts when its parent key
names the access (``http.port``, ``providers[name].models``); where the code holds that
section in a variable of another name, `READ_AS` says where and the test checks the access is
there.
"""

from __future__ import annotations

import ast
import collections
import functools
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel
from test_config_docs import key_paths

from promptline.config import Settings, load_settings
from promptline.config.channels import NOT_SUPPORTED_CHANNELS
from promptline.config.validation import unused_key_warnings
from promptline.core.errors import ConfigError

SRC = Path(__file__).parent.parent.parent / "src" / "promptline"

# Keys whose section the code holds under another name: key -> (file, the access there).
READ_AS: dict[str, tuple[str, str]] = {
    # A provider's settings are `config` in the registry.
    "models.providers.<name>.models": ("models/registry.py", "config.models"),
    "models.providers.<name>.timeout_secs": ("models/registry.py", "config.timeout_secs"),
    # Catalogue overrides are dumped and merged, every field, into the built-in entry.
    "models.catalogue.<name>.max_tokens": ("models/registry.py", "override.model_dump"),
    # The terminal and HTTP channels check their switch through ChannelsSettings.require_on.
    "channels.cli.enabled": ("cli/run_cmd.py", "channels.require_on"),
    "channels.http.enabled": ("gateway/routes/channels.py", "channels.require_on"),
    # A rule is `rule` wherever the policy evaluates it.
    "tools.<name>.mode": ("security/policy.py", "rule.mode"),
    # An agent definition is `d` where the runtime agent is built from it.
    "agents.<name>.tools": ("runtime/agent.py", "d.tools"),
    "agents.<name>.mode": ("runtime/agent.py", "d.mode"),
    "agents.<name>.max_iterations": ("runtime/agent.py", "d.max_iterations"),
    "agents.<name>.queue_mode": ("runtime/agent.py", "d.queue_mode"),
    "agents.<name>.on_crash": ("runtime/agent.py", "d.on_crash"),
    "agents.<name>.use_chain_of_thought": ("runtime/agent.py", "d.use_chain_of_thought"),
    "agents.<name>.max_tokens": ("runtime/agent.py", "d.max_tokens"),
    "agents.<name>.workspace": ("runtime/agent.py", "d.workspace"),
    # The sandboxes read each agent's choice where they are built.
    "agents.<name>.sandbox": ("security/sandbox/choice.py", "agent.sandbox"),
    # An MCP server's settings are `settings` in its connection and the manager; its
    # transport is read through McpServerSettings.kind (unset: inferred from `command`).
    "mcp_servers.<name>.transport": ("tools/mcp/connection.py", "settings.kind"),
    "mcp_servers.<name>.enabled": ("tools/mcp/manager.py", "settings.enabled"),
    "mcp_servers.<name>.tools": ("tools/mcp/manager.py", "settings.tools"),
    "mcp_servers.<name>.timeout_secs": ("tools/mcp/tool.py", "settings.timeout_secs"),
    # The quotas of a tenant or a user are `limits` once its override is laid over the
    # defaults (QuotasSettings.limits).
    **{
        f"quotas.{level}.{key}": ("security/quotas.py", f"limits.{key}")
        for level in ("tenant", "user", "tenants.<name>", "users.<name>")
        for key in (
            "requests_per_minute",
            "tokens_per_day",
            "cost_usd_per_day",
            "concurrent_runs",
            "max_sessions",
            "storage_mb",
        )
    },
}


def not_supported_yet() -> set[str]:
    """The keys of the chat platforms, which `not_supported_issues` and `unused_key_warnings`
    walk generically (the tests below check each is refused or warned about)."""
    return {
        path
        for path in key_paths(Settings)
        if path.startswith("channels.") and path.split(".")[1] in NOT_SUPPORTED_CHANNELS
    }


@functools.cache
def reads() -> dict[str, set[tuple[str | None, str]]]:
    """File -> the (parent, name) pairs its code reads: ``a.b.c`` gives (b, c), ``a[k].c``
    gives (a, c); a string given to getattr, .get or [...] gives (None, string)."""
    found: dict[str, set[tuple[str | None, str]]] = {}
    for path in SRC.rglob("*.py"):
        name = path.relative_to(SRC).as_posix()
        pairs: set[tuple[str | None, str]] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                pairs.add((_name_of(node.value), node.attr))
            elif isinstance(node, ast.Call) and _is_lookup(node.func):
                pairs.update(
                    (None, arg.value)
                    for arg in node.args
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                )
            elif isinstance(node, ast.Subscript):
                key = node.slice
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    pairs.add((None, key.value))
        found[name] = pairs
    return found


def _name_of(node: ast.expr) -> str | None:
    while isinstance(node, ast.Subscript | ast.Call):
        node = node.value if isinstance(node, ast.Subscript) else node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _is_lookup(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id == "getattr"
    return isinstance(func, ast.Attribute) and func.attr == "get"


def field_names(model: type[BaseModel]) -> collections.Counter[str]:
    """How many models of the tree declare each field name."""
    counts: collections.Counter[str] = collections.Counter()
    for name, field in model.model_fields.items():
        counts[name] += 1
        annotation = field.annotation
        if typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            counts.update(field_names(annotation))
    return counts


def is_read(path: str, shared: collections.Counter[str]) -> bool:
    parts = [part for part in path.split(".") if part != "<name>"]
    name = parts[-1]
    parent = parts[-2] if len(parts) > 1 else "settings"
    everything = set().union(*reads().values())
    if shared[name] == 1:
        return any(read_name == name for _, read_name in everything)
    return (parent, name) in everything


def test_every_settings_key_is_read_by_some_code() -> None:
    shared = field_names(Settings)
    paths = key_paths(Settings)
    sections = {path.rpartition(".")[0] for path in paths}
    skipped = not_supported_yet() | set(READ_AS) | sections

    unread = [
        path
        for path in paths
        if not path.endswith("<name>") and path not in skipped and not is_read(path, shared)
    ]

    assert unread == [], (
        "these keys are read by nothing: read them where they apply, or refuse them as not "
        "supported yet in promptline.config.validation"
    )


@pytest.mark.parametrize("key", sorted(READ_AS))
def test_each_key_read_under_another_name_is_read_where_it_says(key: str) -> None:
    file, access = READ_AS[key]
    parent, _, name = access.rpartition(".")

    assert key in key_paths(Settings)
    assert (parent, name) in reads()[file]


def test_the_walk_sees_reads_and_ignores_comments_and_declarations() -> None:
    everything = set().union(*reads().values())

    assert ("security", "audit_log") in everything  # settings.security.audit_log
    assert (None, "cpu_percent") in everything  # limits.get("cpu_percent")
    # Named in docs and declared in config/channels.py, read nowhere.
    assert not any(name == "verification_token" for _, name in everything)


def test_a_key_nothing_reads_is_caught() -> None:
    class Unread(BaseModel):
        nobody_reads_this_key: bool = False

    shared = field_names(Unread)

    assert not is_read("nobody_reads_this_key", shared)


@pytest.mark.parametrize("channel", sorted(NOT_SUPPORTED_CHANNELS))
def test_switching_on_a_chat_platform_is_refused_as_not_supported_yet(
    channel: str, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"channels:\n  {channel}:\n    enabled: true\n", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})

    title = NOT_SUPPORTED_CHANNELS[channel]
    assert caught.value.message == (
        f"{config}:3: channels.{channel}.enabled: not supported yet: PromptLine has no {title} "
        "channel yet; set it to false (or remove it) and reach agents over HTTP, the WebSocket "
        "or the terminal meanwhile (see 'Not supported yet' in docs/configuration.md)"
    )


@pytest.mark.parametrize(
    "key", sorted(k for k in not_supported_yet() if k.count(".") == 2 and "enabled" not in k)
)
def test_a_chat_platform_credential_loads_but_is_warned_about(key: str) -> None:
    _, channel, name = key.split(".")
    value = "1000002" if name == "agent_id" else "x" * 43
    settings = load_settings(environ={f"PROMPTLINE__CHANNELS__{channel}__{name}".upper(): value})

    assert unused_key_warnings(settings) == [
        f"{key} is set, but PromptLine has no {NOT_SUPPORTED_CHANNELS[channel]} channel yet, "
        "so nothing reads it (see 'Not supported yet' in docs/configuration.md)"
    ]
