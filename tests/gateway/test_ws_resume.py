"""Event subscriptions survive the connection: a client that reconnects and resubscribes
from the last seq it received gets the rest of the session's stream, none of it twice; a
client too slow to read is closed with 1013 and resumes the same way. Streamed ``llm_delta``
events are transient (seq 0, never stored): a resumed subscription does not replay them, the
stored ``llm_result`` carries the whole answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ws_support import Rpc, Served, SlowClient, ends, rpc, served, wait_until, ws_settings

from promptline.events.bus import InProcessEventBus


async def _read_to_the_end(gw: Served, client: Rpc, session_id: str, seen: list[Any]) -> Any:
    """Once the session's runs are over, read ``client``'s events up to the stored stream's
    last seq; the stored stream."""
    await wait_until(lambda: not gw.app.runtime.active, "the runs ended")
    stored = await gw.app.events.read_stream(session_id)
    while not seen or seen[-1]["seq"] < stored[-1].seq:
        seen.append((await client.next_event())["event"])
    return stored


def _stored(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events that are in the log (transient deltas have seq 0)."""
    return [e for e in events if e["seq"]]


async def test_reconnecting_with_the_last_seq_received_misses_nothing_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    async with served(ws_settings(tmp_path / "home")) as gw:
        async with rpc(gw.url, gw.keys.alice) as first:
            session_id = str((await first.call("session.create"))["id"])
            await first.call("events.subscribe", {"session_id": session_id, "from_seq": 0})
            started = await first.call(
                "session.send",
                {"session_id": session_id, "content": "tell me", "model": "scripted/narrator"},
            )
            run_id = started["run_id"]
            part_one: list[dict[str, Any]] = []
            while sum(e["type"] == "llm_delta" for e in part_one) < 30:
                part_one.append((await first.next_event())["event"])
            # It cannot end before someone answers its permission request: still in flight.
            in_flight_at_disconnect = gw.app.runtime.busy(session_id)
        last_seq = _stored(part_one)[-1]["seq"]

        async with rpc(gw.url, gw.keys.alice) as second:
            await second.call("events.subscribe", {"session_id": session_id, "from_seq": last_seq})
            part_two = await second.events_until(lambda e: e["type"] == "permission_request")
            await second.call(
                "permission.respond",
                {"request_id": part_two[-1]["data"]["request_id"], "approve": True},
            )
            part_two += await second.events_until(ends(run_id))
            stored = await _read_to_the_end(gw, second, session_id, part_two)

    received = part_one + part_two
    kept = _stored(received)
    assert in_flight_at_disconnect
    assert [(e["id"], e["seq"]) for e in kept] == [(e.id, e.seq) for e in stored]
    assert len({e["id"] for e in received}) == len(received)
    assert [e["seq"] for e in kept] == list(range(1, len(stored) + 1))
    assert "llm_delta" not in {e.type for e in stored}  # deltas are live only
    assert any(e["type"] == "llm_delta" for e in part_two)  # the second answer, live
    # The answer cut mid-stream is whole in its llm_result, which the resumed client got.
    answers = [e for e in part_two if e["type"] == "llm_result"]
    assert len(answers) == 2
    assert received[-1]["seq"] == stored[-1].seq
    assert {"run_completed", "permission_granted"} <= {e["type"] for e in part_two}


async def test_a_client_that_does_not_read_is_closed_with_1013_and_resumes_from_its_last_seq(
    tmp_path: Path,
) -> None:
    settings = ws_settings(tmp_path / "home", "  ws_send_queue: 8\n")
    async with served(settings) as gw:
        bus = gw.app.bus
        assert isinstance(bus, InProcessEventBus)
        before = bus.subscriber_count
        async with rpc(gw.url, gw.keys.alice) as control:
            session_id = str((await control.call("session.create"))["id"])
            slow = await SlowClient.open(gw.url, gw.keys.alice)
            try:
                await slow.send(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "events.subscribe",
                        "params": {"session_id": session_id, "from_seq": 0},
                    }
                )
                await wait_until(lambda: bus.subscriber_count == before + 1, "subscribed")
                await control.call(
                    "session.send",
                    {"session_id": session_id, "content": "go", "model": "scripted/flood"},
                )
                # Far more than the sockets' buffers hold has been published once it is over.
                await wait_until(lambda: not gw.app.runtime.active, "the run ended")
                await wait_until(lambda: bus.subscriber_count == before, "the slow one dropped")
                code = await slow.read_until_closed()
            finally:
                slow.close()
            part_one = [f["params"]["event"] for f in slow.frames if f.get("method") == "event"]
            last_seq = _stored(part_one)[-1]["seq"]

            await control.call("events.subscribe", {"session_id": session_id, "from_seq": last_seq})
            part_two: list[dict[str, Any]] = []
            stored = await _read_to_the_end(gw, control, session_id, part_two)

    assert code == 1013
    assert slow.frames[0] == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"subscription": "sub_1", "session_id": session_id},
    }
    assert len(_stored(part_one)) < len(stored)  # it was dropped before the end
    received = _stored(part_one + part_two)
    assert [(e["id"], e["seq"]) for e in received] == [(e.id, e.seq) for e in stored]
    assert len({e["id"] for e in received}) == len(received)
