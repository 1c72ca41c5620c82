"""The settings model: every key of ``config.yaml``, its type, its default and its allowed range.

The shape follows the configuration example of the product brief, section by section.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from promptline.config.channels import ChannelsSettings
from promptline.config.fieldtypes import (
    Count,
    Dollars,
    ExpandedPath,
    Percent,
    Port,
    Seconds,
    Secret,
    Section,
)
from promptline.config.home import promptline_home
from promptline.config.keypath import KeyPath, format_path, parse_path
from promptline.config.plugins import (
    CatalogueSettings,
    McpServerSettings,
    McpServeSettings,
    PluginsSettings,
    SkillsSettings,
)
from promptline.core.agents import (
    DEFAULT_CHAIN_OF_THOUGHT,
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_MODE,
    DEFAULT_ON_CRASH,
    DEFAULT_QUEUE_MODE,
    DEFAULT_STREAM,
    AgentMode,
    OnCrash,
    QueueMode,
)
from promptline.core.errors import ConfigError
from promptline.core.names import MAX_CHANNEL, NAME_PATTERN
from promptline.core.sandbox import SandboxChoice
from promptline.models.transport import (
    DEFAULT_CONNECT_TIMEOUT_SECS,
    DEFAULT_FIRST_BYTE_TIMEOUT_SECS,
    DEFAULT_TIMEOUT_SECS,
)

ToolPermission = Literal["allow", "ask", "deny"]
StateBackend = Literal["file", "sqlite", "postgres", "redis"]

THIRTY_DAYS_SECS = 30 * 24 * 3600


def _valid_http_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value


def _cors_origin(value: str) -> str:
    """An origin as a browser sends it: ``scheme://host[:port]``, no path; ``*`` for any."""
    if value == "*":
        return value
    scheme, sep, rest = value.partition("://")
    if (
        scheme not in ("http", "https")
        or not sep
        or not rest
        or "/" in rest
        or rest != rest.strip()
    ):
        raise ValueError(
            f"{value!r} is not an origin: write scheme://host[:port] with no path "
            "(https://app.example.com, http://localhost:5173), or * for any"
        )
    return value


class GatewaySettings(Section):
    """The gateway process: where it listens."""

    host: str = Field(
        "127.0.0.1", description="Interface to bind; 0.0.0.0 listens on every interface."
    )
    port: Port = Field(8080, description="Port of the REST API.")
    websocket_port: Port | None = Field(
        None,
        description="A second port for the WebSocket control plane; unset (or equal to "
        "port): /v1/ws on the main port only.",
    )
    auth: bool = Field(
        True, description="Require an API key on every call (off is allowed on loopback only)."
    )
    allow_insecure_public_bind: bool = Field(
        False,
        description="Serve on an address other than loopback although the gateway speaks "
        "plain HTTP: only with TLS in front of it (a proxy on another host) or on a network "
        "you trust; false refuses to start there.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins browsers may open the WebSocket from (http://host:port); "
        "requests without an Origin (programs) are always allowed.",
    )
    cors_origins: list[Annotated[str, AfterValidator(_cors_origin)]] = Field(
        default_factory=list,
        description="Origins (https://app.example.com) whose pages may call the REST API from "
        "a browser (CORS); empty: none, and no Access-Control-Allow-* header is sent. The "
        "credential travels in the Authorization header, never a cookie.",
    )
    max_body_bytes: Count = Field(1_048_576, description="Largest request body accepted.")
    rate_limit_per_minute: Count = Field(
        600, description="Requests per minute per API key before 429."
    )
    ws_max_frame_bytes: Count = Field(1_048_576, description="Largest WebSocket frame accepted.")
    ws_send_queue: Count = Field(
        1000, description="Messages queued for a slow WebSocket client before it is dropped."
    )
    ws_heartbeat_secs: Seconds = Field(20.0, description="Interval of WebSocket pings.")
    key_cache_secs: Annotated[float, Field(ge=0)] = Field(
        5.0,
        description="How long a checked API key is remembered; a key revoked elsewhere stops "
        "working within this time (0: check every request against the store).",
    )


ProviderType = Literal["openai", "anthropic", "gemini", "scripted"]


def _is_model_id(value: str) -> str:
    provider, slash, model = value.partition("/")
    if not (slash and provider and model):
        raise ValueError(f"must be a model id 'provider/model', got {value!r}")
    return value


ModelId = Annotated[str, AfterValidator(_is_model_id)]
"""A model id ``provider/model`` (``openai/gpt-4o``)."""


class ProviderSettings(Section):
    """One model provider: its endpoint, credentials and the models it serves."""

    type: ProviderType | None = Field(
        None,
        description="Wire format; unset means inferred from the name (anthropic/claude, "
        "gemini/google, scripted; anything else speaks OpenAI chat completions).",
    )
    api_key: Secret = Field(None, description="API key sent to the provider.")
    base_url: Annotated[str | None, AfterValidator(_valid_http_url)] = Field(
        None, description="Endpoint; unset means the provider's public endpoint."
    )
    models: list[str] = Field(default_factory=list, description="Model names it serves.")
    weight: Count = Field(1, description="Share of traffic when several providers serve a model.")
    max_concurrency: Count | None = Field(None, description="Calls in flight at most.")
    rpm: Count | None = Field(None, description="Requests per minute at most.")
    tpm: Count | None = Field(None, description="Tokens per minute at most.")
    # The defaults are the transport's: the same for a provider built in code.
    connect_timeout_secs: Seconds = Field(
        DEFAULT_CONNECT_TIMEOUT_SECS,
        description="Time allowed to open a connection (TLS and a proxy tunnel included).",
    )
    first_byte_timeout_secs: Seconds = Field(
        DEFAULT_FIRST_BYTE_TIMEOUT_SECS,
        description="Time allowed for the answer to start once the request is sent (a call "
        "that is not streamed starts when its whole answer is made), and the longest silence "
        "between two pieces of a streamed answer.",
    )
    timeout_secs: Seconds = Field(
        DEFAULT_TIMEOUT_SECS, description="Time allowed for one whole call, streamed or not."
    )
    scripts_dir: ExpandedPath | None = Field(
        None, description="Folder of YAML/JSON scripts (type scripted); file name = model name."
    )


class RoutingRule(Section):
    """Which models serve requests of a task or with given tags."""

    task: str | None = Field(None, description="Task type the rule applies to (any if unset).")
    tags: list[str] = Field(default_factory=list, description="Tags a request must all carry.")
    models: list[ModelId] = Field(min_length=1, description="Candidate model ids, in order.")
    max_cost_usd: Dollars | None = Field(None, description="Skip models dearer than this per call.")
    prefer_local: bool = Field(False, description="Try local (free) models first.")


class RoutingSettings(Section):
    """How the router picks a model for a request."""

    rules: list[RoutingRule] = Field(
        default_factory=list, description="Rules tried in order; the first that matches wins."
    )
    strategy: Literal["round_robin", "least_in_flight", "weighted"] = Field(
        "round_robin",
        description="How calls are spread over the providers serving one model name.",
    )
    max_attempts: Count = Field(3, description="Calls to one model before moving to its fallback.")
    breaker_failures: Count = Field(
        5, description="Consecutive failures that take a deployment out of rotation."
    )
    breaker_cooldown_secs: Seconds = Field(
        30.0, description="Time before a deployment taken out is tried again."
    )


class CatalogueOverride(Section):
    """Capabilities and prices of one model, replacing the built-in catalogue's values."""

    supports_vision: bool | None = None
    supports_function_calling: bool | None = None
    supports_streaming: bool | None = None
    supports_json_schema: bool | None = None
    max_tokens: Count | None = None
    context_window: Count | None = None
    input_price_per_mtok: Dollars | None = None
    output_price_per_mtok: Dollars | None = None
    cached_input_price_per_mtok: Dollars | None = None


class ModelsSettings(Section):
    """Model providers, the default model, routing, fallbacks and catalogue overrides."""

    default: str | None = Field(None, description="Model used when an agent names none.")
    providers: dict[str, ProviderSettings] = Field(
        default_factory=dict, description="Providers by name (openai, kimi, deepseek, ollama, ...)."
    )
    transport: Literal["http11", "aiohttp"] = Field(
        "http11",
        description="HTTP client the providers share: the built-in HTTP/1.1 client, or aiohttp.",
    )
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    fallbacks: dict[str, list[str]] = Field(
        default_factory=dict, description="Model -> models to try, in order, when it fails."
    )
    catalogue: dict[ModelId, CatalogueOverride] = Field(
        default_factory=dict, description="Capability and price overrides by model id."
    )

    @field_validator("providers", mode="before")
    @classmethod
    def _empty_provider_means_defaults(cls, value: Any) -> Any:
        # `ollama:` with nothing under it is a provider with default settings, not an error.
        if isinstance(value, dict):
            return {name: {} if body is None else body for name, body in value.items()}
        return value

    @field_validator("catalogue", mode="before")
    @classmethod
    def _empty_override_means_none(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: {} if body is None else body for name, body in value.items()}
        return value


class StateSettings(Section):
    """Where state, the event log and sessions are stored."""

    backend: StateBackend = Field("sqlite", description="State store backend.")
    sqlite_path: ExpandedPath = Field(
        default_factory=lambda: promptline_home() / "state.db",
        description="SQLite database file (backend sqlite, and the event log by default).",
    )
    postgres_url: str | None = Field(None, description="PostgreSQL URL (backend postgres).")
    redis_url: str | None = Field(None, description="Redis URL (backend redis).")
    file_dir: ExpandedPath = Field(
        default_factory=lambda: promptline_home() / "state",
        description="Folder of the file backend.",
    )
    database_url: str | None = Field(
        None, description="Explicit SQLAlchemy URL for the event log and sessions."
    )
    auto_migrate: bool = Field(True, description="Upgrade the database schema on start.")


class ResourceLimitsSettings(Section):
    """Limits applied to tool processes (commands run by shell_execute)."""

    cpu_percent: Percent = Field(
        80,
        description="CPU share a tool process may use: a budget of CPU seconds per process "
        "(RLIMIT_CPU), this share of the call's time limit.",
    )
    memory_mb: Count = Field(
        512, description="Memory a tool process may use, in MiB (address space, RLIMIT_AS)."
    )
    timeout_secs: Count = Field(300, description="Wall-clock limit of one tool call.")
    max_processes: Count = Field(
        64,
        description="Processes one command may run at once; past it every one of them is "
        "killed (sandboxes process and bubblewrap; docker: the container's limit, where a "
        "fork past it fails).",
    )
    max_open_files: Count = Field(
        1024, description="Files one tool process may hold open (RLIMIT_NOFILE)."
    )
    max_file_size_mb: Count = Field(
        1024, description="Largest file a tool process may write, in MiB (RLIMIT_FSIZE)."
    )
    max_output_mb: Count = Field(
        64,
        description="Output of one command, in MiB; past it the output is cut and the "
        "command killed.",
    )


def _channel_name(name: str) -> str:
    if len(name) > MAX_CHANNEL or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"{name[:80]!r} is not a channel name: use 1 to {MAX_CHANNEL} letters, digits or "
            "_ . : @ - (starting with a letter or digit), as sessions store it (http, "
            "websocket, mcp, cli, python, slack...)"
        )
    return name


ChannelName = Annotated[str, AfterValidator(_channel_name)]
"""A channel as sessions store it (``security.sandbox_channels``' keys)."""

SandboxNetwork = Literal["none", "proxy", "host"]
"""``security.sandbox_network``: nothing, the egress proxy, or the host's network."""


_HOST_LABEL = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
_HOST_PATTERN = re.compile(rf"^(\*\.)?{_HOST_LABEL}(\.{_HOST_LABEL})*$")


def parse_egress_entry(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | str:
    """An entry of ``security.egress_allow``: an address or network (``10.0.0.0/8``,
    ``::1``), else a host name in lower case, exact or ``*.``-prefixed for every name below
    it; `ValueError` says what is wrong."""
    text = entry.strip().lower().rstrip(".")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    if not _HOST_PATTERN.match(text):
        raise ValueError(
            f"{entry!r} is neither an address, a network (10.0.0.0/8, fd00::/8) nor a host "
            "name (intranet.example.com, *.corp.example)"
        )
    return text


def _egress_entry(entry: str) -> str:
    parse_egress_entry(entry)
    return entry


DEFAULT_SENSITIVE = [
    "file_delete",
    "shell_execute",
    "git_commit",
    "permissions.changed",
    "key.created",
    "key.revoked",
    "member.added",
    "member.changed",
    "member.removed",
    "auth.repeated_failures",
]
"""What raises a ``security_alert`` unless ``security.alerts.sensitive`` says otherwise."""


class AlertSettings(Section):
    """Which operations raise a ``security_alert``, and where alerts are sent besides the log."""

    sensitive: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SENSITIVE),
        description="Tool names (an allowed call raises an alert) and audit actions "
        "(permissions.changed, key.created, key.revoked, member.added, member.changed, "
        "member.removed, auth.repeated_failures).",
    )
    auth_failures_per_minute: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        5,
        description="Failed logins from one address within a minute that count as repeated "
        "(auth.repeated_failures).",
    )
    webhook_url: Annotated[Secret, AfterValidator(_valid_http_url)] = Field(
        None,
        description="POST every alert as JSON to this URL (unset: the log only); masked when "
        "shown, as such URLs often hold a token.",
    )
    webhook_timeout_secs: Annotated[float, Field(gt=0, le=60)] = Field(
        5.0, description="Time limit of one POST to the webhook."
    )
    webhook_retries: Annotated[int, Field(ge=0, le=10)] = Field(
        2, description="Further attempts after a failed POST (a growing pause between them)."
    )


class TokenSettings(Section):
    """Access and refresh tokens (JWT, HS256) that an API key is exchanged for."""

    access_ttl_secs: Annotated[int, Field(ge=1)] = Field(
        900, description="Lifetime of an access token (seconds)."
    )
    refresh_ttl_secs: Annotated[int, Field(ge=1)] = Field(
        THIRTY_DAYS_SECS, description="Lifetime of a refresh token (seconds)."
    )
    issuer: str = Field("promptline", description="The iss claim given and required.")
    audience: str = Field("promptline", description="The aud claim given and required.")
    signing_keys_file: ExpandedPath = Field(
        default_factory=lambda: promptline_home() / "signing_keys.json",
        description="The signing keys (made on first start, mode 0600).",
    )


class SecuritySettings(Section):
    """Approvals, sandboxing, limits, auditing and tokens."""

    require_approval: bool = Field(
        True,
        description="A tool no rule covers asks a person first unless it is read-only; "
        "false lets such tools run.",
    )
    sandbox: SandboxChoice = Field(
        "auto",
        description="Where commands of tools run: none, process (kernel limits), bubblewrap "
        "(namespaces: only the workspace is writable, no network), docker (a container per "
        "session), or auto: bubblewrap on Linux when bwrap is installed and works, else "
        "process.",
    )
    sandbox_channels: dict[ChannelName, SandboxChoice] = Field(
        default_factory=dict,
        description="The sandbox of the sessions of a channel (channel -> choice, e.g. "
        "slack: docker). Each level only tightens: a command runs in the strongest of its "
        "agent's sandbox (or security.sandbox), its channel's and its session's (none < "
        "process < bubblewrap < docker; auto resolved first).",
    )
    sandbox_network: SandboxNetwork = Field(
        "none",
        description="What commands in a bubblewrap or docker sandbox reach: none (no "
        "network), proxy (bubblewrap only: HTTP and HTTPS through an egress proxy that refuses "
        "loopback, link-local, private and metadata addresses unless security.egress_allow "
        "names them; true means proxy), or host (everything the host reaches, unfiltered: "
        "promptline doctor warns).",
    )
    sandbox_image: str = Field(
        "debian:bookworm-slim",
        description="Image of the docker sandbox's containers (it needs /bin/sh).",
    )
    sandbox_pass_env: list[str] = Field(
        default_factory=list,
        description="Names of the server's environment variables commands also get (they "
        "always get PATH, HOME set to the workspace, and LANG; nothing else by default).",
    )
    resource_limits: ResourceLimitsSettings = Field(default_factory=ResourceLimitsSettings)
    audit_log: bool = Field(
        True,
        description="Record audit events (keys, failed logins, permission changes, approvals "
        "answered over the API) and security alerts; tool and approval events are always "
        "recorded.",
    )
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    egress_allow: list[Annotated[str, AfterValidator(_egress_entry)]] = Field(
        default_factory=list,
        description="Hosts (intranet.example.com, *.corp.example), addresses and networks "
        "(10.1.0.0/16, fd00::/8) that web_get, MCP servers over HTTP and sandboxed commands "
        "(sandbox_network: proxy) may reach although they are not public (loopback, "
        "link-local, private, unique-local); everything else non-public is refused.",
    )
    tokens: TokenSettings = Field(default_factory=TokenSettings)

    @field_validator("sandbox_network", mode="before")
    @classmethod
    def _network_true_is_proxy(cls, value: Any) -> Any:
        # The setting was a bool: true (network granted) now goes through the egress proxy.
        if isinstance(value, bool):
            return "proxy" if value else "none"
        return value

    @model_validator(mode="before")
    @classmethod
    def _sandbox_enabled_is_sandbox(cls, value: Any) -> Any:
        # The product brief's configuration example writes `sandbox_enabled: false`: read as
        # `sandbox: process` (limits, no isolation), and true as `sandbox: auto`.
        if not isinstance(value, dict) or "sandbox_enabled" not in value:
            return value
        value = dict(value)
        enabled = value.pop("sandbox_enabled")
        if "sandbox" in value:
            raise ValueError(
                "sandbox_enabled and sandbox are both set: remove sandbox_enabled (the older "
                "name; true means sandbox: auto, false means sandbox: process)"
            )
        if not isinstance(enabled, bool):
            raise ValueError(f"sandbox_enabled must be true or false, got {enabled!r}")
        value["sandbox"] = "auto" if enabled else "process"
        return value

    @model_validator(mode="before")
    @classmethod
    def _web_get_allow_is_egress_allow(cls, value: Any) -> Any:
        # `web_get_allow` was the list when only web_get was guarded: its entries join
        # `egress_allow`, which now guards every way out.
        if not isinstance(value, dict) or "web_get_allow" not in value:
            return value
        value = dict(value)
        older = value.pop("web_get_allow")
        if not isinstance(older, list):
            raise ValueError(f"web_get_allow must be a list, got {older!r}")
        for index, entry in enumerate(older):
            try:
                parse_egress_entry(str(entry))
            except ValueError as exc:
                raise ValueError(
                    f"web_get_allow[{index}]: {exc} (web_get_allow is the older name of "
                    "egress_allow)"
                ) from None
        current = value.get("egress_allow") or []
        if not isinstance(current, list):
            return value  # the field's own validation says what is wrong
        value["egress_allow"] = list(dict.fromkeys([*current, *map(str, older)]))
        return value


class ToolRuleSettings(Section):
    """A permission, with optional conditions: ``mode`` applies when every argument named in
    ``when`` matches one of its patterns, ``otherwise`` applies when one does not.

    Written as a plain word (``file_read: allow``) it is just ``mode``, and it is shown back
    that way.
    """

    config_description: ClassVar[str] = (
        "one of 'allow', 'ask', 'deny', or a mapping with the keys mode, final, when, otherwise"
    )

    mode: ToolPermission = Field(description="allow, ask or deny.")
    final: bool = Field(
        False, description="A deny that more specific levels (agent, user, session) cannot lift."
    )
    when: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Argument name -> glob patterns its value must match for `mode` to apply.",
    )
    otherwise: ToolPermission = Field(
        "ask", description="Permission when a `when` condition does not match."
    )

    @model_validator(mode="before")
    @classmethod
    def _word_is_mode(cls, value: Any) -> Any:
        return {"mode": value} if isinstance(value, str) else value

    @model_serializer(mode="wrap")
    def _as_word_when_plain(self, handler: SerializerFunctionWrapHandler) -> Any:
        if not self.final and not self.when:
            return self.mode
        return handler(self)

    def __eq__(self, other: object) -> bool:
        # A plain rule is its word: `settings.tools["x"] == "deny"` reads as it is written.
        if isinstance(other, str):
            return not self.final and not self.when and self.mode == other
        return super().__eq__(other)

    __hash__ = Section.__hash__


ToolRule = ToolRuleSettings
"""``allow`` / ``ask`` / ``deny``, or a rule with conditions."""


class PermissionsSettings(Section):
    """Permission overrides by user and by agent (the global ones are ``tools:``)."""

    users: dict[str, dict[str, ToolRule]] = Field(
        default_factory=dict, description="User id -> tool name or pattern -> rule."
    )
    agents: dict[str, dict[str, ToolRule]] = Field(
        default_factory=dict, description="Agent name -> tool name or pattern -> rule."
    )
    approval_timeout_secs: Seconds = Field(
        300.0, description="Time an `ask` waits for an answer before it counts as denied."
    )


class BudgetSettings(Section):
    """Token and cost ceilings checked before every model call (unset: no ceiling)."""

    session_tokens: Count | None = Field(None, description="Tokens one session may use in all.")
    session_cost_usd: Dollars | None = Field(None, description="Dollars one session may spend.")
    user_tokens: Count | None = Field(None, description="Tokens one user may use per UTC day.")
    user_cost_usd: Dollars | None = Field(None, description="Dollars one user may spend per day.")


class QuotaLimits(Section):
    """The quotas of one tenant or one user (unset: unlimited)."""

    requests_per_minute: Count | None = Field(
        None,
        description="Requests a minute (REST calls and WebSocket method calls) before 429.",
    )
    tokens_per_day: Count | None = Field(
        None,
        description="Tokens the models used per UTC day (the log's llm_result events); "
        "past it a message that would start or join a run is refused.",
    )
    cost_usd_per_day: Dollars | None = Field(
        None, description="Dollars the models cost per UTC day; past it messages are refused."
    )
    concurrent_runs: Count | None = Field(
        None,
        description="Runs not ended (in flight or waiting their turn) at once; a message "
        "past it is refused.",
    )
    max_sessions: Count | None = Field(
        None,
        description="Sessions neither deleted nor expired at once; creating one past it is "
        "refused.",
    )
    storage_mb: Count | None = Field(
        None,
        description="MiB the log may hold of the sessions not deleted (their events: "
        "messages, runs, tool calls, session state); past it a new message, session or "
        "state write is refused until sessions are deleted.",
    )


class QuotasSettings(Section):
    """Quotas per tenant and per user: the defaults of every tenant and every user, and
    overrides by tenant id and user id (an override's unset keys take the default)."""

    tenant: QuotaLimits = Field(default_factory=QuotaLimits)
    user: QuotaLimits = Field(default_factory=QuotaLimits)
    tenants: dict[str, QuotaLimits] = Field(
        default_factory=dict, description="Tenant id -> quotas replacing the tenant defaults."
    )
    users: dict[str, QuotaLimits] = Field(
        default_factory=dict, description="User id -> quotas replacing the user defaults."
    )

    @field_validator("tenants", "users", mode="before")
    @classmethod
    def _empty_override_means_defaults(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: {} if body is None else body for name, body in value.items()}
        return value

    def limits(self, kind: Literal["tenant", "user"], ident: str) -> QuotaLimits:
        """The quotas of tenant or user ``ident``: its override's keys over the defaults."""
        default, overrides = (
            (self.tenant, self.tenants) if kind == "tenant" else (self.user, self.users)
        )
        override = overrides.get(ident)
        if override is None:
            return default
        return default.model_copy(
            update={name: getattr(override, name) for name in override.model_fields_set}
        )


class AgentSettings(Section):
    """Defaults of the agent loop."""

    # The defaults are core.agents': the same for an agent built in code.
    default_mode: AgentMode = Field(
        DEFAULT_MODE,
        description="act: tools run at their permission; plan: only read-only tools run "
        "until a person approves the agent's plan.",
    )
    max_iterations: Count = Field(
        DEFAULT_MAX_ITERATIONS, description="Reason/act steps before a run stops."
    )
    use_chain_of_thought: bool = Field(
        DEFAULT_CHAIN_OF_THOUGHT, description="Ask models to reason step by step."
    )
    stream_enabled: bool = Field(
        DEFAULT_STREAM, description="Stream model output as it is produced."
    )
    queue_mode: QueueMode = Field(
        DEFAULT_QUEUE_MODE,
        description="What a message does while its session's run is in flight.",
    )
    context_strategy: Literal["trim", "summarize"] = Field(
        "trim", description="How history beyond the context window is shortened."
    )
    workspace: ExpandedPath | None = Field(
        None, description="Folder file tools work in; unset: a folder per session."
    )
    workspaces_dir: ExpandedPath = Field(
        default_factory=lambda: promptline_home() / "workspaces",
        description="Where per-session workspace folders are made.",
    )
    max_repeated_calls: Count = Field(
        3, description="The same tool call (same arguments) this many times in a row ends a run."
    )
    watchdog_secs: Seconds = Field(
        600.0, description="A run with no progress for this long is stopped and its session freed."
    )
    shutdown_timeout_secs: Seconds = Field(
        10.0, description="Time runs get to reach a safe point when the process stops."
    )
    on_crash: OnCrash = Field(
        DEFAULT_ON_CRASH,
        description="A run in flight when the process stopped: resume it from its last "
        "completed step after the restart, or record it as interrupted.",
    )
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    instance_id: str | None = Field(
        None,
        description="This process's name among processes sharing a database (unset: the "
        "host name); after a restart it settles only runs it started itself.",
    )


class AgentDefinition(Section):
    """A named agent; unset keys take the `agent:` defaults."""

    description: str = Field("", description="What the agent is for (shown in lists).")
    model: str | None = Field(
        None, description="Model id, or a routing tag as `tag:NAME`; unset: models.default."
    )
    system_prompt: str | None = Field(
        None, description="Jinja2 template of the system prompt (persona, context variables)."
    )
    persona: dict[str, Any] = Field(
        default_factory=dict, description="Variables the system prompt template can use."
    )
    tools: list[str] | None = Field(
        None, description="Tool names or patterns the agent may use; unset: every tool."
    )
    mode: AgentMode | None = Field(None, description="plan or act; unset: agent.default_mode.")
    max_iterations: Count | None = Field(None, description="Overrides agent.max_iterations.")
    queue_mode: QueueMode | None = Field(None, description="Overrides agent.queue_mode.")
    on_crash: OnCrash | None = Field(None, description="Overrides agent.on_crash.")
    use_chain_of_thought: bool | None = Field(
        None, description="Overrides agent.use_chain_of_thought."
    )
    temperature: Annotated[float, Field(ge=0, le=2)] | None = Field(
        None, description="Sampling temperature."
    )
    max_tokens: Count | None = Field(None, description="Most tokens in one answer.")
    workspace: ExpandedPath | None = Field(None, description="Overrides agent.workspace.")
    sandbox: SandboxChoice | None = Field(None, description="Overrides security.sandbox.")


class SessionsSettings(Section):
    """Session lifetime."""

    ttl_secs: Count = Field(
        THIRTY_DAYS_SECS, description="Idle time after which a session expires."
    )
    sweep_secs: Seconds = Field(
        60.0,
        description="How often the gateway records the sessions past their expiry time as "
        "expired (each entry point also refuses them as soon as the time has passed).",
    )


class EventsSettings(Section):
    """The event bus."""

    subscriber_queue: Count = Field(
        1000, description="Events buffered per subscriber before it is dropped as lagging."
    )


LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]


class LoggingSettings(Section):
    """What the gateway (``promptline serve``, ``promptline start``) writes to its log."""

    level: LogLevel = Field(
        "info",
        description="The least severe lines written: info includes one access line per "
        "request and per WebSocket connection; warning leaves them out.",
    )
    format: LogFormat = Field(
        "text", description="text: one readable line per record; json: one JSON object per line."
    )

    @field_validator("level", "format", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class Settings(Section):
    """All of PromptLine's configuration. Build it with `load_settings`; treat it as read-only.

    Besides the keys, a loaded instance knows which files it came from (``sources``), the active
    profile (``profile``), which keys referenced an unset environment variable
    (``unresolved``; `require` turns such a key into a clear error at the point of use) and
    which took a value of the secret store (``secret_refs``).
    """

    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    channels: ChannelsSettings = Field(default_factory=ChannelsSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    tools: dict[str, ToolRule] = Field(
        default_factory=dict, description="Permission per tool name or pattern (git_*, mcp.*)."
    )
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    quotas: QuotasSettings = Field(default_factory=QuotasSettings)
    permissions: PermissionsSettings = Field(default_factory=PermissionsSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    agents: dict[str, AgentDefinition] = Field(
        default_factory=dict, description="Named agents (the built-in one is `assistant`)."
    )
    sessions: SessionsSettings = Field(default_factory=SessionsSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    mcp_servers: dict[str, McpServerSettings] = Field(
        default_factory=dict, description="MCP servers whose tools agents may use, by name."
    )
    mcp_server: McpServeSettings = Field(default_factory=McpServeSettings)
    skills: SkillsSettings = Field(default_factory=SkillsSettings)
    plugins: PluginsSettings = Field(default_factory=PluginsSettings)
    catalogue: CatalogueSettings = Field(default_factory=CatalogueSettings)

    _unresolved: dict[str, str] = PrivateAttr(default_factory=dict)
    _sources: tuple[Path, ...] = PrivateAttr(default=())
    _profile: str | None = PrivateAttr(default=None)
    _secret_refs: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def unresolved(self) -> Mapping[str, str]:
        """Key path -> name of the unset environment variable that left it empty."""
        return MappingProxyType(self._unresolved)

    @property
    def sources(self) -> tuple[Path, ...]:
        """The config files that were read, in the order they were applied."""
        return self._sources

    @property
    def profile(self) -> str | None:
        """The active profile, if any."""
        return self._profile

    @property
    def secret_refs(self) -> Mapping[str, str]:
        """Key path -> the value as written (``${secret:NAME}``) for each key whose value came
        from the secret store; that is what is shown in place of the value."""
        return MappingProxyType(self._secret_refs)

    def get(self, path: str) -> Any:
        """The value at a key path such as ``"gateway.port"``; `ConfigError` if there is none."""
        return _lookup(self, _parse(path))

    def require(self, path: str) -> Any:
        """The value at ``path``, or a `ConfigError` saying what to set when it is empty.

        An empty key that referenced an unset variable names that variable, e.g.
        "models.providers.openai.api_key needs environment variable OPENAI_API_KEY, which is
        not set".
        """
        value = self.get(path)
        if value is not None:
            return value
        key = format_path(_parse(path))
        var = self._unresolved.get(key)
        where = ", ".join(str(source) for source in self._sources) or "the config file"
        if var is not None:
            raise ConfigError(
                f"{key} needs environment variable {var}, which is not set",
                hint=f"export {var}=..., or give a fallback with ${{{var}:-value}} in {where}",
                key=key,
                env_var=var,
            )
        env_name = "PROMPTLINE__" + "__".join(str(p).upper() for p in _parse(path))
        raise ConfigError(
            f"{key} is not set",
            hint=f"set {key} in {where}, or set the environment variable {env_name}",
            key=key,
        )

    def database_url(self) -> str:
        """The SQLAlchemy URL of the event log and sessions.

        Rule: ``state.database_url`` when set; else ``state.postgres_url`` when the backend is
        postgres (required then), or when the backend is redis and a postgres_url is set; else
        SQLite at ``state.sqlite_path``. ``postgres://`` URLs are returned as written; the
        storage layer picks the async driver.
        """
        state = self.state
        if state.database_url is not None:
            return state.database_url
        if state.backend == "postgres":
            return str(self.require("state.postgres_url"))
        if state.backend == "redis" and state.postgres_url is not None:
            return state.postgres_url
        return f"sqlite+aiosqlite:///{state.sqlite_path}"

    def with_provenance(
        self,
        *,
        unresolved: Mapping[str, str] | None = None,
        sources: tuple[Path, ...] = (),
        profile: str | None = None,
        secret_refs: Mapping[str, str] | None = None,
    ) -> Settings:
        """Attach where the values came from (used by the loader; returns ``self``)."""
        self._unresolved = dict(unresolved or {})
        self._sources = tuple(sources)
        self._profile = profile
        self._secret_refs = dict(secret_refs or {})
        return self


def _parse(path: str) -> KeyPath:
    try:
        return parse_path(path)
    except ValueError as exc:
        raise ConfigError(
            f"{path!r} is not a key path", hint="write keys joined by dots, e.g. gateway.port"
        ) from exc


def _lookup(root: Settings, path: KeyPath) -> Any:
    value: Any = root
    for depth, part in enumerate(path):
        here = format_path(path[:depth]) if depth else "the settings"
        if isinstance(value, BaseModel) and isinstance(part, str):
            fields = type(value).model_fields
            if part not in fields:
                close = difflib.get_close_matches(part, list(fields), n=1)
                guess = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"{here} has no key {part!r}{guess}",
                    hint=f"keys of {here}: {', '.join(fields)}",
                    key=format_path(path),
                )
            value = getattr(value, part)
        elif isinstance(value, dict) and isinstance(part, str):
            if part not in value:
                known = ", ".join(value) or "none"
                raise ConfigError(
                    f"{format_path(path[: depth + 1])} is not configured",
                    hint=f"configured under {here}: {known}",
                    key=format_path(path),
                )
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            raise ConfigError(
                f"{format_path(path)} does not exist: {here} has no entry {part!r}",
                key=format_path(path),
            )
    return value
