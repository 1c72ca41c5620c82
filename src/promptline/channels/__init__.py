"""Layer 5: channels. Where messages come from and answers go: one adapter per platform
behind the `Channel` protocol, and the router that maps a message to an agent and a session."""

from promptline.channels.base import Channel, InboundMessage, MessageSink, OutboundMessage
from promptline.channels.hub import ChannelHub
from promptline.channels.router import ChannelRouter, Route

__all__ = [
    "Channel",
    "ChannelHub",
    "ChannelRouter",
    "InboundMessage",
    "MessageSink",
    "OutboundMessage",
    "Route",
]
