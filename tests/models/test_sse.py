"""The SSE parser: WHATWG line and field rules, chunking independence, close and bad input."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptline.core.errors import InvalidInputError
from promptline.models.sse import SseEvent, SseParser, aiter_sse


def parse(raw: bytes) -> list[SseEvent]:
    parser = SseParser()
    return parser.feed(raw) + parser.close()


def parse_chunks(chunks: list[bytes]) -> list[SseEvent]:
    parser = SseParser()
    out: list[SseEvent] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out + parser.close()


def split_at(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(raw)) for c in cuts})
    bounds = [0, *points, len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


def test_data_lines_are_joined_with_newlines_and_event_defaults_to_message() -> None:
    assert parse(b"data: one\ndata: two\ndata\n\n") == [SseEvent("message", "one\ntwo\n")]


def test_event_type_id_and_retry_are_reported_with_the_event() -> None:
    raw = b"event: delta\nid: 7\nretry: 1500\ndata: {}\n\n"
    assert parse(raw) == [SseEvent("delta", "{}", "7", 1500)]


def test_only_one_space_after_the_colon_is_stripped() -> None:
    assert parse(b"data:  two spaces\ndata:none\n\n") == [SseEvent("message", " two spaces\nnone")]


def test_event_is_dispatched_as_soon_as_its_blank_line_arrives() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.feed(b"\n") == [SseEvent("message", "a")]


def test_comments_are_ignored() -> None:
    assert parse(b": keep-alive\n:\ndata: x\n: mid\n\n") == [SseEvent("message", "x")]


def test_crlf_cr_and_lf_line_breaks_are_all_accepted() -> None:
    expected = [SseEvent("message", "a\nb"), SseEvent("message", "c")]
    assert parse(b"data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n") == expected
    assert parse(b"data: a\rdata: b\r\rdata: c\r\r") == expected
    assert parse(b"data: a\ndata: b\r\n\rdata: c\n\r\n") == expected


def test_cr_and_lf_split_across_chunks_count_as_one_line_break() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # the LF completes the CR, it is not a blank line
    assert parser.feed(b"\r") == [SseEvent("message", "a")]
    assert parser.feed(b"\ndata: b\n\n") == [SseEvent("message", "b")]


def test_utf8_character_split_across_chunks_is_decoded_whole() -> None:
    raw = "data: héllo 世界 🎉\n\n".encode()
    chunks = [raw[i : i + 1] for i in range(len(raw))]
    assert parse_chunks(chunks) == [SseEvent("message", "héllo 世界 🎉")]


def test_invalid_utf8_becomes_replacement_character() -> None:
    assert parse(b"data: a\xffb\n\n") == [SseEvent("message", "a\ufffdb")]


def test_leading_bom_is_dropped_even_when_split() -> None:
    assert parse_chunks([b"\xef", b"\xbb", b"\xbfdata: x\n\n"]) == [SseEvent("message", "x")]
    # A second BOM is content: the field name is then not "data" and the line is ignored.
    assert parse(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n") == []


def test_final_event_without_blank_line_is_dispatched_only_on_close() -> None:
    parser = SseParser()
    assert parser.feed(b"data: first\n\ndata: last") == [SseEvent("message", "first")]
    assert parser.close() == [SseEvent("message", "last")]


def test_blank_line_without_data_dispatches_nothing_and_resets_the_event_type() -> None:
    assert parse(b"event: ping\n\ndata: x\n\n") == [SseEvent("message", "x")]


def test_id_persists_across_events_and_id_with_nul_is_ignored() -> None:
    raw = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\0\ndata: c\n\nid\ndata: d\n\n"
    assert [(e.data, e.id) for e in parse(raw)] == [("a", "1"), ("b", "1"), ("c", "1"), ("d", "")]


def test_retry_must_be_ascii_digits_and_applies_to_its_own_block_only() -> None:
    parser = SseParser()
    events = parser.feed(
        b"retry: 10\ndata: a\n\nretry: x1\ndata: b\n\nretry: \xd9\xa3\ndata: c\n\n"
    )
    assert [e.retry for e in events] == [10, None, None]
    assert parser.retry == 10


def test_unknown_fields_are_ignored() -> None:
    assert parse(b"foo: bar\ndata: x\nDATA: y\n\n") == [SseEvent("message", "x")]


def test_openai_style_stream_yields_every_chunk_and_done() -> None:
    body = b"".join(b'data: {"choices":[{"delta":{"content":"t%d"}}]}\n\n' % i for i in range(200))
    events = parse_chunks(split_at(body + b"data: [DONE]\n\n", list(range(0, len(body), 37))))
    assert len(events) == 201
    assert events[0].data == '{"choices":[{"delta":{"content":"t0"}}]}'
    assert events[-1].data == "[DONE]"


def test_feed_after_close_is_refused_with_a_hint() -> None:
    parser = SseParser()
    parser.close()
    with pytest.raises(InvalidInputError) as info:
        parser.feed(b"data: x\n\n")
    assert info.value.hint


def test_line_longer_than_the_limit_is_rejected() -> None:
    parser = SseParser(max_line_bytes=16)
    assert parser.feed(b"data: short\n\n") == [SseEvent("message", "short")]
    with pytest.raises(InvalidInputError, match="longer than 16 bytes"):
        parser.feed(b"data: " + b"x" * 20)


def test_non_positive_line_limit_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        SseParser(max_line_bytes=0)


async def test_aiter_sse_parses_an_async_byte_stream_including_the_unterminated_tail() -> None:
    async def body() -> AsyncIterator[bytes]:
        for chunk in (b"event: a\nda", b"ta: 1\n\n", b"data: 2"):
            yield chunk

    assert [e async for e in aiter_sse(body())] == [SseEvent("a", "1"), SseEvent("message", "2")]


_LINE_PIECES = st.sampled_from(
    [
        b"data: x",
        b"data:y",
        b"data",
        b"event: e",
        b"id: 1",
        b"id: \0",
        b"retry: 5",
        b"retry: z",
        b": c",
        b"",
        b"\xc3\xa9",
        b"\xe4\xb8\x96",
        b"\xff",
        b"foo: bar",
        b"data: \xf0\x9f\x8e\x89",
    ]
)
_BREAKS = st.sampled_from([b"\n", b"\r", b"\r\n"])


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    parts = draw(st.lists(st.tuples(_LINE_PIECES, _BREAKS), max_size=30))
    raw = b"".join(a + b for a, b in parts)
    if draw(st.booleans()):
        raw = b"\xef\xbb\xbf" + raw
    return raw + draw(st.sampled_from([b"", b"data: tail", b"\r", b"\xe4"]))


@settings(max_examples=300, deadline=None)
@given(raw=streams(), cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_any_chunking_yields_the_same_events_as_the_whole_stream(
    raw: bytes, cuts: list[int]
) -> None:
    assert parse_chunks(split_at(raw, cuts)) == parse(raw)


@settings(max_examples=100, deadline=None)
@given(raw=streams())
def test_byte_at_a_time_matches_the_whole_stream(raw: bytes) -> None:
    assert parse_chunks([raw[i : i + 1] for i in range(len(raw))]) == parse(raw)
