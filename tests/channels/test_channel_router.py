"""The channel router: rules in order, globs, session policies, stable session ids."""

from __future__ import annotations

from promptline.channels import ChannelRouter, InboundMessage
from promptline.config.channels import ChannelRoute


def msg(
    channel: str = "slack", user: str = "u1", thread: str | None = "t1", **kw: object
) -> InboundMessage:
    return InboundMessage.of(channel, user, "hi", thread_id=thread, **kw)  # type: ignore[arg-type]


def test_no_rule_means_the_default_agent_and_a_session_per_thread() -> None:
    router = ChannelRouter(default_agent="assistant")

    one, again, other_thread = (
        router.route(msg()),
        router.route(msg()),
        router.route(msg(thread="t2")),
    )

    assert one.agent == "assistant"
    assert one.rule is None
    assert one.session_id == again.session_id
    assert one.session_id != other_thread.session_id
    assert one.owner == "u1"


def test_the_first_matching_rule_wins_and_globs_match() -> None:
    router = ChannelRouter(
        [
            ChannelRoute(channel="slack", thread="C-ops*", agent="oncall"),
            ChannelRoute(channel="tele*", agent="helper", session="per_user"),
            ChannelRoute(agent="fallback"),
        ]
    )

    assert router.route(msg(thread="C-ops-1")).agent == "oncall"
    assert router.route(msg(thread="C-general")).agent == "fallback"
    assert router.route(msg(channel="telegram")).agent == "helper"
    assert router.route(msg(channel="telegram")).rule == 1


def test_per_user_joins_threads_and_shared_joins_users() -> None:
    per_user = ChannelRouter([ChannelRoute(session="per_user")])
    shared = ChannelRouter([ChannelRoute(session="shared")])

    assert per_user.route(msg(thread="a")).session_id == per_user.route(msg(thread="b")).session_id
    assert per_user.route(msg(user="u1")).session_id != per_user.route(msg(user="u2")).session_id
    assert shared.route(msg(user="u1")).session_id == shared.route(msg(user="u2")).session_id
    assert shared.route(msg()).owner == "slack-channel"


def test_tenants_never_share_a_session() -> None:
    router = ChannelRouter([ChannelRoute(session="shared")])

    acme = router.route(msg(tenant_id="acme"))
    globex = router.route(msg(tenant_id="globex"))

    assert acme.session_id != globex.session_id
    assert len(acme.session_id) <= 64


def test_the_routes_example_in_the_docs_loads_and_routes(tmp_path: object) -> None:
    import re
    from pathlib import Path

    from promptline.config import load_settings

    doc = (Path(__file__).parents[2] / "docs" / "channels.md").read_text(encoding="utf-8")
    [example] = re.findall(r"```yaml\n(.*?)```", doc, flags=re.S)
    path = Path(str(tmp_path)) / "config.yaml"
    path.write_text(example, encoding="utf-8")
    router = ChannelRouter(load_settings(path, environ={}).channels.routes)

    oncall = router.route(msg(channel="slack", thread="C-oncall-eu"))
    assert oncall.agent == "oncall"
    assert oncall.owner == "slack-channel"
    assert router.route(msg(channel="telegram", thread="x")).agent == "helper"
    assert router.route(msg(channel="http")).agent == "assistant"
