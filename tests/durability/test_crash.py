"""The real gateway, killed (SIGKILL) or stopped (SIGTERM) at chosen points and at random ones
under REST and WebSocket load, on SQLite and PostgreSQL: after each restart every message it
acknowledged is answered exactly once, nothing is answered twice, every stream's seqs stay
gap-free, and retries with the same idempotency keys create nothing."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from crash_support import (
    ASK,
    READ,
    TOOL,
    Clients,
    EchoModel,
    Gateway,
    Ledger,
    Sent,
    check_ledger,
    clients,
    echo_model,
    make_key,
    wait_for_log,
    write_config,
)

from promptline.events.protocols import EventFilter

pytestmark = pytest.mark.slow


@dataclass
class Rig:
    backend: str
    model: EchoModel
    gateway: Gateway
    key: str
    ledger: Ledger
    home: Path


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str | None:
    """Each backend in turn: SQLite (None) or a fresh PostgreSQL database (its URL)."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def rig(database: str | None, tmp_path: Path) -> AsyncIterator[Rig]:
    with echo_model() as (model, port):
        home = tmp_path / "home"
        write_config(home, port, database)
        gateway = Gateway(home)
        try:
            backend = "SQLite" if database is None else "PostgreSQL"
            yield Rig(backend, model, gateway, await make_key(home), Ledger(), home)
        finally:
            await gateway.close()


async def _until(condition: object, what: str) -> None:
    for _ in range(3000):  # a bound of 60 s, polled every 20 ms
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def _kill(rig: Rig, point: str, sig: signal.Signals = signal.SIGKILL) -> None:
    code = await rig.gateway.stop(sig)
    if sig == signal.SIGTERM:
        assert code == 0, rig.gateway.log.read_text()
    rig.ledger.kills.append(point)


async def _restart(rig: Rig) -> Clients:
    await rig.gateway.start()
    return Clients(rig.gateway, rig.key, rig.ledger)


def _runs(sent: list[Sent]) -> list[str]:
    return [s.run_id for s in sent if s.run_id is not None]


async def _log_has(rig: Rig, kind: str, runs: list[str]) -> None:
    for run_id in runs:
        await wait_for_log(rig.home, EventFilter(types=frozenset({kind}), run_id=run_id))


async def test_acknowledged_messages_survive_kills_at_chosen_points(rig: Rig) -> None:
    await rig.gateway.start()
    async with clients(rig.gateway, rig.key, rig.ledger) as c:
        sessions = [await c.new_session() for _ in range(4)]

    # 1. During model calls, with runs queued behind them (REST and WebSocket).
    async with clients(rig.gateway, rig.key, rig.ledger) as c:
        rig.model.hold()
        batch = await asyncio.gather(
            *(
                c.send(sid, f"{sid} first {i} {via}", via=via)
                for sid in sessions
                for i, via in enumerate(("rest", "ws", "rest"))
            )
        )
        assert all(s.acknowledged for s in batch)
        await _until(lambda: rig.model.waiting == len(sessions), "a model call per session")
    await _kill(rig, "during model calls, with runs queued behind them")
    rig.model.release()
    c = await _restart(rig)
    await c.wait_ended(_runs(batch))

    # 2. During tool calls: one that may have had an effect, and one that is idempotent.
    tools = [
        await c.send(sid, f"{sid} tools {tag}", via="rest")
        for sid, tag in zip(sessions, (TOOL, READ, TOOL, READ), strict=True)
    ]
    await _log_has(rig, "tool_command", _runs(tools))
    await c.aclose()
    await _kill(rig, "during tool calls")
    c = await _restart(rig)
    await c.wait_ended(_runs(tools))

    # 3. During an approval wait (SIGKILL), then during another (SIGTERM): both stay pending
    # and are answered after the restart.
    for sig, point in (
        (signal.SIGKILL, "during an approval wait"),
        (signal.SIGTERM, "graceful stop during an approval wait"),
    ):
        asked = [await c.send(sid, f"{sid} {point} {ASK}", via="ws") for sid in sessions[:2]]
        await _log_has(rig, "permission_request", _runs(asked))
        await c.aclose()
        await _kill(rig, point, sig)
        c = await _restart(rig)
        pending = (await c.http.get("/v1/approvals")).json()["items"]
        assert {p["run_id"] for p in pending} >= set(_runs(asked))
        await c.wait_ended(_runs(asked), approve=True)

    # 4. A graceful stop while model calls hang and runs wait behind them.
    rig.model.hold()
    held = [await c.send(sid, f"{sid} stopped {i}") for sid in sessions for i in range(2)]
    await _until(lambda: rig.model.waiting == len(sessions), "a model call per session")
    await c.aclose()
    await _kill(rig, "graceful stop during model calls", signal.SIGTERM)
    rig.model.release()
    c = await _restart(rig)
    await c.wait_ended(_runs(held))

    # 5. Before the acknowledgement: requests in flight when the process dies.
    racing = [asyncio.ensure_future(c.send(sessions[i % 4], f"racing {i}")) for i in range(12)]
    await asyncio.sleep(0)  # they are on their way
    await _kill(rig, "with requests in flight, before their acknowledgement")
    await asyncio.gather(*racing)
    await c.aclose()
    c = await _restart(rig)
    for sent in rig.ledger.sent:
        if not sent.acknowledged:
            assert await c.resend(sent) is not None  # the client retries with its key
    await c.wait_ended(_runs(rig.ledger.acknowledged))

    # 6. During a resumed run, twice: it goes on each time from where it was.
    rig.model.hold()
    [again] = [await c.send(sessions[0], "resumed twice")]
    await _until(lambda: rig.model.waiting == 1, "the model call")
    for point in ("during a model call", "during the same model call, resumed"):
        await c.aclose()
        calls = rig.model.calls
        await _kill(rig, point)
        c = await _restart(rig)
        await _until(lambda calls=calls: rig.model.calls > calls, "the resumed model call")
    rig.model.release()
    await c.wait_ended(_runs([again]))
    assert (await c.http.get(f"/v1/runs/{again.run_id}")).json()["resumed"] == 2

    # 7. Right after an acknowledgement, one message at a time.
    for i in range(3):
        single = await c.send(sessions[1], f"one at a time {i}")
        assert single.acknowledged
        await c.aclose()
        await _kill(rig, "right after an acknowledgement")
        c = await _restart(rig)
    await c.wait_ended(_runs(rig.ledger.acknowledged))

    # Retries of everything acknowledged, after all the restarts, create nothing.
    before = await c.http.get("/v1/runs", params={"limit": 500})
    for sent in rig.ledger.acknowledged:
        assert await c.resend(sent) == sent.run_id
    after = await c.http.get("/v1/runs", params={"limit": 500})
    assert len(after.json()["items"]) == len(before.json()["items"])
    await c.aclose()
    await rig.gateway.stop()

    counted = await check_ledger(rig.home, rig.ledger)
    print(f"\n{rig.backend}, chosen kill points: {counted}")
    assert counted["kill_points"] >= 10
    assert (counted["lost"], counted["answered_twice"]) == (0, 0)


ROUNDS = 12


async def _answered(c: Clients, sent: Sent) -> bool:
    """Poll the run until it has ended (True), or the gateway is gone (False)."""
    for _ in range(500):
        try:
            run = await c.http.get(f"/v1/runs/{sent.run_id}")
        except Exception:
            return False
        if run.json().get("status") not in ("queued", "running", "waiting_approval"):
            return True
        await asyncio.sleep(0.02)
    return False


async def test_acknowledged_messages_survive_random_kills_under_load(rig: Rig) -> None:
    rng = random.Random(7)
    await rig.gateway.start()
    async with clients(rig.gateway, rig.key, rig.ledger) as c:
        sessions = [await c.new_session() for _ in range(6)]
    counter = 0

    async def worker(c: Clients, sid: str, seed: int) -> None:
        nonlocal counter
        mine = random.Random(seed)
        while True:
            counter += 1
            tag = mine.choice(["", "", "", TOOL, READ])
            sent = await c.send(
                sid, f"{sid} load {counter} {tag}".strip(), via=mine.choice(["rest", "ws"])
            )
            if not sent.acknowledged:
                return  # the gateway died under it
            if mine.random() < 0.3 and not await _answered(c, sent):
                return  # it waited for the answer, as a chat client does, and the gateway died
            await asyncio.sleep(mine.uniform(0, 0.05))

    for round_ in range(ROUNDS):
        c = Clients(rig.gateway, rig.key, rig.ledger)
        for sent in list(rig.ledger.sent):
            if not sent.acknowledged:
                await c.resend(sent)  # a client retries what got no answer, with its key
        workers = [
            asyncio.ensure_future(worker(c, sid, rng.randrange(1 << 30))) for sid in sessions
        ]
        await asyncio.sleep(rng.uniform(0.3, 1.5))  # the kill comes at a random moment
        sig = signal.SIGTERM if round_ % 4 == 3 else signal.SIGKILL
        await _kill(rig, f"random, under load ({sig.name})", sig)
        await asyncio.gather(*workers, return_exceptions=False)
        await c.aclose()
        await rig.gateway.start()

    c = Clients(rig.gateway, rig.key, rig.ledger)
    for sent in rig.ledger.sent:
        if not sent.acknowledged:
            assert await c.resend(sent) is not None
    await c.wait_ended(_runs(rig.ledger.acknowledged))
    await c.aclose()
    await rig.gateway.stop()

    counted = await check_ledger(rig.home, rig.ledger)
    print(f"\n{rig.backend}, random kill points under load: {counted}")
    assert counted["kill_points"] == ROUNDS
    assert (counted["lost"], counted["answered_twice"]) == (0, 0)
