"""Maps an inbound message to the agent that answers it and the session that holds the
conversation, by the rules of ``channels.routes``."""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import orjson

from promptline.channels.base import InboundMessage
from promptline.config.channels import ChannelRoute
from promptline.runtime.agent import DEFAULT_AGENT

__all__ = ["ChannelRouter", "Route"]

SessionPolicy = Literal["per_thread", "per_user", "shared"]


@dataclass(frozen=True, slots=True)
class Route:
    """Where a message goes: the agent, and the session (by a stable id)."""

    agent: str
    session_id: str
    session_key: str
    owner: str
    """The user the session belongs to: the writer, or the channel itself for ``shared``."""
    rule: int | None = None
    """Index of the rule that matched (None: the default)."""


class ChannelRouter:
    """Routes by the first matching rule; with none, to ``default_agent`` with a session per
    thread. The session id is derived from the key (tenant, channel, user, thread as the
    policy says), so the same conversation always lands in the same session."""

    def __init__(self, rules: Sequence[ChannelRoute] = (), *, default_agent: str = DEFAULT_AGENT):
        self.rules = list(rules)
        self.default_agent = default_agent

    def route(self, message: InboundMessage) -> Route:
        """The route of ``message``."""
        for index, rule in enumerate(self.rules):
            if (
                _match(rule.channel, message.channel)
                and _match(rule.user, message.user_id)
                and _match(rule.thread, message.thread_id or "")
            ):
                return _route(rule.agent, rule.session, message, index)
        return _route(self.default_agent, "per_thread", message, None)


def session_key(message: InboundMessage, policy: SessionPolicy) -> str:
    """The conversation a message belongs to, as text: a JSON array of its parts, so no two
    conversations share one (a message outside any thread is ``null``, not a thread id)."""
    parts: list[str | None] = [message.tenant_id, message.channel]
    if policy in ("per_thread", "per_user"):
        parts.append(message.user_id)
    if policy == "per_thread":
        parts.append(message.thread_id)
    return orjson.dumps(parts).decode()


def _route(agent: str, policy: SessionPolicy, message: InboundMessage, rule: int | None) -> Route:
    key = session_key(message, policy)
    digest = hashlib.sha256(key.encode()).hexdigest()[:26]
    owner = f"{message.channel}-channel" if policy == "shared" else message.user_id
    return Route(
        agent=agent, session_id=f"ses_ch_{digest}", session_key=key, owner=owner, rule=rule
    )


def _match(pattern: str | None, value: str) -> bool:
    return pattern is None or fnmatch.fnmatchcase(value, pattern)
