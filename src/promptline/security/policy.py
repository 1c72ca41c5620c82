"""The permission policy: allow, ask or deny one tool call, from rules at four levels.

Levels, outer to inner: global (``tools:``), agent (``permissions.agents``), user
(``permissions.users``), session (the session's own rules and rules set at run time). The
innermost level with a matching rule decides, except that a final deny at an outer level
cannot be lifted. See ``docs/permissions.md``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args

import orjson
from pydantic import ValidationError

from promptline.config.settings import Settings, ToolPermission, ToolRuleSettings
from promptline.core.errors import InvalidInputError
from promptline.core.names import matches
from promptline.security.exec_policy import (
    SHELL_TOOL,
    ShellCommand,
    floor,
    parse_command,
    shown,
)

__all__ = [
    "LEVELS",
    "REACHES_OUT",
    "Level",
    "PermissionDecision",
    "PermissionPolicy",
    "RuleLike",
    "argument_text",
    "as_rule",
]

Level = Literal["global", "agent", "user", "session"]
LEVELS: tuple[Level, ...] = get_args(Level)
"""The rule levels, outer (least specific) first."""

RuleLike = ToolRuleSettings | str | Mapping[str, Any]
"""A rule as written in config: a word (``allow``/``ask``/``deny``) or a mapping."""

REACHES_OUT = frozenset({"web_get"})
"""Read-only tools whose default is still that of a tool that changes things (ask, unless
``security.require_approval`` is off): what they read comes from beyond this machine, chosen
by the model."""

_WILDCARDS = "*?["
_MAX_SHOWN = 120


@dataclass(frozen=True, slots=True)
class PermissionDecision:
    """What the policy says about one call, and which rule said it.

    ``level`` is ``default`` when no rule matched; ``pattern`` is the rule's tool name or
    pattern, ``key`` the agent, user or session the rule belongs to, ``origin`` where the
    rule was written (a config key path, ``run time`` or ``session record``). ``condition``
    tells how the rule's ``when`` came out. ``reason`` says all of it in one sentence.
    """

    mode: ToolPermission
    level: Level | Literal["default"]
    reason: str
    pattern: str | None = None
    key: str | None = None
    origin: str | None = None
    final: bool = False
    condition: str | None = None

    @property
    def allowed(self) -> bool:
        return self.mode == "allow"

    @property
    def denied(self) -> bool:
        return self.mode == "deny"

    @property
    def needs_approval(self) -> bool:
        return self.mode == "ask"


def as_rule(value: RuleLike, *, where: str = "rule") -> ToolRuleSettings:
    """A rule from a word, a mapping or a rule; `InvalidInputError` naming ``where``."""
    if isinstance(value, ToolRuleSettings):
        return value
    try:
        return ToolRuleSettings.model_validate(value)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InvalidInputError(
            f"{where} is not a valid permission rule: {loc + ': ' if loc else ''}{first['msg']}",
            hint="write allow, ask or deny, or a mapping with mode, final, when and otherwise",
        ) from None


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: str
    rule: ToolRuleSettings
    origin: str


class _RuleTable:
    """One level's rules for one owner: exact names in a dict, patterns most specific first."""

    __slots__ = ("exact", "patterns")

    def __init__(self, rules: Mapping[str, _Rule]) -> None:
        self.exact: dict[str, _Rule] = {}
        patterns: list[_Rule] = []
        for pattern, entry in rules.items():
            if any(c in pattern for c in _WILDCARDS):
                patterns.append(entry)
            else:
                self.exact[pattern] = entry
        # A longer pattern says more; among equals, fewer wildcards; then by text, so the
        # winner never depends on the order the rules were written in.
        patterns.sort(key=lambda e: (-len(e.pattern), _wildcards(e.pattern), e.pattern))
        self.patterns = tuple(patterns)

    def lookup(self, name: str) -> _Rule | None:
        found = self.exact.get(name)
        if found is not None:
            return found
        for entry in self.patterns:
            if matches(entry.pattern, name):
                return entry
        return None


_EMPTY = _RuleTable({})


class PermissionPolicy:
    """Decides allow / ask / deny for a tool call from the configured and run-time rules.

    Rules set with `set_rule` sit on top of the configured ones of the same level and owner
    (the same pattern replaces the configured rule); `remove_rule` takes a run-time rule
    away again and `reload` swaps the configured ones. Every change applies from the next
    `decide`. Run-time rules outlive `reload`.
    """

    def __init__(self, settings: Settings) -> None:
        self._configured: dict[tuple[Level, str], dict[str, _Rule]] = {}
        self._runtime: dict[tuple[Level, str], dict[str, _Rule]] = {}
        self._tables: dict[tuple[Level, str], _RuleTable] = {}
        self._require_approval = True
        self.reload(settings)

    @property
    def require_approval(self) -> bool:
        """``security.require_approval``: whether a tool no rule covers must be approved."""
        return self._require_approval

    def reload(self, settings: Settings) -> None:
        """Take the configured rules and ``security.require_approval`` from ``settings``."""
        configured: dict[tuple[Level, str], dict[str, _Rule]] = {}
        configured[("global", "")] = {
            p: _Rule(p, r, f"tools.{p}") for p, r in settings.tools.items()
        }
        for agent, rules in settings.permissions.agents.items():
            configured[("agent", agent)] = {
                p: _Rule(p, r, f"permissions.agents.{agent}.{p}") for p, r in rules.items()
            }
        for user, rules in settings.permissions.users.items():
            configured[("user", user)] = {
                p: _Rule(p, r, f"permissions.users.{user}.{p}") for p, r in rules.items()
            }
        self._configured = configured
        self._require_approval = settings.security.require_approval
        self._tables.clear()

    def set_rule(self, level: Level, key: str | None, pattern: str, rule: RuleLike) -> None:
        """Add or replace a run-time rule for ``pattern`` at ``level``.

        ``key`` names the agent, user or session the rule is for (``None`` for ``global``).
        """
        address = _address(level, key)
        if not pattern:
            raise InvalidInputError("a permission rule needs a tool name or pattern")
        checked = as_rule(rule, where=f"the {level} rule for {pattern!r}")
        self._runtime.setdefault(address, {})[pattern] = _Rule(pattern, checked, "set at run time")
        self._tables.pop(address, None)

    def remove_rule(self, level: Level, key: str | None, pattern: str) -> bool:
        """Remove a run-time rule; True if there was one. A configured rule for the same
        pattern applies again (to override one, set another rule instead)."""
        address = _address(level, key)
        rules = self._runtime.get(address)
        if rules is None or rules.pop(pattern, None) is None:
            return False
        if not rules:
            del self._runtime[address]
        self._tables.pop(address, None)
        return True

    def clear_session(self, session_id: str) -> None:
        """Forget the run-time rules of a session that has ended."""
        self._runtime.pop(("session", session_id), None)
        self._tables.pop(("session", session_id), None)

    def rules(self, level: Level, key: str | None = None) -> dict[str, ToolRuleSettings]:
        """The rules in force at ``level`` for ``key``: configured, overlaid by run-time ones
        (a session's own record rules are not known here; they come with each call)."""
        address = _address(level, key)
        merged = {**self._configured.get(address, {}), **self._runtime.get(address, {})}
        return {p: e.rule for p, e in merged.items()}

    def decide(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        read_only: bool = False,
        agent: str | None = None,
        user: str | None = None,
        session_id: str | None = None,
        session_rules: Mapping[str, Any] | None = None,
        workspace: Path | None = None,
    ) -> PermissionDecision:
        """Allow, ask or deny a call of ``tool`` with ``arguments``.

        ``session_rules`` are the session record's own rules (tool or pattern -> rule); run-time
        rules set for ``session_id`` take precedence over them for the same pattern.

        A ``shell_execute`` command is parsed into its parts and judged part by part (see
        `promptline.security.exec_policy`); ``workspace`` is where its redirections are
        placed. Whatever the rules say, a part the policy cannot trust turns allow into ask.
        """
        args: Mapping[str, Any] = arguments or {}
        shell = _shell_command(tool, args)
        decided: PermissionDecision | None = None
        for level, key, table in self._levels(agent, user, session_id, session_rules):
            entry = table.lookup(tool)
            if entry is None:
                continue
            rule = _rule_text(level, key, entry)
            reason: str | None = None
            condition: str | None
            if shell is not None and _COMMAND in entry.rule.when:
                mode, condition, reason = _evaluate_shell(entry.rule, args, shell, rule)
            else:
                mode, condition = _evaluate(entry.rule, args)
            final = mode == "deny" and entry.rule.final
            decision = PermissionDecision(
                mode=mode,
                level=level,
                reason=_reason(rule, mode, condition, final, reason),
                pattern=entry.pattern,
                key=key,
                origin=entry.origin,
                final=final,
                condition=condition,
            )
            if final:
                return decision
            decided = decision
        decision = decided or self._default(tool, read_only)
        if shell is not None and decision.allowed:
            return _floored(decision, shell, workspace, args)
        return decision

    def _default(self, tool: str, read_only: bool) -> PermissionDecision:
        reaches_out = tool in REACHES_OUT
        if read_only and not reaches_out:
            return PermissionDecision("allow", "default", f"no rule covers {tool}; it is read-only")
        what = f"{tool}, which reaches the network," if reaches_out else tool
        if self._require_approval:
            return PermissionDecision(
                "ask",
                "default",
                f"no rule covers {what} and security.require_approval is on, so it needs approval",
            )
        return PermissionDecision(
            "allow", "default", f"no rule covers {what} and security.require_approval is off"
        )

    def _levels(
        self,
        agent: str | None,
        user: str | None,
        session_id: str | None,
        session_rules: Mapping[str, Any] | None,
    ) -> list[tuple[Level, str | None, _RuleTable]]:
        levels: list[tuple[Level, str | None, _RuleTable]] = [
            ("global", None, self._table(("global", "")))
        ]
        if agent is not None:
            levels.append(("agent", agent, self._table(("agent", agent))))
        if user is not None:
            levels.append(("user", user, self._table(("user", user))))
        levels.append(("session", session_id, self._session_table(session_id, session_rules)))
        return levels

    def _table(self, address: tuple[Level, str]) -> _RuleTable:
        table = self._tables.get(address)
        if table is None:
            configured = self._configured.get(address)
            runtime = self._runtime.get(address)
            if not configured and not runtime:
                return _EMPTY
            table = _RuleTable({**(configured or {}), **(runtime or {})})
            self._tables[address] = table
        return table

    def _session_table(
        self, session_id: str | None, session_rules: Mapping[str, Any] | None
    ) -> _RuleTable:
        runtime = self._table(("session", session_id)) if session_id is not None else _EMPTY
        if not session_rules:
            return runtime
        own = {p: _session_rule(p, r) for p, r in session_rules.items()}
        if session_id is not None:
            own.update(self._runtime.get(("session", session_id), {}))
        return _RuleTable(own)


def _address(level: str, key: str | None) -> tuple[Level, str]:
    if level not in LEVELS:
        raise InvalidInputError(
            f"unknown permission level {level!r}", hint=f"use one of {', '.join(LEVELS)}"
        )
    if level == "global":
        if key:
            raise InvalidInputError("global rules belong to no agent, user or session")
        return ("global", "")
    if not key:
        raise InvalidInputError(f"a {level} rule needs the {level} it is for")
    return (level, key)


def _session_rule(pattern: str, value: Any) -> _Rule:
    try:
        rule = as_rule(value, where=f"the session rule for {pattern!r}")
    except InvalidInputError as exc:
        # A broken rule must not open anything up: it refuses, and says why.
        rule = ToolRuleSettings(mode="deny")
        return _Rule(pattern, rule, f"session record (invalid: {exc.message})")
    return _Rule(pattern, rule, "session record")


def _wildcards(pattern: str) -> int:
    return sum(pattern.count(c) for c in _WILDCARDS)


def argument_text(value: Any) -> str:
    """An argument's value as the text `when` patterns are matched against."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()


def _evaluate(
    rule: ToolRuleSettings, arguments: Mapping[str, Any]
) -> tuple[ToolPermission, str | None]:
    if not rule.when:
        return rule.mode, None
    for name, patterns in rule.when.items():
        if name not in arguments:
            return rule.otherwise, f"argument {name!r} is missing"
        text = argument_text(arguments[name])
        if not any(fnmatch.fnmatchcase(text, p) for p in patterns):
            shown = ", ".join(repr(p) for p in patterns) or "none"
            return (
                rule.otherwise,
                f"{name}={_short(text)!r} matches none of its patterns ({shown})",
            )
    return rule.mode, _MATCHED


def _short(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _rule_text(level: Level, key: str | None, entry: _Rule) -> str:
    owner = "" if level == "global" or key is None else f" for {key!r}"
    return f"the {level} rule {entry.pattern!r}{owner} ({entry.origin})"


def _reason(
    rule: str,
    mode: ToolPermission,
    condition: str | None,
    final: bool,
    shell: str | None = None,
) -> str:
    if shell is not None:
        text = shell
    else:
        verb = {"allow": "allows it", "ask": "asks for approval", "deny": "denies it"}[mode]
        text = f"{rule} {verb}"
        if condition is not None:
            text += f": {condition}"
    if final:
        text += "; it is final, so no agent, user or session rule can lift it"
    return text


# -- shell commands ----------------------------------------------------------------------------

_COMMAND = "command"
_MATCHED = "the arguments match its conditions"
_OUTCOME: dict[ToolPermission, str] = {
    "allow": "is allowed",
    "ask": "needs approval",
    "deny": "is denied",
}
_STRICTNESS: dict[ToolPermission, int] = {"allow": 0, "ask": 1, "deny": 2}


def _shell_command(tool: str, arguments: Mapping[str, Any]) -> ShellCommand | None:
    """The parsed command of a ``shell_execute`` call; None for any other call."""
    if tool != SHELL_TOOL:
        return None
    command = arguments.get(_COMMAND)
    if not isinstance(command, str):
        return None
    return parse_command(command)


def _evaluate_shell(
    rule: ToolRuleSettings, arguments: Mapping[str, Any], shell: ShellCommand, who: str
) -> tuple[ToolPermission, str, str | None]:
    """A rule with command patterns, judged part by part: the strictest part decides.

    Returns the mode, the condition and the whole reason (``None``: the usual one). ``who``
    names the rule.
    """
    others = {k: v for k, v in rule.when.items() if k != _COMMAND}
    if others:
        mode, condition = _evaluate(rule.model_copy(update={"when": others}), arguments)
        if condition != _MATCHED:
            return mode, condition or "", None
    patterns = rule.when[_COMMAND]
    if shell.error is not None:
        # Unreadable: a deny still matches the line as one text; anything else asks.
        only = rule.model_copy(update={"when": {_COMMAND: patterns}})
        mode, condition = _evaluate(only, arguments)
        if mode == "deny":
            return mode, condition or "", None
        why = f"it cannot be parsed as a shell command ({shell.error})"
        return "ask", why, f"{shown(shell.text)} needs approval: {why}"
    listed = ", ".join(repr(p) for p in patterns) or "none"
    command = shown(shell.text)
    if rule.mode != "allow":
        # A pattern that denies or asks also matches the line as a whole.
        hit = _first_match(patterns, (shell.text,))
        if hit is not None:
            condition = f"the whole line matches its pattern {hit!r}"
            return (
                rule.mode,
                condition,
                f"{command} {_OUTCOME[rule.mode]}: {who} says so, as {condition}",
            )
    judged = []
    for part in shell.parts:
        hit = _first_match(patterns, part.forms if rule.mode == "allow" else part.forms + part.bare)
        judged.append((rule.mode if hit is not None else rule.otherwise, hit))
    # The first of the strictest parts decides.
    index = max(range(len(judged)), key=lambda i: (_STRICTNESS[judged[i][0]], -i))
    mode, hit = judged[index]
    if mode == "allow":
        whole = "it" if len(shell.parts) == 1 else f"every part of {command}"
        matched = "matches" if rule.mode == "allow" else "matches none of"
        condition = f"{whole} {matched} its patterns ({listed})"
        return mode, condition, f"{who} allows it: {condition}"
    label = shell.label(index)
    if hit is None:
        condition = f"{label} matches none of its patterns ({listed})"
        if mode == "ask":
            verb = "has no allow rule: {who} asks for approval"
        else:
            verb = "is denied: {who} denies it"
        reason = f"{label} {verb.format(who=who)}, as it matches none of its patterns ({listed})"
        return mode, condition, reason
    condition = f"{label} matches its pattern {hit!r}"
    return (
        mode,
        condition,
        f"{label} {_OUTCOME[mode]}: {who} says so, as it matches its pattern {hit!r}",
    )


def _first_match(patterns: list[str], texts: tuple[str, ...]) -> str | None:
    for pattern in patterns:
        if any(fnmatch.fnmatchcase(text, pattern) for text in texts):
            return pattern
    return None


def _floored(
    decision: PermissionDecision,
    shell: ShellCommand,
    workspace: Path | None,
    arguments: Mapping[str, Any],
) -> PermissionDecision:
    """An allowed shell command, unless a part needs approval whatever the rules say."""
    cwd = arguments.get("cwd", ".")
    found = floor(shell, workspace=workspace, cwd=cwd if isinstance(cwd, str) else ".")
    if found is None:
        return decision
    index, why = found
    who = shown(shell.text) if index is None else shell.label(index)
    return replace(
        decision,
        mode="ask",
        reason=f"{who} needs approval whatever the rules say: {why}",
        condition=why,
    )
