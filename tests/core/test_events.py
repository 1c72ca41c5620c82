import orjson
import pytest

from promptline.core.errors import InvalidInputError
from promptline.core.events import (
    EVENT_CLASSES,
    GLOBAL_STREAM,
    LlmResult,
    LlmResultEvent,
    MessageReceived,
    MessageReceivedEvent,
    StateChange,
    StateChangeEvent,
    UnknownEvent,
    decode_event,
    encode_event,
    parse_event,
)
from promptline.core.messages import Message, Usage

ARCHITECTURE_TYPES = {
    "llm_command",
    "llm_delta",
    "llm_result",
    "tool_command",
    "tool_progress",
    "tool_result",
    "state_change",
    "agent_lifecycle",
    "permission_request",
    "permission_granted",
    "permission_denied",
    "run_started",
    "run_completed",
    "run_failed",
    "run_cancelled",
    "message_received",
    "message_sent",
    "session_created",
    "session_expired",
    "security_alert",
    "error",
}


def test_every_architecture_event_type_is_known() -> None:
    assert set(EVENT_CLASSES) >= ARCHITECTURE_TYPES


def test_known_event_round_trips_as_its_own_class() -> None:
    event = LlmResultEvent(
        session_id="ses_1",
        run_id="run_1",
        data=LlmResult(model="openai/gpt-4", usage=Usage(input_tokens=5, output_tokens=7)),
    )
    decoded = decode_event(encode_event(event))
    assert isinstance(decoded, LlmResultEvent)
    assert decoded == event


def test_stream_defaults_to_session_then_global() -> None:
    with_session = MessageReceivedEvent(
        session_id="ses_9", data=MessageReceived(message=Message(role="user", content="hi"))
    )
    without = StateChangeEvent(data=StateChange(scope="global", key="k", version=1))
    assert with_session.stream_name == "ses_9"
    assert without.stream_name == GLOBAL_STREAM


def test_unknown_event_type_round_trips_unchanged() -> None:
    raw = {
        "id": "evt_X",
        "type": "from_the_future",
        "stream": "global",
        "seq": 3,
        "position": 9,
        "ts": "2026-01-01T00:00:00Z",
        "data": {"nested": {"a": [1, 2, 3]}},
        "new_envelope_field": "kept",
    }
    event = decode_event(orjson.dumps(raw))
    assert isinstance(event, UnknownEvent)
    again = orjson.loads(encode_event(event))
    for key, value in raw.items():
        if key != "ts":
            assert again[key] == value
    assert again["ts"].startswith("2026-01-01T00:00:00")


def test_wrong_payload_shape_is_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match=r"llm_result\.data\.model"):
        parse_event({"type": "llm_result", "data": {"usage": {}}})


def test_newer_payload_of_known_type_is_kept_when_reading_leniently() -> None:
    raw = orjson.dumps({"type": "llm_result", "schema_version": 2, "data": {"renamed_model": "x"}})
    event = decode_event(raw, lenient=True)
    assert isinstance(event, UnknownEvent)
    assert event.data == {"renamed_model": "x"}
    with pytest.raises(InvalidInputError):
        decode_event(raw)
