"""Settings of the channels: where messages come from (CLI, HTTP, WebSocket, chat platforms)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from promptline.config.fieldtypes import Count, Port, Secret, Section


def _aes_key_length(value: str | None) -> str | None:
    # WeCom's EncodingAESKey is always 43 characters; anything else cannot decrypt callbacks.
    if value is not None and len(value) != 43:
        raise ValueError(f"must be exactly 43 characters (WeCom EncodingAESKey), got {len(value)}")
    return value


class CliChannelSettings(Section):
    """The terminal REPL."""

    enabled: bool = Field(True, description="Accept messages typed in the terminal.")


class HttpChannelSettings(Section):
    """Plain HTTP requests to an agent."""

    enabled: bool = Field(True, description="Accept messages over HTTP.")
    port: Port = Field(8080, description="Port of the HTTP channel.")


class WebSocketChannelSettings(Section):
    """Browser and client connections over WebSocket."""

    enabled: bool = Field(True, description="Accept WebSocket connections.")
    port: Port = Field(8081, description="Port of the WebSocket channel.")


class SlackChannelSettings(Section):
    """A Slack app."""

    enabled: bool = Field(False, description="Connect to Slack.")
    bot_token: Secret = Field(None, description="Bot user OAuth token (xoxb-...).")
    app_token: Secret = Field(None, description="App-level token (xapp-...) for Socket Mode.")
    signing_secret: Secret = Field(None, description="Signing secret for HTTP event delivery.")


class DiscordChannelSettings(Section):
    """A Discord bot."""

    enabled: bool = Field(False, description="Connect to Discord.")
    bot_token: Secret = Field(None, description="Bot token.")


class TelegramChannelSettings(Section):
    """A Telegram bot."""

    enabled: bool = Field(False, description="Connect to Telegram.")
    bot_token: Secret = Field(None, description="Token from @BotFather.")


class WeComChannelSettings(Section):
    """A WeCom (WeChat Work) self-built application."""

    enabled: bool = Field(False, description="Connect to WeCom.")
    corp_id: str | None = Field(None, description="Corporation ID (CorpID).")
    agent_id: Count | None = Field(None, description="Application AgentId.")
    secret: Secret = Field(None, description="Application secret.")
    token: Secret = Field(None, description="Callback token.")
    encoding_aes_key: Annotated[Secret, AfterValidator(_aes_key_length)] = Field(
        None, description="Callback EncodingAESKey (43 characters)."
    )


class DingTalkChannelSettings(Section):
    """A DingTalk robot (Stream mode)."""

    enabled: bool = Field(False, description="Connect to DingTalk.")
    client_id: str | None = Field(None, description="Application client ID (AppKey).")
    client_secret: Secret = Field(None, description="Application client secret (AppSecret).")


class FeishuChannelSettings(Section):
    """A Feishu / Lark application."""

    enabled: bool = Field(False, description="Connect to Feishu.")
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


CHANNEL_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "slack": ("bot_token",),
    "discord": ("bot_token",),
    "telegram": ("bot_token",),
    "wecom": ("corp_id", "agent_id", "secret"),
    "dingtalk": ("client_id", "client_secret"),
    "feishu": ("app_id", "app_secret"),
}
"""The keys an enabled channel cannot start without."""
