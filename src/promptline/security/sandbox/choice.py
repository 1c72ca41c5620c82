"""Which sandbox is in effect, and why: the one place that resolves ``auto`` (the tools'
executor and ``promptline doctor`` both ask it; the configuration docs describe it)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from promptline.security.sandbox.base import Sandbox, SandboxKind, SandboxNetwork
from promptline.security.sandbox.bubblewrap import BubblewrapSandbox, bwrap_problem
from promptline.security.sandbox.container import DockerSandbox, docker_problem
from promptline.security.sandbox.egress import IPAddress, Refuse
from promptline.security.sandbox.process import NoSandbox, ProcessSandbox

if TYPE_CHECKING:
    from promptline.config.settings import Settings

__all__ = [
    "SANDBOX_STRENGTH",
    "SandboxChoice",
    "Sandboxes",
    "egress_policy",
    "make_sandbox",
    "resolve_sandbox",
    "strongest",
]

SANDBOX_STRENGTH: dict[SandboxKind, int] = {"none": 0, "process": 1, "bubblewrap": 2, "docker": 3}
"""How much each backend contains, weakest first: where several levels choose a sandbox, the
strongest wins (`strongest`)."""


@dataclass(frozen=True, slots=True)
class SandboxChoice:
    """The backend a setting means here, and why (for ``auto``, or a backend that cannot run:
    ``problem`` then says what is missing)."""

    kind: SandboxKind
    reason: str
    problem: str | None = None


def resolve_sandbox(setting: str, *, check: bool = True) -> SandboxChoice:
    """``auto`` is bubblewrap when ``bwrap`` is installed and works on this machine, else
    process; any other value is itself, ``problem`` set when it is bubblewrap or docker and
    cannot run here (its commands are then refused, never run without it). ``check=False``
    leaves the Docker engine unasked (bwrap is asked once per process either way)."""
    if setting == "auto":
        problem = bwrap_problem()
        if problem is None:
            return SandboxChoice("bubblewrap", "auto: bwrap is installed and works")
        return SandboxChoice("process", f"auto: {problem}, so process")
    if setting == "bubblewrap":
        return SandboxChoice("bubblewrap", "configured", bwrap_problem())
    if setting == "docker":
        return SandboxChoice("docker", "configured", docker_problem() if check else None)
    if setting in ("none", "process"):
        kind: SandboxKind = "none" if setting == "none" else "process"
        return SandboxChoice(kind, "configured")
    raise ValueError(f"unknown sandbox {setting!r}")


def strongest(*settings: str | None) -> SandboxKind:
    """The strongest of ``settings`` (each a ``security.sandbox`` value, or None for a level
    that chooses nothing), ``auto`` resolved first: a level can only tighten what the others
    chose, never loosen it."""
    kinds = [resolve_sandbox(s, check=False).kind for s in settings if s is not None]
    if not kinds:
        raise ValueError("no sandbox setting to choose from")
    return max(kinds, key=SANDBOX_STRENGTH.__getitem__)


class Sandboxes:
    """The sandbox of each tool call, from three levels: its agent's
    (``agents.<name>.sandbox``, else ``security.sandbox``), its session's channel's
    (``security.sandbox_channels``) and its session's own. The strongest of them wins
    (`strongest`), so a channel or a session never loosens what the operator set for an agent,
    and an agent set to ``none`` in a channel set to ``docker`` runs in docker."""

    def __init__(self, settings: Settings) -> None:
        security = settings.security
        self._default: str = security.sandbox
        self._by_agent: dict[str, str] = {
            name: agent.sandbox for name, agent in settings.agents.items() if agent.sandbox
        }
        self._by_channel: dict[str, str] = dict(security.sandbox_channels)
        self._network: SandboxNetwork = security.sandbox_network
        self._egress: Refuse | None = None
        if self._network == "proxy":
            self._egress = egress_policy(security.egress_allow)
        self._pass_env: list[str] = list(security.sandbox_pass_env)
        self._image: str = security.sandbox_image
        self._made: dict[str, Sandbox] = {}
        self._kinds: dict[tuple[str | None, str | None, str | None], SandboxKind] = {}

    def setting_for(self, agent: str | None) -> str:
        """The setting that applies to ``agent`` (auto, none, process, bubblewrap or docker)."""
        return self._by_agent.get(agent or "", self._default)

    def setting_for_channel(self, channel: str | None) -> str | None:
        """The ``security.sandbox_channels`` entry of ``channel`` (None: it has none)."""
        return None if channel is None else self._by_channel.get(channel)

    def kind_for(
        self, agent: str | None, *, channel: str | None = None, session: str | None = None
    ) -> SandboxKind:
        """The backend a call of ``agent`` in a session of ``channel`` whose own sandbox is
        ``session`` (None: the session chose none) runs in: the strongest of the three."""
        key = (agent, channel, session)
        kind = self._kinds.get(key)
        if kind is None:
            kind = strongest(self.setting_for(agent), self.setting_for_channel(channel), session)
            if len(self._kinds) < _MAX_REMEMBERED:
                self._kinds[key] = kind
        return kind

    def for_call(
        self, agent: str | None, *, channel: str | None = None, session: str | None = None
    ) -> Sandbox:
        """The sandbox the commands of such a call run in (see `kind_for`)."""
        kind = self.kind_for(agent, channel=channel, session=session)
        sandbox = self._made.get(kind)
        if sandbox is None:
            sandbox = self._made[kind] = make_sandbox(
                kind,
                pass_env=self._pass_env,
                network=self._network,
                egress=self._egress,
                image=self._image,
            )
        return sandbox

    def for_agent(self, agent: str | None) -> Sandbox:
        """The sandbox ``agent``'s commands run in outside any session."""
        return self.for_call(agent)

    async def aclose(self) -> None:
        """Remove what the sandboxes made that outlives a command (docker's containers)."""
        for sandbox in self._made.values():
            if isinstance(sandbox, DockerSandbox):
                await sandbox.aclose()


_MAX_REMEMBERED = 4096
"""Combinations of agent, channel and session sandbox `Sandboxes.kind_for` remembers (channel
names come from callers: the memo must not grow without bound)."""


def make_sandbox(
    kind: SandboxKind,
    *,
    pass_env: list[str] | None = None,
    network: SandboxNetwork = "none",
    egress: Refuse | None = None,
    image: str = "debian:bookworm-slim",
) -> Sandbox:
    """A sandbox of ``kind`` (``egress``: the policy of the ``proxy`` network; ``image``: the
    docker sandbox's)."""
    env = pass_env or []
    if kind == "docker":
        return DockerSandbox(env, image=image, network=network)
    if kind == "bubblewrap":
        return BubblewrapSandbox(env, network=network, egress=egress)
    if kind == "none":
        return NoSandbox(env)
    return ProcessSandbox(env)


def egress_policy(allow: Iterable[str]) -> Refuse:
    """The egress policy of sandboxed commands: public addresses, and the hosts, addresses
    and networks ``allow`` names (``security.egress_allow``, shared with web_get and MCP
    servers over HTTP)."""
    from promptline.security.egress import EGRESS_SETTING, EgressPolicy

    policy = EgressPolicy(allow)

    def refuse(host: str, addresses: list[IPAddress]) -> str | None:
        reason = policy.refusal(host, [str(address) for address in addresses])
        return None if reason is None else f"{reason}; {EGRESS_SETTING} does not name it"

    return refuse
