"""After a restart a process settles only its own unfinished runs: another gateway sharing
the database may be running the others right now."""

from __future__ import annotations

from runtime_support import FakeModel, HarnessFactory

from promptline.core.events import RunStarted, RunStartedEvent
from promptline.core.messages import Message
from promptline.runtime import Agent
from promptline.runtime.records import load_run


def started(run_id: str, instance: str | None) -> RunStartedEvent:
    return RunStartedEvent(
        stream=run_id,
        run_id=run_id,
        agent_id="assistant",
        data=RunStarted(
            agent="assistant", input=Message(role="user", content="hi"), instance=instance
        ),
    )


async def test_recover_resumes_its_own_runs_and_leaves_other_processes_runs(
    make_runtime: HarnessFactory,
) -> None:
    h = make_runtime(FakeModel(lambda request: "ok"), instance="gw-1")
    for run_id, instance in (("run_mine", "gw-1"), ("run_theirs", "gw-2"), ("run_old", None)):
        await h.bus.publish(started(run_id, instance))

    done = await h.runtime.recover()

    assert sorted(done["resumed"]) == ["run_mine", "run_old"]
    for run_id in ("run_mine", "run_old"):
        record = await h.runtime.wait(run_id)
        assert (record.status, record.output, record.resumed) == ("completed", "ok", 1)
    assert (await load_run(h.store, "run_theirs")).status == "running"


async def test_an_agent_that_says_on_crash_interrupt_has_its_runs_recorded_as_interrupted(
    make_runtime: HarnessFactory,
) -> None:
    h = make_runtime(
        FakeModel(lambda request: "ok"),
        agents=[Agent(name="assistant", on_crash="interrupt")],
        instance="gw-1",
    )
    await h.bus.publish(started("run_mine", "gw-1"))

    done = await h.runtime.recover()

    assert done["interrupted"] == ["run_mine"]
    record = await load_run(h.store, "run_mine")
    assert (record.status, record.cancelled_by) == ("interrupted", "recovery")


async def test_a_run_records_the_process_that_runs_it(make_runtime: HarnessFactory) -> None:
    h = make_runtime(FakeModel(lambda request: "ok"), instance="gw-7")

    result = await h.runtime.run("hello")

    [event] = [e for e in await h.events(result.run_id) if isinstance(e, RunStartedEvent)]
    assert event.data.instance == "gw-7"
