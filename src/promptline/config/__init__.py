"""PromptLine's configuration: the `Settings` model and how it is loaded, checked and shown.

Entry points: `load_settings` (defaults < config.yaml < profile < ``PROMPTLINE__*`` variables),
`validate_config` and `render_settings` for the CLI, `promptline_home` for where files live.
"""

from promptline.config.channels import (
    ChannelsSettings,
    CliChannelSettings,
    DingTalkChannelSettings,
    DiscordChannelSettings,
    FeishuChannelSettings,
    HttpChannelSettings,
    SlackChannelSettings,
    TelegramChannelSettings,
    WebSocketChannelSettings,
    WeComChannelSettings,
)
from promptline.config.env_overrides import ENV_PREFIX, env_override_name
from promptline.config.home import (
    config_file_path,
    config_path,
    profile_overlay_path,
    promptline_home,
)
from promptline.config.loader import load_settings, validate_config
from promptline.config.render import mask_url, render_settings
from promptline.config.settings import (
    AgentDefinition,
    AgentSettings,
    EventsSettings,
    GatewaySettings,
    ModelsSettings,
    PermissionsSettings,
    ProviderSettings,
    ResourceLimitsSettings,
    SecuritySettings,
    SessionsSettings,
    Settings,
    StateBackend,
    StateSettings,
    ToolPermission,
    ToolRule,
    ToolRuleSettings,
)
from promptline.core.agents import AgentMode, QueueMode

__all__ = [
    "ENV_PREFIX",
    "AgentDefinition",
    "AgentMode",
    "AgentSettings",
    "ChannelsSettings",
    "CliChannelSettings",
    "DingTalkChannelSettings",
    "DiscordChannelSettings",
    "EventsSettings",
    "FeishuChannelSettings",
    "GatewaySettings",
    "HttpChannelSettings",
    "ModelsSettings",
    "PermissionsSettings",
    "ProviderSettings",
    "QueueMode",
    "ResourceLimitsSettings",
    "SecuritySettings",
    "SessionsSettings",
    "Settings",
    "SlackChannelSettings",
    "StateBackend",
    "StateSettings",
    "TelegramChannelSettings",
    "ToolPermission",
    "ToolRule",
    "ToolRuleSettings",
    "WeComChannelSettings",
    "WebSocketChannelSettings",
    "config_file_path",
    "config_path",
    "env_override_name",
    "load_settings",
    "mask_url",
    "profile_overlay_path",
    "promptline_home",
    "render_settings",
    "validate_config",
]
