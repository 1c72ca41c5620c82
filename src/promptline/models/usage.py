"""Token and cost totals per user, session, agent, model and UTC day, folded from the
``llm_result`` events of the log."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

from promptline.core.errors import InvalidInputError
from promptline.core.events import Event, LlmResultEvent
from promptline.events.protocols import EventFilter, EventStore
from promptline.events.replay import replay

__all__ = ["Dimension", "UsageProjection", "UsageTotals", "usage_report"]

Dimension = Literal["user", "session", "agent", "model", "day"]
"""What totals can be grouped by."""

DIMENSIONS: tuple[Dimension, ...] = get_args(Dimension)


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Sums over a set of model calls. ``cost_usd`` adds the calls whose price was known;
    ``unpriced_calls`` counts the others, so a total is never silently too low."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: UsageTotals) -> UsageTotals:
        return UsageTotals(
            *(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self))
        )

    def to_dict(self) -> dict[str, int | float]:
        """The totals as a JSON-ready mapping."""
        return dataclasses.asdict(self)


class UsageProjection:
    """A `Projection`: ``apply`` every event; ``llm_result`` events add to the totals, any
    other event is ignored. A model is keyed ``provider/model``; a call with no user,
    session or agent is grouped under None."""

    def __init__(self) -> None:
        """An empty projection."""
        self._total = UsageTotals()
        self._groups: dict[Dimension, dict[str | None, UsageTotals]] = {d: {} for d in DIMENSIONS}
        self.last_position = 0
        """Position of the last event applied (a checkpoint for incremental replay)."""

    def apply(self, event: Event) -> None:
        """Take one event into account."""
        self.last_position = max(self.last_position, event.position)
        if not isinstance(event, LlmResultEvent):
            return
        data = event.data
        cost = data.cost_usd
        call = UsageTotals(
            calls=1,
            input_tokens=data.usage.input_tokens,
            output_tokens=data.usage.output_tokens,
            cached_tokens=data.usage.cached_tokens,
            reasoning_tokens=data.usage.reasoning_tokens,
            cost_usd=cost or 0.0,
            unpriced_calls=1 if cost is None else 0,
        )
        self._total += call
        keys: dict[Dimension, str | None] = {
            "user": event.user_id,
            "session": event.session_id,
            "agent": event.agent_id,
            "model": model_key(data.provider, data.model),
            "day": event.ts.astimezone(UTC).date().isoformat(),
        }
        for dimension, key in keys.items():
            group = self._groups[dimension]
            group[key] = group.get(key, UsageTotals()) + call

    @property
    def total(self) -> UsageTotals:
        """Totals over every call applied."""
        return self._total

    def by(self, dimension: Dimension) -> dict[str | None, UsageTotals]:
        """Totals per key of ``dimension`` (``user``, ``session``, ``agent``, ``model``,
        ``day``), dearest first, then by key."""
        group = self._groups.get(dimension)
        if group is None:
            raise InvalidInputError(
                f"cannot group usage by {dimension!r}",
                hint=f"group by one of: {', '.join(DIMENSIONS)}",
            )
        ordered = sorted(group.items(), key=lambda kv: (-kv[1].cost_usd, kv[0] or ""))
        return dict(ordered)

    def get(self, dimension: Dimension, key: str | None) -> UsageTotals:
        """Totals of one user, session, agent, model or day (zeros when it made no call)."""
        return self.by(dimension).get(key, UsageTotals())


def model_key(provider: str | None, model: str) -> str:
    """``provider/model`` for a result's provider and model name (as given if already full)."""
    if provider is None or model.startswith(f"{provider}/"):
        return model
    return f"{provider}/{model}"


async def usage_report(
    store: EventStore,
    *,
    user_id: str | None = None,
    session_id: str | None = None,
    tenant_id: str | None = None,
    run_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> UsageProjection:
    """A `UsageProjection` rebuilt from the stored ``llm_result`` events that match (``since``
    inclusive, ``until`` exclusive)."""
    projection = UsageProjection()
    await replay(
        store,
        projection,
        filter=EventFilter(
            types=frozenset({"llm_result"}),
            user_id=user_id,
            session_id=session_id,
            tenant_id=tenant_id,
            run_id=run_id,
            since=since,
            until=until,
        ),
    )
    return projection
