"""Settings of what extends the tool set: MCP servers (used and served), skills, tool packages
and the catalogues they are installed from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from promptline.config.fieldtypes import Count, ExpandedPath, Seconds, Section
from promptline.config.home import promptline_home

McpTransport = Literal["stdio", "streamable_http", "sse"]


def _http_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value


class McpServerSettings(Section):
    """One MCP server whose tools agents may use: a program spoken to over stdio (``command``)
    or a server reached over HTTP (``url``)."""

    command: str | None = Field(None, description="Program to start (stdio transport).")
    args: list[str] = Field(default_factory=list, description="Its arguments.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment variables added for the program."
    )
    cwd: ExpandedPath | None = Field(None, description="Folder the program starts in.")
    url: Annotated[str | None, AfterValidator(_http_url)] = Field(
        None, description="Endpoint of an HTTP server (Streamable HTTP or SSE)."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="HTTP headers sent with every request (auth tokens)."
    )
    transport: McpTransport | None = Field(
        None,
        description="stdio, streamable_http or sse; unset: stdio for a command, "
        "streamable_http for a url.",
    )
    enabled: bool = Field(True, description="Connect to this server.")
    connect: Literal["start", "first_use"] = Field(
        "start", description="Connect when PromptLine starts, or when a tool is first needed."
    )
    tools: list[str] | None = Field(
        None, description="Tool names or patterns to take from it (all when unset)."
    )
    timeout_secs: Seconds | None = Field(
        None, description="Time limit of one tool call (capped by the resource limits)."
    )
    startup_timeout_secs: Seconds = Field(
        30.0, description="Time allowed to start and initialize the connection."
    )

    @model_validator(mode="after")
    def _one_endpoint(self) -> McpServerSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError("set exactly one of command (stdio) or url (HTTP)")
        if self.command is not None and self.transport not in (None, "stdio"):
            raise ValueError(f"transport {self.transport} needs a url, not a command")
        if self.url is not None and self.transport == "stdio":
            raise ValueError("transport stdio needs a command, not a url")
        return self

    @property
    def kind(self) -> McpTransport:
        """The transport in effect."""
        if self.transport is not None:
            return self.transport
        return "stdio" if self.command is not None else "streamable_http"


class McpServeSettings(Section):
    """PromptLine as an MCP server (``/mcp`` on the gateway, ``promptline mcp serve``)."""

    enabled: bool = Field(True, description="Serve MCP at /mcp on the gateway.")
    agents: list[str] | None = Field(
        None, description="Agents offered as MCP tools (all when unset)."
    )
    expose_tools: bool = Field(
        False, description="Also offer the registered tools (under the permission policy)."
    )


class SkillsSettings(Section):
    """Skills: folders with a SKILL.md that teach agents a task."""

    enabled: bool = Field(True, description="Offer skills to agents.")
    paths: list[ExpandedPath] = Field(
        default_factory=list,
        description="More folders to look for skills in (besides the workspace's skills/ and "
        "<home>/skills).",
    )
    watch: bool = Field(True, description="Pick up added, changed and removed skills at once.")
    disabled: list[str] = Field(
        default_factory=list, description="Skills never offered, whatever their switch says."
    )
    max_prompt_chars: Count = Field(
        4000, description="Room the skill list may take in the system prompt."
    )


class PluginsSettings(Section):
    """Tool packages: Python code that registers tools."""

    entry_points: bool = Field(
        True, description="Load packages that declare a `promptline.tools` entry point."
    )
    modules: list[str] = Field(
        default_factory=list,
        description="More tool modules: a module path (pkg.tools) or a .py file.",
    )
    disabled: list[str] = Field(
        default_factory=list, description="Tool packages never loaded, whatever their switch says."
    )
    dir: ExpandedPath = Field(
        default_factory=lambda: promptline_home() / "plugins",
        description="Where tool packages installed from a catalogue live.",
    )


class CatalogueSource(Section):
    """A place skills and tool packages are installed from: a folder or a git repository."""

    path: ExpandedPath | None = Field(None, description="A folder holding an index file.")
    git: str | None = Field(None, description="A git repository (URL or path) holding one.")
    ref: str | None = Field(None, description="Branch, tag or commit of the repository.")
    index: str = Field("promptline-index.yaml", description="The index file inside the source.")

    @model_validator(mode="after")
    def _one_location(self) -> CatalogueSource:
        if (self.path is None) == (self.git is None):
            raise ValueError("set exactly one of path or git")
        return self


def _default_cache() -> Path:
    return promptline_home() / "cache" / "catalogue"


class CatalogueSettings(Section):
    """Where `promptline tools search|install` look."""

    sources: dict[str, CatalogueSource] = Field(
        default_factory=dict, description="Catalogue sources by name."
    )
    cache_dir: ExpandedPath = Field(
        default_factory=_default_cache, description="Where git sources are checked out."
    )
