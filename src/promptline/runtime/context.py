"""Fitting a conversation into a model's context window: whole turns are trimmed from the
oldest end (or summarised), never a message cut in half."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from promptline.core.messages import Message
from promptline.models.limits import estimate_prompt_tokens
from promptline.models.types import ModelRequest, ToolSpec

__all__ = ["ContextFit", "estimate_tokens", "fit_context", "split_turns"]

Strategy = Literal["trim", "summarize"]
Summarizer = Callable[[list[Message]], Awaitable[str]]


def estimate_tokens(messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> int:
    """A cautious estimate of a prompt's tokens (the router's admission estimate).

    Providers count exactly only after the call; this is for deciding before it.
    """
    return estimate_prompt_tokens(
        ModelRequest(model="", messages=list(messages), tools=list(tools))
    )


def split_turns(messages: Sequence[Message]) -> list[list[Message]]:
    """The conversation as turns: each starts at a user message and holds everything up to
    the next one (assistant answers, tool calls and their results stay together)."""
    turns: list[list[Message]] = []
    for message in messages:
        if message.role == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns


@dataclass(frozen=True, slots=True)
class ContextFit:
    """The messages to send, and what was done to make them fit."""

    messages: list[Message]
    dropped_messages: int = 0
    summary: str | None = None
    tokens: int = 0
    fits: bool = True


async def fit_context(
    system: list[Message],
    conversation: list[Message],
    *,
    limit: int,
    tools: Sequence[ToolSpec] = (),
    strategy: Strategy = "trim",
    summarize: Summarizer | None = None,
) -> ContextFit:
    """``system + conversation`` within ``limit`` tokens (by `estimate_tokens`).

    Drops the oldest whole turns until the rest fits; the turn in progress (the last) is
    always kept. With ``summarize`` (strategy ``summarize``), the dropped turns are replaced
    by a summary the model writes; else by a note saying how many messages were left out.
    ``fits`` is False when even the last turn alone is too big.
    """
    fixed = estimate_tokens(system, tools)
    total = fixed + estimate_tokens(conversation)
    if total <= limit:
        return ContextFit([*system, *conversation], tokens=total)
    turns = split_turns(conversation)
    sizes = [estimate_tokens(turn) for turn in turns]
    note_reserve = 200
    kept = len(turns)
    used = fixed + note_reserve
    for size in reversed(sizes):
        if used + size > limit:
            break
        used += size
        kept -= 1
    first_kept = kept if kept < len(turns) else len(turns) - 1
    dropped = [m for turn in turns[:first_kept] for m in turn]
    rest = [m for turn in turns[first_kept:] for m in turn]
    summary = None
    if strategy == "summarize" and summarize is not None and dropped:
        summary = await summarize(dropped)
        note = f"Summary of the earlier conversation ({len(dropped)} messages): {summary}"
    else:
        note = (
            f"[{len(dropped)} earlier messages of this conversation were left out to fit the "
            "model's context window.]"
        )
    messages = [*system, Message(role="system", content=note), *rest]
    tokens = estimate_tokens(messages, tools)
    return ContextFit(
        messages,
        dropped_messages=len(dropped),
        summary=summary,
        tokens=tokens,
        fits=tokens <= limit,
    )
