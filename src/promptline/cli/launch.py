"""Starting a run from the command line: who runs it, which model answers, and a feed of its
events opened before it can publish any."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from promptline.app import App
    from promptline.config.settings import Settings
    from promptline.events.protocols import Subscription
    from promptline.runtime.agent import Agent
    from promptline.runtime.run import Run
    from promptline.sessions.models import Principal

LOCAL_USER = "local"
"""The user the command line runs agents as (the default owner of `sessions new` too)."""

FALLBACK_MODEL = "scripted/demo"
"""What answers when no model is named or configured: the offline demo model."""

NO_MODEL_NOTICE = (
    "no model configured (models.default): using the offline demo model scripted/demo; "
    "see docs/models.md to add a real one"
)

EVENTS_BUFFER = 100_000
"""Events a run's feed may hold unread (a long streamed answer must not be cut off)."""


def local_principal() -> Principal:
    """The person at the terminal: the local user, with the operator's right to use any
    session of any tenant."""
    from promptline.sessions.models import Principal

    return Principal(tenant_id="default", user_id=LOCAL_USER, admin=True)


def pick_model(
    settings: Settings, agent: Agent, asked: str | None
) -> tuple[str | None, str | None]:
    """The model a run should use and a notice to show, if any.

    An explicit choice wins, then the agent's own model, then ``models.default`` (None is
    returned so the runtime applies it); with none of them, the offline demo model.
    """
    if asked:
        return asked, None
    if agent.model or settings.models.default:
        return None, None
    return FALLBACK_MODEL, NO_MODEL_NOTICE


def effective_model(settings: Settings, agent: Agent, chosen: str | None) -> str:
    """The model id a run started with ``chosen`` ends up asking for."""
    return chosen or agent.model or settings.models.default or FALLBACK_MODEL


async def start_watched(
    app: App,
    message: str,
    *,
    agent: Agent,
    session_id: str | None = None,
    mode: Literal["plan", "act"] | None = None,
    model: str | None = None,
) -> tuple[Run, Subscription]:
    """Start a run and subscribe to its events at once, before it can publish anything."""
    from promptline.events.protocols import EventFilter

    run = await app.runtime.start_run(
        message,
        session_id=session_id,
        principal=local_principal(),
        agent=agent,
        mode=mode,
        model=model,
    )
    # No await between the two: the run's task has not had a chance to run yet.
    subscription = app.bus.subscribe(EventFilter(run_id=run.id), max_queue=EVENTS_BUFFER)
    return run, subscription
