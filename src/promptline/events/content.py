"""Prompts stored once: the compact ``llm_command`` and the content it refers to.

A model call's prompt is mostly what the log already holds: the session's messages (each one
on the record in the event that added it to the conversation) and a system prompt and tool
list that are the same call after call. So an event store keeps an ``llm_command`` compact
(`LlmCommand`, ``schema_version`` 2) as it numbers it:

- the leading system messages and the tool list become content hashes (``system_ref``,
  ``tools_ref``); their bodies go to the ``event_content`` table (the in-memory store: a
  dict), once per tenant, in the transaction that stores the first command needing them;
- the messages after them become ``layout``: seq ranges ``[a, b]`` standing for every message
  the stream's events ``a`` to ``b`` added to the conversation (`conversation_message`), and
  ``0`` for a message the log does not hold (it stays inline in ``messages``).

`PromptIndex` is what lets a store do that without reading anything back: per stream, the
digests of the conversation messages this store appended, in seq order. A range is only
written where the index saw every event of the stream between its ends (a stream that moved
elsewhere, another process's append, starts the index over), and each message matched by
digest of its JSON form, so expanding a command gives exactly the prompt the model was sent.
`expand_prompts` does that: it reads the ranges from the command's own stream and the content
under the command's own tenant, never anything else.
"""

from __future__ import annotations

import hashlib
import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence
from typing import Any, Protocol, cast, runtime_checkable

import orjson

from promptline.core.errors import StorageError
from promptline.core.events import (
    COMPACT_COMMAND_VERSION,
    Event,
    LlmCommand,
    LlmCommandEvent,
    PromptPiece,
    conversation_message,
)
from promptline.core.messages import Message

__all__ = [
    "CONTENT_INSERT_SQL",
    "ContentReader",
    "PromptIndex",
    "Staging",
    "content_hash",
    "content_select_sql",
    "expand_prompt",
    "expand_prompts",
    "tenant_key",
]

KIND_SYSTEM = "system"
"""A content part holding a prompt's leading system messages (a JSON list of messages)."""
KIND_TOOLS = "tools"
"""A content part holding the tool list offered to a model (a JSON list of tool specs)."""

CONTENT_INSERT_SQL = (
    "INSERT INTO event_content (tenant_id, hash, kind, body) VALUES (?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING"
)
"""Stores a content part unless it is there already (SQLite and PostgreSQL alike)."""

MAX_STREAMS = 256
"""How many streams a `PromptIndex` follows; the least recently written is dropped first (its
next command then stores the messages it does not find inline, and the index starts over)."""
MAX_KNOWN_PARTS = 4096
"""How many stored content parts a `PromptIndex` remembers, so as not to send them again."""

_STAMPS = {"id", "created_at"}

Digest = tuple[str, int]

MAX_KNOWN_HASHES = 256
"""How many content bodies a `PromptIndex` keeps the hash of."""

ContentRow = tuple[str, str, str, str]
"""A row of ``event_content``: tenant key, hash, kind, body (JSON text)."""


def content_hash(body: bytes) -> str:
    """The key a content part is stored under: the SHA-256 of its body, in hex."""
    return hashlib.sha256(body).hexdigest()


def tenant_key(tenant_id: str | None) -> str:
    """The tenant column of a content part (``""`` for events without a tenant)."""
    return tenant_id or ""


def content_select_sql(count: int) -> str:
    """The query for ``count`` content parts of one tenant (``?`` placeholders: tenant, then
    the hashes)."""
    marks = ", ".join("?" for _ in range(count))
    return f"SELECT hash, body FROM event_content WHERE tenant_id = ? AND hash IN ({marks})"


def _digest(message: Message) -> tuple[str, int]:
    """What a message is matched by: its id and the hash of its JSON form. Python's own
    hash (keyed per process, as the index is): a wrong match would need the same message id
    and a 64-bit collision of two versions of that message."""
    return message.id, hash(message.__pydantic_serializer__.to_json(message))


# -- the index a store keeps -------------------------------------------------------------------


class _Conversation:
    """What one stream's conversation holds, as far as this store wrote it."""

    __slots__ = ("digests", "first", "last_seq", "seqs")

    def __init__(self, last_seq: int) -> None:
        self.last_seq = last_seq
        """The newest seq of the stream this index saw (of any event)."""
        self.seqs: list[int] = []
        self.digests: list[Digest] = []
        self.first: dict[Digest, int] = {}
        """A message digest -> the index of its first occurrence."""

    def add(self, seq: int, digest: Digest) -> None:
        self.first.setdefault(digest, len(self.seqs))
        self.seqs.append(seq)
        self.digests.append(digest)


class _Pending:
    """One stream's side of a `Staging`: the committed conversation it builds on (entries
    below ``base_len``) and what the batch adds."""

    __slots__ = ("base", "base_last", "base_len", "conv")

    def __init__(self, base: _Conversation | None, first_seq: int) -> None:
        fresh = base is None or base.last_seq != first_seq - 1
        self.base = None if fresh else base
        self.base_last = None if base is None else base.last_seq
        self.base_len = 0 if self.base is None else len(self.base.seqs)
        self.conv = _Conversation(first_seq - 1)

    def size(self) -> int:
        return self.base_len + len(self.conv.seqs)

    def seq_at(self, index: int) -> int:
        if index < self.base_len:
            assert self.base is not None
            return self.base.seqs[index]
        return self.conv.seqs[index - self.base_len]

    def digest_at(self, index: int) -> Digest:
        if index < self.base_len:
            assert self.base is not None
            return self.base.digests[index]
        return self.conv.digests[index - self.base_len]

    def find(self, digest: Digest) -> int | None:
        if self.base is not None:
            at = self.base.first.get(digest)
            if at is not None and at < self.base_len:
                return at
        at = self.conv.first.get(digest)
        return None if at is None else at + self.base_len


class PromptIndex:
    """Per store: each stream's conversation as this store wrote it, and the content parts
    it stored; see the module's docstring. Safe to use from the store's writer thread and
    its event loop (one lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: OrderedDict[str, _Conversation] = OrderedDict()
        self._parts: set[tuple[str, str]] = set()
        # The same system prompt and tool list come call after call: their hash is looked up
        # by their bytes (a dict lookup) rather than computed again.
        self._hashes: dict[bytes, str] = {}

    def begin(self) -> Staging:
        """Start one append: `Staging.apply` it to the numbered batch, `Staging.commit` it
        once the batch is stored (an append that failed leaves the index as it was)."""
        return Staging(self)

    def _commit(self, staging: Staging) -> None:
        with self._lock:
            for stream, (first, last) in staging.moved.items():
                known = self._streams.get(stream)
                if known is None:
                    continue
                if known.last_seq == first - 1:
                    known.last_seq = last
                elif known.last_seq < last:
                    del self._streams[stream]  # someone else wrote between: start over
            if not staging.pending:
                return
            for stream, pending in staging.pending.items():
                current = self._streams.get(stream)
                now = None if current is None else current.last_seq
                if (
                    pending.base is not None
                    and current is pending.base
                    and now == pending.base_last
                ):
                    for seq, digest in zip(pending.conv.seqs, pending.conv.digests, strict=True):
                        current.add(seq, digest)
                    current.last_seq = pending.conv.last_seq
                    conv = current
                elif now is None or pending.conv.last_seq > now:
                    conv = pending.conv
                    if pending.base is not None:  # the base moved meanwhile: start over
                        conv = _Conversation(pending.conv.last_seq)
                    self._streams[stream] = conv
                else:
                    continue  # an older batch committed after a newer one: keep the newer
                self._streams.move_to_end(stream)
            while len(self._streams) > MAX_STREAMS:
                self._streams.popitem(last=False)
            if len(self._parts) + len(staging.parts) > MAX_KNOWN_PARTS:
                self._parts.clear()
            self._parts.update(staging.parts)


class Staging:
    """What one append adds to a `PromptIndex`, and the content rows it must store."""

    def __init__(self, index: PromptIndex) -> None:
        self._index = index
        self.pending: dict[str, _Pending] = {}
        self.moved: dict[str, list[int]] = {}
        """Streams the batch only moved on: their first and last seq in it."""
        self.parts: dict[tuple[str, str], ContentRow] = {}

    @property
    def rows(self) -> list[ContentRow]:
        """The content rows to insert (insert-or-ignore) with the batch."""
        return list(self.parts.values())

    def apply(self, events: Iterable[Event]) -> list[Event]:
        """The numbered batch, each ``llm_command`` in it made compact against what the
        stream held before it (the batch's own earlier events included)."""
        out: list[Event] = []
        index = self._index
        moved = self.moved
        locked = False
        try:
            for event in events:
                stream = event.stream
                pending = self.pending.get(stream)
                command = type(event) is LlmCommandEvent and not event.data.compact
                message = None if command else conversation_message(event)
                if pending is None and not command and message is None:
                    # The common case: an event that neither says nor asks anything. Only
                    # the stream's newest seq moves.
                    span = moved.get(stream)
                    if span is None:
                        moved[stream] = [event.seq, event.seq]
                    else:
                        span[1] = event.seq
                    out.append(event)
                    continue
                if not locked:
                    index._lock.acquire()
                    locked = True
                if pending is None:
                    span = moved.pop(stream, None)
                    base = index._streams.get(stream)
                    pending = _Pending(base, span[0] if span else event.seq)
                    if span:
                        pending.conv.last_seq = span[1]
                    self.pending[stream] = pending
                if command:
                    event = self._compact(cast(LlmCommandEvent, event), pending)
                elif message is not None:
                    digest = _digest(message)
                    pending.conv.add(event.seq, digest)
                pending.conv.last_seq = event.seq
                out.append(event)
        finally:
            if locked:
                index._lock.release()
        return out

    def commit(self) -> None:
        """The batch is stored: what it added is known from now on."""
        self._index._commit(self)

    def _part(self, tenant: str, kind: str, body: bytes) -> str:
        hashes = self._index._hashes
        key = hashes.get(body)
        if key is None:
            key = hashes[body] = content_hash(body)
            if len(hashes) > MAX_KNOWN_HASHES:
                hashes.pop(next(iter(hashes)))
        if (tenant, key) not in self._index._parts:
            self.parts.setdefault((tenant, key), (tenant, key, kind, body.decode()))
        return key

    def _compact(self, event: LlmCommandEvent, pending: _Pending) -> LlmCommandEvent:
        data = event.data
        messages = data.messages
        tenant = tenant_key(event.tenant_id)
        lead = 0
        while lead < len(messages) and messages[lead].role == "system":
            lead += 1
        system_ref = None
        stamps = None
        if lead:
            # Without the message's id and time: the same prompt is a new message every run.
            system = messages[:lead]
            body = orjson.dumps([m.model_dump(mode="json", exclude=_STAMPS) for m in system])
            system_ref = self._part(tenant, KIND_SYSTEM, body)
            stamps = [(m.id, m.created_at) for m in system]
        tools_ref = None
        if data.tools:
            tools_ref = self._part(tenant, KIND_TOOLS, orjson.dumps(data.tools))
        layout: list[PromptPiece] = []
        inline: list[Message] = []
        at = -1  # the conversation index the last message matched (-1: none)
        start = 0
        size = pending.size()
        for message in messages[lead:]:
            digest = _digest(message)
            if 0 <= at < size - 1 and pending.digest_at(at + 1) == digest:
                at += 1
                continue
            if at >= 0:
                layout.append((start, pending.seq_at(at)))
            found = pending.find(digest)
            if found is None:
                layout.append(0)
                inline.append(message)
                at = -1
            else:
                at = found
                start = pending.seq_at(found)
        if at >= 0:
            layout.append((start, pending.seq_at(at)))
        # A copy, not a new model: every value is one the command already validated.
        compact = data.model_copy(
            update={
                "messages": inline,
                "tools": [],
                "system_ref": system_ref,
                "system_stamps": stamps,
                "tools_ref": tools_ref,
                "layout": layout,
                "message_count": len(messages),
                "tool_count": len(data.tools),
            }
        )
        return event.model_copy(update={"data": compact, "schema_version": COMPACT_COMMAND_VERSION})


# -- expanding ---------------------------------------------------------------------------------


@runtime_checkable
class ContentReader(Protocol):
    """An event store that keeps content parts (every store PromptLine ships)."""

    async def read_content(self, tenant_id: str | None, hashes: Collection[str]) -> dict[str, str]:
        """The bodies of the content parts of ``tenant_id`` with these hashes."""
        ...

    async def read_stream(
        self, stream: str, *, from_seq: int = 0, limit: int | None = None
    ) -> list[Event]:
        """Events of ``stream`` after ``from_seq``."""
        ...


async def expand_prompt(store: Any, event: Event) -> Event:
    """``event`` with its whole prompt back if it is a compact ``llm_command``; see
    `expand_prompts`."""
    return (await expand_prompts(store, [event]))[0]


async def expand_prompts(store: Any, events: Sequence[Event]) -> list[Event]:
    """``events`` with each compact ``llm_command`` put back whole: ``messages`` the whole
    prompt the model was sent, ``tools`` every tool offered (the form of ``schema_version``
    1). Other events, and commands stored whole (older logs), come back as they are.

    The messages are read from the command's own stream and the content parts under the
    command's own tenant, from ``store`` (the store that holds the events). A reference the
    store cannot resolve raises `StorageError`.
    """
    compact = [e for e in events if isinstance(e, LlmCommandEvent) and e.data.compact]
    if not compact:
        return list(events)
    if not isinstance(store, ContentReader):
        raise StorageError(
            f"{type(store).__name__} cannot expand compact llm_command events",
            hint="expand them with the event store that holds them",
        )
    wanted: dict[str, set[str]] = {}
    spans: dict[str, tuple[int, int]] = {}
    for command in compact:
        data = command.data
        refs = wanted.setdefault(tenant_key(command.tenant_id), set())
        refs.update(ref for ref in (data.system_ref, data.tools_ref) if ref is not None)
        for piece in data.layout or ():
            if isinstance(piece, int):
                continue
            low, high = spans.get(command.stream, piece)
            spans[command.stream] = (min(low, piece[0]), max(high, piece[1]))
    bodies: dict[tuple[str, str], Any] = {}
    for tenant, hashes in wanted.items():
        if hashes:
            found = await store.read_content(tenant or None, sorted(hashes))
            bodies.update({(tenant, key): orjson.loads(body) for key, body in found.items()})
    said: dict[str, tuple[list[int], list[Message]]] = {}
    for stream, (low, high) in spans.items():
        read = await store.read_stream(stream, from_seq=low - 1, limit=high - low + 1)
        seqs: list[int] = []
        messages: list[Message] = []
        for e in read:
            message = conversation_message(e)
            if message is not None:
                seqs.append(e.seq)
                messages.append(message)
        said[stream] = (seqs, messages)
    return [
        _expanded(e, bodies, said) if isinstance(e, LlmCommandEvent) and e.data.compact else e
        for e in events
    ]


def _expanded(
    command: LlmCommandEvent,
    bodies: dict[tuple[str, str], Any],
    said: dict[str, tuple[list[int], list[Message]]],
) -> LlmCommandEvent:
    data = command.data
    tenant = tenant_key(command.tenant_id)

    def part(ref: str | None) -> list[Any]:
        if ref is None:
            return []
        body = bodies.get((tenant, ref))
        if body is None:
            raise _missing(command, f"content {ref[:12]}")
        return list(body)

    system = part(data.system_ref)
    stamps = data.system_stamps or []
    if len(stamps) != len(system):
        raise _missing(command, "the ids of its system messages")
    messages = [
        Message.model_validate({**body, "id": id_, "created_at": at})
        for body, (id_, at) in zip(system, stamps, strict=True)
    ]
    inline = iter(data.messages)
    seqs, said_messages = said.get(command.stream, ([], []))
    for piece in data.layout or ():
        if isinstance(piece, int):
            message = next(inline, None)
            if message is None:
                raise _missing(command, "an inline message")
            messages.append(message)
            continue
        low, high = piece
        found = said_messages[bisect_left(seqs, low) : bisect_right(seqs, high)]
        if not found:
            raise _missing(command, f"the messages of seq {low} to {high}")
        messages.extend(found)
    if data.layout is None:
        messages.extend(inline)
    full = LlmCommand(
        model=data.model,
        provider=data.provider,
        deployment=data.deployment,
        messages=messages,
        tools=part(data.tools_ref),
        params=data.params,
        stream=data.stream,
    )
    return command.model_copy(update={"data": full})


def _missing(command: LlmCommandEvent, what: str) -> StorageError:
    return StorageError(
        f"llm_command {command.id} refers to {what}, which the log does not hold",
        hint="expand commands with the store (and tenant) that wrote them",
        event_id=command.id,
    )
