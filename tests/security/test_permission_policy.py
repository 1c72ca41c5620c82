"""The permission policy: levels and their order, final denies, patterns, argument conditions,
the defaults and require_approval, and rules changed at run time."""

from __future__ import annotations

from typing import Any

import pytest
from security_support import settings

from promptline.core.errors import InvalidInputError
from promptline.security.policy import PermissionPolicy, argument_text


def policy(**data: Any) -> PermissionPolicy:
    return PermissionPolicy(settings(**data))


# -- defaults -------------------------------------------------------------------------------


def test_a_read_only_tool_no_rule_covers_is_allowed() -> None:
    decision = policy().decide("file_read", read_only=True)

    assert decision.mode == "allow"
    assert decision.level == "default"
    assert "read-only" in decision.reason


def test_a_tool_no_rule_covers_asks_when_approval_is_required() -> None:
    decision = policy(security={"require_approval": True}).decide("file_write")

    assert decision.mode == "ask"
    assert decision.level == "default"
    assert "security.require_approval is on" in decision.reason


def test_a_tool_no_rule_covers_is_allowed_when_approval_is_not_required() -> None:
    decision = policy(security={"require_approval": False}).decide("file_write")

    assert decision.mode == "allow"
    assert "security.require_approval is off" in decision.reason


def test_require_approval_gives_way_to_a_rule_that_allows_explicitly() -> None:
    p = policy(security={"require_approval": True}, tools={"file_write": "allow"})

    assert p.decide("file_write").mode == "allow"
    assert p.decide("file_move").mode == "ask"


def test_without_require_approval_an_explicit_ask_still_asks_and_deny_still_denies() -> None:
    p = policy(security={"require_approval": False}, tools={"git_commit": "ask", "rm": "deny"})

    assert p.decide("git_commit").mode == "ask"
    assert p.decide("rm").mode == "deny"


def test_a_rule_can_make_a_read_only_tool_ask() -> None:
    assert policy(tools={"file_read": "ask"}).decide("file_read", read_only=True).mode == "ask"


# -- levels ---------------------------------------------------------------------------------


LEVELLED = {
    "tools": {"shell_execute": "deny", "git_commit": "ask", "web_get": "ask"},
    "permissions": {
        "agents": {"coder": {"shell_execute": "ask", "git_commit": "allow"}},
        "users": {"alice": {"shell_execute": "allow", "web_get": "deny"}},
    },
}


def test_global_rule_applies_when_no_inner_level_has_one() -> None:
    decision = policy(**LEVELLED).decide("shell_execute")

    assert (decision.mode, decision.level, decision.origin) == (
        "deny",
        "global",
        "tools.shell_execute",
    )


def test_agent_rule_overrides_the_global_one() -> None:
    decision = policy(**LEVELLED).decide("shell_execute", agent="coder")

    assert (decision.mode, decision.level, decision.key) == ("ask", "agent", "coder")
    assert decision.origin == "permissions.agents.coder.shell_execute"


def test_user_rule_overrides_the_agent_and_global_ones() -> None:
    decision = policy(**LEVELLED).decide("shell_execute", agent="coder", user="alice")

    assert (decision.mode, decision.level, decision.key) == ("allow", "user", "alice")


def test_session_rule_overrides_every_other_level() -> None:
    decision = policy(**LEVELLED).decide(
        "shell_execute", agent="coder", user="alice", session_rules={"shell_execute": "ask"}
    )

    assert (decision.mode, decision.level, decision.origin) == ("ask", "session", "session record")


def test_a_level_without_a_matching_rule_passes_the_decision_outward() -> None:
    # coder says nothing about web_get, alice denies it; bob has no rules at all.
    p = policy(**LEVELLED)

    assert p.decide("web_get", agent="coder", user="alice").level == "user"
    assert p.decide("web_get", agent="coder", user="bob").level == "global"
    assert p.decide("git_commit", agent="coder", user="bob").mode == "allow"


def test_rules_of_another_agent_or_user_do_not_apply() -> None:
    decision = policy(**LEVELLED).decide("shell_execute", agent="writer", user="bob")

    assert (decision.mode, decision.level) == ("deny", "global")


def test_a_final_deny_at_an_outer_level_cannot_be_lifted() -> None:
    p = policy(
        tools={"file_delete": {"mode": "deny", "final": True}},
        permissions={"users": {"alice": {"file_delete": "allow"}}},
    )

    decision = p.decide("file_delete", user="alice", session_rules={"file_delete": "allow"})

    assert (decision.mode, decision.level, decision.final) == ("deny", "global", True)
    assert "final" in decision.reason


def test_a_final_deny_at_the_agent_level_binds_user_and_session() -> None:
    p = policy(
        permissions={
            "agents": {"reader": {"file_*": {"mode": "deny", "final": True}}},
            "users": {"alice": {"file_write": "allow"}},
        }
    )

    assert p.decide("file_write", agent="reader", user="alice").mode == "deny"
    assert p.decide("file_write", agent="coder", user="alice").mode == "allow"


def test_a_deny_that_is_not_final_can_be_lifted() -> None:
    p = policy(
        tools={"file_delete": "deny"}, permissions={"users": {"alice": {"file_delete": "ask"}}}
    )

    assert p.decide("file_delete", user="alice").mode == "ask"


def test_final_has_no_effect_on_an_allow() -> None:
    p = policy(
        tools={"file_read": {"mode": "allow", "final": True}},
        permissions={"users": {"alice": {"file_read": "deny"}}},
    )

    decision = p.decide("file_read", user="alice")

    assert (decision.mode, decision.final) == ("deny", False)


# -- patterns -------------------------------------------------------------------------------


def test_a_pattern_covers_every_tool_it_matches() -> None:
    p = policy(tools={"git_*": "allow", "mcp.*": "deny"})

    assert p.decide("git_status").pattern == "git_*"
    assert p.decide("git_commit").mode == "allow"
    assert p.decide("mcp.github.create_issue").mode == "deny"
    assert p.decide("gitk").level == "default"
    assert p.decide("mcp").level == "default"


def test_an_exact_name_beats_a_pattern_in_the_same_level() -> None:
    p = policy(tools={"git_*": "allow", "git_push": "ask"})

    assert p.decide("git_push").pattern == "git_push"
    assert p.decide("git_push").mode == "ask"
    assert p.decide("git_pull").mode == "allow"


def test_a_longer_pattern_beats_a_shorter_one_whatever_the_order_written() -> None:
    p = policy(tools={"mcp.*": "ask", "mcp.github.*": "allow", "*": "deny"})

    assert p.decide("mcp.github.create_issue").pattern == "mcp.github.*"
    assert p.decide("mcp.slack.post").pattern == "mcp.*"
    assert p.decide("anything").pattern == "*"


def test_a_pattern_at_an_inner_level_beats_an_exact_name_at_an_outer_one() -> None:
    p = policy(tools={"git_push": "deny"}, permissions={"users": {"alice": {"git_*": "allow"}}})

    assert p.decide("git_push", user="alice").mode == "allow"


# -- argument conditions ---------------------------------------------------------------------


SHELL = {
    "tools": {
        "shell_execute": {
            "mode": "allow",
            "when": {"command": ["git status", "git diff *", "ls *"]},
            "otherwise": "ask",
        }
    }
}


@pytest.mark.parametrize("command", ["git status", "git diff --stat", "ls -la"])
def test_a_command_on_the_allow_list_is_allowed(command: str) -> None:
    decision = policy(**SHELL).decide("shell_execute", {"command": command})

    assert decision.mode == "allow"
    assert decision.condition == "it matches its patterns ('git status', 'git diff *', 'ls *')"


@pytest.mark.parametrize("command", ["rm -rf /", "git push", "git statusx"])
def test_a_command_off_the_allow_list_gets_otherwise(command: str) -> None:
    decision = policy(**SHELL).decide("shell_execute", {"command": command})

    assert decision.mode == "ask"
    assert decision.condition is not None
    assert f"`{command}`" in decision.condition
    assert "'git status', 'git diff *', 'ls *'" in decision.reason


def test_a_missing_argument_does_not_match_its_condition() -> None:
    decision = policy(**SHELL).decide("shell_execute", {})

    assert decision.mode == "ask"
    assert decision.condition == "argument 'command' is missing"


def test_every_named_argument_must_match() -> None:
    p = policy(
        tools={
            "file_write": {
                "mode": "allow",
                "when": {"path": ["notes/*"], "mode": ["append"]},
                "otherwise": "deny",
            }
        }
    )

    assert p.decide("file_write", {"path": "notes/a.md", "mode": "append"}).mode == "allow"
    assert p.decide("file_write", {"path": "notes/a.md", "mode": "overwrite"}).mode == "deny"
    assert p.decide("file_write", {"path": "src/a.py", "mode": "append"}).mode == "deny"


def test_non_text_arguments_are_matched_as_their_json_text() -> None:
    p = policy(tools={"sleep": {"mode": "allow", "when": {"seconds": ["[0-9]"]}}})

    assert argument_text(5) == "5"
    assert argument_text(True) == "true"
    assert argument_text({"b": 1, "a": 2}) == '{"a":2,"b":1}'
    assert p.decide("sleep", {"seconds": 5}).mode == "allow"
    assert p.decide("sleep", {"seconds": 50}).mode == "ask"


def test_a_conditional_deny_can_be_final() -> None:
    p = policy(
        tools={
            "shell_execute": {
                "mode": "deny",
                "final": True,
                "when": {"command": ["rm *", "sudo *"]},
                "otherwise": "ask",
            }
        },
        permissions={"users": {"alice": {"shell_execute": "allow"}}},
    )

    assert p.decide("shell_execute", {"command": "sudo reboot"}, user="alice").mode == "deny"
    assert p.decide("shell_execute", {"command": "make"}, user="alice").mode == "allow"


# -- session rules and run-time changes ------------------------------------------------------


def test_an_invalid_session_rule_refuses_and_says_why() -> None:
    decision = policy().decide("file_write", session_rules={"file_write": "maybe"})

    assert decision.mode == "deny"
    assert decision.origin is not None
    assert "invalid" in decision.origin


def test_a_rule_set_at_run_time_applies_to_the_next_decision() -> None:
    p = policy(tools={"git_commit": "ask"})
    assert p.decide("git_commit", user="alice").mode == "ask"

    p.set_rule("user", "alice", "git_*", "allow")

    decision = p.decide("git_commit", user="alice")
    assert (decision.mode, decision.level, decision.origin) == ("allow", "user", "set at run time")
    assert p.decide("git_commit", user="bob").mode == "ask"


def test_a_run_time_rule_replaces_the_configured_rule_of_the_same_pattern() -> None:
    p = policy(tools={"web_get": "ask"})

    p.set_rule("global", None, "web_get", {"mode": "deny", "final": True})

    assert p.decide("web_get").final is True
    assert p.rules("global")["web_get"].final is True


def test_removing_a_run_time_rule_brings_back_the_configured_one() -> None:
    p = policy(tools={"web_get": "ask"})
    p.set_rule("global", None, "web_get", "allow")

    assert p.remove_rule("global", None, "web_get") is True
    assert p.decide("web_get").mode == "ask"
    assert p.remove_rule("global", None, "web_get") is False


def test_a_run_time_session_rule_applies_to_that_session_only() -> None:
    p = policy(tools={"file_write": "ask"})

    p.set_rule("session", "s1", "file_write", "allow")

    assert p.decide("file_write", session_id="s1").mode == "allow"
    assert p.decide("file_write", session_id="s2").mode == "ask"
    p.clear_session("s1")
    assert p.decide("file_write", session_id="s1").mode == "ask"


def test_a_run_time_session_rule_beats_the_session_records_rule() -> None:
    p = policy()
    p.set_rule("session", "s1", "file_write", "deny")

    decision = p.decide("file_write", session_id="s1", session_rules={"file_write": "allow"})

    assert (decision.mode, decision.origin) == ("deny", "set at run time")


def test_reload_swaps_the_configured_rules_and_keeps_run_time_ones() -> None:
    p = policy(tools={"web_get": "deny"}, security={"require_approval": True})
    p.set_rule("user", "alice", "git_commit", "allow")

    p.reload(settings(tools={"web_get": "allow"}, security={"require_approval": False}))

    assert p.decide("web_get").mode == "allow"
    assert p.decide("file_write").mode == "allow"
    assert p.require_approval is False
    assert p.decide("git_commit", user="alice").origin == "set at run time"


@pytest.mark.parametrize(
    ("level", "key", "pattern", "rule", "message"),
    [
        ("team", "x", "a", "allow", "unknown permission level"),
        ("user", None, "a", "allow", "needs the user"),
        ("global", "x", "a", "allow", "belong to no"),
        ("user", "alice", "", "allow", "needs a tool name"),
        ("user", "alice", "a", "sometimes", "not a valid permission rule"),
    ],
)
def test_set_rule_refuses_what_it_cannot_apply(
    level: Any, key: str | None, pattern: str, rule: str, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        policy().set_rule(level, key, pattern, rule)


def test_the_reason_names_level_rule_and_where_it_is_written() -> None:
    decision = policy(**LEVELLED).decide("web_get", user="alice")

    assert decision.reason == (
        "the user rule 'web_get' for 'alice' (permissions.users.alice.web_get) denies it"
    )
