"""Durable intake of messages: what a message is acknowledged with, and the events that make it
durable first.

A message is acknowledged only once its ``message_received`` and the ``run_queued`` of the run
that answers it are in the log, written in one transaction. A retry carrying the same
idempotency key finds the first run (its id is made from the key) and gets the first answer;
the log's unique event ids make that hold across processes and restarts.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from promptline.core.errors import InvalidInputError
from promptline.core.messages import Message

if TYPE_CHECKING:
    from promptline.core.events import RunQueuedEvent
    from promptline.runtime.run import Run

__all__ = [
    "MAX_IDEMPOTENCY_KEY",
    "Accepted",
    "IdempotencyKeyReusedError",
    "check_idempotency_key",
    "fingerprint",
    "keyed_ids",
]

MAX_IDEMPOTENCY_KEY = 255
"""The longest idempotency key taken (in characters)."""


class IdempotencyKeyReusedError(InvalidInputError):
    """An idempotency key came back with a different request than the one it was first
    used for: it names one request, whose answer stands."""

    code = "idempotency_key_reused"


@dataclass(frozen=True, slots=True)
class Accepted:
    """The acknowledgement of a message: everything in it is in the log when it is returned.

    ``run_id`` is the run answering the message, ``position`` the unfinished runs of its
    session that were ahead of it (0: it starts at once), ``seq`` the seq of its
    ``message_received`` in ``stream`` (follow the stream after ``seq - 1`` to see
    everything the run does). For queue mode ``steer`` the message joins ``steered_into``,
    the run in flight, whose answer covers it. ``replayed`` is true when this answers a
    retry with an idempotency key already used: nothing new was created. ``run`` is the
    `Run` in this process (None when it has ended, or belongs to another process).
    """

    run_id: str
    session_id: str | None
    stream: str
    seq: int
    position: int
    run: Run | None = None
    steered_into: str | None = None
    replayed: bool = False

    @property
    def answer_run_id(self) -> str:
        """The run whose answer the caller waits for (the run in flight, for ``steer``)."""
        return self.steered_into or self.run_id

    @classmethod
    def of(cls, queued: RunQueuedEvent, seq: int, run: Run | None, *, replayed: bool) -> Accepted:
        """The acknowledgement a stored ``run_queued`` stands for."""
        return cls(
            run_id=queued.run_id or "",
            session_id=queued.session_id,
            stream=queued.stream_name,
            seq=seq,
            position=queued.data.position,
            run=run,
            steered_into=queued.data.steer_into,
            replayed=replayed,
        )


def check_idempotency_key(key: Any) -> str | None:
    """``key`` if it is a usable idempotency key (None stays None); `InvalidInputError`
    otherwise."""
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidInputError(
            f"an idempotency key must be a string of 1 to {MAX_IDEMPOTENCY_KEY} characters",
            hint="send a unique value per message, such as a UUID, and the same one on retries",
            field="idempotency_key",
        )
    if "\x00" in key:
        raise InvalidInputError(
            "an idempotency key may not contain NUL characters",
            hint="send a UUID or another printable value",
            field="idempotency_key",
        )
    return key


def keyed_ids(tenant_id: str, user_id: str, key: str) -> tuple[str, str]:
    """The run id and the ``run_queued`` event id of the message sent with idempotency key
    ``key`` by ``user_id`` of ``tenant_id``: the same inputs always give the same ids, and
    different ones never do (the parts are hashed as one JSON array, which keeps them apart)."""
    digest = hashlib.sha256(orjson.dumps(["idempotency", tenant_id, user_id, key])).digest()
    token = base64.b32encode(digest[:20]).decode().rstrip("=")
    return f"run_K{token}", f"evt_K{token}"


def fingerprint(
    *,
    session_id: str | None,
    message: Message,
    history: list[Message],
    agent: str,
    model: str | None,
    mode: str | None,
    queue_mode: str | None,
    overrides: dict[str, Any],
) -> str:
    """A digest of what a message asks for, to tell a retry from a reused key."""
    payload = orjson.dumps(
        [
            session_id,
            _essence(message),
            [_essence(m) for m in history],
            agent,
            model,
            mode,
            queue_mode,
            overrides,
        ],
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(payload).hexdigest()[:32]


def _essence(message: Message) -> Any:
    """What a message says (not the id and time it was given when it was built)."""
    return message.model_dump(mode="json", exclude={"id", "created_at"})
