"""Settings of the channels: where messages come from (CLI, HTTP, WebSocket, chat platforms).

The terminal, HTTP and WebSocket channels exist and each answers only while its ``enabled``
is on. The chat platforms have no adapter yet: their keys load (so a config written for a
later version still reads), but switching one on is refused as not supported yet
(`promptline.config.validation`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from promptline.config.fieldtypes import Count, Port, Secret, Section
from promptline.core.errors import NotFoundError


def _aes_key_length(value: str | None) -> str | None:
    # WeCom's EncodingAESKey is always 43 characters; anything else cannot decrypt callbacks.
    if value is not None and len(value) != 43:
        raise ValueError(f"must be exactly 43 characters (WeCom EncodingAESKey), got {len(value)}")
    return value


class CliChannelSettings(Section):
    """The terminal REPL."""

    enabled: bool = Field(
        True, description="Accept messages typed in the terminal (promptline chat and run)."
    )


class HttpChannelSettings(Section):
    """Plain HTTP requests to an agent."""

    enabled: bool = Field(
        True, description="Answer POST /v1/channels/http/messages (off: 404 channel_off)."
    )
    port: Port | None = Field(
        None,
        description="Must equal gateway.port, where the HTTP channel is served (a port of its "
        "own is not supported yet); unset: gateway.port.",
    )


class WebSocketChannelSettings(Section):
    """Browser and client connections over WebSocket."""

    enabled: bool = Field(
        True, description="Accept WebSocket connections on /v1/ws (off: closed with 4404)."
    )
    port: Port | None = Field(
        None,
        description="Must equal gateway.websocket_port or gateway.port, where /v1/ws is "
        "served (a port of its own is not supported yet); unset: those.",
    )


class SlackChannelSettings(Section):
    """A Slack app."""

    enabled: bool = Field(False, description="Not supported yet: only false is accepted.")
    bot_token: Secret = Field(None, description="Bot user OAuth token (xoxb-...).")
    app_token: Secret = Field(None, description="App-level token (xapp-...) for Socket Mode.")
    signing_secret: Secret = Field(None, description="Signing secret for HTTP event delivery.")


class DiscordChannelSettings(Section):
    """A Discord bot."""

    enabled: bool = Field(False, description="Not supported yet: only false is accepted.")
    bot_token: Secret = Field(None, description="Bot token.")


class TelegramChannelSettings(Section):
    """A Telegram bot."""

    enabled: bool = Field(False, description="Not supported yet: only false is accepted.")
    bot_token: Secret = Field(None, description="Token from @BotFather.")


class WeComChannelSettings(Section):
    """A WeCom (WeChat Work) self-built application."""

    enabled: bool = Field(False, description="Not supported yet: only false is accepted.")
    corp_id: str | None = Field(None, description="Corporation ID (CorpID).")
    agent_id: Count | None = Field(None, description="Application AgentId.")
    secret: Secret = Field(None, description="Application secret.")
    token: Secret = Field(None, description="Callback token.")
    encoding_aes_key: Annotated[Secret, AfterValidator(_aes_key_length)] = Field(
        None, description="Callback EncodingAESKey (43 characters)."
    )


class DingTalkChannelSettings(Section):
    """A DingTalk robot (Stream mode)."""

    enabled: bool = Field(False, description="Not supported yet: only false is accepted.")
    client_id: str | None = Field(None, description="Application client ID (AppKey).")
    client_secret: Secret = Field(None, description="Application client secret (AppSecret).")


class FeishuChannelSettings(Section):
    """A Feishu / Lark application."""

    enabled: bool = Field(False, description="Not supported yet: only false is accepted.")
    app_id: str | None = Field(None, description="App ID.")
    app_secret: Secret = Field(None, description="App secret.")
    verification_token: Secret = Field(None, description="Event verification token.")
    encrypt_key: Secret = Field(None, description="Event encryption key.")


class ChannelRoute(Section):
    """Which agent answers messages of a channel, user and thread, and which session holds
    the conversation. Empty matchers match anything; the first route that matches wins."""

    channel: str | None = Field(None, description="Channel name or glob (slack, tele*).")
    user: str | None = Field(None, description="User id or glob.")
    thread: str | None = Field(None, description="Thread / chat / channel id or glob.")
    agent: str = Field("assistant", description="The agent that answers.")
    session: Literal["per_thread", "per_user", "shared"] = Field(
        "per_thread",
        description="One session per thread (of a user), per user, or one for the whole channel.",
    )


class ChannelOffError(NotFoundError):
    """A message came in on a channel that is switched off."""

    code = "channel_off"


class ChannelsSettings(Section):
    """Every channel; each one is switched on by its ``enabled`` flag."""

    cli: CliChannelSettings = Field(default_factory=CliChannelSettings)
    http: HttpChannelSettings = Field(default_factory=HttpChannelSettings)
    websocket: WebSocketChannelSettings = Field(default_factory=WebSocketChannelSettings)
    slack: SlackChannelSettings = Field(default_factory=SlackChannelSettings)
    discord: DiscordChannelSettings = Field(default_factory=DiscordChannelSettings)
    telegram: TelegramChannelSettings = Field(default_factory=TelegramChannelSettings)
    wecom: WeComChannelSettings = Field(default_factory=WeComChannelSettings)
    dingtalk: DingTalkChannelSettings = Field(default_factory=DingTalkChannelSettings)
    feishu: FeishuChannelSettings = Field(default_factory=FeishuChannelSettings)
    routes: list[ChannelRoute] = Field(
        default_factory=list,
        description="Routing rules, tried in order; none matching: the default agent, a "
        "session per thread.",
    )

    def require_on(self, name: Literal["cli", "http", "websocket"]) -> None:
        """`NotFoundError` (code ``channel_off``) when channel ``name`` is switched off."""
        channel: CliChannelSettings | HttpChannelSettings | WebSocketChannelSettings = getattr(
            self, name
        )
        if not channel.enabled:
            raise ChannelOffError(
                f"the {name} channel is off: channels.{name}.enabled is false",
                hint=f"set channels.{name}.enabled: true in the config to take messages here",
                channel=name,
            )


NOT_SUPPORTED_CHANNELS: dict[str, str] = {
    "slack": "Slack",
    "discord": "Discord",
    "telegram": "Telegram",
    "wecom": "WeCom",
    "dingtalk": "DingTalk",
    "feishu": "Feishu",
}
"""The channels with settings but no adapter yet, by key, with the name users know them by."""
