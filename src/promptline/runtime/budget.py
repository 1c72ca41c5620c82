"""Token and cost ceilings of sessions and users, checked before every model call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time

from promptline.core.errors import BudgetExceededError
from promptline.core.events import LlmResultEvent
from promptline.events.protocols import EventFilter, EventStore

__all__ = ["Budget", "Spent", "spent"]


@dataclass(frozen=True, slots=True)
class Budget:
    """The ceilings (None: no ceiling). User ceilings are per UTC day."""

    session_tokens: int | None = None
    session_cost_usd: float | None = None
    user_tokens: int | None = None
    user_cost_usd: float | None = None

    @property
    def any_session(self) -> bool:
        """True when a session ceiling is set."""
        return self.session_tokens is not None or self.session_cost_usd is not None

    @property
    def any_user(self) -> bool:
        """True when a user ceiling is set."""
        return self.user_tokens is not None or self.user_cost_usd is not None


@dataclass(slots=True)
class Spent:
    """Tokens and dollars used so far."""

    tokens: int = 0
    cost_usd: float = 0.0

    def add(self, tokens: int, cost_usd: float | None) -> None:
        """Count one model call."""
        self.tokens += tokens
        self.cost_usd += cost_usd or 0.0


async def spent(store: EventStore, flt: EventFilter) -> Spent:
    """What the ``llm_result`` events matching ``flt`` used."""
    total = Spent()
    position = 0
    wanted = EventFilter(
        types=frozenset({"llm_result"}),
        session_id=flt.session_id,
        user_id=flt.user_id,
        tenant_id=flt.tenant_id,
        since=flt.since,
    )
    while True:
        page = await store.read_all(wanted, from_position=position, limit=1000)
        for event in page:
            if isinstance(event, LlmResultEvent):
                total.add(event.data.usage.total_tokens, event.data.cost_usd)
        if len(page) < 1000:
            return total
        position = page[-1].position


def start_of_day(now: datetime) -> datetime:
    """Midnight UTC of ``now``'s day."""
    return datetime.combine(now.astimezone(UTC).date(), time(), tzinfo=UTC)


def check(
    budget: Budget, *, session: Spent | None, user: Spent | None, what: str = "the next model call"
) -> None:
    """`BudgetExceededError` when a ceiling is already reached."""
    checks: list[tuple[str, str, float | None, float | None]] = [
        ("session", "tokens", session.tokens if session else None, budget.session_tokens),
        ("session", "dollars", session.cost_usd if session else None, budget.session_cost_usd),
        ("user (today)", "tokens", user.tokens if user else None, budget.user_tokens),
        ("user (today)", "dollars", user.cost_usd if user else None, budget.user_cost_usd),
    ]
    for scope, unit, used, limit in checks:
        if limit is not None and used is not None and used >= limit:
            shown = f"{used:.4f}" if unit == "dollars" else str(used)
            raise BudgetExceededError(
                f"the {scope} budget of {limit:g} {unit} is used up ({shown} {unit} spent); "
                f"{what} was not sent",
                hint="raise agent.budget in the config, or start a new session",
                scope=scope,
                unit=unit,
                used=used,
                limit=limit,
            )
